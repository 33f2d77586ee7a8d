"""``python -m ssa_experiments.cli.figures NAME`` (also ``ssa-figures``): draw one figure or table. What
each NAME draws is in ``ssa_experiments.analysis.figures``, whose docstring is the ``--help`` text."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ssa_experiments.analysis import figures, tables
from ssa_experiments.analysis.aggregate import (
    read_runs,
)
from ssa_experiments.analysis.figures import (
    curves,
    ensemble_outputs,
    fig1,
    fig2,
    load_epochs,
    parse_where,
    prepare,
    save,
    schedules_figure,
)
from ssa_experiments.analysis.paired import Bootstrap


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="python -m ssa_experiments.cli.figures",
        description=figures.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name",
        choices=[
            "fig1", "fig2", "curves", "table1", "table", "baselines", "table2", "ensemble_size", "schedules",
        ],
    )  # fmt: skip
    parser.add_argument("--runs", nargs="+", help="runs CSVs (aggregate --csv) and/or run trees")
    parser.add_argument("--out", required=True, help="directory for the files")
    parser.add_argument(
        "--select-on", choices=["val", "test"], default="val",
        help="metric choosing the best configuration (test: the paper's, optimistic)",
    )  # fmt: skip
    parser.add_argument("--sparsity", type=float, help="curves: the target sparsity (default: the highest)")
    parser.add_argument("--where", nargs="+", default=[], metavar="KEY=VALUE", help="keep matching runs only")
    parser.add_argument("--n", type=int, default=5, help="schedules: annealing epochs n")
    parser.add_argument("--tau0", type=float, default=0.5, help="schedules: initial temperature")
    parser.add_argument("--epochs", type=int, default=10, help="schedules: fine-tuning epochs")
    parser.add_argument(
        "--paired", metavar="REF",
        help="table1, table, baselines: also NAME_paired.md/.tex/.csv, every cell against REF (a method or "
        "a setting) seed by seed: mean difference [bootstrap CI] wins/n",
    )  # fmt: skip
    parser.add_argument(
        "--errorbars", choices=["std", "ci"], default="std",
        help="fig1, fig2, curves, ensemble_size: ± std over seeds, or the bootstrap CI of the mean over "
        "seeds",
    )  # fmt: skip
    parser.add_argument("--level", type=float, default=0.95, help="--paired, --errorbars ci: the CI's level")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="--paired, --errorbars ci: its seed")
    args = parser.parse_args(argv)
    if not 0 < args.level < 1:
        parser.error(f"--level must be in (0, 1), got {args.level}")
    if args.paired and args.name not in ("table1", "table", "baselines"):
        parser.error(f"--paired applies to table1, table and baselines, not {args.name}")
    boot = Bootstrap(args.level, seed=args.bootstrap_seed)
    ci = boot if args.errorbars == "ci" else None
    if args.name == "schedules":  # drawn from the formulas, no runs needed
        s = 0.99 if args.sparsity is None else args.sparsity
        paths = save(schedules_figure(s, args.n, args.tau0, args.epochs), Path(args.out), f"schedules_s{s:g}")
        print(*paths, sep="\n")
        return paths
    if not args.runs:
        parser.error(f"{args.name} needs --runs")
    where = ", ".join(args.runs)
    if args.name in ("table2", "ensemble_size"):  # drawn from the combiner's report, not from runs
        paths = ensemble_outputs(args.name, args.runs, Path(args.out), where, ci)
        for path in paths:
            print(path)
        return paths
    df = read_runs(args.runs)
    filters = parse_where(args.where)
    done = prepare(df, filters) if not df.empty else df
    if done.empty:
        shown = f" matching {' '.join(args.where)}" if filters else ""
        raise SystemExit(f"no completed runs under {where}{shown}")
    by, out = f"{args.select_on}_acc", Path(args.out)
    ref = args.paired
    if args.name == "table1":
        paths = tables.write(tables.table1(done), out, "table1", "criterion / method", spread_dense=True)
        if ref:
            paths += tables.write_paired(
                tables.table1_paired(done, ref, boot=boot),
                out,
                "table1",
                "criterion / method",
                ref,
                boot=boot,
            )
    elif args.name == "table":
        paths = tables.write(tables.settings_table(done), out, "table", "setting")
        if ref:
            paths += tables.write_paired(
                tables.settings_paired(done, ref, boot=boot), out, "table", "setting", ref, boot=boot
            )
    elif args.name == "baselines":
        long, paths = tables.baselines(done), []
        dense = long[long["sparsity"] == 0]  # the dense reference: the first row of every sparsity's table
        for s, part in long[long["sparsity"] > 0].groupby("sparsity"):
            both = pd.concat([dense, part])
            paths += tables.write(both, out, f"baselines_s{s:g}", "method", column="retraining")
        if ref:  # a sparsity where nothing pairs has no paired table
            diffs = tables.baselines_paired(done, ref, boot=boot)
            for s, part in diffs[diffs["sparsity"] > 0].groupby("sparsity"):
                paths += tables.write_paired(
                    part, out, f"baselines_s{s:g}", "method", ref, column="retraining", boot=boot
                )
    elif args.name == "curves":
        fig, s = curves(done, load_epochs(args.runs, df), args.sparsity, where, ci)
        paths = save(fig, out, f"curves_s{s:g}")
    else:
        paths = save({"fig1": fig1, "fig2": fig2}[args.name](done, by, where, ci), out, args.name)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
