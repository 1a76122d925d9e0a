"""Failpoints under the recorded workload (issue 11). Budget: ≤ 2.5 minutes together.

* Power loss, not only process death: every node runs with ``powerloss`` (a snapshot of its
  data directory after every synced write); then all three lose power at once (kill -9 and a
  restart from the last snapshot, so whatever was written but not yet fsynced is gone), twice.
  Every entry acknowledged before must still be there: acknowledgements waited for real fsyncs
  on a majority.
* Crash failpoints (before and after a block is persisted, after a vote is fsynced and before
  its reply), a slow disk and a skewed clock, under a seeded kill/pause/partition schedule.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from node.failpoints import parse, restore, snapshot_dir
from node.init import init_consortium
from tests.e2e.test_cluster import free_base_port

from .checker import check_live, check_stored
from .history import History, Workload
from .proxy import FaultProxy
from .run import FaultCluster, converge, run_schedule, wait_ready_reaping

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]


def test_failpoint_names_are_parsed_and_unknown_ones_refused() -> None:
    fp = parse(["crash-after-block-persist=3", "slow-fsync=50ms", "powerloss",
                "clock-skew=+5000", "equivocate", ""])
    assert fp.crashes == (("crash-after-block-persist", 3),)
    assert (fp.slow_fsync_s, fp.powerloss, fp.clock_skew_ms, fp.equivocate) == (
        0.05, True, 5000, True)
    assert not parse([]).any
    for bad in (["crash-everywhere"], ["slow-fsync=fast"], ["crash-before-vote-reply=0"],
                ["clock-skew=soon"]):
        with pytest.raises(ValueError):
            parse(bad)


def test_power_loss_of_every_node_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    seed = int(os.environ.get("COURTLEDGER_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"power loss seed {seed}")
    folder = tmp_path / "c"
    init_consortium(folder, 3, base_port=free_base_port())
    proxy = FaultProxy()
    c = FaultCluster(folder, proxy, extra_env={"COURTLEDGER_FAILPOINTS": "powerloss"})
    history = History(folder / "history.jsonl")
    work = Workload(c, history, clients=3, seed=seed)
    try:
        c.start_all()
        wait_ready_reaping(c)
        work.start()
        for _cycle in range(2):
            time.sleep(3)
            for n in list(c.procs):
                c.kill(n)  # all at once: the power went out
            for n in c.ids:
                data = c.configs[n].data_dir
                assert snapshot_dir(data).exists()
                assert restore(data), f"no power-loss snapshot for {n}"
            for n in c.ids:
                c.start(n)
            wait_ready_reaping(c)
        time.sleep(3)
        work.stop()
        converge(c)
        violations = check_live(c, history.records)
        c.stop_all()
        v, figures = check_stored(c, history.records)
        violations += v
    finally:
        work.stop()
        history.close()
        c.stop_all()
        proxy.close()
    assert not violations, (f"seed {seed}: data kept in {folder}", violations[:10])
    assert figures["acked"] > 20 and c.kills == 6, figures
    shutil.rmtree(folder, ignore_errors=True)


def test_crash_failpoints_slow_disk_and_skewed_clock_under_faults(tmp_path: Path) -> None:
    seed = int(os.environ.get("COURTLEDGER_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"failpoint schedule seed {seed}")
    res = run_schedule(
        seed, 3, tmp_path, keep=True,
        node_env={0: {"COURTLEDGER_FAILPOINTS": "slow-fsync=50ms"},
                  1: {"COURTLEDGER_FAILPOINTS": "clock-skew=+5000"}},
        first_env={0: {"COURTLEDGER_FAILPOINTS": "slow-fsync=50ms,crash-after-block-persist=5"},
                   1: {"COURTLEDGER_FAILPOINTS": "clock-skew=+5000,crash-before-vote-reply=2"},
                   2: {"COURTLEDGER_FAILPOINTS": "crash-before-block-persist=8"}},
    )
    assert not res.violations, (f"seed {seed}: data kept in {res.folder}", res.violations[:10])
    # The block failpoints fire once each within the first few blocks.
    assert res.crashes >= 2, (res.crashes, res.steps)
    logs = "".join((res.folder / "logs" / f).read_text(errors="replace")
                   for f in os.listdir(res.folder / "logs"))
    assert "failpoint crash-after-block-persist: kill -9" in logs
    assert "failpoint crash-before-block-persist: kill -9" in logs
    shutil.rmtree(res.folder, ignore_errors=True)
