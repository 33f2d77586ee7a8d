"""``python -m ssa_experiments.cli.figures NAME`` (also ``ssa-figures``): draw one figure or table. What
each NAME draws is in ``ssa_experiments.analysis.figures``, whose docstring is the ``--help`` text.

``COMMANDS`` is the whole dispatch: per NAME, what it is drawn from and the function that writes it. A new
figure is one module under ``analysis/figures/``, one handler here and one row there (and its line in the
``--help`` text).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from ssa_experiments.analysis import figures, tables
from ssa_experiments.analysis.aggregate import read_runs
from ssa_experiments.analysis.figures.curves import curves, load_epochs
from ssa_experiments.analysis.figures.ensemble import write_ensemble_size, write_table2
from ssa_experiments.analysis.figures.fig1 import fig1
from ssa_experiments.analysis.figures.fig2 import fig2
from ssa_experiments.analysis.figures.forest import forest
from ssa_experiments.analysis.figures.schedules import schedules_figure
from ssa_experiments.analysis.figures.select import parse_where, prepare
from ssa_experiments.analysis.figures.style import save
from ssa_experiments.analysis.paired import Bootstrap, key_list


@dataclass(frozen=True)
class Request:
    """What a handler is given: the flags, and for a NAME drawn from runs, the runs read (``runs``) and
    those it draws (``done``: ``prepare``'s frame)."""

    args: argparse.Namespace
    where: str = ""  # the inputs, as error messages name them
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    done: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def out(self) -> Path:
        return Path(self.args.out)

    @property
    def by(self) -> str:
        """The metric that chooses the best configuration."""
        return f"{self.args.select_on}_acc"

    @property
    def boot(self) -> Bootstrap:
        return Bootstrap(self.args.level, seed=self.args.bootstrap_seed)

    @property
    def ci(self) -> Bootstrap | None:
        """The error bars' interval: None for ± std."""
        return self.boot if self.args.errorbars == "ci" else None


def _fig1(r: Request) -> list[Path]:
    return save(fig1(r.done, r.by, r.where, r.ci), r.out, "fig1")


def _fig2(r: Request) -> list[Path]:
    return save(fig2(r.done, r.by, r.where, r.ci), r.out, "fig2")


def _curves(r: Request) -> list[Path]:
    fig, s = curves(r.done, load_epochs(r.args.runs, r.runs), r.args.sparsity, r.where, r.ci)
    return save(fig, r.out, f"curves_s{s:g}")


def _table1(r: Request) -> list[Path]:
    return tables.write_table1(r.done, r.out, r.args.paired, r.boot)


def _table(r: Request) -> list[Path]:
    return tables.write_settings(r.done, r.out, r.args.paired, r.boot)


def _baselines(r: Request) -> list[Path]:
    return tables.write_baselines(r.done, r.out, r.args.paired, r.boot)


def _paired(r: Request) -> list[Path]:
    if not r.args.paired:
        raise SystemExit("paired: name the reference with --paired REF")
    fig, numbers = forest(r.done, r.args.paired, "test_acc", r.args.pair_on, r.boot)
    paths = save(fig, r.out, "paired")  # creates --out
    numbers.to_csv(r.out / "paired.csv", index=False)
    return [*paths, r.out / "paired.csv"]


def _tuned(r: Request) -> list[Path]:
    if r.args.select_on != "val":
        raise SystemExit("tuned: the configuration is chosen on validation only (--select-on val)")
    return tables.write_tuned(r.done, r.out, r.by)


def _table2(r: Request) -> list[Path]:
    return write_table2(r.args.runs, r.out, r.where)


def _ensemble_size(r: Request) -> list[Path]:
    return write_ensemble_size(r.args.runs, r.out, r.where, r.ci)


def _schedules(r: Request) -> list[Path]:
    s = 0.99 if r.args.sparsity is None else r.args.sparsity
    return save(schedules_figure(s, r.args.n, r.args.tau0, r.args.epochs), r.out, f"schedules_s{s:g}")


@dataclass(frozen=True)
class Command:
    draw: Callable[[Request], list[Path]]
    # runs: completed runs (runs CSVs or trees, --runs); report: the combiner's report or its CSVs (--runs);
    # formulas: nothing but the flags
    source: Literal["runs", "report", "formulas"]
    paired: bool = False  # takes --paired


COMMANDS = {  # in the order of the usage line's choices
    "fig1": Command(_fig1, "runs"),
    "fig2": Command(_fig2, "runs"),
    "curves": Command(_curves, "runs"),
    "table1": Command(_table1, "runs", paired=True),
    "table": Command(_table, "runs", paired=True),
    "baselines": Command(_baselines, "runs", paired=True),
    "paired": Command(_paired, "runs", paired=True),
    "tuned": Command(_tuned, "runs"),
    "table2": Command(_table2, "report"),
    "ensemble_size": Command(_ensemble_size, "report"),
    "schedules": Command(_schedules, "formulas"),
}
PAIRED = [name for name, command in COMMANDS.items() if command.paired]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssa_experiments.cli.figures",
        description=figures.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=list(COMMANDS))
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
        help=f"{', '.join(PAIRED)}: also NAME_paired.md/.tex/.csv, every cell against REF (a method or "
        "a setting) seed by seed: mean difference [bootstrap CI] wins/n",
    )  # fmt: skip
    parser.add_argument(
        "--pair-on", metavar="KEY[,KEY...]", type=key_list,
        help="paired: a pair shares the seed, the sparsity and these config keys (default: every key but "
        "the method's), as aggregate --pair-on",
    )  # fmt: skip
    parser.add_argument(
        "--errorbars", choices=["std", "ci"], default="std",
        help="fig1, fig2, curves, ensemble_size: ± std over seeds, or the bootstrap CI of the mean over "
        "seeds",
    )  # fmt: skip
    parser.add_argument("--level", type=float, default=0.95, help="--paired, --errorbars ci: the CI's level")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="--paired, --errorbars ci: its seed")
    return parser


def _completed(args: argparse.Namespace, where: str) -> Request:
    """The runs under ``--runs`` and those passing ``--where``; none completed is an error."""
    runs = read_runs(args.runs)
    filters = parse_where(args.where)
    done = prepare(runs, filters) if not runs.empty else runs
    if done.empty:
        shown = f" matching {' '.join(args.where)}" if filters else ""
        raise SystemExit(f"no completed runs under {where}{shown}")
    return Request(args, where, runs, done)


def main(argv: list[str] | None = None) -> list[Path]:
    cli = parser()
    args = cli.parse_args(argv)
    command = COMMANDS[args.name]
    if not 0 < args.level < 1:
        cli.error(f"--level must be in (0, 1), got {args.level}")
    if args.paired and not command.paired:
        cli.error(f"--paired applies to {', '.join(PAIRED[:-1])} and {PAIRED[-1]}, not {args.name}")
    if args.pair_on is not None and args.name != "paired":
        cli.error(f"--pair-on applies to paired, not {args.name}")
    if command.source == "formulas":
        request = Request(args)
    elif not args.runs:
        cli.error(f"{args.name} needs --runs")
    elif command.source == "report":
        request = Request(args, ", ".join(args.runs))
    else:
        request = _completed(args, ", ".join(args.runs))
    paths = command.draw(request)
    for path in paths:
        print(path)
    return paths


if __name__ == "__main__":
    main()
