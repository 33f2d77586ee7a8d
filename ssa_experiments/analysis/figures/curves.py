"""The curves figure: test (solid) and validation (dashed) accuracy per epoch of every setting at one target
sparsity, dotted at the end of annealing (epoch n), read from metrics.jsonl in the run directories or from
the epochs CSV that aggregate's ``--csv`` writes next to a runs CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.aggregate import epochs, epochs_csv, read_epochs
from ssa_experiments.analysis.figures.panels import bounds
from ssa_experiments.analysis.figures.select import N, value
from ssa_experiments.analysis.figures.style import ACC, ORDER, context, pretty, seeds, shades, spread, styled
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import natural, stats
from ssa_experiments.config.methods import GRADUAL_METHODS


def load_epochs(sources: Sequence[str], df: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows: the epochs CSV next to each runs CSV, and metrics.jsonl of the run directories here."""
    parts = [
        read_epochs(p) for p in (epochs_csv(s) for s in sources if str(s).endswith(".csv")) if p.exists()
    ]
    here = df[df["run_dir"].map(lambda d: isinstance(d, str) and Path(d).is_dir())]
    if not here.empty:
        parts.append(epochs(here))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=["run_dir", "epoch", "test_acc", "val_acc"])
    return pd.concat(parts, ignore_index=True).drop_duplicates(["run_dir", "epoch"])


@styled
def curves(
    done: pd.DataFrame, rows: pd.DataFrame, sparsity: float | None, where: str, ci: Bootstrap | None = None
) -> tuple[Figure, float]:
    """Accuracy per epoch of each setting at one target sparsity (dense as the reference), so the drop when
    the mask reaches the target (dotted: epoch n) is visible; bands: ± std, or with ``ci`` the interval of
    the mean over seeds at each epoch."""
    sparse = done[done["method"] != "dense"]
    if sparse.empty:
        raise SystemExit(f"curves needs completed pruning runs; found none under {where}")
    s = (
        float(sparse["target_sparsity"].max())
        if sparsity is None
        else sparsity / (100 if sparsity > 1 else 1)
    )
    at = done[np.isclose(done["target_sparsity"].astype(float), s) | (done["method"] == "dense")]
    at = at.assign(anneal=value(at, N).where(at["method"].isin(GRADUAL_METHODS)))
    cols = [c for c in ("test_acc", "val_acc") if c in rows]
    data = rows[["run_dir", "epoch", *cols]].merge(
        at[["run_dir", "setting", "family", "anneal"]], on="run_dir"
    )
    if not (data["family"] != "dense").any():
        raise SystemExit(
            f"curves needs per-epoch data of runs at sparsity {s:g} (metrics.jsonl in the run directories, "
            "or "
            f"the epochs CSV next to a runs CSV); found none under {where}"
        )
    rank = {f: i for i, f in enumerate(ORDER)}
    order = at.drop_duplicates("setting")
    order = order.iloc[
        sorted(range(len(order)), key=lambda i: (rank.get(order["family"].iloc[i], len(ORDER)),
                                                 natural(order["setting"].iloc[i])))
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True, layout="constrained")
    for fam, group in order.groupby("family", sort=False):
        for (setting, anneal), color in zip(
            zip(group["setting"], group["anneal"], strict=True), shades(fam, len(group)), strict=True
        ):
            runs = data[data["setting"] == setting]
            if runs.empty:
                continue
            text = f"{pretty(setting, fam)} ({seeds([runs['run_dir'].nunique()])})"
            for ax, col, style in zip(axes, ("test_acc", "val_acc"), ("-", "--"), strict=True):
                if col not in cols or runs[col].isna().all():
                    continue
                line = stats(runs, ["epoch"], col, ci=ci)
                lo, hi = bounds(line)
                on_top = 3 if fam in ("dense", "one_shot") else 2  # the references stay visible
                ax.plot(line["epoch"], line["mean"], style, color=color, lw=1.4, label=text, zorder=on_top)
                ax.fill_between(line["epoch"], lo, hi, color=color, alpha=0.15, lw=0)
                if not pd.isna(anneal):
                    ax.axvline(anneal, color=color, ls=":", lw=1.2)
    axes[0].set(title="test accuracy (solid)", xlabel="epoch", ylabel=ACC)
    axes[1].set(title="validation accuracy (dashed)", xlabel="epoch", ylabel="validation accuracy (%)")
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    fig.suptitle(
        f"Accuracy per epoch at target sparsity {100 * s:g}% ({context(at)})\n"
        f"{spread(ci)} (bands); dotted: end of annealing (epoch n, the mask is the target after it)",
    )
    return fig, s
