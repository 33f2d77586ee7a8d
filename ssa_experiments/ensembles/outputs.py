"""An ensemble member's outputs as an epoch callback: what ``run`` writes for the combiner and Table 2 once
a member has completed (``logits.pt``, its corrupted-data accuracies, its training FLOPs), and what it adds
to a completed member asked for more corrupted sets (``members.py`` holds how each is computed).

``run`` asks ``member_callbacks(cfg)`` for it like for the sinks, so it knows nothing about members."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssa_experiments.ensembles import members
from ssa_experiments.training.callbacks import Callback, RunContext


class MemberOutputs(Callback):
    """The summary fields of a completed member (``ensemble``, ``logits_file``, ``corrupt_acc...``,
    ``flops``), computed on the network its final epoch was evaluated on."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def revisit(self, out: Path, summary: dict[str, Any]) -> dict[str, Any] | None:
        return members.complete_evaluations(out, self.cfg)  # evaluated, never retrained

    def summary_fields(self, ctx: RunContext) -> dict[str, Any]:
        fields = members.save_outputs(ctx.out, ctx.evaluated, ctx.batches, ctx.data, self.cfg, ctx.precision)
        fields["flops"] = members.training_flops(
            self.cfg, ctx.data, ctx.steps_per_epoch, ctx.history, ctx.parent_info
        )
        return fields


def member_callbacks(cfg: DictConfig) -> list[Callback]:
    """The callbacks ``cfg`` needs as an ensemble member: none unless ``ensemble.member`` is set."""
    return [] if cfg.ensemble.member is None else [MemberOutputs(cfg)]
