"""The schedules figure, drawn from the formulas alone (no runs): the expected density of the prunable
weights over fine-tuning of every annealing schedule (per step and per epoch) and of iterative pruning,
computed by the same pure functions that the runs use (pruning/sparsity_schedules.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

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


@styled
def schedules_figure(sparsity: float, n: int, tau0: float, epochs: int) -> Figure:
    """Expected density over fine-tuning of every annealing and iterative schedule (log scale: the last step
    of a schedule linear in keep-probability removes most of the weights still in use at high sparsity)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, layout="constrained")
    t = np.linspace(0, epochs, 40 * epochs + 1)
    annealing = ["linear", "cosine", "exponential", "cubic", "geometric"]
    for i, schedule in enumerate(annealing):
        color = plt.get_cmap("Reds")(0.35 + 0.6 * i / (len(annealing) - 1))
        for granularity, style in (("step", "-"), ("epoch", ":")):
            d = [expected_density(x, schedule, sparsity, n, tau0, granularity) for x in t]
            axes[0].plot(t, d, style, color=color, lw=1.4, label=f"{schedule} (per {granularity})")
    for i, schedule in enumerate(["linear", "polynomial", "geometric"]):
        color = plt.get_cmap("Blues")(0.45 + 0.25 * i)
        d = [expected_density(x, schedule, sparsity, n, granularity="epoch", method="iterative") for x in t]
        axes[1].plot(t, d, color=color, lw=1.4, label=f"iterative {pretty_schedule(schedule)} (per epoch)")
        d = [expected_density(x, schedule, sparsity, n, method="iterative") for x in t]
        axes[1].plot(t, d, ":", color=color, lw=1.2, label=f"{pretty_schedule(schedule)}, per step (GMP)")
    for ax, title in zip(axes, (f"temperature annealing, τ0 = {tau0:g}", "iterative pruning"), strict=True):
        ax.set(title=title, xlabel="epoch", yscale="log")
        ax.axvline(n, color="gray", ls="--", lw=0.8)
        ax.legend(loc="upper right")
    axes[0].set_ylabel("expected density of the prunable weights")
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.suptitle(
        f"Schedules to {100 * sparsity:g}% sparsity over n = {n} epochs (dashed: epoch n, the target from "
        "then on)\nlinear/cosine/exponential/cubic: curves of the keep-probability; geometric: of the density"
    )
    return fig


def pretty_schedule(schedule: str) -> str:
    """Iterative pruning's "polynomial" schedule by the name the figures give it: Zhu & Gupta's cubic."""
    return "cubic" if schedule == "polynomial" else schedule
