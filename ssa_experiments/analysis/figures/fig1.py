"""Figure 1, the temperature annealing ablation: test accuracy over τ0, one line per n, one panel per
sparsity, one-shot as a band; the last panel: the best configuration per sparsity against one-shot."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.figures.panels import best_panel, dodge, errorbar, handles, one_shot_band
from ssa_experiments.analysis.figures.select import SELECT, TAU, N, best_line, value
from ssa_experiments.analysis.figures.style import ACC, context, label, seeds, shades, spread, styled
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
    ncols = min(3, len(sps) + 1)
    nrows = math.ceil((len(sps) + 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.4 * nrows + 0.9), layout="constrained")
    axes = np.atleast_1d(axes).ravel()
    one_text = label("one_shot", one["count"], " ± std" if ci is None else f", {100 * ci.level:g}% CI")
    for ax, s in zip(axes, sps, strict=False):
        for i, (n, color) in enumerate(zip(ns, shades("temperature_annealing", len(ns)), strict=True)):
            line = lines[s, n]
            counts = pd.concat([lines[t, n]["count"] for t in sps])
            if not line.empty:
                x = line["tau0"] + dodge(taus, i, len(ns))
                errorbar(ax, x, line, color, f"temperature annealing, n = {n:g} ({seeds(counts)})")
        one_shot_band(ax, one[one["target_sparsity"] == s], one_text)
        ax.set_xticks(taus)
        ax.set(title=f"target sparsity {100 * s:g}%", xlabel="initial temperature τ0", ylabel=ACC)
    legend: dict[str, Any] = {}
    for ax in axes[: len(sps)]:
        legend.update(handles(ax))
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(3, len(legend)))
    best_panel(axes[len(sps)], done, ["temperature_annealing"], by, [TAU, N], ci=ci)
    for ax in axes[len(sps) + 1 :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Temperature annealing ablation ({context(ta)})\n{spread(ci)}; best configuration {SELECT[by]}",
    )
    return fig
