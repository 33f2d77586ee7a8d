"""What fig1, fig2, curves and ensemble_size draw alike: error bars (± std or a bootstrap interval), lines
moved apart, the one-shot reference band, and the panel of each method's best configuration per sparsity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ssa_experiments.analysis.figures.select import SELECT, best_config
from ssa_experiments.analysis.figures.style import ACC, COLORS, SHORT, label
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import stats


def bounds(s: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Where an error bar or band of ``stats``' rows ends, below and above: the bootstrap interval of the mean
    where ``stats`` drew one (``ci_lo``, ``ci_hi``; NaN for one seed: no bar), else mean ± std."""
    if "ci_lo" in s:
        return s["ci_lo"].astype(float), s["ci_hi"].astype(float)
    return s["mean"] - s["std"], s["mean"] + s["std"]


def errorbar(ax: Any, x: Any, s: pd.DataFrame, color: Any, text: str, **kw: Any) -> Any:
    kw = {"marker": "o", "ms": 4, "capsize": 3, "lw": 1.4, **kw}
    if "ci_lo" in s:  # asymmetric; clipped at 0 should an interval ever miss its mean (a skewed small sample)
        lo, hi = bounds(s)
        yerr = np.clip(np.vstack([s["mean"] - lo, hi - s["mean"]]).astype(float), 0.0, None)
    else:
        yerr = s["std"]
    return ax.errorbar(x, s["mean"], yerr=yerr, color=color, label=text, **kw)


def dodge(values: Sequence[float], i: int, k: int) -> float:
    """How far the i-th of k lines sharing x values is moved sideways, so their error bars stay apart."""
    span = (max(values) - min(values)) or 1.0
    return (i - (k - 1) / 2) * 0.015 * span


def handles(ax: Any) -> dict[str, Any]:
    """An axes' legend entries by label: a figure-wide legend merges its panels' without repeats."""
    found, labels = ax.get_legend_handles_labels()
    return dict(zip(labels, found, strict=True))


def one_shot_band(ax: Any, s: pd.DataFrame, text: str) -> None:
    """One-shot at one sparsity: a dashed line at its mean, a band of ± one std (or its interval: ``bounds``)
    where there is one."""
    if s.empty:
        return
    m = float(s["mean"].iloc[0])
    lo, hi = (float(b.iloc[0]) for b in bounds(s))
    ax.axhline(m, color=COLORS["one_shot"], ls="--", lw=1.2, label=text)
    if not (math.isnan(lo) or math.isnan(hi)):
        ax.axhspan(lo, hi, color=COLORS["one_shot"], alpha=0.2, lw=0)


def _config_text(done: pd.DataFrame, setting: str, keys: Sequence[str]) -> str:
    flat = done.loc[done["setting"] == setting, "flat"].iloc[0]
    return "\n".join(f"{SHORT.get(k, k)}={flat[k]:g}" for k in keys if isinstance(flat.get(k), int | float))


def best_panel(
    ax: Any,
    done: pd.DataFrame,
    families: Sequence[str],
    by: str,
    keys: Sequence[str],
    legend_ax: Any = None,
    ci: Bootstrap | None = None,
) -> None:
    """Each family's best configuration per sparsity (annotated with it) against one-shot, sparsities as
    equally spaced categories, series side by side (no lines: the categories are not a continuum) so their
    error bars stay apart; each chosen configuration is written above its error bar."""
    best = best_config(done[done["family"].isin(families)], by=by, group="family", ci=ci)
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps = sorted(set(best["target_sparsity"]) | set(one["target_sparsity"]))
    pos = {s: i for i, s in enumerate(sps)}
    series = [("one_shot", one), *((f, best[best["family"] == f]) for f in families)]
    series = [(f, s) for f, s in series if not s.empty]
    offsets = np.linspace(-0.2, 0.2, len(series)) if len(series) > 1 else [0.0]
    for (fam, s), dx in zip(series, offsets, strict=True):
        x = s["target_sparsity"].map(pos) + dx
        text = label(fam, s["count"], "" if fam == "one_shot" else ", best")
        errorbar(ax, x, s, COLORS.get(fam), text, ls="none", ms=5)
        if fam == "one_shot":
            continue
        tops = bounds(s)[1].fillna(s["mean"])  # above the error bar (at the mean where there is none)
        for xi, r, top in zip(x, s.itertuples(index=False), tops, strict=True):
            ax.annotate(
                _config_text(done, r.setting, keys), (xi, top), xytext=(0, 4),
                textcoords="offset points", fontsize=6.5, color=COLORS.get(fam), va="bottom", ha="center",
                linespacing=1.0,
            )  # fmt: skip
    ax.set_xticks(range(len(sps)), [f"{100 * s:g}" for s in sps])
    ax.set_xlim(-0.6, len(sps) - 0.4)
    ax.margins(y=0.25)
    ax.set(xlabel="target sparsity (%)", ylabel=ACC)
    ax.set_title(f"best configuration per sparsity vs one-shot\n({SELECT[by]}, test accuracy shown)")
    (legend_ax or ax).legend(*ax.get_legend_handles_labels(), loc="center left" if legend_ax else "best")
