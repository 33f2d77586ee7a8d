"""Figure 1, the temperature annealing ablation: test accuracy over τ0, one line per n, one panel per
sparsity, one-shot as a band; the last panel: the best configuration per sparsity against one-shot."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.figures.panels import (
    best_panel,
    delta_text,
    dodge,
    errorbar,
    handles,
    one_shot_band,
    versus_one_shot,
)
from ssa_experiments.analysis.figures.select import SELECT, TAU, N, best_config, best_line, value
from ssa_experiments.analysis.figures.style import (
    ACC,
    ANNOTATION,
    COLORS,
    cap_accuracy,
    context,
    label,
    seeds,
    setting_style,
    spread,
    styled,
)
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import stats


@styled
def fig1(done: pd.DataFrame, by: str, where: str, ci: Bootstrap | None = None) -> Figure:
    """Figure 1: temperature annealing over τ0 × n, per sparsity, against one-shot."""
    ta = done[done["method"] == "temperature_annealing"]
    ta = ta.assign(tau0=value(ta, TAU), anneal=value(ta, N)).dropna(subset=["tau0", "anneal"])
    if ta.empty or ta["tau0"].nunique() < 2:
        raise SystemExit(
            f"fig1 needs temperature_annealing runs with several {TAU} values; found none under {where}"
        )
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps, ns = sorted(ta["target_sparsity"].unique()), sorted(ta["anneal"].unique())
    taus = sorted(ta["tau0"].unique())
    lines = {(s, n): best_line(ta[(ta["target_sparsity"] == s) & (ta["anneal"] == n)], "tau0", by, ci)
             for s in sps for n in ns}  # fmt: skip
    # one row of a panel per sparsity; below, spanning it, the best configuration per sparsity (at a single
    # sparsity that panel would repeat the one above: the chosen point is marked there instead)
    several = len(sps) > 1
    size = (max(4.6 * len(sps), 6.5), 3.6 * (2 if several else 1) + 1.4)
    fig = plt.figure(figsize=size, layout="constrained")
    grid = fig.add_gridspec(2 if several else 1, len(sps))
    axes = [fig.add_subplot(grid[0, col]) for col in range(len(sps))]
    one_text = label("one_shot", one["count"], " ± std" if ci is None else f", {100 * ci.level:g}% CI")
    color = COLORS["temperature_annealing"]
    best = best_config(ta, by=by, ci=ci)
    paired = versus_one_shot(done, ci)
    for ax, s in zip(axes, sps, strict=True):
        for i, n in enumerate(ns):
            line = lines[s, n]
            counts = pd.concat([lines[t, n]["count"] for t in sps])
            if not line.empty:
                ls, marker = setting_style(i)
                x = line["tau0"] + dodge(taus, i, len(ns))
                text = f"temperature annealing, n = {n:g} ({seeds(counts)})"
                errorbar(ax, x, line, color, text, ls=ls, marker=marker, ms=5)
        one_shot_band(ax, one[one["target_sparsity"] == s], one_text)
        if not several:
            _mark_best(ax, ta, best, paired, s)
        ax.set_xticks(taus)
        ax.set(title=f"target sparsity {100 * s:g}%", xlabel="initial temperature τ0", ylabel=ACC)
        cap_accuracy(ax)
    legend: dict[str, Any] = {}
    for ax in axes:
        legend.update(handles(ax))
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(4, len(legend)))
    if several:
        best_panel(fig.add_subplot(grid[1, :]), done, ["temperature_annealing"], by, [TAU, N], ci=ci)
    fig.suptitle(
        f"Temperature annealing ablation ({context(ta)})\n{spread(ci)}; best configuration {SELECT[by]}"
        + ("" if several else "; ★: the best configuration, Δ: its paired difference from one-shot")
    )
    return fig


def _mark_best(ax: Any, ta: pd.DataFrame, best: pd.DataFrame, paired: pd.DataFrame, s: float) -> None:
    """At a single sparsity: a star on the chosen configuration, with its paired difference from one-shot."""
    row = best[np.isclose(best["target_sparsity"].astype(float), s)]
    if row.empty:
        return
    r = row.iloc[0]
    chosen = ta[ta["setting"] == r["setting"]].iloc[0]
    ax.plot([chosen["tau0"]], [r["mean"]], marker="*", ms=16, mfc="none", mec="black", ls="none", zorder=5)
    delta = delta_text(paired, r["setting"], s)
    text = f"best: τ0 = {chosen['tau0']:g}, n = {chosen['anneal']:g}"
    ax.annotate(
        text + (f"\n{delta} vs one-shot" if delta else ""),
        (chosen["tau0"], r["mean"]), xytext=(12, 0), textcoords="offset points", fontsize=ANNOTATION,
        ha="left", va="center", bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1},
    )  # fmt: skip
