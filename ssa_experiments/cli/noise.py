"""``python -m ssa_experiments.cli.noise`` (also ``ssa-noise``):
the noise floor between two numerics modes. What it computes
and prints is ``ssa_experiments.analysis.noise``, whose docstring is the ``--help`` text."""

from __future__ import annotations

import argparse

import pandas as pd

from ssa_experiments.analysis import noise
from ssa_experiments.analysis.aggregate import collect
from ssa_experiments.analysis.noise import noise_floor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=noise.__doc__.split("\n\n")[0])
    parser.add_argument("a", help="runs computed one way (e.g. a sweep with train.cpu_numerics=portable)")
    parser.add_argument("b", help="the same runs computed the other way (train.cpu_numerics=native)")
    parser.add_argument("--metric", default="test_acc")
    parser.add_argument("--csv", help="also write the table here")
    args = parser.parse_args(argv)
    table = noise_floor(collect(args.a), collect(args.b), args.metric)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"noise floor of {args.metric} (points): |A - B| per run vs the seed std within A")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
