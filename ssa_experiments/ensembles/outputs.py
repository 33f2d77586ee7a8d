"""An ensemble member's outputs as an epoch callback: what ``run`` writes for the combiner and Table 2 once
a member has completed (``logits.pt``, its corrupted-data accuracies, its training FLOPs), and what it adds
to a completed member asked for more corrupted sets (``members.py`` holds how each is computed).

``run`` asks ``member_callbacks(cfg)`` for it like for the sinks, so it knows nothing about members; and this
module knows nothing about training: ``MemberOutputs`` has the seven hooks of the callback protocol
(``training/callbacks.py``, structural), and ``MemberContext`` says the little it reads of the run's context
(``RunContext`` has each of these fields, with these types)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig
from torch import nn

from ssa_experiments.data.base import ImageData
from ssa_experiments.data.loaders import RunBatches
from ssa_experiments.ensembles import members
from ssa_experiments.runtime.precision import Precision

Row = dict[str, Any]


class MemberContext(Protocol):
    """What a member's outputs read of the run, once it has completed (read-only)."""

    @property
    def out(self) -> Path: ...  # the run's directory
    @property
    def evaluated(self) -> nn.Module: ...  # the network the final epoch was evaluated on
    @property
    def batches(self) -> RunBatches: ...
    @property
    def data(self) -> ImageData: ...
    @property
    def precision(self) -> Precision: ...
    @property
    def steps_per_epoch(self) -> int: ...
    @property
    def history(self) -> list[Row]: ...  # the epoch rows
    @property
    def parent_info(self) -> Row: ...  # the summary's record of the dense parent


class MemberOutputs:
    """The summary fields of a completed member (``ensemble``, ``logits_file``, ``corrupt_acc...``,
    ``flops``), computed on the network its final epoch was evaluated on. Every other hook does nothing."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def revisit(self, out: Path, summary: Row) -> Row | None:
        return members.complete_evaluations(out, self.cfg)  # evaluated, never retrained

    def on_start(self, history: list[Row], ctx: MemberContext) -> None:
        pass

    def on_epoch_start(self, epoch: int, ctx: MemberContext) -> None:
        pass

    def on_step(self, step: int, ctx: MemberContext) -> None:
        pass

    def span(self, part: str) -> AbstractContextManager[object]:
        return nullcontext()

    def on_epoch_end(self, row: Row, ctx: MemberContext) -> None:
        pass

    def summary_fields(self, ctx: MemberContext) -> Row:
        fields = members.save_outputs(ctx.out, ctx.evaluated, ctx.batches, ctx.data, self.cfg, ctx.precision)
        fields["flops"] = members.training_flops(
            self.cfg, ctx.data, ctx.steps_per_epoch, ctx.history, ctx.parent_info
        )
        return fields

    def on_finish(self, summary: Row | None, ok: bool) -> None:
        pass


def member_callbacks(cfg: DictConfig) -> list[MemberOutputs]:
    """The callbacks ``cfg`` needs as an ensemble member: none unless ``ensemble.member`` is set."""
    return [] if cfg.ensemble.member is None else [MemberOutputs(cfg)]
