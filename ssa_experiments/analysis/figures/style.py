"""How every figure looks and is written: a method's colour (from its declaration in the method registry),
legend labels, titles, type sizes, and the PNG and PDF files."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.figures.select import TAU, N
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import NAMES
from ssa_experiments.config.methods import STYLES

# One colour per method in every figure; a method's settings are shades of its colour map.
COLORS = {name: style.color for name, style in STYLES.items()}
CMAPS = {name: style.cmap for name, style in STYLES.items()}
ORDER = list(STYLES)  # the legend order
SHORT = {TAU: "τ0", N: "n", "method.max_initial_probability": "p_max", "pruning.criterion": "criterion"}
ACC = "test accuracy (%)"
STYLE = {"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
         "legend.fontsize": 7.5, "legend.title_fontsize": 8, "figure.titlesize": 10}  # fmt: skip


def styled(draw: Callable[..., Any]) -> Callable[..., Any]:
    """The same type sizes in every figure, without changing matplotlib's settings for anyone else."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with plt.rc_context(STYLE):  # ticks are laid out when drawn: the same sizes as the figure's text
        fig.savefig(paths[0], dpi=150, bbox_inches="tight")
        # no creation date in the PDF: redrawing the same runs gives byte-identical files
        fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return paths


def seeds(counts: Iterable[Any]) -> str:
    """ "3 seeds", or "2–3 seeds" where some points have fewer (said in words: n is the annealing epochs)."""
    counts = [int(c) for c in counts]
    lo, hi = min(counts, default=0), max(counts, default=0)
    return f"{hi} seed{'' if hi == 1 else 's'}" if lo == hi else f"{lo}–{hi} seeds"


def label(fam: str, count: Iterable[Any], extra: str = "") -> str:
    """ "one-shot (3 seeds)": the method's name, what sets the line apart, and its number of seeds."""
    return f"{NAMES.get(fam, fam)}{extra} ({seeds(count)})"


def shades(fam: str, k: int) -> list[Any]:
    """k colours for k settings of one method: its colour alone, or a ramp of its colour map."""
    if k <= 1:
        return [COLORS.get(fam, "tab:green")]
    return list(plt.get_cmap(CMAPS.get(fam, "Greens"))(np.linspace(0.45, 0.95, k)))


def pretty(setting: str, fam: str) -> str:
    """A setting's label for a legend: "temperature annealing τ0=0.5 n=5"."""
    _, *parts = re.split(r" (?=[\w.]+=)", setting)
    shown = []
    for part in parts:
        key, _, val = part.partition("=")
        if not (fam.startswith("iterative") and key == "method.schedule"):  # the family says it
            shown.append(f"{SHORT.get(key, key.removeprefix('method.'))}={val}")
    return " ".join([NAMES.get(fam, fam), *shown])


def context(done: pd.DataFrame) -> str:
    """What the runs are: "resnet18 on cifar10, LR schedule one_cycle"."""

    def distinct(values: Iterable[Any]) -> str:
        return "/".join(sorted({str(v) for v in values if isinstance(v, str)})) or "?"

    lr = distinct(done["flat"].map(lambda f: f.get("lr.name")))
    return f"{distinct(done['model'])} on {distinct(done['data'])}, fine-tuning LR schedule {lr}"


def spread(ci: Bootstrap | None) -> str:
    """What the error bars and bands of a figure are, for its title."""
    if ci is None:
        return "mean ± std over seeds"
    return f"mean over seeds, {100 * ci.level:g}% bootstrap CI of the mean (seeds resampled; none for 1 seed)"
