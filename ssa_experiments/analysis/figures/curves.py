"""The curves figure: test (left) and validation (right) accuracy per epoch of every setting at one target
sparsity, dotted at the end of annealing (epoch n), read from metrics.jsonl in the run directories or from
the epochs CSV that aggregate's ``--csv`` writes next to a runs CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ssa_experiments.analysis.aggregate import epochs, epochs_csv, read_epochs
from ssa_experiments.analysis.figures.panels import bounds
from ssa_experiments.analysis.figures.select import N, value
from ssa_experiments.analysis.figures.style import (
    ACC,
    ORDER,
    cap_accuracy,
    context,
    mask_note,
    pretty,
    seeds,
    setting_style,
    spread,
    styled,
)
from ssa_experiments.analysis.figures.style import color as family_color
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


def parent_point(at: pd.DataFrame, col: str) -> pd.Series | None:
    """The dense parent's accuracy before pruning, mean and std over seeds (one parent per seed), from the
    runs' ``parent_<col>`` (the summary's parent metrics); None where the runs do not record it."""
    key = f"parent_{col}"
    if key not in at:
        return None
    per_seed = pd.to_numeric(at[key], errors="coerce").groupby(at["seed"]).first().dropna()
    if per_seed.empty:
        return None
    return pd.Series({"mean": per_seed.mean(), "std": per_seed.std() if len(per_seed) > 1 else 0.0,
                      "count": len(per_seed)})  # fmt: skip


@styled
def curves(
    done: pd.DataFrame, rows: pd.DataFrame, sparsity: float | None, where: str, ci: Bootstrap | None = None
) -> tuple[Figure, float]:
    """Accuracy per epoch of each setting at one target sparsity (dense as the reference, the parent at
    epoch 0), so the drop when the mask reaches the target (dotted: epoch n) is visible; bands: ± std, or
    with ``ci`` the interval of the mean over seeds at each epoch. One colour per method, a line style and
    marker per setting."""
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
    after = rank.get("iterative (cubic)", len(ORDER)) + 0.5  # an undeclared iterative schedule: next to them
    rank.update({f: after for f in at["family"] if f.startswith("iterative") and f not in rank})
    order = at.drop_duplicates("setting")
    order = order.iloc[
        sorted(range(len(order)), key=lambda i: (rank.get(order["family"].iloc[i], len(ORDER)),
                                                 natural(order["setting"].iloc[i])))
    ]  # fmt: skip
    counts = data.groupby("setting")["run_dir"].nunique()
    same = counts.nunique() == 1  # every setting has the same seeds: said once, in the title
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True, sharey=True, layout="constrained")
    for fam, group in order.groupby("family", sort=False):
        for i, setting in enumerate(group["setting"]):
            runs = data[data["setting"] == setting]
            if runs.empty:
                continue
            ls, marker = setting_style(i)
            text = pretty(setting, fam) + ("" if same else f" ({seeds([counts[setting]])})")
            color = family_color(fam)
            for ax, col in zip(axes, ("test_acc", "val_acc"), strict=True):
                if col not in cols or runs[col].isna().all():
                    continue
                line = stats(runs, ["epoch"], col, ci=ci)
                lo, hi = bounds(line)
                on_top = 3 if fam in ("dense", "one_shot") else 2  # the references stay visible
                ax.plot(line["epoch"], line["mean"], ls=ls, marker=marker, ms=4, color=color, lw=1.3,
                        clip_on=False,  # the means never pass 100: only markers at 100 would be cut
                        label=text, zorder=on_top)  # fmt: skip
                ax.fill_between(line["epoch"], lo, hi, color=color, alpha=0.1, lw=0)
    for n in sorted(at["anneal"].dropna().unique()):
        for ax in axes:
            ax.axvline(n, color="0.4", ls=":", lw=1.0, zorder=1)
    for ax, col in zip(axes, ("test_acc", "val_acc"), strict=True):
        parent = parent_point(at, col)
        if parent is not None:
            ax.errorbar([0], [parent["mean"]], yerr=[parent["std"]], color="black", marker="*", ms=10,
                        capsize=3, ls="none", zorder=4, clip_on=False,
                        label=f"dense parent, before pruning ({seeds([parent['count']])})")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        cap_accuracy(ax)
    axes[0].set(title="test accuracy", xlabel="epoch", ylabel=ACC)
    no_parent = " (the runs do not record the parent's)" if parent_point(at, "val_acc") is None else ""
    axes[1].set(title=f"validation accuracy{no_parent}", xlabel="epoch", ylabel="validation accuracy (%)")
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    note = mask_note(order["family"])
    fig.suptitle(
        f"Accuracy per epoch at target sparsity {100 * s:g}% ({context(at)})\n"
        f"{spread(ci)} (bands){f', {seeds(counts)} each' if same else ''}; dotted: epoch n, the end of "
        "annealing (the mask is the target from then on)" + (f"\n{note}" if note else ""),
    )
    return fig, s
