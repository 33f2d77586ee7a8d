"""Pruning schedules: pure functions of the epoch, so they can be tested against hand-computed values.

Conventions (see ``../shared/paper.md``, "Our formulation"):

* Annealing: the probability of a weight outside the target is ``p(t) = p(0) * s(t / n)`` with ``t`` the
  epoch (a float when ``granularity=step``) and ``n = method.anneal_epochs``; ``s(0) = 1``, ``s(1) = 0``, and
  for ``t >= n`` the mask is the target.
* Iterative pruning: epoch ``e`` trains at sparsity ``target * g(e / n)``, a pruning step at the start of
  each epoch ``1 .. n`` (epoch 0 is dense, as annealing's epoch 0 runs at P(0)).

One convention for every method: progress is ``x = t / n`` and **the target is in force for good from the
start of epoch n** (0-based), so with ``train.finetune_epochs = E`` every gradual method trains exactly
``E - n`` epochs on its final mask (``epochs_at_target`` in each summary), and one-shot ``E``. ``n < E`` is
required, so the target is always trained on its own.
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
    """Sparsity in force during ``epoch`` for iterative pruning that reaches ``target`` at epoch n.

    linear: equal steps (the paper's). polynomial: Zhu & Gupta (2017), s_t = s_f + (s_i - s_f)(1 - t/n)^3 with
    s_i = 0 and t = epoch: large steps first, while the network still has redundancy, small ones last.
    """
    x = min(epoch / anneal_epochs, 1.0)
    if schedule == "linear":
        return target * x
    if schedule == "polynomial":
        return target + (0.0 - target) * (1.0 - x) ** 3
    raise ValueError(f"unknown iterative schedule {schedule!r}")
