"""Dynamic sparse training's mask update as pure functions: when it happens, how much it moves, what moves.

SET (Mocanu et al. 2018) and RigL (Evci et al. 2020) keep a sparse mask whose size never changes and, every
ΔT training steps until a stop step, replace a fraction of each layer's active connections: the ones with the
smallest |w| are dropped and as many inactive ones are grown (SET: chosen at random; RigL: those with the
largest |∂L/∂w| of the *dense* gradient). The fraction decays along a cosine to zero at the stop step, as in
google-research/rigl and jaxpruner. The class that calls these is ``methods/dst.py``.

One rule differs from the rigl reference on purpose: a connection dropped in an update is never grown back in
the same update (candidates for growth are the connections inactive *before* the update). The reference lets
a just-dropped connection be chosen again (reset to zero); excluding it makes every update move exactly
``n`` connections, which is what "the drop fraction" then means.
"""

from __future__ import annotations

import math

import torch

from ssa_experiments.config.methods import DROP_SCHEDULES


def end_step(total_steps: int, end_fraction: float) -> int:
    """The first step with no update: ``floor(end_fraction * total_steps)``."""
    return math.floor(end_fraction * total_steps + 1e-9)


def is_update_step(step: int, every: int, end: int) -> bool:
    """Whether the 0-based global training step ``step`` updates the mask: every ``every``-th step after
    step 0 (step 0 has seen no training), strictly before ``end``."""
    return 0 < step < end and step % every == 0


def last_update_step(every: int, end: int) -> int:
    """The last step that updates the mask (0: none does)."""
    return ((end - 1) // every) * every if end > 1 else 0


def drop_fraction_at(step: int, end: int, initial: float, schedule: str) -> float:
    """α(t): ``initial`` at t = 0, decayed to 0 at ``end`` along ½(1 + cos(π t / end)) (``cosine``, the
    reference's), or held (``constant``); 0 from ``end`` on."""
    if step >= end:
        return 0.0
    if schedule == "constant":
        return initial
    if schedule == "cosine":
        return initial * 0.5 * (1.0 + math.cos(math.pi * step / end))
    raise ValueError(f"unknown drop schedule {schedule!r}; choose one of {DROP_SCHEDULES}")


def moved_count(active: int, inactive: int, fraction: float) -> int:
    """How many connections one layer's update drops (and grows): ``floor(fraction * active)`` as in the
    reference, at most the inactive count (the growth candidates)."""
    return min(math.floor(fraction * active + 1e-9), inactive)


def drop_and_grow(
    keep: torch.Tensor, drop_scores: torch.Tensor, grow_scores: torch.Tensor, fraction: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer's update on flat (1-D) tensors; returns (new keep, dropped, grown), bool.

    The ``n = moved_count(...)`` active connections with the lowest ``drop_scores`` are dropped and the
    ``n`` connections inactive before the update with the highest ``grow_scores`` are grown, so the count of
    active connections is unchanged and no dropped connection is grown. Ties go to the lower index (stable
    sorts): the same update on every device.
    """
    active = int(keep.sum())
    n = moved_count(active, keep.numel() - active, fraction)
    none = torch.zeros_like(keep)
    if n == 0:
        return keep.clone(), none, none.clone()
    drop_order = torch.sort(drop_scores.float().masked_fill(~keep, math.inf), stable=True).indices
    grow_order = torch.sort(
        grow_scores.float().masked_fill(keep, -math.inf), descending=True, stable=True
    ).indices
    dropped = none.clone()
    dropped[drop_order[:n]] = True
    grown = none.clone()
    grown[grow_order[:n]] = True
    return (keep & ~dropped) | grown, dropped, grown
