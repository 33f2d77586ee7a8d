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

from ssa_experiments.config.schema import OptimizerConfig
from ssa_experiments.pruning.weight_decay import leave_decay_to_method


def make_optimizer(
    params: Iterable[torch.nn.Parameter],
    cfg: OptimizerConfig,
    lr: float,
    self_decayed: Iterable[torch.Tensor] = (),
) -> torch.optim.Optimizer:
    """SGD or AdamW. ``self_decayed`` parameters get a group without weight decay whose
    ``masked_weight_decay`` tells a pruning method to apply the decay itself (to sampled-in weights only):
    ``leave_decay_to_method``, which the library's ``Pruner`` applies to a user's own optimizer too."""
    groups: list[dict] = [{"params": list(params)}]
    if cfg.name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups,
            lr=lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    elif cfg.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer.name: unknown optimizer {cfg.name!r}")
    leave_decay_to_method(optimizer, list(self_decayed))
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
