"""Table 2 and the ensemble_size figure, drawn from the combiner's report (``ssa-ensemble ... --size``) or
from the ensembles.csv and ensemble_curve.csv it leaves, not from runs.

The combiner's module (ensembles/report.py, through ensembles/combine.py) imports torch: it is imported when
one of these is drawn, so ``--help`` and the other figures do not wait for torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis import tables
from ssa_experiments.analysis.figures.panels import dodge, errorbar, handles
from ssa_experiments.analysis.figures.style import COLORS, save, seeds, setting_style, spread, styled
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import stats

ENSEMBLE_METRICS = (("acc", "ensemble test accuracy (%)"), ("nll", "ensemble test NLL (nats)"),
                    ("ece", "ensemble test ECE (fraction, 15 bins)"))  # fmt: skip


@styled
def ensemble_size(curve: pd.DataFrame, where: str, ci: Bootstrap | None = None) -> Figure:
    """Ensemble metrics vs the number of members k, one line per method (its colour), one row of panels per
    data set: each seed's ensemble averaged over member subsets of size k, then mean ± std over seeds (with
    ``ci``: the bootstrap interval of that mean over seeds)."""
    from ssa_experiments.ensembles.report import label_rank  # torch: on use (module docstring)

    test = curve[curve["split"] == "test"] if "split" in curve else curve
    if test.empty or "k" not in test:
        raise SystemExit(
            f"ensemble_size needs the combiner's size curve (ssa-ensemble ... --size); "
            f"found none under {where}"
        )
    metrics = [(m, t) for m, t in ENSEMBLE_METRICS if m in test and test[m].notna().any()]
    data_sets = sorted(test["data"].astype(str).unique())
    fig, axes = plt.subplots(
        len(data_sets), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(data_sets) + 0.8),
        layout="constrained", squeeze=False,
    )  # fmt: skip
    labels = sorted(test["label"].unique(), key=label_rank)
    for row, data in enumerate(data_sets):
        per = test[test["data"].astype(str) == data]
        for col, (metric, title) in enumerate(metrics):
            ax = axes[row, col]
            for i, lab in enumerate(labels):
                line = stats(per[per["label"] == lab], ["k"], metric, ci=ci)
                if line.empty:
                    continue
                method = str(per.loc[per["label"] == lab, "method"].iloc[0])
                x = line["k"] + dodge(list(line["k"]), i, len(labels))
                ls, marker = setting_style(i)  # two labels of one method differ in greyscale too
                text = f"{lab} ({seeds(line['count'])})"
                errorbar(ax, x, line, COLORS.get(method, f"C{i}"), text, ls=ls, marker=marker)
            ax.set_xticks(sorted(per["k"].unique()))
            ax.set(xlabel="members k", ylabel=title, title=f"{data}: {title.removeprefix('ensemble test ')}")
    legend: dict[str, Any] = {}
    for ax in axes.ravel():
        legend.update(handles(ax))
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncols=min(2, len(legend)))
    fig.suptitle(
        f"Ensemble size: each seed's ensemble averaged over member subsets of size k; {spread(ci)}\n"
        "(k = 1: the mean member; probabilities averaged)"
    )
    return fig


def _load(sources: list[str], where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ensembles (one row each) and their size curve, from combiner reports or their CSVs."""
    from ssa_experiments.ensembles.report import load  # torch: on use (module docstring)

    rows, curve = load(sources)
    if rows.empty:
        raise SystemExit(f"no ensembles under {where}")
    return rows, curve


def write_ensemble_size(sources: list[str], out: Path, where: str, ci: Bootstrap | None = None) -> list[Path]:
    """ensemble_size.png and .pdf under ``out``."""
    _, curve = _load(sources, where)
    return save(ensemble_size(curve, where, ci), out, "ensemble_size")


def write_table2(sources: list[str], out: Path, where: str) -> list[Path]:
    """Table 2 (``tables.write_table2``) and, when drawn from reports, the ensembles.csv and
    ensemble_curve.csv it can be redrawn from."""
    from ssa_experiments.ensembles.report import write_csvs  # torch: on use (module docstring)

    rows, curve = _load(sources, where)
    paths = tables.write_table2(rows, out)
    if not all(str(s).endswith(".csv") for s in sources):  # drawn from reports: keep what they gave
        paths += write_csvs(rows, curve, out)
    return paths
