"""BatchNorm statistics recalibrated for the target network: what a pruned network with BatchNorm should be
evaluated with (the runner's ``eval.bn_recalibration_batches``, ``Pruner.recalibrated`` in one's own loop).

During annealing the running statistics accumulate under sampled (denser) masks, and after an iterative step
or a one-shot prune they still describe an earlier, denser network; evaluating the target with them mixes two
networks. The copy runs the eval masks in train mode over a few training batches, without gradients, with
BN's cumulative average (``momentum=None``: every batch weighs the same), and under a forked RNG: the model,
its masks, the optimizer and every random stream of training are untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ssa_experiments.pruning.masking import Mask

Forward = Callable[[nn.Module, torch.Tensor], Any]


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def recalibrated(
    model: nn.Module, inputs: Iterable[torch.Tensor], num_batches: int, forward: Forward | None = None
) -> nn.Module:
    """A copy of ``model`` in eval mode whose BatchNorm statistics are its target network's own, from the
    first ``num_batches`` of ``inputs`` (model inputs, on the model's device), each run as
    ``forward(net, x)`` (default ``net(x)``; the runner adds its autocast). Returns ``model`` itself when
    there is nothing to recalibrate (no BatchNorm, or ``num_batches=0``)."""
    if num_batches <= 0 or not has_batchnorm(model):
        return model
    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, Mask):
            m.train_mask = m.eval_mask.to(m.train_mask.dtype)
        elif isinstance(m, _BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
            m.momentum = None
    net.train()
    cuda = sorted({t.device.index for t in net.state_dict().values() if t.is_cuda})
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        for i, x in enumerate(inputs):
            if i >= num_batches:
                break
            if forward is None:
                net(x)
            else:
                forward(net, x)
    return net.eval()
