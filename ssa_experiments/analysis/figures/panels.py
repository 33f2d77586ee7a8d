"""What fig1, fig2, curves and ensemble_size draw alike: error bars (± std or a bootstrap interval), lines
moved apart, the one-shot reference band, and the panel of each method's best configuration per sparsity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ssa_experiments.analysis.figures.select import SELECT, best_config
from ssa_experiments.analysis.figures.style import (
    ACC,
    ANNOTATION,
    COLORS,
    SHORT,
    cap_accuracy,
    color,
    family_style,
    label,
)
from ssa_experiments.analysis.paired import Bootstrap, pairs, summarize
from ssa_experiments.analysis.tables import NAMES, stats


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
    return "\n".join(f"{SHORT.get(k, k)} = {flat[k]:g}" for k in keys if isinstance(flat.get(k), int | float))


def versus_one_shot(done: pd.DataFrame, ci: Bootstrap | None = None) -> pd.DataFrame:
    """Every setting against one-shot seed by seed (analysis/paired.py): the mean difference in test accuracy
    with its bootstrap interval, per setting and target sparsity; empty without one-shot runs."""
    if not (done["method"] == "one_shot").any():
        return pd.DataFrame(columns=["setting", "target_sparsity", "mean_diff", "ci_lo", "ci_hi", "n_pairs"])
    return summarize(pairs(done.reset_index(drop=True), "one_shot"), boot=ci or Bootstrap())


def delta_text(paired: pd.DataFrame, setting: str, sparsity: float) -> str:
    """ "Δ +0.4 [−0.3, +1.2]": the paired difference from one-shot, "" where there is none."""
    at = np.isclose(paired["target_sparsity"].astype(float), sparsity)
    row = paired[(paired["setting"] == setting) & at]
    if row.empty:
        return ""
    r = row.iloc[0]
    interval = "" if pd.isna(r["ci_lo"]) else f" [{_signed(r['ci_lo'])}, {_signed(r['ci_hi'])}]"
    return f"Δ {_signed(r['mean_diff'])}{interval}"


def _signed(x: float) -> str:
    """+1.2, −0.3, and 0.0 rather than "-0.0" for a difference that rounds to nothing."""
    return "0.0" if abs(x) < 0.05 else f"{x:+.1f}".replace("-", "−")


def best_panel(
    ax: Any,
    done: pd.DataFrame,
    families: Sequence[str],
    by: str,
    keys: Sequence[str],
    legend_ax: Any = None,
    ci: Bootstrap | None = None,
    table_ax: Any = None,
) -> None:
    """Each family's best configuration per sparsity against one-shot, sparsities as equally spaced
    categories, series side by side (no lines: the categories are not a continuum) so their error bars stay
    apart. Each chosen configuration and its paired difference from one-shot is written beside its point,
    or, with ``table_ax`` (several families: the texts would collide), in a table there, a row per family
    and a column under each sparsity."""
    best = best_config(done[done["family"].isin(families)], by=by, group="family", ci=ci)
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps = sorted(set(best["target_sparsity"]) | set(one["target_sparsity"]))
    pos = {s: i for i, s in enumerate(sps)}
    series = [("one_shot", one), *((f, best[best["family"] == f]) for f in families)]
    series = [(f, s) for f, s in series if not s.empty]
    paired = versus_one_shot(done, ci)
    offsets = np.linspace(-0.2, 0.2, len(series)) if len(series) > 1 else [0.0]
    rows: list[str] = []
    for (fam, s), dx in zip(series, offsets, strict=True):
        x = s["target_sparsity"].map(pos) + dx
        text = label(fam, s["count"], "" if fam == "one_shot" else ", best")
        _, marker = family_style(fam)
        errorbar(ax, x, s, color(fam), text, ls="none", ms=5, marker=marker)
        if fam == "one_shot":
            continue
        for xi, r in zip(x, s.itertuples(index=False), strict=True):  # beside the point: inside the axes
            delta = delta_text(paired, r.setting, r.target_sparsity)
            if table_ax is not None:
                table_ax.text(pos[r.target_sparsity], -len(rows), f"{_config_text(done, r.setting, keys)}  "
                              f"{delta}".replace("\n", ", "), ha="center", va="center", fontsize=ANNOTATION,
                              color=color(fam))  # fmt: skip
                continue
            ax.annotate(
                "\n".join(t for t in (_config_text(done, r.setting, keys), delta) if t), (xi, r.mean),
                xytext=(7, 0), textcoords="offset points", fontsize=ANNOTATION, color=color(fam),
                va="center", ha="left", linespacing=1.1,
            )  # fmt: skip
        rows.append(fam)
    ax.set_xticks(range(len(sps)), [f"{100 * s:g}" for s in sps])
    ax.set_xlim(-0.6, len(sps) - (0.4 if table_ax is not None else 0.1))  # room right of the last point
    if table_ax is not None:
        _table_axes(table_ax, ax.get_xlim(), rows)
    ax.margins(y=0.1)
    cap_accuracy(ax)
    ax.set(xlabel="target sparsity (%)", ylabel=ACC)
    ax.set_title(
        f"best configuration per sparsity vs one-shot ({SELECT[by]}, test accuracy shown)\n"
        f"Δ: paired difference from one-shot over seeds [{100 * (ci or Bootstrap()).level:g}% bootstrap CI]"
    )
    (legend_ax or ax).legend(*ax.get_legend_handles_labels(), loc="center left" if legend_ax else "best")


def _table_axes(ax: Any, xlim: tuple[float, float], rows: Sequence[str]) -> None:
    """The axes under the best-configuration panel as a table: the family names (in their colours) as row
    labels, the texts under the panel's sparsities."""
    ax.set_xlim(*xlim)
    ax.set_ylim(-len(rows) + 0.5, 0.5)
    ax.set_yticks([-i for i in range(len(rows))], [NAMES.get(f, f) for f in rows], fontsize=ANNOTATION)
    for tick, fam in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color(color(fam))
    ax.set_xticks([])
    ax.tick_params(left=False)
    for spine in ax.spines.values():
        spine.set_visible(False)
