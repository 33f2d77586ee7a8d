"""One-shot pruning: the target from the first fine-tuning step, fixed from then on."""

from __future__ import annotations

from torch import nn

from ssa_experiments.pruning.masking import attach_masks
from ssa_experiments.pruning.methods.base import PruningMethod


class OneShot(PruningMethod):
    """Prune to the target at the start of fine-tuning; fixed from then on."""

    name = "one_shot"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.apply_final(self.target())
