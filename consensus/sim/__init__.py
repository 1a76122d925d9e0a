"""The deterministic Raft simulator: many seeded runs of the real core under faults.

``python -m consensus.sim --seed S --seeds N [--bug NAME] [--nodes 3|5]`` runs seeds
S … S+N−1 (see :mod:`consensus.sim.cluster` for the faults and the invariants), prints one
summary line and the coverage counters, prints each violation with its seed and a short
trace, and exits non-zero on any violation. Replay one seed with ``--seed S --seeds 1``.
"""

from __future__ import annotations

from .cluster import COUNTERS, SeedResult, Simulation, Violation
from .runner import Summary, run_seeds

__all__ = ["COUNTERS", "SeedResult", "Simulation", "Summary", "Violation", "run_seeds"]
