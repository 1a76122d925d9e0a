"""A lying leader (issue 11, security suite): caught by the cosignature exchange, proven offline.

Three real node processes with the test-only failpoint ``equivocate`` (node/raftlink.py): the
leader re-signs every block it sends to one follower with another time, so the two followers
hold different, individually valid blocks at one height. DESIGN §2: each voter checks every
signature it receives against its own checkpoint; on a mismatch it stops cosigning, raises the
alarm and keeps the evidence. This test shows, on the real processes:

* both followers raise the alarm within one exchange (a few seconds) of applying the block,
  answer ``/readyz`` 503 and write ``evidence/equivocation-<h>-<peer>.json``;
* the evidence holds both signed checkpoints and, after the announcements, the proposer's two
  signed headers;
* the real CLI, ``courtledger audit consistency EVIDENCE --consortium GENESIS``, exits 1, prints
  EQUIVOCATION with both signed checkpoints and names the leader as the proposer that signed
  both blocks.

Budget: ≤ 90 s (one cluster start, one block).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.codec import envelope_to_json
from tests.e2e.test_cluster import ROOT, doc_env, start_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(180)]

#: From a follower's applying the block to its alarm: its own signature goes out, the other
#: follower's (or the leader's) comes back: one round trip, plus the announcement's resends
#: (0, 1 and 2 s) if a link was still coming up, plus polling slack on a loaded machine.
DETECT_WITHIN_S = 5.0
#: From the alarm to the peer's header in the evidence: one announcement (resent at 1 and 2 s).
HEADERS_WITHIN_S = 10.0


def test_lying_leader_is_caught_and_the_evidence_convicts_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    c = start_cluster(tmp_path_factory.mktemp("lying-leader") / "c",
                      env={"COURTLEDGER_FAILPOINTS": "equivocate"})
    try:
        leader = c.leader()
        assert leader is not None
        followers = [n for n in c.ids if n != leader]
        r = httpx.post(c.internal(leader) + "/v1/entries", params={"wait": "commit"},
                       json={"entries": [envelope_to_json(doc_env(c, b"two versions"))]},
                       timeout=30)
        assert r.status_code == 200, r.text
        height = r.json()["entries"][0]["height"]
        committed_at = time.monotonic()

        applied_at: dict[str, float] = {}
        caught_at: dict[str, float] = {}
        status: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while len(caught_at) < 2 and time.monotonic() < deadline:
            for n in followers:
                st = c.status(n)
                if not st:
                    continue
                now = time.monotonic()
                if st.get("applied_height", 0) >= height:
                    applied_at.setdefault(n, now)
                if st.get("evidence") and n not in caught_at:
                    applied_at.setdefault(n, now)
                    caught_at[n] = now
                    status[n] = st
            time.sleep(0.05)
        assert set(caught_at) == set(followers), (applied_at, caught_at)
        delays = {n: round(caught_at[n] - applied_at[n], 2) for n in followers}
        print(f"alarm after applying the block (s): {delays}; after the commit answer: "
              f"{ {n: round(t - committed_at, 2) for n, t in caught_at.items()} }")
        assert all(d <= DETECT_WITHIN_S for d in delays.values()), delays

        for n in followers:
            st = status[n]
            assert st["cosigning"] == "stopped"
            assert any(a.startswith("equivocation") for a in st["alarms"]), st["alarms"]
            assert httpx.get(c.internal(n) + "/readyz", timeout=5).status_code == 503
            ev = st["evidence"][0]
            assert ev["format"] == "courtledger-equivocation/1" and ev["detected_by"] == n
            assert ev["first"]["checkpoint"]["height"] == ev["second"]["checkpoint"]["height"]
            assert ev["first"]["checkpoint"]["block"] != ev["second"]["checkpoint"]["block"]

        # Each follower's files gain the peer's header once the peer announces its conflict.
        files: dict[str, list[Path]] = {}
        deadline = time.monotonic() + HEADERS_WITHIN_S
        while time.monotonic() < deadline:
            files = {n: sorted((c.folder / "data" / n / "evidence").glob("equivocation-*.json"))
                     for n in followers}
            complete = {n: [p for p in ps if len(_read(p)["headers"]) == 2]
                        for n, ps in files.items()}
            if all(complete.values()):
                files = complete
                break
            time.sleep(0.2)
        assert all(files.values()), {n: [_read(p) for p in ps] for n, ps in files.items()}

        genesis = c.folder / "genesis.toml"
        for n in followers:
            path = files[n][0]
            out = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "courtledger"), "audit", "consistency", str(path),
                 "--consortium", str(genesis)],
                capture_output=True, text=True, timeout=60, cwd=ROOT,
            )
            assert out.returncode == 1, (out.stdout, out.stderr)
            assert out.stdout.startswith(f"EQUIVOCATION: two checkpoints at height {height}")
            assert f"PROPOSER {leader} signed both blocks" in out.stdout, out.stdout
            assert out.stdout.count('"format": "courtledger-checkpoint/1"') == 2
            ev = _read(path)
            for side in ("first", "second"):
                assert ev[side]["checkpoint"]["block"] in out.stdout
                assert ev[side]["signatures"][0]["sig"] in out.stdout
            assert f"proposer {leader} signed both blocks" in out.stderr
    finally:
        c.stop_all()


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
