"""Epoch callbacks: what a run does besides training (its files, logs, W&B, an ensemble member's outputs, a
benchmark's timer, a test's simulated kill), as objects the run calls at fixed points, so none of it is
written into the epoch loop and nobody has to patch names inside ``run.py`` to observe or interrupt a run.

``run(cfg, callbacks=...)`` calls every callback (the ones its config asks for first: ``sinks.py``, then
``ensembles/outputs.py``, then the caller's), in list order:

    revisit(out, summary)       only when ``out`` already holds the completed run: the summary updated by
                                what this callback adds without retraining, or None; nothing else is called
    on_start(history, ctx)      once, before the first fine-tuning epoch, with the rows a resumed run has
    on_epoch_start(epoch, ctx)  before each fine-tuning epoch (0-based; the dense parent's do not count)
    on_step(step, ctx)          after each optimizer step, with the steps done in the epoch (progress)
    span(part)                  a context around each part of fine-tuning (``PARTS``), for timing
    on_epoch_end(row, ctx)      after each epoch, with its metrics row (already in ``ctx.history``)
    summary_fields(ctx)         once the run has completed: the fields it adds to summary.json (at the end)
    on_finish(summary, ok)      always, also when the run fails (``summary`` None, ``ok`` False)

A callback reads the run through ``RunContext``; only the run writes it.

``Callback`` is a protocol (structural typing): any object with these seven hooks is a callback, so a layer
below training (``ensembles/outputs.py``) implements one without importing this module, and types what it
reads of the context with a protocol of its own (``MemberContext``). A class that subclasses ``Callback``
inherits a no-op for every hook it does not override.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from ssa_experiments.data.base import ImageData
from ssa_experiments.data.loaders import RunBatches
from ssa_experiments.pruning.methods import PruningMethod
from ssa_experiments.pruning.pruner import Pruner
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.training.lr import LrFn

Row = dict[str, Any]
# The parts of fine-tuning the run wraps in ``span``: the training steps, the evaluated network's BatchNorm
# statistics, its validation and test passes, checkpoint.pt, model.pt, summary.json.
PARTS = ("train_epoch", "recalibration", "evaluate", "checkpoint", "save_model", "summary")


@dataclass
class RunContext:
    """The run's state from fine-tuning's set-up to summary.json: what its phases pass on, and what a
    callback may read."""

    cfg: DictConfig
    out: Path
    identity: dict[str, Any]
    device: torch.device
    precision: Precision
    data: ImageData
    batches: RunBatches  # the fine-tuning batches (a member's own order when its seed differs)
    model: nn.Module
    loss_fn: nn.Module
    pruner: Pruner  # the pruning method, driven as a loop of one's own drives it
    optimizer: torch.optim.Optimizer
    parent_info: dict[str, Any]  # the summary's record of the dense parent
    params: int  # the model's parameters
    prunable_params: int  # of them, the ones the method prunes
    epochs: int  # fine-tuning epochs in all
    steps_per_epoch: int
    lr_fn: LrFn  # the LR of every fine-tuning step
    recalibration_batches: int  # BatchNorm recalibration of the evaluated network (0: dense)
    history: list[Row]  # the epoch rows so far (a resumed run's included)
    global_step: int
    evaluated: nn.Module  # the network the last epoch was evaluated on (the model before any epoch)
    # a checkpoint written inside epoch ``in_epoch["epoch"]`` to resume from (``checkpoint.py``), else None
    in_epoch: dict[str, Any] | None = None

    @property
    def method(self) -> PruningMethod:
        return self.pruner.method


HOOKS = (
    "revisit",
    "on_start",
    "on_epoch_start",
    "on_step",
    "span",
    "on_epoch_end",
    "summary_fields",
    "on_finish",
)


class Callback(Protocol):
    """The hooks a run calls (module docstring). Subclassed, every hook is a no-op until overridden."""

    def revisit(self, out: Path, summary: Row) -> Row | None:
        return None

    def on_start(self, history: list[Row], ctx: RunContext) -> None:
        pass

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        pass

    def on_step(self, step: int, ctx: RunContext) -> None:
        pass

    def span(self, part: str) -> AbstractContextManager[object]:
        return nullcontext()

    def on_epoch_end(self, row: Row, ctx: RunContext) -> None:
        pass

    def summary_fields(self, ctx: RunContext) -> Row:
        return {}

    def on_finish(self, summary: Row | None, ok: bool) -> None:
        pass


class Callbacks:
    """A run's callbacks called as one, in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        for cb in callbacks:  # a hook missing would fail only once the run reaches it: refuse it up front
            missing = [hook for hook in HOOKS if not callable(getattr(cb, hook, None))]
            if missing:
                raise TypeError(f"{type(cb).__name__} is not a callback: it has no {', '.join(missing)}")
        self.callbacks = list(callbacks)

    def revisit(self, out: Path, summary: Row) -> Row | None:
        """The completed run's summary as each callback in turn updates it; None when none changed it."""
        updated = None
        for cb in self.callbacks:
            updated = cb.revisit(out, updated or summary) or updated
        return updated

    def on_start(self, history: list[Row], ctx: RunContext) -> None:
        for cb in self.callbacks:
            cb.on_start(history, ctx)

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        for cb in self.callbacks:
            cb.on_epoch_start(epoch, ctx)

    def on_step(self, step: int, ctx: RunContext) -> None:
        for cb in self.callbacks:
            cb.on_step(step, ctx)

    @contextmanager
    def span(self, part: str) -> Iterator[None]:
        with ExitStack() as stack:
            for cb in self.callbacks:
                stack.enter_context(cb.span(part))
            yield

    def on_epoch_end(self, row: Row, ctx: RunContext) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(row, ctx)

    def summary_fields(self, ctx: RunContext) -> Row:
        return {k: v for cb in self.callbacks for k, v in cb.summary_fields(ctx).items()}

    def on_finish(self, summary: Row | None, ok: bool) -> None:
        for cb in self.callbacks:
            cb.on_finish(summary, ok)
