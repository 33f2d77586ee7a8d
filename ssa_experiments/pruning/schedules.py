"""Pruning schedules: pure functions of the epoch, so they can be tested against hand-computed values.

Conventions (see ``../shared/paper.md``, "Our formulation"):

* Annealing: the probability of a weight outside the target is ``p(t) = p(0) * s(t / n)`` with ``t`` the
  epoch (a float when ``granularity=step``) and ``n = method.anneal_epochs``; ``s(0) = 1``, ``s(1) = 0``, and
  for ``t >= n`` the mask is the target.
* Iterative pruning: one pruning step at the start of each of the first ``n`` epochs; the step at epoch ``e``
  prunes to ``target * g((e + 1) / n)``, so the target is in force from epoch ``n - 1`` on. (Annealing's
  deterministic phase starts at ``t = n``: its epoch ``n - 1`` is still stochastic, per the paper.)
"""

from __future__ import annotations

import math


def anneal_factor(x: float, schedule: str = "linear", decay_rate: float = 5.0) -> float:
    """s(x): the fraction of its initial probability a to-be-removed weight keeps at progress x in [0, 1].

    linear: 1 - x (the paper's); cosine: (1 + cos(pi x)) / 2; exponential: e^{-kx} shifted and scaled so it
    reaches exactly 0 at x = 1 (a plain exponential never would, and the mask must end deterministic).
    """
    x = min(max(x, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - x
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * x))
    if schedule == "exponential":
        k = decay_rate
        return (math.exp(-k * x) - math.exp(-k)) / (1.0 - math.exp(-k))
    raise ValueError(f"unknown annealing schedule {schedule!r}")


def anneal_progress(
    epoch: int, step: int, steps_per_epoch: int, anneal_epochs: int, granularity: str
) -> float:
    """t / n, where t counts epochs (fractional within an epoch when granularity is 'step')."""
    t = epoch + (step / steps_per_epoch if granularity == "step" else 0.0)
    return t / anneal_epochs


def iterative_sparsity(epoch: int, anneal_epochs: int, target: float, schedule: str = "linear") -> float:
    """Sparsity in force during ``epoch`` for iterative pruning reaching ``target`` over ``anneal_epochs``.

    linear: equal steps (the paper's). polynomial: Zhu & Gupta (2017), s_t = s_f + (s_i - s_f)(1 - t/n)^3 with
    s_i = 0 and t = epoch + 1: large steps first, while the network still has redundancy, small ones last.
    """
    x = min((epoch + 1) / anneal_epochs, 1.0)
    if schedule == "linear":
        return target * x
    if schedule == "polynomial":
        return target + (0.0 - target) * (1.0 - x) ** 3
    raise ValueError(f"unknown iterative schedule {schedule!r}")
