"""The deterministic simulator, as CI runs it (issue 3 and 4).

- 2,000 seeds of the correct core under every fault must find no violation, and every
  coverage counter must be above zero over them;
- each ``--bug`` switch must make the simulator report a violation within 500 seeds;
- one seed replays exactly.

Budget: the whole module in under 4 minutes on one core (about 1 minute for the CI seeds).
A failure prints the seed and its trace; replay it with
``python -m consensus.sim --seed S --seeds 1``.
"""

from __future__ import annotations

import pytest

from consensus.core import BUGS
from consensus.sim import COUNTERS, Simulation, run_seeds
from consensus.sim.__main__ import main

CI_SEEDS = 2000
BUG_SEEDS = 500

pytestmark = pytest.mark.sim


@pytest.mark.slow
def test_ci_seeds_are_clean_and_cover_every_fault() -> None:
    s = run_seeds(1, CI_SEEDS)
    report = "\n".join(v.format() for v in s.violations[:3])
    print(s.line())
    print(s.coverage())
    assert not s.violations, report
    assert s.seeds == CI_SEEDS
    assert s.commits > 10 * CI_SEEDS
    zero = [k for k in COUNTERS if s.counters[k] == 0]
    assert not zero, f"coverage counters never hit over {CI_SEEDS} seeds: {zero}"


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_is_found_within_500_seeds(bug: str) -> None:
    s = run_seeds(1, BUG_SEEDS, bugs=frozenset({bug}), stop_at_first=True)
    assert s.violations, f"bug {bug!r} went unnoticed over {BUG_SEEDS} seeds"
    v = s.violations[0]
    print(f"{bug}: found after {s.first_violation_after} seed(s): seed={v.seed} {v.rule}")


def test_a_seed_replays_exactly() -> None:
    a = Simulation(7).run()
    b = Simulation(7).run()
    assert (a.steps, a.commits, a.faults, a.counters) == (b.steps, b.commits, b.faults, b.counters)


def test_cli_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "1", "--seeds", "3", "--nodes", "5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("seeds=3 ")
    assert "coverage: elections=" in out
    assert main(["--seed", "1", "--seeds", "5", "--bug", "apply-uncommitted"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION seed=1" in out and "apply-uncommitted" in out
