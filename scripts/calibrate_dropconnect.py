"""Calibrate the DropConnect control's noise on a measured quantity: the r0 whose first fine-tuning epoch
costs the same training loss as temperature annealing's at its τ0 (the noise both inject into the target
while it is retrained), from a sweep over r0 next to temperature annealing.

    python scripts/calibrate_dropconnect.py SWEEP_DIR [--csv OUT.csv]    # prints the chosen r0 last

Per (r0, sparsity): mean over seeds of the epoch-1 training loss, test accuracy; temperature annealing's as
the target. The chosen r0 minimises the mean absolute log-ratio of the two losses over the sparsities swept
(one r0 for every sparsity, as one default serves them all).
"""

from __future__ import annotations

import argparse
import math

import pandas as pd

from ssa_experiments.analysis.aggregate import collect, completed, epochs


def first_epoch(sweep: str) -> pd.DataFrame:
    runs = completed(collect(sweep))
    rows = epochs(runs)
    first = rows[rows["epoch"] == 1][["run_dir", "train_loss"]]
    flat = runs.assign(r0=[c["method"].get("initial_drop_rate") for c in runs["config"]])
    return flat.merge(first, on="run_dir")[
        ["method", "r0", "target_sparsity", "seed", "train_loss", "test_acc"]
    ]


def calibrate(df: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    target = df[df["method"] == "temperature_annealing"].groupby("target_sparsity")["train_loss"].mean()
    dc = df[df["method"] == "dropconnect_target"]
    table = dc.groupby(["r0", "target_sparsity"]).agg(
        epoch1_train_loss=("train_loss", "mean"), test_acc=("test_acc", "mean"), n=("seed", "count")
    )
    table = table.reset_index()
    table["annealing_epoch1_train_loss"] = table["target_sparsity"].map(target)
    table["log_ratio"] = [
        math.log(a / b)
        for a, b in zip(table["epoch1_train_loss"], table["annealing_epoch1_train_loss"], strict=True)
    ]
    score = table.assign(abs_log=table["log_ratio"].abs()).groupby("r0")["abs_log"].mean()
    return float(score.idxmin()), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep")
    parser.add_argument("--csv")
    args = parser.parse_args()
    r0, table = calibrate(first_epoch(args.sweep))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(r0)


if __name__ == "__main__":
    main()
