"""The one training loop: ``train_epoch`` and ``evaluate``, shared by the dense parent and every method,
and ``recalibrated``, the network evaluation should see.

Metrics are accumulated on the device and read once per epoch: a ``.item()`` per step would synchronise
the GPU every batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ssa_experiments.data.loaders import Batches, RunBatches
from ssa_experiments.pruning.masking import Mask
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.training import interrupt
from ssa_experiments.training.optim import set_lr


@dataclass
class Precision:
    """How tensors meet the device: bf16 autocast and channels-last, used only where they help (CUDA)."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False

    @classmethod
    def for_device(cls, device: torch.device, amp: bool, channels_last: bool) -> Precision:
        cuda = device.type == "cuda"
        return cls(device, amp and cuda, channels_last and cuda)

    def autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def steps_per_epoch(batches: Batches, max_steps: int = 0) -> int:
    """Training steps in one epoch: all batches, or ``train.max_steps_per_epoch`` when that is set."""
    return min(max_steps, len(batches)) if max_steps else len(batches)


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epoch: int,
    global_step: int,
    lr_fn: Callable[[int], float],
    precision: Precision,
    method: PruningMethod | None = None,
    max_steps: int = 0,
) -> tuple[dict[str, float], int]:
    """One pass over the training batches; returns (metrics, global step after the epoch). A stop asked by
    the scheduler (``interrupt.py``) raises ``Interrupted`` before a step, never inside one."""
    model.train()
    steps = steps_per_epoch(batches, max_steps)
    loss_sum = torch.zeros((), device=precision.device)
    correct = torch.zeros((), device=precision.device, dtype=torch.long)
    seen = 0
    for step, (x, y) in enumerate(batches.epoch(epoch)):
        if step >= steps:
            break
        interrupt.check(f"in epoch {epoch + 1} before step {step + 1}")
        if method is not None:
            method.before_step(epoch, step, steps)  # stochastic masks are sampled here
        lr = lr_fn(global_step)
        set_lr(optimizer, lr)
        with precision.autocast():
            logits = model(precision.inputs(x))
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if method is not None:
            method.before_optimizer_step(lr)
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        global_step += 1
    return {"train_loss": loss_sum.item() / seen, "train_acc": 100.0 * correct.item() / seen}, global_step


def recalibrated(model: nn.Module, batches: Batches, num_batches: int, precision: Precision) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are its *evaluation* network's own.

    During annealing the running statistics accumulate under sampled (denser) masks, and after an iterative
    step or a one-shot prune they still describe an earlier, denser network; evaluating the target with
    them mixes two networks. The copy runs the eval masks in train mode over ``num_batches`` training
    batches (the first ones of epoch 0's order: the same images at every epoch), without gradients, with
    BN's cumulative average (``momentum=None``: every batch weighs the same), and under a forked RNG:
    the model, its masks, the optimizer and every random stream of training are untouched.
    Returns ``model`` itself when there is nothing to recalibrate (no BatchNorm, or ``num_batches=0``).
    """
    if num_batches <= 0 or not any(isinstance(m, _BatchNorm) for m in model.modules()):
        return model
    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, Mask):
            m.train_mask = m.eval_mask.to(m.train_mask.dtype)
        elif isinstance(m, _BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
            m.momentum = None
    net.train()
    device = precision.device
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        for i, (x, _) in enumerate(batches.epoch(0)):
            if i >= num_batches:
                break
            with precision.autocast():
                net(precision.inputs(x))
    return net.eval()


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Batches, precision: Precision, split: str = "test"
) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy in eval mode (deterministic masks, the model's BN
    statistics), as ``{split}_acc`` and ``{split}_loss``."""
    model.eval()
    loss_sum = torch.zeros((), device=precision.device)
    correct = torch.zeros((), device=precision.device, dtype=torch.long)
    seen = 0
    for x, y in batches.epoch(0):
        with precision.autocast():
            logits = model(precision.inputs(x))
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return {f"{split}_loss": loss_sum.item() / seen, f"{split}_acc": 100.0 * correct.item() / seen}


# A context around one named part of the work, for a timer (``callbacks.Callbacks.span``); by default none.
Span = Callable[[str], AbstractContextManager[object]]


def untimed(part: str) -> AbstractContextManager[object]:
    return nullcontext()


def evaluate_splits(
    model: nn.Module,
    batches: RunBatches,
    precision: Precision,
    recalibration_batches: int,
    span: Span = untimed,
) -> tuple[dict[str, float], nn.Module]:
    """Validation and test metrics of the evaluation network; returns them and the network evaluated."""
    with span("recalibration"):
        net = recalibrated(model, batches.train, recalibration_batches, precision)
    metrics = {"bn_recalibration_batches": recalibration_batches if net is not model else 0}
    with span("evaluate"):
        if batches.val is not None:
            metrics.update(evaluate(net, batches.val, precision, "val"))
        metrics.update(evaluate(net, batches.test, precision, "test"))
    return metrics, net
