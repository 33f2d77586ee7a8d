"""``python -m ssa_experiments.cli.status`` (also ``ssa-status``):
where a sweep or store stands. What it computes
and prints is ``ssa_experiments.store.status``, whose docstring is the ``--help`` text."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssa_experiments.store import status
from ssa_experiments.store.status import BAD, first_line, states, summary_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=status.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("roots", nargs="+", help="sweep directories or store roots")
    args = parser.parse_args(argv)
    bad = False
    for root in map(Path, args.roots):
        if not root.exists():
            print(f"error: {root} does not exist", file=sys.stderr)
            return 2
        df = states(root)
        for _, r in df[df["status"].isin(BAD)].iterrows():
            print(f"  {r['status']:<9} {r['job_dir']}: {first_line(r['error'])}")
        for _, r in df[(df["requeues"] > 0) & ~df["status"].isin(BAD)].iterrows():
            print(f"  {r['status']:<9} {r['job_dir']}: requeued {r['requeues']} time(s) after a time limit")
        print(summary_line(df, str(root)))
        bad |= bool(df["status"].isin(BAD).any())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
