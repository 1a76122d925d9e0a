"""Run a range of seeds and add up what they did."""

from __future__ import annotations

from dataclasses import dataclass, field

from .cluster import COUNTERS, Simulation, Violation

__all__ = ["Summary", "run_seeds"]


@dataclass
class Summary:
    """Totals over a range of seeds."""

    seeds: int = 0
    steps: int = 0
    commits: int = 0
    faults: int = 0
    violations: list[Violation] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    first_violation_after: int | None = None  # seeds run until the first violation

    def line(self) -> str:
        """The one summary line."""
        return (
            f"seeds={self.seeds} steps={self.steps} commits={self.commits} "
            f"faults={self.faults} violations={len(self.violations)}"
        )

    def coverage(self) -> str:
        """The coverage counters, one line."""
        return "coverage: " + " ".join(f"{k}={v}" for k, v in self.counters.items())


def run_seeds(
    seed: int,
    count: int,
    bugs: frozenset[str] = frozenset(),
    nodes: int | None = None,
    stop_at_first: bool = False,
) -> Summary:
    """Run seeds ``seed`` … ``seed + count - 1``."""
    total = Summary()
    for s in range(seed, seed + count):
        r = Simulation(s, nodes=nodes, bugs=bugs).run()
        total.seeds += 1
        total.steps += r.steps
        total.commits += r.commits
        total.faults += r.faults
        for k, v in r.counters.items():
            total.counters[k] += v
        if r.violations:
            if total.first_violation_after is None:
                total.first_violation_after = total.seeds
            total.violations.extend(r.violations)
            if stop_at_first:
                break
    return total
