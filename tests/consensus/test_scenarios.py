"""Scenario files (etcd raft's datadriven style): run every ``testdata/*.txt``.

Each file cites the Raft paper section or etcd behaviour it checks. Regenerate the expected
transcripts after an intended change with ``REWRITE=1 pytest tests/consensus/test_scenarios.py``
and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from interaction import run_file  # tests/consensus is on sys.path (no __init__)

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    errors = run_file(path)
    assert not errors, "\n\n".join(errors)


def test_scenarios_exist() -> None:
    names = {p.stem for p in FILES}
    for required in (
        "election",
        "split_vote",
        "figure8",
        "prevote_rejoin",
        "checkquorum",
        "crash_vote",
        "learner_promote",
        "remove_leader",
        "snapshot_catchup",
        "readindex",
        "transfer",
        "slow_follower",
    ):
        assert required in names
