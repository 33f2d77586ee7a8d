"""Sparsity schedules (``method.schedule``: annealing and iterative; the learning-rate schedule is elsewhere):
pure functions of the epoch, so they can be tested against hand-computed values.

Conventions (see ``../shared/paper.md``, "Our formulation"):

* Annealing: the probability of a weight outside the target is ``p(t) = p(0) * s(t / n)`` with ``t`` the
  epoch (a float when ``granularity=step``) and ``n = method.anneal_epochs``; ``s(0) = 1``, ``s(1) = 0``, and
  for ``t >= n`` the mask is the target.
* Iterative pruning: epoch ``e`` trains at sparsity ``target * g(e / n)``, a pruning step at the start of
  each epoch ``1 .. n`` (epoch 0 is dense, as annealing's epoch 0 runs at P(0)). With
  ``method.prune_every_steps = k > 0`` (gradual magnitude pruning, Zhu & Gupta's Δt) a pruning step every k
  training steps instead, at the sparsity of the same schedule at fractional progress ``t / n``
  (``t = epoch + step / steps_per_epoch``), and the target at the start of epoch n.

One convention for every method: progress is ``x = t / n`` and **the target is in force for good from the
start of epoch n** (0-based), so with ``train.finetune_epochs = E`` every gradual method trains exactly
``E - n`` epochs on its final mask (``epochs_at_target`` in each summary), and one-shot ``E``. ``n < E`` is
required, so the target is always trained on its own.

Two families of annealing schedules (``method.schedule``):

* **shapes in keep-probability space** (``ANNEAL_SHAPES``): ``s(x)`` is a fixed curve, whatever the
  sparsity. ``cubic`` (``s = (1 - x)^3``) makes the expected sparsity ``s_T (1 - (1 - x)^3)`` at tau0 = 1:
  Zhu & Gupta's curve.
* **curves in density space** (``DENSITY_SCHEDULES``): the network's expected density
  ``d(t) = (1 - s_T) + s_T * mean p(t)`` is prescribed, from its initial value ``d0`` to the target's
  ``d_T = 1 - s_T``, and ``s(x)`` is what makes the mean keep-probability match it. At high sparsity a
  linear-in-p schedule removes most of the weights in use in its last step (s_T = 0.99, tau0 = 0.5, n = 5:
  d = 50.5, 40.6, 30.7, 20.8, 10.9, then 1 %); ``geometric`` removes the same *fraction* of the expected
  density per unit of progress instead. (Density is affine in p, so ``density_linear`` is ``linear``: it is
  offered to make the equivalence explicit in a sweep, not as a different curve.)
"""

from __future__ import annotations

import math

ANNEAL_SHAPES = ("linear", "cosine", "exponential", "cubic")
DENSITY_SCHEDULES = ("geometric", "density_linear")


def _clamp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def anneal_factor(x: float, schedule: str = "linear", decay_rate: float = 5.0) -> float:
    """s(x): the fraction of its initial probability a to-be-removed weight keeps at progress x in [0, 1].

    linear: 1 - x (the paper's); cosine: (1 + cos(pi x)) / 2; exponential: e^{-kx} shifted and scaled so it
    reaches exactly 0 at x = 1 (a plain exponential never would, and the mask must end deterministic);
    cubic: (1 - x)^3, large steps first and small ones last, as Zhu & Gupta's sparsity schedule.
    Only the shapes of ``ANNEAL_SHAPES``; the density schedules need the densities (``schedule_factor``).
    """
    x = _clamp(x)
    if schedule == "linear":
        return 1.0 - x
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * x))
    if schedule == "exponential":
        k = decay_rate
        return (math.exp(-k * x) - math.exp(-k)) / (1.0 - math.exp(-k))
    if schedule == "cubic":
        return (1.0 - x) ** 3
    raise ValueError(f"unknown annealing schedule {schedule!r}")


def initial_density(removed_fraction: float, mean_p0: float) -> float:
    """d0 = (1 - s) + s * mean p(0): the expected density of the first sampled masks.

    ``removed_fraction`` is s, the fraction of prunable weights outside the target (``sparsity`` up to the
    rounding of the weight count), ``mean_p0`` the mean initial keep-probability over those weights (tau0
    for temperature annealing, ~max_initial_probability / 2 for random annealing).
    """
    return (1.0 - removed_fraction) + removed_fraction * mean_p0


def density_at(x: float, d0: float, d_target: float, schedule: str) -> float:
    """d(x), the expected density at progress x of a density schedule, from d(0) = d0 to d(1) = d_target.

    geometric: d0^(1 - x) * d_T^x (equal relative change per unit of progress); density_linear:
    d0 + (d_T - d0) x.
    """
    x = _clamp(x)
    if schedule == "geometric":
        return d0 ** (1.0 - x) * d_target**x
    if schedule == "density_linear":
        return d0 + (d_target - d0) * x
    raise ValueError(f"unknown density schedule {schedule!r}")


def density_factor(x: float, schedule: str, d0: float, d_target: float) -> float:
    """s(x) that makes a method's expected density follow ``density_at``: (d(x) - d_T) / (d0 - d_T).

    Every annealing method's expected density is affine in s (annealing: d = d_T + s * (d0 - d_T), since
    p_i(t) = p_i(0) * s scales every removed weight's probability by the same number), so this is exact for
    each; for annealing it is p(t) = (d(t) - (1 - s_T)) / s_T divided by mean p(0). With nothing to anneal
    (d0 == d_T) the factor is irrelevant, and 1 - x is returned. Clamped to [0, 1] against rounding.
    """
    if d0 == d_target:
        return 1.0 - _clamp(x)
    return _clamp((density_at(x, d0, d_target, schedule) - d_target) / (d0 - d_target))


def schedule_factor(
    x: float,
    schedule: str,
    decay_rate: float = 5.0,
    densities: tuple[float, float] | None = None,
) -> float:
    """s(x) for any ``method.schedule``: a shape (``anneal_factor``) or a density curve (``density_factor``).

    ``densities`` is (d0, d_T), the method's expected density at s = 1 and at s = 0; only the density
    schedules read it (they depend on the target sparsity and p(0), the shapes do not).
    """
    if schedule in DENSITY_SCHEDULES:
        if densities is None:
            raise ValueError(f"annealing schedule {schedule!r} needs the initial and target densities")
        return density_factor(x, schedule, *densities)
    return anneal_factor(x, schedule, decay_rate)


def anneal_progress(
    epoch: int, step: int, steps_per_epoch: int, anneal_epochs: int, granularity: str
) -> float:
    """t / n, where t counts epochs (fractional within an epoch when granularity is 'step')."""
    t = epoch + (step / steps_per_epoch if granularity == "step" else 0.0)
    return t / anneal_epochs


def iterative_sparsity(epoch: float, anneal_epochs: int, target: float, schedule: str = "linear") -> float:
    """Sparsity in force during ``epoch`` for iterative pruning that reaches ``target`` at epoch n.

    ``epoch`` is t, fractional for gradual magnitude pruning (``prune_every_steps``). linear: equal steps
    (the paper's). polynomial (also accepted as ``cubic``, the same schedule): Zhu & Gupta (2017),
    s_t = s_f + (s_i - s_f)(1 - t/n)^3 with s_i = 0: large steps first, while the network still has
    redundancy, small ones last. geometric: the density falls by the same factor per unit of progress,
    d_t = d_T^(t/n), i.e. a constant fraction of the remaining weights is removed at each (equally spaced)
    step; it is annealing's geometric schedule with d0 = 1 (dense start).
    """
    x = min(epoch / anneal_epochs, 1.0)
    if schedule == "linear":
        return target * x
    if schedule in ("polynomial", "cubic"):
        return target + (0.0 - target) * (1.0 - x) ** 3
    if schedule == "geometric":
        return 1.0 - (1.0 - target) ** x
    raise ValueError(f"unknown iterative schedule {schedule!r}")


def is_pruning_step(epoch: int, step: int, steps_per_epoch: int, every: int) -> bool:
    """Whether gradual magnitude pruning prunes before this step: every ``every`` global steps from 0."""
    return (epoch * steps_per_epoch + step) % every == 0


def step_epoch(epoch: int, step: int, steps_per_epoch: int) -> float:
    """t in epochs at a step: ``epoch + step / steps_per_epoch`` (exactly ``epoch`` at step 0)."""
    return epoch + step / steps_per_epoch
