"""Optimizers: SGD / AdamW from the config, with weight decay kept off the parameters a pruning method decays
itself (``self_decayed_params``: masked weight decay, ``pruning/weight_decay.py``). The LR schedules are
``lr.py``."""

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
