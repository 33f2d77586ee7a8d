"""Paired differences as a forest plot: every setting's mean per-seed difference to a reference, with its
bootstrap interval and wins/n, one panel per target sparsity, so many methods can be read against one
baseline at a glance (the numbers are ``paired.paired``'s, the same as ``aggregate --paired``'s table)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.figures.select import family
from ssa_experiments.analysis.figures.style import ANNOTATION, color, pretty, styled
from ssa_experiments.analysis.paired import Bootstrap, paired


@styled
def forest(
    done: pd.DataFrame,
    reference: str,
    metric: str = "test_acc",
    match: Sequence[str] | None = None,
    boot: Bootstrap | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """The figure and the numbers drawn (``paired``'s frame). A setting without a pair at a sparsity has no
    point there; the reference's own settings are not drawn (they are the zero line)."""
    boot = boot or Bootstrap()
    numbers = paired(done, reference, metric, boot.level, boot.n_boot, boot.seed, match)
    if numbers.empty:
        raise SystemExit(f"no pairs with the reference {reference!r}: nothing to draw")
    settings = list(dict.fromkeys(numbers["setting"]))
    method_of = dict(zip(done["setting"], zip(done["method"], done["config"], strict=True), strict=False))
    sparsities = sorted(numbers["target_sparsity"].unique())
    names = [pretty(s, family(*method_of.get(s, ("", None)))) for s in settings]  # in words, as legends
    label_in = 0.065 * max(len(n) for n in names)  # the labels' width: the panels keep theirs
    fig, axes = plt.subplots(
        1, len(sparsities), figsize=(3.2 * len(sparsities) + label_in, 0.32 * len(settings) + 1.4),
        sharey=True, squeeze=False,
    )  # fmt: skip
    y = {s: len(settings) - 1 - i for i, s in enumerate(settings)}
    for ax, sparsity in zip(axes[0], sparsities, strict=True):
        at = numbers[numbers["target_sparsity"] == sparsity]
        for row in at.itertuples():
            method, config = method_of.get(row.setting, ("", None))
            c = color(family(method, config))
            lo, hi = row.ci_lo, row.ci_hi
            if not (math.isnan(lo) or math.isnan(hi)):
                ax.plot([lo, hi], [y[row.setting]] * 2, color=c, lw=1.6)
            ax.plot(row.mean_diff, y[row.setting], "o", color=c, ms=4.5)
            ax.annotate(
                f"{row.wins}/{row.n_pairs}", (1.0, y[row.setting]), xycoords=("axes fraction", "data"),
                xytext=(3, 0), textcoords="offset points", va="center", fontsize=ANNOTATION,
            )  # fmt: skip
        ax.axvline(0.0, color="0.4", lw=0.8, ls="--")
        ax.set_title(f"sparsity {100 * sparsity:g} %")
        ax.set_xlabel(f"Δ {metric} (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(list(y.values()), names)
    axes[0][0].set_ylim(-0.7, len(settings) - 0.3)
    pairs_on = "seed, sparsity and " + ", ".join(match) if match is not None else "seed, sparsity and config"
    fig.suptitle(
        f"vs {reference}: mean per-seed difference, {100 * boot.level:g}% bootstrap CI, wins/n at the right "
        f"(pairs: same {pairs_on})",
        fontsize=9,
    )
    fig.tight_layout()
    return fig, numbers
