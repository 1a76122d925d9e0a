"""The verification page in Chromium: the three outcomes, tampered receipts, deep links.

The page is served with canned public-API answers built from a really signed chain
(webchain/webserver). Each state is saved as a screenshot under artifacts/web/.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import launch
from tampers import TAMPERS, Receipt, flip_hex, flip_sigs

pytestmark = pytest.mark.browser


def outcome(page: Any) -> str:
    """Wait for the result and return its kind: recorded | notfound | error."""
    el = page.wait_for_selector("[data-testid=outcome]", timeout=15_000)
    return str(el.get_attribute("data-outcome"))


def checks(page: Any) -> dict[str, bool]:
    return {
        li.get_attribute("data-check"): li.get_attribute("data-ok") == "true"
        for li in page.query_selector_all("[data-testid=checks] li")
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def field(page: Any, name: str) -> str:
    return str(page.inner_text(f"[data-testid=match] dd[data-field={name}]"))


def test_choose_a_file_recorded_with_checks(page: Any, served: Any, artifacts: Path) -> None:
    page.goto(served.url + "/")
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.set_input_files("#file", files=[{"name": "终本裁定书.pdf", "mimeType": "application/pdf",
                                          "buffer": served.info["late"]}])
    assert outcome(page) == "recorded"
    assert page.inner_text("[data-testid=outcome]") == "已存证"
    assert checks(page) == {k: True for k in ("format", "entry", "signer", "document", "inclusion",
                                              "chain", "consortium", "signatures")}
    assert page.inner_text("[data-testid=hash]") == sha(served.info["late"])
    # The facts shown come from the verified entry and checkpoint.
    assert field(page, "court") == "吉0102"
    assert field(page, "doc_type") == "终本裁定书"
    assert field(page, "height") == "4"
    cp_time = served.chain.blocks[3].time
    assert field(page, "anchored_utc") == "2025-12-11 02:03:01 UTC" and cp_time % 1000 == 0
    assert field(page, "anchored_bj") == "2025-12-11 10:03:01 (UTC+8)"
    # Three of the four courts in force after the fourth joined (majority needs 3).
    assert "由 4 家法院中的 3 家联署" in field(page, "cosigned")
    assert page.url.endswith("?h=" + sha(served.info["late"]))
    page.screenshot(path=str(artifacts / "recorded-desktop-zh.png"), full_page=True)

    page.click("#lang")
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("[data-testid=outcome]") == "Recorded"
    assert "cosigned by 3 of 4 courts" in field(page, "cosigned")
    page.screenshot(path=str(artifacts / "recorded-desktop-en.png"), full_page=True)


def test_drop_a_file_recorded(page: Any, served: Any) -> None:
    page.goto(served.url + "/")
    dt = page.evaluate_handle(
        """(bytes) => { const dt = new DataTransfer();
           dt.items.add(new File([new Uint8Array(bytes)], 'notice.pdf', {type: 'application/pdf'}));
           return dt; }""",
        list(served.info["early"]),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dt})
    assert outcome(page) == "recorded"
    assert "由 3 家法院中的 3 家联署" in field(page, "cosigned")
    assert field(page, "height") == "1"
    assert "notice.pdf" in page.inner_text("[data-testid=file-name]")


def test_unknown_file_not_found_with_honest_note(page: Any, served: Any, artifacts: Path) -> None:
    page.goto(served.url + "/")
    page.set_input_files("#file", files=[{"name": "unknown.pdf", "mimeType": "application/pdf",
                                          "buffer": b"a document no court anchored"}])
    assert outcome(page) == "notfound"
    text = page.inner_text("#result")
    assert "未找到" in text and "并不证明文书是伪造的" in text
    assert str(len(served.chain.leaves)) in text  # as_of tree size
    page.screenshot(path=str(artifacts / "notfound-desktop-zh.png"), full_page=True)
    page.click("#lang")
    assert "Not found does not prove a forgery" in page.inner_text("#result")
    page.screenshot(path=str(artifacts / "notfound-desktop-en.png"), full_page=True)


def _serve_tampered(page: Any, tamper: Callable[[Receipt], None]) -> list[str]:
    """Intercept receipt fetches and tamper with them; returns the URLs it tampered with."""
    seen: list[str] = []

    def handle(route: Any) -> None:
        seen.append(route.request.url)
        response = route.fetch()
        receipt = copy.deepcopy(response.json())
        tamper(receipt)
        route.fulfill(response=response, body=json.dumps(receipt),
                      headers={**response.headers, "content-type": "application/json"})

    page.route("**/v1/verify/receipts/**", handle)
    return seen


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_receipt_is_never_recorded(page: Any, served: Any, artifacts: Path,
                                            name: str) -> None:
    tamper, failing_check = TAMPERS[name]
    seen = _serve_tampered(page, tamper)
    page.goto(served.url + "/?h=" + sha(served.info["early"]))
    assert outcome(page) == "error"
    assert seen, "the receipt request was not intercepted"
    assert "已存证" not in page.inner_text("[data-testid=outcome]")
    assert "验证其证明时失败" in page.inner_text("[data-testid=error-message]")
    result = checks(page)
    assert result[failing_check] is False, result
    assert not page.query_selector(".outcome.recorded")
    if name in ("path", "entry", "signatures"):
        page.screenshot(path=str(artifacts / f"tampered-{name}-zh.png"), full_page=True)


def test_one_bad_signature_still_counts_the_others(page: Any, served: Any) -> None:
    _serve_tampered(page, flip_sigs(1))
    page.goto(served.url + "/?h=" + sha(served.info["early"]))
    assert outcome(page) == "recorded"
    assert "由 3 家法院中的 2 家联署" in field(page, "cosigned")


def test_membership_proofs_are_required_and_checked(page: Any, served: Any,
                                                    artifacts: Path) -> None:
    # Without the proofs, the new court is no voter: its signature counts for nothing, and the
    # one genesis voter left is no majority.
    def no_proofs(r: Receipt) -> None:
        r["consortium"] = []
        r["signatures"] = [s for s in r["signatures"] if s["node"] in ("n-jl0203", "n-jl0102")]

    _serve_tampered(page, no_proofs)
    page.goto(served.url + "/?h=" + sha(served.info["late"]))
    assert outcome(page) == "error"
    assert checks(page)["signatures"] is False

    page.unroute("**/v1/verify/receipts/**")

    def bad_proof(r: Receipt) -> None:
        p = r["consortium"][0]
        p["inclusion_path"] = [flip_hex(p["inclusion_path"][0])] + p["inclusion_path"][1:] \
            if p["inclusion_path"] else [r["checkpoint"]["root"]]

    _serve_tampered(page, bad_proof)
    page.goto(served.url + "/?h=" + sha(served.info["late"]))
    assert outcome(page) == "error"
    assert checks(page)["consortium"] is False
    page.screenshot(path=str(artifacts / "tampered-consortium-en.png"), full_page=True)


def test_an_event_receipt_is_not_a_document(page: Any, served: Any) -> None:
    page.goto(served.url + "/?h=" + sha(served.info["event"]))
    assert outcome(page) == "error"
    assert checks(page)["document"] is False


def test_deep_link_and_download(page: Any, served: Any, artifacts: Path) -> None:
    h = sha(served.info["early"])
    page.goto(served.url + "/?h=" + h)
    assert outcome(page) == "recorded"
    assert page.input_value("#hash") == h
    with page.expect_download() as info:
        page.click("[data-testid=download]")
    download = info.value
    saved = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert saved == served.chain.receipt(served.info["early_id"])
    assert download.suggested_filename.startswith("courtledger-receipt-")
    page.screenshot(path=str(artifacts / "deeplink-desktop-zh.png"), full_page=True)


def test_pasted_hash_by_keyboard_and_bad_input(page: Any, served: Any) -> None:
    page.goto(served.url + "/?lang=en")
    page.get_by_label("Or paste the document's SHA-256 (64 hex digits)").fill("not a hash")
    page.press("#hash", "Enter")
    assert page.is_visible("#hash-error")
    assert page.get_attribute("#hash", "aria-invalid") == "true"
    page.fill("#hash", sha(served.info["early"]).upper())
    page.press("#hash", "Enter")
    assert outcome(page) == "recorded"
    # The language switch is a real button reachable by keyboard.
    page.focus("#lang")
    page.keyboard.press("Enter")
    assert page.inner_text("[data-testid=outcome]") == "已存证"


def test_committed_but_not_yet_cosigned_is_an_error(page: Any, served: Any) -> None:
    page.goto(served.url + "/?h=" + "c" * 64)
    assert outcome(page) == "error"
    assert "联署尚未完成" in page.inner_text("[data-testid=error-message]")


def test_node_behind_is_an_error_not_a_not_found(page: Any, served: Any, artifacts: Path) -> None:
    page.goto(served.url + "/?h=" + "b" * 64)
    assert outcome(page) == "error"
    assert "503" in page.inner_text("[data-testid=error-message]")
    page.screenshot(path=str(artifacts / "error-behind-zh.png"), full_page=True)


def test_sm3_chain_verified_by_the_page(page: Any, served_sm3: Any, artifacts: Path) -> None:
    page.goto(served_sm3.url + "/?lang=en&h=" + sha(served_sm3.info["late"]))
    assert outcome(page) == "recorded"
    assert all(checks(page).values()) and len(checks(page)) == 8
    assert "sm3" in page.inner_text("[data-testid=match]")
    page.screenshot(path=str(artifacts / "recorded-sm3-en.png"), full_page=True)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_phone_width(browser: Any, served: Any, artifacts: Path, language: str) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(f"{served.url}/?lang={language}&h=" + sha(served.info["late"]))
        assert outcome(page) == "recorded"
        # Nothing wider than the screen: no sideways scrolling on a phone.
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, width
        page.screenshot(path=str(artifacts / f"recorded-phone-{language}.png"), full_page=True)
        page.goto(f"{served.url}/?lang={language}&h=" + "0" * 64)
        assert outcome(page) == "notfound"
        page.screenshot(path=str(artifacts / f"notfound-phone-{language}.png"), full_page=True)
    finally:
        context.close()


def test_plain_http_outside_localhost_says_why(playwright: Any, served: Any,
                                               artifacts: Path) -> None:
    """courts.test resolves to 127.0.0.1 but is no localhost name: not a secure context."""
    port = served.url.rsplit(":", 1)[1]
    b = launch(playwright, "--host-resolver-rules=MAP courts.test 127.0.0.1")
    try:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://courts.test:{port}/?h=" + sha(served.info["early"]))
        assert outcome(page) == "error"
        assert page.evaluate("() => window.isSecureContext") is False
        assert page.is_visible("#insecure")
        assert "HTTPS" in page.inner_text("#insecure")
        assert "无法验证法院签名" in page.inner_text("#result")
        # The proof is still offered, for an offline audit, marked as not verified.
        assert "未通过核验" in page.inner_text("[data-testid=download]")
        page.screenshot(path=str(artifacts / "insecure-context-zh.png"), full_page=True)
        # A file can still be hashed (our own SHA-256) and looked up: unknown → Not found.
        page.set_input_files("#file", files=[{"name": "x.pdf", "mimeType": "application/pdf",
                                              "buffer": b"never anchored"}])
        page.wait_for_function(
            "() => document.querySelector('[data-outcome=notfound]') !== null")
    finally:
        b.close()


def test_a_changed_chain_id_is_flagged(page: Any, served: Any, artifacts: Path) -> None:
    page.goto(served.url + "/")
    assert page.is_hidden("#pin-changed")
    assert page.evaluate("() => localStorage.getItem('courtledger.chain_id')") == \
        served.chain.chain_id.hex()
    # As if this browser had seen another chain at this address before.
    page.evaluate("() => localStorage.setItem('courtledger.chain_id', 'ab'.repeat(32))")
    page.reload()
    page.wait_for_selector("#pin-changed", state="visible")
    assert "abababab" in page.inner_text("#pin-changed")
    page.screenshot(path=str(artifacts / "chain-id-changed-zh.png"), full_page=True)
    page.click("#pin-accept")
    assert page.is_hidden("#pin-changed")
    page.reload()
    assert page.is_hidden("#pin-changed")


@pytest.mark.slow  # hashes 256 MiB in page JavaScript: 3–10 s on this 2-core machine
def test_large_file_hashed_in_chunks_through_the_page(page: Any, served: Any,
                                                     tmp_path: Path) -> None:
    """Over 256 MiB the page hashes File.slice chunks with its own SHA-256 (bounded memory)."""
    big = tmp_path / "site-video.mp4"
    size = 256 * 1024 * 1024 + 12_345
    with open(big, "wb") as f:
        f.truncate(size)  # sparse zeros: instant to make, a real 256 MiB file to the browser
    want = hashlib.sha256()
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        want.update(block)
    want.update(bytes(size & ((1 << 20) - 1)))
    page.goto(served.url + "/")
    page.set_input_files("#file", str(big))
    page.wait_for_selector("#progress:not([hidden])")
    assert outcome(page) == "notfound"
    assert page.inner_text("[data-testid=hash]") == want.hexdigest()
    assert "256" in page.inner_text("[data-testid=file-name]")
