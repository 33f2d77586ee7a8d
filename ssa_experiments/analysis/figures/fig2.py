"""Figure 2, annealing against its baselines over the annealing epochs n: random vs temperature annealing
(row 1), temperature annealing vs iterative pruning, linear and cubic (row 2), one panel per sparsity; the
last row: each method's best configuration per sparsity against one-shot."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.figures.panels import best_panel, dodge, errorbar, handles, one_shot_band
from ssa_experiments.analysis.figures.select import SELECT, N, best_line, value
from ssa_experiments.analysis.figures.style import (
    ACC,
    cap_accuracy,
    context,
    family_style,
    label,
    mask_note,
    spread,
    styled,
)
from ssa_experiments.analysis.figures.style import color as family_color
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import stats

ROWS = (
    ("random vs temperature annealing", ("random_annealing", "temperature_annealing")),
    ("temperature annealing vs iterative pruning", ("temperature_annealing", "iterative (linear)",
                                                    "iterative (cubic)")),
)  # fmt: skip


@styled
def fig2(done: pd.DataFrame, by: str, where: str, ci: Bootstrap | None = None) -> Figure:
    """Figure 2: the annealing methods and iterative pruning over the annealing epochs n, against one-shot."""
    fams = list(dict.fromkeys(f for _, row in ROWS for f in row))
    runs = done[done["family"].isin(fams)]
    runs = runs.assign(anneal=value(runs, N)).dropna(subset=["anneal"])
    if not (runs["family"] == "temperature_annealing").any() or runs["family"].nunique() < 2:
        raise SystemExit(
            f"fig2 needs temperature_annealing runs and random_annealing or iterative runs over {N}; "
            f"found {sorted(runs['family'].unique()) or 'none'} under {where}"
        )
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps, ns = sorted(runs["target_sparsity"].unique()), sorted(runs["anneal"].unique())
    k = len(sps)
    fams_present = [f for f in fams if (runs["family"] == f).any()]
    fig = plt.figure(figsize=(3.6 * k + 2.6, 10.5 + 0.2 * len(fams_present)), layout="constrained")
    grid = fig.add_gridspec(4, k + 1, width_ratios=[1] * k + [0.75],
                            height_ratios=[1, 1, 1, 0.12 * len(fams_present)])  # fmt: skip
    one_text = label("one_shot", one["count"], " ± std" if ci is None else f", {100 * ci.level:g}% CI")
    for row, (title, row_fams) in enumerate(ROWS):
        lines = {(f, s): best_line(runs[(runs["family"] == f) & (runs["target_sparsity"] == s)], "anneal",
                                   by, ci)
                 for f in row_fams for s in sps}  # fmt: skip
        entries: dict[str, Any] = {}
        for col, s in enumerate(sps):
            ax = fig.add_subplot(grid[row, col])
            for i, f in enumerate(row_fams):
                counts = pd.concat([lines[f, t]["count"] for t in sps])
                if not lines[f, s].empty:
                    text, x = label(f, counts), lines[f, s]["anneal"] + dodge(ns, i, len(row_fams))
                    ls, marker = family_style(f)  # the same in every panel: greyscale-safe
                    entries[text] = errorbar(ax, x, lines[f, s], family_color(f), text, ls=ls, marker=marker)
            one_shot_band(ax, one[one["target_sparsity"] == s], one_text)
            entries.update(handles(ax))
            ax.set_xticks(ns)
            ax.set(title=f"target sparsity {100 * s:g}%", xlabel="annealing epochs n")
            ax.set_ylabel(ACC if col == 0 else "")
            cap_accuracy(ax)
        legend = fig.add_subplot(grid[row, k])
        legend.axis("off")
        legend.legend(list(entries.values()), list(entries), loc="center left", title=title)
    legend = fig.add_subplot(grid[2, k])
    legend.axis("off")
    best_ax = fig.add_subplot(grid[2, :k])
    table = fig.add_subplot(grid[3, :k])
    best_panel(best_ax, done, fams_present, by, [N], legend_ax=legend, ci=ci, table_ax=table)
    fig.suptitle(
        f"Annealing and iterative pruning over the annealing epochs n ({context(runs)})\n"
        f"{spread(ci)}; best configuration {SELECT[by]}"
        + (f"\n{note}" if (note := mask_note(runs["family"])) else ""),
    )
    return fig
