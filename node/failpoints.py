"""Test-only failure injection, switched on only by ``COURTLEDGER_FAILPOINTS`` (issue 11).

The variable (or the config's ``failpoints`` list, which it overrides, DESIGN §4) is a
comma-separated list; an unknown name stops the node at start, so a typo never silently tests
nothing. Production configs set none, and then nothing here runs.

=============================  ==============================================================
``crash-before-block-persist``  kill -9 itself just before the N-th block's synced batch
                                (``=N``, default 1): the block was committed by Raft, not
                                stored here; a restart must re-apply it from the Raft log.
``crash-after-block-persist``   kill -9 right after the N-th block's synced batch returned,
                                before the waiters are released or the block is cosigned.
``crash-before-vote-reply``     kill -9 after the N-th new vote is fsynced and before the
                                reply leaves (Raft §5.2: the vote must survive the crash).
``slow-fsync=50ms``             every synced write of the ledger store and the Raft log waits
                                this long first (a slow disk).
``powerloss``                   after every synced write, snapshot the data directory (hard
                                links of LevelDB's immutable tables, copies of everything
                                else) to ``<data_dir>.powerloss/last``: what the disk is
                                guaranteed to hold. The harness simulates a power loss by
                                kill -9 and restarting from that snapshot (:func:`restore`).
``clock-skew=+5000``            this process's wall clock runs this many ms ahead (or behind,
                                with ``-``): ``time.time`` and ``time.time_ns`` are shifted.
``equivocate``                  the lying leader of :mod:`node.raftlink` (read there).
=============================  ==============================================================

``ledger`` and ``consensus`` import nothing of the node (DESIGN §1), so the hooks reach them
as the ``sync_hook`` attributes of :class:`ledger.store.LedgerStore` and
:class:`consensus.logstore.LogStore`, set here by :func:`install`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("courtledger.failpoints")

ENV = "COURTLEDGER_FAILPOINTS"
_CRASHES = ("crash-before-block-persist", "crash-after-block-persist", "crash-before-vote-reply")
#: The hook event of the store at which each crash fires.
_CRASH_EVENT = {"crash-before-block-persist": "before-block",
                "crash-after-block-persist": "after-block",
                "crash-before-vote-reply": "after-vote"}


@dataclass(frozen=True)
class Failpoints:
    """The parsed failpoints of one node process."""

    crashes: tuple[tuple[str, int], ...] = ()
    slow_fsync_s: float = 0.0
    powerloss: bool = False
    clock_skew_ms: int = 0
    equivocate: bool = False

    @property
    def any(self) -> bool:
        return bool(self.crashes or self.slow_fsync_s or self.powerloss or self.clock_skew_ms
                    or self.equivocate)


def _duration_s(text: str, name: str) -> float:
    t = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0)):
        if t.endswith(suffix):
            t, mult = t[: -len(suffix)], scale
            break
    else:
        mult = 0.001
    try:
        value = float(t) * mult
    except ValueError:
        raise ValueError(f"failpoint {name}: {text!r} is not a duration like 50ms") from None
    if value < 0 or value > 10:
        raise ValueError(f"failpoint {name}: {text!r} outside 0…10 s")
    return value


def parse(items: Iterable[str]) -> Failpoints:
    """Parse failpoint names (``name`` or ``name=value``); raise ValueError on unknown ones."""
    crashes: list[tuple[str, int]] = []
    slow = 0.0
    power = equivocate = False
    skew = 0
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        if name in _CRASHES:
            try:
                n = int(value) if value else 1
            except ValueError:
                raise ValueError(f"failpoint {name}: {value!r} is not a count") from None
            if n < 1:
                raise ValueError(f"failpoint {name}: count must be ≥ 1")
            crashes.append((name, n))
        elif name == "slow-fsync":
            slow = _duration_s(value or "50ms", name)
        elif name == "powerloss":
            power = True
        elif name == "clock-skew":
            try:
                skew = int(value)
            except ValueError:
                raise ValueError(f"failpoint clock-skew: {value!r} is not ±ms") from None
        elif name == "equivocate":
            equivocate = True
        else:
            raise ValueError(f"unknown failpoint {name!r}")
    return Failpoints(tuple(crashes), slow, power, skew, equivocate)


def from_env(env: dict[str, str] | None = None) -> Failpoints:
    """The failpoints of ``COURTLEDGER_FAILPOINTS`` (comma-separated)."""
    text = (os.environ if env is None else env).get(ENV, "")
    return parse(text.split(","))


# --------------------------------------------------------------------------- power loss


def snapshot_dir(data_dir: Path) -> Path:
    """Where :func:`snapshot` keeps the last durable image of ``data_dir``."""
    return data_dir.parent / (data_dir.name + ".powerloss")


def snapshot(data_dir: Path, lock: threading.Lock) -> None:
    """Record what the disk holds now that a synced write returned.

    LevelDB's ``.ldb``/``.sst`` tables are immutable once written, so hard links are exact and
    cheap; the write-ahead logs, ``MANIFEST`` and ``CURRENT`` are appended or replaced, so
    they are copied. A table linked while being built is referenced by no copied ``MANIFEST``
    and is ignored on recovery, as after a real power loss.
    """
    root = snapshot_dir(data_dir)
    with lock:
        root.mkdir(exist_ok=True)
        tmp = root / "next"
        if tmp.exists():
            shutil.rmtree(tmp)
        for dirpath, _, files in os.walk(data_dir):
            rel = Path(dirpath).relative_to(data_dir)
            (tmp / rel).mkdir(parents=True, exist_ok=True)
            for f in files:
                src, dst = Path(dirpath) / f, tmp / rel / f
                try:
                    if f.endswith((".ldb", ".sst")):
                        os.link(src, dst)
                    else:
                        shutil.copyfile(src, dst)
                except FileNotFoundError:
                    pass  # removed by a compaction meanwhile: not needed by what we copied
        # Never delete the only complete image: a kill between the two renames leaves ``old``
        # (complete) and no ``last``, and :func:`restore` falls back to it. An ``old`` is
        # removed only while a complete ``last`` exists, or once the new ``last`` is in place.
        last, old = root / "last", root / "old"
        if last.exists():
            if old.exists():
                shutil.rmtree(old)
            last.rename(old)
        tmp.rename(last)
        shutil.rmtree(old, ignore_errors=True)


def restore(data_dir: Path) -> bool:
    """Harness side of a simulated power loss (the node is dead): replace ``data_dir`` by its
    last snapshot. Returns False if there is none."""
    root = snapshot_dir(data_dir)
    last = root / "last"
    if not last.exists():
        # Killed between snapshot's two renames: the previous complete image is ``old`` (the
        # sync being recorded had not returned to its caller, so nothing acknowledged is newer).
        last = root / "old"
        if not last.exists():
            return False
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(last, data_dir)
    for lock in data_dir.rglob("LOCK"):
        lock.unlink()
    return True


# --------------------------------------------------------------------------- wiring


def _die(reason: str) -> None:
    log.error("failpoint %s: kill -9", reason)
    for h in logging.getLogger().handlers:
        h.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def make_hook(fp: Failpoints, data_dir: Path) -> Callable[[str], None]:
    """The ``sync_hook`` shared by the ledger store and the Raft log."""
    counts: dict[str, int] = {}
    lock = threading.Lock()
    count_lock = threading.Lock()

    def hook(event: str) -> None:
        if fp.slow_fsync_s and event.startswith("before-"):
            time.sleep(fp.slow_fsync_s)
        for name, n in fp.crashes:
            if _CRASH_EVENT[name] == event:
                with count_lock:
                    counts[name] = counts.get(name, 0) + 1
                    hit = counts[name] == n
                if hit:
                    _die(name)
        if fp.powerloss and event.startswith("after-"):
            snapshot(data_dir, lock)

    return hook


def _skew_clock(ms: int) -> None:
    real_time, real_ns = time.time, time.time_ns
    time.time = lambda: real_time() + ms / 1000.0
    time.time_ns = lambda: real_ns() + ms * 1_000_000


def install(node: Any, fp: Failpoints | None = None) -> Failpoints:
    """Wire the failpoints of this process (from the node's config, which the environment
    variable fills) into a constructed :class:`node.process.Node`; return them."""
    if fp is None:
        fp = parse(node.config.failpoints)
    if not fp.any:
        return fp
    log.warning("TEST FAILPOINTS ACTIVE: %s", fp)
    if fp.clock_skew_ms:
        _skew_clock(fp.clock_skew_ms)
    hook = make_hook(fp, Path(node.config.data_dir))
    if fp.crashes or fp.slow_fsync_s or fp.powerloss:
        store = getattr(node.chain, "store", None)
        if store is not None:
            store.sync_hook = hook
        logstore = getattr(node.replicator, "logstore", None)
        if logstore is not None:
            logstore.sync_hook = hook
        if fp.powerloss:  # the first durable image: the state at start
            snapshot(Path(node.config.data_dir), threading.Lock())
    return fp
