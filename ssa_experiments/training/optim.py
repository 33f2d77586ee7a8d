"""Optimizers: SGD / AdamW from the config, with weight decay kept off the parameters a pruning method decays
itself (``self_decayed_params``: masked weight decay, ``pruning/weight_decay.py``). The LR schedules are
``lr.py``."""

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
