"""Read results back: ``collect(root)`` is the one way, ``table`` the usual view of it.

    python -m ssa_experiments.aggregate outputs/quickstart [--metric test_acc] [--csv out.csv]

Every run directory below ``root`` with a ``summary.json`` becomes one row (JSON only: never ``eval``).
Failed and diverged runs are rows too, with their status, so a sweep's holes are visible, not silent.
Under the table, ``budget`` shows per method what makes the comparison fair or not: optimizer steps,
epochs trained on the final mask and the digest of the LR trace.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ssa_experiments.results import SUMMARY

COLUMNS = [
    "method", "target_sparsity", "seed", "status", "test_acc", "val_acc", "best_epoch", "best_val_acc",
    "test_acc_at_best_val", "sparsity", "epochs", "epochs_at_target", "steps", "lr_trace_sha256",
    "bn_recalibration_batches", "wall_time_s", "model", "data", "parent_source", "parent_test_acc", "run_dir",
]  # fmt: skip
BUDGET = ["steps", "epochs_at_target", "lr_trace_sha256"]


def collect(root: str | Path) -> pd.DataFrame:
    """One row per run under ``root`` (searched recursively), with the flat fields and the config."""
    rows = []
    for path in sorted(Path(root).rglob(SUMMARY)):
        s = json.loads(path.read_text())
        parent = s.get("parent") or {}
        rows.append({
            **{k: s.get(k) for k in COLUMNS if k in s},
            "parent_source": parent.get("source"),
            "parent_test_acc": parent.get("test_acc"),
            "run_dir": str(path.parent),
            "config": s.get("config", {}),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[*COLUMNS, "config"])


def table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """mean ± std of ``metric`` over seeds, methods as rows and target sparsities as columns.

    The dense reference (sparsity 0) is its own row, whatever sparsity its runs were launched with.
    """
    done = df[df["status"] == "completed"]
    if done.empty:
        return pd.DataFrame()
    stats = done.groupby(["method", "target_sparsity"])[metric].agg(["mean", "std", "count"]).reset_index()
    cells = stats.apply(
        lambda r: f"{r['mean']:.2f} ± {0.0 if pd.isna(r['std']) else r['std']:.2f} (n={int(r['count'])})",
        axis=1,
    )
    wide = stats.assign(cell=cells).pivot(index="method", columns="target_sparsity", values="cell")
    order = ["dense", "one_shot", "iterative", "random_annealing", "temperature_annealing"]
    wide = wide.reindex([m for m in order if m in wide.index] + [m for m in wide.index if m not in order])
    wide.columns = [f"{c:g}" for c in wide.columns]
    return wide.fillna("")


def budget(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, the distinct budget values of its completed runs (one value each when all agree)."""
    done = df[df["status"] == "completed"]
    cols = [c for c in BUDGET if c in done]

    def distinct(values: pd.Series) -> str:
        shown = {f"{x:g}" if isinstance(x, float) else str(x) for x in values.dropna()}
        return ", ".join(sorted(shown))

    return done.groupby("method")[cols].agg(distinct)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", help="a sweep or outputs directory")
    parser.add_argument("--metric", default="test_acc")
    parser.add_argument("--csv", help="also write the per-run rows to this CSV file")
    args = parser.parse_args(argv)
    df = collect(args.root)
    if df.empty:
        raise SystemExit(f"no {SUMMARY} under {args.root}")
    if args.csv:
        df.drop(columns=["config"]).to_csv(args.csv, index=False)
    counts = df["status"].value_counts().to_dict()
    print(f"{len(df)} runs under {args.root}: {counts}")
    print(f"{args.metric} (%), mean ± std over seeds; columns: target sparsity of prunable weights")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table(df, args.metric).to_string())
        print("budget per method (steps, epochs on the final mask, LR trace digest):")
        print(budget(df).to_string())


if __name__ == "__main__":
    main()
