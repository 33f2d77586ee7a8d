"""The one training loop: ``train_epoch`` and ``evaluate``, shared by the dense parent and every method.

Metrics are accumulated on the device and read once per epoch: a ``.item()`` per step would synchronise
the GPU every batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from ssa_experiments.loaders import Batches
from ssa_experiments.optim import set_lr
from ssa_experiments.pruning.methods import PruningMethod


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
    """One pass over the training batches; returns (metrics, global step after the epoch)."""
    model.train()
    steps = steps_per_epoch(batches, max_steps)
    loss_sum = torch.zeros((), device=precision.device)
    correct = torch.zeros((), device=precision.device, dtype=torch.long)
    seen = 0
    for step, (x, y) in enumerate(batches.epoch(epoch)):
        if step >= steps:
            break
        if method is not None:
            method.before_step(epoch, step, steps)  # stochastic masks are sampled here
        set_lr(optimizer, lr_fn(global_step))
        with precision.autocast():
            logits = model(precision.inputs(x))
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        global_step += 1
    return {"train_loss": loss_sum.item() / seen, "train_acc": 100.0 * correct.item() / seen}, global_step


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches, precision: Precision) -> dict[str, float]:
    """Top-1 accuracy (%) and mean cross-entropy in eval mode: deterministic masks, BN running statistics."""
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
    return {"test_loss": loss_sum.item() / seen, "test_acc": 100.0 * correct.item() / seen}
