"""How every figure looks and is written: a method's colour (from its declaration in the method registry),
legend labels, titles, type sizes, and the PNG and PDF files."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ssa_experiments.analysis.figures.select import TAU, N
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import NAMES
from ssa_experiments.config.methods import STYLES

# One colour per method in every figure (the registry's); its settings differ in line style and marker.
COLORS = {name: style.color for name, style in STYLES.items()}
ORDER = list(STYLES)  # the legend order
SHORT = {TAU: "τ0", N: "n", "method.max_initial_probability": "p_max", "pruning.criterion": "criterion"}
ACC = "test accuracy (%)"
STYLE = {"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
         "legend.fontsize": 8, "legend.title_fontsize": 8.5, "figure.titlesize": 10}  # fmt: skip
ANNOTATION = 8  # the smallest type in any figure (points): annotations stay readable when printed
# A method's settings share its colour and differ in line style and marker, so two settings stay apart in
# greyscale and for readers who cannot tell shades apart: 4 line styles × 10 markers, no pair repeated
# within 40 settings.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
# How a setting's keys read in a legend: "linear, per step, re-scored" rather than raw override strings.
WORDS = {
    ("method.granularity", "epoch"): "per epoch", ("method.granularity", "step"): "per step",
    ("method.rescore", "True"): "re-scored", ("method.rescore", "False"): "",
    ("method.resample", "True"): "resampled", ("method.resample", "False"): "not resampled",
    ("method.schedule", "polynomial"): "cubic",
}  # fmt: skip
BARE = ("method.schedule", "pruning.criterion")  # keys whose value names itself ("linear", "magnitude")


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


def color(fam: str) -> str:
    """A family's colour: the registry's, or for a family it does not declare (iterative pruning with a
    schedule other than linear and cubic) one no declared family uses."""
    if fam in COLORS:
        return COLORS[fam]
    return "tab:cyan" if fam.startswith("iterative") else "darkgoldenrod"


def family_style(fam: str) -> tuple[str, str]:
    """A family's line style and marker where a figure's lines are families (fig2, the best-configuration
    panels): fixed by its place in the registry, so it is the same in every panel."""
    i = ORDER.index(fam) if fam in ORDER else len(ORDER)
    return setting_style(i)


def setting_style(i: int) -> tuple[str, str]:
    """The line style and marker of a method's i-th setting (``LINESTYLES`` × ``MARKERS``)."""
    return LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)]


def _number(val: str) -> str:
    try:
        return f"{float(val):g}"
    except ValueError:
        return val


def describe(setting: str, fam: str) -> str:
    """What sets a setting apart within its method, in words: "τ0 = 0.5, n = 5", "linear, per step,
    re-scored" ("" where the method has one setting). Iterative pruning's schedule is in its family's name."""
    _, *parts = re.split(r" (?=[\w.]+=)", setting)
    parts.sort(key=lambda p: p.partition("=")[0] not in BARE)  # "geometric, per step": what it is first
    shown = []
    for part in parts:
        key, _, val = part.partition("=")
        if fam.startswith("iterative") and key == "method.schedule":
            continue
        if (key, val) in WORDS:
            shown.append(WORDS[key, val])
        elif key in BARE:
            shown.append(val)
        else:
            name = SHORT.get(key, key.removeprefix("method.").removeprefix("pruning.").replace("_", " "))
            shown.append(f"{name} = {_number(val)}")
    return ", ".join(p for p in shown if p)


def pretty(setting: str, fam: str) -> str:
    """A setting's legend label: "temperature annealing: τ0 = 0.5, n = 5", the method alone where that is
    all there is."""
    what = describe(setting, fam)
    return f"{NAMES.get(fam, fam)}: {what}" if what else NAMES.get(fam, fam)


def cap_accuracy(ax: Any) -> None:
    """No accuracy axis past 100 % (error bars of ± std near the top would stretch it to meaningless
    values)."""
    lo, hi = ax.get_ylim()
    if hi > 100:
        ax.set_ylim(lo, 100)


def mask_note(families: Iterable[str]) -> str:
    """Which mask the accuracy of a gradual method is measured on, where the figure has iterative pruning:
    iterative pruning is evaluated on its current mask (denser than the target until epoch n), the annealing
    methods on the target mask from the start; "" where there is nothing to warn about."""
    fams = set(families)
    if not any(f.startswith("iterative") for f in fams):
        return ""
    gradual = [f for f in fams if not f.startswith("iterative") and f not in ("dense", "one_shot")]
    text = "iterative pruning evaluated on its current mask (denser than the target until epoch n)"
    return text + ("; annealing methods on the target mask throughout" if gradual else "")


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
