"""Calibrate the DropConnect control's noise on a measured quantity instead of setting r0 = τ0: the training
loss that its noise adds in the first fine-tuning epoch, matched to what temperature annealing's noise adds.

    python scripts/calibrate_dropconnect.py SWEEP_DIR [--csv OUT.csv]   # last lines: "<sparsity> <r0>"

Each noise is measured against its own noise-free twin, at the same sparsity and seed, epoch 1:
temperature annealing (sampled masks) against soft annealing (the same expected mask, not sampled), and
DropConnect at r0 against one-shot (r0 -> 0). The raw losses cannot be compared: annealing trains a nearly
dense network at first and DropConnect the pruned target, so their losses differ by the pruning itself.
Per sparsity, the chosen r0 is the one of the sweep whose added loss is closest to annealing's (|log ratio|);
SWEEP_DIR must hold dropconnect_target at several r0 and temperature_annealing, soft_annealing and one_shot.
"""

from __future__ import annotations

import argparse
import math

import pandas as pd

from ssa_experiments.analysis.aggregate import collect, completed, epochs


def first_epoch_losses(sweep: str) -> pd.DataFrame:
    runs = completed(collect(sweep))
    rows = epochs(runs)
    first = rows[rows["epoch"] == 1][["run_dir", "train_loss"]]
    r0 = [c["method"].get("initial_drop_rate") if c["method"]["name"] == "dropconnect_target" else None
          for c in runs["config"]]  # fmt: skip
    return runs.assign(r0=r0).merge(first, on="run_dir")[
        ["method", "r0", "target_sparsity", "seed", "train_loss"]
    ]


def added_loss(df: pd.DataFrame, method: str, twin: str) -> pd.DataFrame:
    """Mean over seeds of (loss of ``method`` − loss of ``twin``), per sparsity (and r0), paired by seed."""
    ref = df[df["method"] == twin].set_index(["target_sparsity", "seed"])["train_loss"]
    own = df[df["method"] == method].copy()
    own["added"] = (
        own["train_loss"].to_numpy()
        - ref.reindex(list(zip(own["target_sparsity"], own["seed"], strict=True))).to_numpy()
    )
    return own.dropna(subset=["added"])


def calibrate(df: pd.DataFrame) -> tuple[dict[float, float], pd.DataFrame]:
    annealing = (
        added_loss(df, "temperature_annealing", "soft_annealing").groupby("target_sparsity")["added"].mean()
    )
    dc = added_loss(df, "dropconnect_target", "one_shot")
    table = (
        dc.groupby(["target_sparsity", "r0"])
        .agg(added_loss=("added", "mean"), n=("seed", "count"))
        .reset_index()
    )
    table["annealing_added_loss"] = table["target_sparsity"].map(annealing)
    table["abs_log_ratio"] = [
        abs(math.log(a / b)) if a > 0 and b > 0 else math.inf
        for a, b in zip(table["added_loss"], table["annealing_added_loss"], strict=True)
    ]
    best = table.loc[table.groupby("target_sparsity")["abs_log_ratio"].idxmin()]
    return dict(zip(best["target_sparsity"], best["r0"], strict=True)), table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep")
    parser.add_argument("--csv")
    args = parser.parse_args()
    chosen, table = calibrate(first_epoch_losses(args.sweep))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    for sparsity, r0 in sorted(chosen.items()):
        print(f"{sparsity:g} {r0:g}")


if __name__ == "__main__":
    main()
