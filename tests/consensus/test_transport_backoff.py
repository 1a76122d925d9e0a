"""A peer that hangs up right after the handshake is redialled with backoff (budget: ~4 s).

Found by the fault suite (issue 11): a voter removed by a membership entry keeps running, its
former peers no longer pin its certificate and close each link as soon as it is up, and the
removed node redialled at once, a TLS handshake on each peer per loop (thousands in a run).
The dial loop now counts a link that ended within ``STABLE_LINK_S`` as a failed dial.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.transport import STABLE_LINK_S
from tests.consensus.test_transport import Cluster, _eventually, run

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function StreamWriter.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.timeout(60),
]


def test_a_removed_member_redials_with_backoff_not_in_a_loop(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        c.t["c"].send("a", {"from": "c"})
        await _eventually(lambda: len(c.got["a"]) == 1)
        a = c.t["a"]
        a.update_members([m for n, m in a.members.items() if n != "c"])
        await _eventually(lambda: a.counters["refused"] >= 1)
        start = a.counters["refused"]
        await asyncio.sleep(3.0)
        # Backoff 0.05 s doubling to 2 s (with jitter): a handful of attempts in 3 s; an
        # immediate redial made hundreds.
        assert 1 <= a.counters["refused"] - start <= 12, a.counters
        assert len(c.got["a"]) == 1  # and nothing it sent was delivered

    run(tmp_path, body)


def test_a_long_lived_link_that_drops_is_redialled_at_once(tmp_path: Path) -> None:
    async def body(c: Cluster) -> None:
        c.t["a"].send("b", {"from": "a", "i": 0})
        await _eventually(lambda: len(c.got["b"]) == 1)
        await asyncio.sleep(STABLE_LINK_S + 0.2)
        # b closes its side of a's link (as after a network blip); a redials without delay.
        connects = c.t["a"].counters["connects"]
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for w in list(c.t["b"]._inbound.get("a", set())):
            w.close()
        await _eventually(lambda: c.t["a"].counters["connects"] > connects, timeout=2)
        assert loop.time() - t0 < 0.5
        c.t["a"].send("b", {"from": "a", "i": 1})
        await _eventually(lambda: len(c.got["b"]) == 2)

    run(tmp_path, body)
