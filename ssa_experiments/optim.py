"""Optimizers and learning-rate schedules.

A schedule is a pure function ``lr_at(step, total_steps, cfg)`` stepped every batch: no hidden counter in a
scheduler object, so a resumed run only needs its global step, and tests compare values directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ssa_experiments.config import OptimizerConfig, ScheduleConfig


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    cfg: OptimizerConfig,
    lr: float,
    self_decayed: Iterable[torch.Tensor] = (),
) -> torch.optim.Optimizer:
    """SGD or AdamW. ``self_decayed`` parameters get a group without weight decay whose
    ``masked_weight_decay`` tells a pruning method to apply the decay itself (to sampled-in weights only)."""
    own = {id(p) for p in self_decayed}
    params = list(params)
    groups: list[dict] = [{"params": [p for p in params if id(p) not in own]}]
    if own:
        groups.append({
            "params": [p for p in params if id(p) in own],
            "weight_decay": 0.0,
            "masked_weight_decay": cfg.weight_decay,
        })  # fmt: skip
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer.name: unknown optimizer {cfg.name!r}")


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_at(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
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
    raise ValueError(f"schedule.name: unknown LR schedule {cfg.name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
