"""``python -m consensus.sim``: see :mod:`consensus.sim`."""

from __future__ import annotations

import argparse
import sys

from ..core import BUGS
from .runner import run_seeds


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the seeds, print the summary; 1 on any violation."""
    ap = argparse.ArgumentParser(prog="python -m consensus.sim", description=__doc__)
    ap.add_argument("--seed", type=int, default=1, help="first seed")
    ap.add_argument("--seeds", type=int, default=100, help="how many seeds")
    ap.add_argument("--bug", action="append", default=[], choices=sorted(BUGS),
                    help="break the core on purpose (repeatable)")
    ap.add_argument("--nodes", type=int, choices=(3, 5), default=None,
                    help="cluster size (default: drawn per seed)")
    ap.add_argument("--stop", action="store_true", help="stop at the first violation")
    args = ap.parse_args(argv)
    s = run_seeds(args.seed, args.seeds, frozenset(args.bug), args.nodes, args.stop)
    for v in s.violations:
        print(v.format())
    print(s.line())
    print(s.coverage())
    if s.first_violation_after is not None:
        print(f"first violation after {s.first_violation_after} seed(s)")
    return 1 if s.violations else 0


if __name__ == "__main__":
    sys.exit(main())
