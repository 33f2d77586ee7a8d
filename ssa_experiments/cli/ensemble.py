"""``python -m ssa_experiments.cli.ensemble`` (also ``ssa-ensemble``):
combine ensemble members' saved predictions. What it computes
and prints is ``ssa_experiments.ensembles.combine``, whose docstring is the ``--help`` text."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ssa_experiments.ensembles import combine as combiner
from ssa_experiments.ensembles.combine import (
    CSV_NAME,
    JSON_NAME,
    MAX_SUBSETS,
    combine,
    describe,
    write_report,
)
from ssa_experiments.store.files import LOGITS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=combiner.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("roots", nargs="+", help="sweep directories, store roots or run directories")
    parser.add_argument(
        "--size", nargs="?", type=int, const=0, default=None, metavar="K",
        help="ensemble-size curve for k = 1..K (no value: up to every member)",
    )  # fmt: skip
    parser.add_argument("--out", help=f"where {JSON_NAME} and {CSV_NAME} go (default: the first root)")
    parser.add_argument("--max-subsets", type=int, default=MAX_SUBSETS, help="subsets averaged per k")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the subsets drawn per k")
    args = parser.parse_args(argv)
    for root in args.roots:
        if not Path(root).exists():
            print(f"error: {root} does not exist", file=sys.stderr)
            return 2
    if args.size is not None and args.size < 0:
        parser.error("--size must be positive")
    report = combine(args.roots, args.size, args.max_subsets, args.subset_seed)
    for s in report["skipped"]:
        if s["reason"] != "not an ensemble member":
            print(f"  skipped {s['run_dir']}: {s['reason']}")
    if not report["ensembles"]:
        print(f"error: no ensemble members (completed, with {LOGITS}) under {', '.join(args.roots)}",
              file=sys.stderr)  # fmt: skip
        return 1
    out = args.out or (args.roots[0] if Path(args.roots[0]).is_dir() else Path(args.roots[0]).parent)
    print(describe(report))
    for e in report["ensembles"]:
        missing = e["splits_missing_in_some_members"]  # combined over the splits every member saved
        if missing:
            print(
                f"  {e['id']}: left out {', '.join(missing)} (saved by some members only); launching the "
                "members again with ensemble.corruptions/severities that include them evaluates them on the "
                "stored members, without retraining"
            )
    for path in write_report(report, out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
