"""Fixtures for the page's tests: demo chains served over real HTTP, and Debian's Chromium.

Browser tests skip only when Chromium (or the Playwright driver) is still missing after
``tests/web/setup_browser.sh`` was run once from here; the reason names what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webchain import Chain
from webserver import ServerThread, build_app, demo_chain, demo_docs

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "web"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM}"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    return None


@pytest.fixture(scope="session")
def chromium_ready() -> None:
    """Run the setup script once if anything is missing; skip if it still is."""
    if _browser_missing():
        subprocess.run(["bash", str(ROOT / "tests/web/setup_browser.sh")], timeout=900,
                       check=False)
        importlib.invalidate_caches()
    missing = _browser_missing()
    if missing:
        pytest.skip(f"{missing} after running tests/web/setup_browser.sh")


@pytest.fixture(scope="session")
def playwright(chromium_ready: None) -> Iterator[Any]:
    """The Playwright driver (one per session: its sync API cannot be nested)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def launch(playwright: Any, *extra_args: str) -> Any:
    """Launch Debian's Chromium headless, never a downloaded browser build."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    """One headless Debian Chromium for the whole session."""
    b = launch(playwright)
    yield b
    b.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    """A fresh desktop-sized page; uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (artifacts/web, ignored by git, kept by CI)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Served:
    """A demo chain served over HTTP: ``url``, ``chain``, ``info`` (contents and entry ids)."""

    def __init__(self, chain: Chain, info: dict[str, Any]) -> None:
        self.chain = chain
        self.info = info
        self.server = ServerThread(build_app(chain, demo_docs(info))).start()
        self.url = self.server.url


@pytest.fixture(scope="session")
def served() -> Iterator[Served]:
    """The SHA-256 demo chain (a membership change included) on 127.0.0.1."""
    chain, info = demo_chain("sha256")
    s = Served(chain, info)
    yield s
    s.server.stop()


@pytest.fixture(scope="session")
def served_sm3() -> Iterator[Served]:
    """The same demo on an SM3 chain."""
    chain, info = demo_chain("sm3")
    s = Served(chain, info)
    yield s
    s.server.stop()
