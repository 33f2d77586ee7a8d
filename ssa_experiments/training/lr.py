"""Learning-rate schedules (``lr``, ``parent.lr``; the annealing schedules are ``pruning/schedules.py``).

A schedule is a pure function ``lr_at(step, total_steps, cfg)`` stepped every batch: no hidden counter in a
scheduler object, so a resumed run only needs its global step, and tests compare values directly.

The retraining baselines ``finetune`` and ``lr_rewind`` have no shape of their own: they are the parent's
schedule read at other steps. ``retraining_lr`` turns the configs into the step -> LR function a fine-tuning
run uses (and digests into its ``lr_trace_sha256``), still a pure function of the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from ssa_experiments.config.schema import (
    PARENT_DERIVED_SCHEDULES,
    LrConfig,
    ParentConfig,
)

LrFn = Callable[[int], float]  # global step (0-based) -> learning rate


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_at(step: int, total_steps: int, cfg: LrConfig) -> float:
    """Learning rate for the batch with index ``step`` (0-based) out of ``total_steps``."""
    x = step / max(total_steps, 1)
    if cfg.name == "constant":
        return cfg.lr
    if cfg.name == "one_cycle":
        # Same values as torch.optim.lr_scheduler.OneCycleLR(anneal_strategy="cos", three_phase=False).
        initial = cfg.lr / cfg.div_factor
        final = initial / cfg.final_div_factor
        warm_end = float(cfg.pct_start * total_steps) - 1
        if step <= warm_end:
            return _cos(initial, cfg.lr, step / warm_end if warm_end > 0 else 1.0)
        return _cos(cfg.lr, final, (step - warm_end) / (total_steps - 1 - warm_end))
    if cfg.name == "cosine":
        return cfg.lr * (cfg.min_ratio + (1 - cfg.min_ratio) * 0.5 * (1 + math.cos(math.pi * x)))
    if cfg.name == "step":
        return cfg.lr * cfg.gamma ** sum(x >= m for m in cfg.milestones)
    if cfg.name == "parent_swa_style":
        # Flat, then linear decay to lr * final_ratio between decay_start and decay_end, then flat again.
        if x <= cfg.decay_start:
            return cfg.lr
        if x >= cfg.decay_end:
            return cfg.lr * cfg.final_ratio
        frac = (x - cfg.decay_start) / (cfg.decay_end - cfg.decay_start)
        return cfg.lr * (1 - (1 - cfg.final_ratio) * frac)
    if cfg.name in PARENT_DERIVED_SCHEDULES:
        raise ValueError(
            f"lr.name: {cfg.name!r} is read off the parent's schedule; use retraining_lr, not lr_at"
        )
    raise ValueError(f"lr.name: unknown LR schedule {cfg.name!r}")


def lr_replay_start(schedule_name: str, parent: ParentConfig, finetune_epochs: int) -> int | None:
    """The parent epoch whose LR ``lr_rewind`` replays first; None for every other schedule.

    Renda et al. (2020) replay the last t = ``finetune_epochs`` epochs of the parent's schedule, from
    ``parent.epochs - t``; with weight rewinding (Frankle et al.) the weights restart at epoch k =
    ``parent.rewind_epoch`` and so does the schedule they were trained under.
    """
    if schedule_name != "lr_rewind":
        return None
    if parent.rewind_epoch is not None:
        return parent.rewind_epoch
    return parent.epochs - finetune_epochs


# Module-level functions bound with functools.partial (not closures): the LR function is plain data,
# printable and picklable, and visibly a function of the step alone.
def _constant(lr: float, step: int) -> float:
    return lr


def _shifted(offset: int, total: int, cfg: LrConfig, step: int) -> float:
    return lr_at(offset + step, total, cfg)


def retraining_lr(lr: LrConfig, parent: ParentConfig, steps_per_epoch: int, finetune_epochs: int) -> LrFn:
    """The LR of each fine-tuning step, as a function of the step alone.

    ``finetune`` (Han et al. 2015): the parent's last-step LR, constant. ``lr_rewind``: fine-tuning step i
    takes the parent's LR at parent step ``lr_replay_start(...) * steps_per_epoch + i``. Both need the
    parent's steps per epoch, which equal the run's (same data, batch size and ``max_steps_per_epoch``).
    Any other schedule runs over the fine-tuning steps themselves, as ``lr_at`` always has.
    """
    parent_total = parent.epochs * steps_per_epoch
    if lr.name == "finetune":
        return partial(_constant, lr_at(parent_total - 1, parent_total, parent.lr))
    if lr.name == "lr_rewind":
        start = lr_replay_start(lr.name, parent, finetune_epochs)
        assert start is not None
        return partial(_shifted, start * steps_per_epoch, parent_total, parent.lr)
    return partial(lr_at, total_steps=finetune_epochs * steps_per_epoch, cfg=lr)
