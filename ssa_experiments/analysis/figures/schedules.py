"""The schedules figure, drawn from the formulas alone (no runs): the expected density of the prunable
weights over fine-tuning of every annealing schedule (per step and per epoch) and of iterative pruning,
computed by the same pure functions that the runs use (pruning/sparsity_schedules.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ssa_experiments.analysis.figures.style import styled
from ssa_experiments.pruning.sparsity_schedules import initial_density, iterative_sparsity, schedule_factor


def expected_density(
    t: float,
    schedule: str,
    sparsity: float,
    n: int,
    tau0: float = 0.5,
    granularity: str = "step",
    method: str = "annealing",
) -> float:
    """The expected density of the prunable weights at epoch t (fractional: within an epoch) for temperature
    annealing (``method="annealing"``) or iterative pruning, from the pure functions of ``schedules.py``."""
    t = t if granularity == "step" else math.floor(t)
    if method == "iterative":
        return 1.0 - iterative_sparsity(t, n, sparsity, schedule)
    d_target = 1.0 - sparsity
    if t >= n:
        return d_target
    d0 = initial_density(sparsity, tau0)
    return d_target + schedule_factor(t / n, schedule, densities=(d0, d_target)) * (d0 - d_target)


# In this figure each panel is one method, so a colour is a schedule (and the iterative schedules keep their
# figure families' colours); the marker repeats it for greyscale; the line style is the granularity.
SCHEDULE_STYLE = {"linear": ("tab:blue", "o"), "cosine": ("tab:orange", "s"),
                  "exponential": ("tab:green", "^"), "cubic": ("tab:purple", "D"),
                  "geometric": ("tab:cyan", "v"), "polynomial": ("tab:purple", "D")}  # fmt: skip


@styled
def schedules_figure(sparsity: float, n: int, tau0: float, epochs: int) -> Figure:
    """Expected density over fine-tuning of every annealing and iterative schedule (log scale: the last step
    of a schedule linear in keep-probability removes most of the weights still in use at high sparsity)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharey=True, layout="constrained")
    t = np.linspace(0, epochs, 40 * epochs + 1)
    marks = {"markevery": 40, "ms": 5}  # one marker per epoch
    for schedule in ["linear", "cosine", "exponential", "cubic", "geometric"]:
        color, marker = SCHEDULE_STYLE[schedule]
        for granularity, style in (("step", "-"), ("epoch", ":")):
            d = [expected_density(x, schedule, sparsity, n, tau0, granularity) for x in t]
            text = f"{schedule}, per {granularity}"
            axes[0].plot(t, d, style, color=color, marker=marker, lw=1.4, label=text, **marks)
    for schedule in ["linear", "polynomial", "geometric"]:
        color, marker = SCHEDULE_STYLE[schedule]
        name = pretty_schedule(schedule)
        d = [expected_density(x, schedule, sparsity, n, granularity="epoch", method="iterative") for x in t]
        axes[1].plot(t, d, ":", color=color, marker=marker, lw=1.4, label=f"{name}, per epoch", **marks)
        d = [expected_density(x, schedule, sparsity, n, method="iterative") for x in t]
        axes[1].plot(t, d, "-", color=color, marker=marker, lw=1.4, label=f"{name}, per step (GMP)", **marks)
    titles = (f"temperature annealing, τ0 = {tau0:g}", "iterative pruning")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(title=title, xlabel="epoch", yscale="log")
        ax.axvline(n, color="gray", ls="--", lw=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    axes[0].set_ylabel("expected density of the prunable weights")
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.suptitle(
        f"Schedules to {100 * sparsity:g}% sparsity over n = {n} epochs (dashed: epoch n, the target from "
        "then on)\nlinear/cosine/exponential/cubic: curves of the keep-probability; geometric: of the "
        "density; colour and marker: the schedule, solid/dotted: per step/per epoch"
    )
    return fig


def pretty_schedule(schedule: str) -> str:
    """Iterative pruning's "polynomial" schedule by the name the figures give it: Zhu & Gupta's cubic."""
    return "cubic" if schedule == "polynomial" else schedule
