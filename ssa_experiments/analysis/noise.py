"""How much of a spread is floating-point chaos rather than the seed: the noise floor.

    python -m ssa_experiments.cli.noise ROOT_A ROOT_B [--metric test_acc] [--csv noise.csv]

ROOT_A and ROOT_B hold the same runs computed two ways that should not matter, e.g. ``train.cpu_numerics``
portable and native (the same arithmetic in another summation order). Runs are paired by their identity
without ``compute.cpu_numerics``: the same config, seed and parent recipe. Per setting and sparsity it reports
the mean and largest |A − B| of a run (what rounding alone moves a number by), against the seed standard
deviation within A (what the tables report as the spread) and their ratio. A difference between two methods
smaller than the noise floor is not a difference this setting can resolve, whatever its seed count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ssa_experiments.analysis.aggregate import completed, settings

# What may differ between the two roots of a pair (everything else of the identity must agree).
NOISE_KEYS = (("compute", "cpu_numerics"),)


def pairing_key(identity: dict[str, Any]) -> str:
    ident = json.loads(json.dumps(identity))
    for path in NOISE_KEYS:
        node = ident
        for key in path[:-1]:
            node = node.get(key, {})
        node.pop(path[-1], None)
    return json.dumps(ident, sort_keys=True)


def _with_keys(df: pd.DataFrame) -> pd.DataFrame:
    done = completed(df).copy()
    keys = []
    for run_dir in done["run_dir"]:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        keys.append(pairing_key(summary.get("identity", {})))
    return done.assign(pair=keys, setting=settings(done))


def noise_floor(a: pd.DataFrame, b: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per (setting, target sparsity): n paired runs, mean and max |A − B|, seed std in A, ratio."""
    a, b = _with_keys(a), _with_keys(b)
    pairs = a[["pair", "setting", "target_sparsity", "seed", metric]].merge(
        b[["pair", metric]], on="pair", suffixes=("_a", "_b")
    )
    if pairs.empty:
        raise SystemExit("no run of the first root has its twin in the second: were they computed alike?")
    pairs["abs_diff"] = (pairs[f"{metric}_a"] - pairs[f"{metric}_b"]).abs()
    rows = []
    for (setting, sparsity), g in pairs.groupby(["setting", "target_sparsity"], sort=False):
        seed_std = g[f"{metric}_a"].std(ddof=1) if len(g) > 1 else float("nan")
        rows.append({
            "setting": setting,
            "target_sparsity": sparsity,
            "n_pairs": len(g),
            "mean_abs_diff": g["abs_diff"].mean(),
            "max_abs_diff": g["abs_diff"].max(),
            "identical": int((g["abs_diff"] == 0).sum()),
            "seed_std": seed_std,
            "noise_to_seed": g["abs_diff"].mean() / seed_std if seed_std else float("nan"),
        })  # fmt: skip
    return pd.DataFrame(rows)
