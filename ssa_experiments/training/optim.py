"""Optimizers and learning-rate schedules.

A schedule is a pure function ``lr_at(step, total_steps, cfg)`` stepped every batch: no hidden counter in a
scheduler object, so a resumed run only needs its global step, and tests compare values directly.

The retraining baselines ``finetune`` and ``lr_rewind`` have no shape of their own: they are the parent's
schedule read at other steps. ``retraining_lr`` turns the configs into the step -> LR function a fine-tuning
run uses (and digests into its ``lr_trace_sha256``), still a pure function of the step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ssa_experiments.config.schema import (
    OptimizerConfig,
)


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


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
