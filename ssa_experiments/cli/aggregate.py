"""``python -m ssa_experiments.cli.aggregate`` (also ``ssa-aggregate``):
runs into one table with paired differences. What it computes
and prints is ``ssa_experiments.analysis.aggregate``, whose docstring is the ``--help`` text."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from ssa_experiments.analysis import aggregate
from ssa_experiments.analysis.aggregate import (
    RUN_METRICS,
    budget,
    collect,
    epochs,
    epochs_csv,
    from_wandb,
    paired_csv,
    table,
    write_csv,
    write_epochs_csv,
)
from ssa_experiments.analysis.paired import key_list


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=aggregate.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("roots", nargs="*", help="sweep or outputs directories (any number)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", help="with --wandb: only this W&B group")
    parser.add_argument(
        "--metric", default="test_acc", metavar="METRIC",
        help=f"the number averaged over seeds: {', '.join(RUN_METRICS)} (default test_acc)",
    )  # fmt: skip
    parser.add_argument(
        "--csv",
        help="also write every run (whole config included) to this CSV file, and its epochs next to it",
    )
    parser.add_argument(
        "--paired", nargs="?", const="one_shot", metavar="REF",
        help="also compare every setting with REF seed by seed (default REF: one_shot); REF is a method, a "
        "setting label, or a method and key=value words ('one_shot pruning.criterion=magnitude')",
    )  # fmt: skip
    parser.add_argument(
        "--pair-on", metavar="KEY[,KEY...]", type=key_list,
        help="--paired: a pair shares the seed, the sparsity and these config keys (default: every key but "
        "the method's), e.g. pruning.scope to compare other criteria with REF",
    )  # fmt: skip
    parser.add_argument("--level", type=float, default=0.95, help="--paired: the bootstrap CI's level")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="--paired: the bootstrap's seed")
    args = parser.parse_args(argv)
    if args.metric not in RUN_METRICS:  # one line and exit 2, before any run is read (not a KeyError later)
        print(f"error: --metric {args.metric} is not a run's metric; choose from {', '.join(RUN_METRICS)}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    if not 0 < args.level < 1:
        parser.error(f"--level must be in (0, 1), got {args.level}")
    if bool(args.roots) == bool(args.wandb):
        parser.error("give run directories or --wandb ENTITY/PROJECT (one of the two)")
    if args.wandb:
        import wandb

        filters = {"group": args.group} if args.group else None
        df, where = from_wandb(wandb.Api().runs(args.wandb, filters=filters)), f"W&B {args.wandb}"
    else:
        df, where = collect(args.roots), ", ".join(args.roots)
    if df.empty:
        raise SystemExit(f"no runs under {where}")
    if args.csv:
        print(f"wrote {write_csv(df, args.csv)}")
        rows = epochs(df)
        if not rows.empty:
            print(f"wrote {write_epochs_csv(rows, epochs_csv(args.csv))}")
    counts = df["status"].value_counts().to_dict()
    print(f"{len(df)} runs under {where}: {counts}")
    holes = df[df["status"] != "completed"]
    for _, r in holes.iterrows():  # never averaged in: listed, so a sweep's holes are visible
        print(f"  not in the table: {r['status']:<10} {r['run_dir']}")
    wide = table(df, args.metric)
    if wide.empty:  # every run failed or is still running: the lines above list them
        raise SystemExit(f"no completed runs under {where}")
    print(f"{args.metric} (%), mean ± std over seeds; columns: target sparsity of prunable weights")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 80):
        print(wide.to_string())
        print("budget per method (steps, epochs on the final mask, LR trace digest):")
        print(budget(df).to_string())
        if args.paired:
            _print_paired(df, args)


def _print_paired(df: pd.DataFrame, args: argparse.Namespace) -> None:
    """The ``--paired`` table under the usual one (and its CSV next to ``--csv``)."""
    from ssa_experiments.analysis import paired

    numbers = paired.paired(
        df, args.paired, args.metric, args.level, seed=args.bootstrap_seed, match=args.pair_on
    )
    print(paired.header(args.metric, args.paired, args.level, args.pair_on))
    if numbers.empty:
        shared = ", ".join(args.pair_on) if args.pair_on is not None else "config"
        print(f"  no pairs: no completed {args.paired} run shares a seed, sparsity and {shared} with another")
    else:
        print(paired.wide(numbers).to_string())
        if (numbers["n_pairs"] == 1).any():
            print("  [1 seed: no CI]: one pair only, an interval from one seed says nothing about the spread")
    if args.csv:
        path = paired_csv(args.csv)
        pair_on = ",".join(args.pair_on) if args.pair_on is not None else ""
        numbers.assign(
            metric=args.metric, level=args.level, bootstrap_seed=args.bootstrap_seed, pair_on=pair_on
        ).to_csv(path, index=False)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
