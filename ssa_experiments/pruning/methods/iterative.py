"""Iterative pruning and gradual magnitude pruning: deterministic masks that shrink to the target over n
epochs."""

from __future__ import annotations

import torch
from torch import nn

from ssa_experiments.pruning.masking import attach_masks
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.sparsity_schedules import is_pruning_step, iterative_sparsity, step_epoch


class Iterative(PruningMethod):
    """Reach the target over ``anneal_epochs`` epochs, re-scoring the current weights at each pruning step.

    Epoch e trains at sparsity ``target * g(e / n)``: dense in epoch 0 (as annealing starts from P(0)),
    the target from epoch n on, exactly when annealing's mask becomes the target.

    Gradual magnitude pruning (``method.prune_every_steps = k > 0``, Zhu & Gupta's Δt): a pruning step
    before every k-th training step (global steps 0, k, 2k, ...) instead of once per epoch, at the sparsity
    of the same schedule at t = epoch + step / steps_per_epoch, and the target at the start of epoch n
    whether or not a step falls there, so ``at_target`` and ``epochs_at_target`` are those of every other
    method. k = steps_per_epoch is the per-epoch schedule exactly. Each step scores and sorts every prunable
    weight, so a small k costs a sort per k steps.
    """

    name = "iterative"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.epoch = 0
        # Random scores are drawn once, so successive steps remove nested random subsets.
        self._fixed_scores = super().scores() if self.pruning.criterion == "random" else None

    def scores(self) -> dict[str, torch.Tensor]:
        scores = self._fixed_scores or super().scores()
        # Weights already removed are removed first again: masks only ever shrink.
        return {n: s.masked_fill(self.masks[n].eval_mask == 0, float("-inf")) for n, s in scores.items()}

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        self.epoch = epoch
        if epoch > self.cfg.anneal_epochs:
            return
        if self.cfg.prune_every_steps and epoch < self.cfg.anneal_epochs:
            return  # gradual magnitude pruning: ``before_step`` prunes on its own grid of steps
        self.prune_to(epoch)

    def resume_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        self.epoch = epoch  # the masks of the steps taken are the model's buffers

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        every = self.cfg.prune_every_steps
        if every and epoch < self.cfg.anneal_epochs and is_pruning_step(epoch, step, steps_per_epoch, every):
            self.prune_to(step_epoch(epoch, step, steps_per_epoch))

    def prune_to(self, t: float) -> None:
        """Prune to the schedule's sparsity at t epochs (fractional between epochs with GMP)."""
        s = iterative_sparsity(t, self.cfg.anneal_epochs, self.sparsity, self.cfg.schedule)
        if s > 0:
            self.apply_final(self.target(s))

    @property
    def at_target(self) -> bool:
        return self.epoch >= self.cfg.anneal_epochs
