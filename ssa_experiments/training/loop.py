"""The one training loop: ``train_epoch`` and ``evaluate``, shared by the dense parent and every method,
and ``recalibrated``, the network evaluation should see.

Metrics are accumulated on the device and read once per epoch: a ``.item()`` per step would synchronise
the GPU every batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssa_experiments.data.loaders import Batches, RunBatches
from ssa_experiments.models import MIMO
from ssa_experiments.pruning import recalibration
from ssa_experiments.pruning.pruner import Pruner
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.training import interrupt
from ssa_experiments.training.optim import set_lr


def steps_per_epoch(batches: Batches, max_steps: int = 0) -> int:
    """Training steps in one epoch: all batches, or ``train.max_steps_per_epoch`` when that is set."""
    return min(max_steps, len(batches)) if max_steps else len(batches)


@dataclass
class EpochSums:
    """An epoch's running sums (loss x examples, correct predictions, examples), kept on the device and read
    once at the epoch's end; a mid-epoch checkpoint holds them, so a resumed epoch reports the same row."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochSums:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum.cpu(), "correct": self.correct.cpu(), "seen": self.seen}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochSums:
        return cls(state["loss_sum"].to(device), state["correct"].to(device), int(state["seen"]))

    def metrics(self) -> dict[str, float]:
        loss, correct = self.loss_sum.item(), self.correct.item()
        return {"train_loss": loss / self.seen, "train_acc": 100.0 * correct / self.seen}


# Saves a checkpoint inside an epoch: called with the steps done in it, the global step and the epoch's sums.
SaveInEpoch = Callable[[int, int, EpochSums], None]


def train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epoch: int,
    global_step: int,
    lr_fn: Callable[[int], float],
    precision: Precision,
    pruner: Pruner | None = None,
    max_steps: int = 0,
    on_step: Callable[[int], None] | None = None,
    *,
    start_step: int = 0,
    sums: EpochSums | None = None,
    save: SaveInEpoch | None = None,
    save_every: int = 0,
) -> tuple[dict[str, float], int]:
    """One pass over the training batches; returns (metrics, global step after the epoch). ``pruner``
    (``pruning/pruner.py``, as a loop of one's own drives it): ``step()`` before each forward pass; its hook
    on ``optimizer`` runs the method's ``before_optimizer_step`` inside ``optimizer.step()``. ``on_step`` is
    called after each step with the steps done in the epoch (a progress bar; nothing is read back from the
    device for it). A stop asked by the scheduler (``interrupt.py``) raises ``Interrupted`` before a step,
    never inside one.

    Inside an epoch (``run.py``): ``save`` is called at the step boundaries where ``save_every`` steps of the
    epoch are done, and before a stop raises, so an epoch longer than the scheduler's warning is not lost; a
    run resumed from such a checkpoint passes ``start_step`` (the epoch's first steps are skipped: the batch
    order and augmentation are functions of the seed and epoch, ``loaders.py``) and the checkpoint's
    ``sums``."""
    model.train()
    steps = steps_per_epoch(batches, max_steps)
    sums = EpochSums.zeros(precision.device) if sums is None else sums
    for step, (x, y) in enumerate(batches.epoch(epoch)):
        if step >= steps:
            break
        if step < start_step:  # done before the checkpoint this run resumed from
            continue
        if save is not None and (
            interrupt.pending() is not None or (save_every and step > start_step and step % save_every == 0)
        ):
            save(step, global_step, sums)
        interrupt.check(f"in epoch {epoch + 1} before step {step + 1}")
        if pruner is not None:
            pruner.step()  # stochastic masks are sampled here
        lr = lr_fn(global_step)
        set_lr(optimizer, lr)
        scale = 1.0
        if isinstance(model, MIMO):  # M independent examples per input; the loss is summed over the heads
            x, y = model.training_batch(x, y)
            scale = float(model.heads)
        with precision.autocast():
            logits = model(precision.inputs(x))
            loss = loss_fn(logits, y) * scale if scale != 1.0 else loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()  # the pruner's hook first: masked weight decay, if configured
        sums.loss_sum += loss.detach() * len(y)
        sums.correct += (logits.argmax(1) == y).sum()
        sums.seen += len(y)
        global_step += 1
        if on_step is not None:
            on_step(step + 1)
    return sums.metrics(), global_step


def recalibrated(model: nn.Module, batches: Batches, num_batches: int, precision: Precision) -> nn.Module:
    """A copy of ``model`` whose BatchNorm statistics are its *evaluation* network's own
    (``pruning/recalibration.py``), from the first ``num_batches`` training batches of epoch 0's order (the
    same images at every epoch), under the run's autocast and memory layout. Returns ``model`` itself when
    there is nothing to recalibrate (no BatchNorm, or ``num_batches=0``)."""

    def forward(net: nn.Module, x: torch.Tensor) -> None:
        with precision.autocast():
            net(precision.inputs(x))

    return recalibration.recalibrated(model, (x for x, _ in batches.epoch(0)), num_batches, forward)


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
