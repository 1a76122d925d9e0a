"""The short fault run for ``make test`` (issue 11). Budget: ≤ 3 minutes.

One seeded schedule (``COURTLEDGER_FAULT_SEED`` picks it; otherwise a fresh seed, printed) of
kill -9 of the leader and of followers, SIGSTOP/SIGCONT pauses, partitions and one-way
partitions through the proxy and slow links, under the recorded workload; then heal, converge
and check (tests/faults/checker.py). On failure the data directories, logs and history are kept
and the seed is printed. ``make faults SEEDS=N`` runs the long form.

The checker itself is checked on the same run: a history that lies about a location, or claims
a stored entry was refused, must be caught.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from .checker import check_stored
from .history import History
from .proxy import FaultProxy
from .run import FaultCluster, run_schedule

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]


def test_one_seeded_fault_schedule_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("COURTLEDGER_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"fault schedule seed {seed} (rerun: COURTLEDGER_FAULT_SEED={seed})")
    root = Path(os.environ.get("COURTLEDGER_FAULT_DIR") or tmp_path)
    res = run_schedule(seed, 8, root, keep=True)
    assert not res.violations, (f"seed {seed}: data kept in {res.folder}", res.violations[:10])
    assert res.kills >= 1 and res.figures["acked"] > 50, res.figures
    # The checker catches a lie: an acknowledgement at the wrong place, a refusal that stored.
    records = History.load(res.folder / "history.jsonl")
    acked = [r for r in records if r["op"] == "ok"]
    lie = dict(acked[len(acked) // 2], leaf_index=acked[len(acked) // 2]["leaf_index"] + 1)
    refused = dict(acked[0], op="fail", code=422)
    proxy = FaultProxy()
    try:
        c = FaultCluster(res.folder, proxy)
        violations, _ = check_stored(c, [lie, refused], audit=False)
    finally:
        proxy.close()
    assert any("acknowledged at" in v for v in violations), violations
    assert any("refused entry" in v for v in violations), violations
    shutil.rmtree(res.folder, ignore_errors=True)
