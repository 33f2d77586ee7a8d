"""A pruning method of one's own: one-shot pruning by *unit-normalised* magnitude.

Plain magnitude pruning with a global threshold compares raw ``|w|`` across the whole network, so an output
unit (a conv filter, a row of a linear layer) whose weights are all small can lose every one of them and
die. Here each weight's score is ``|w|`` divided by the mean ``|w|`` of its own output unit: the threshold
then cuts every unit at the same *relative* level, and each unit keeps its own largest weights. The sparsity
and its allocation (``pruning.scope``, ``pruning.pattern``) are the run's as for any built-in method.

Under ``pruning.scope=global`` the normalisation also levels the layers (every layer ends near the same
sparsity, which starves a small first convolution); run.sh therefore compares it with one-shot magnitude
pruning under ``pruning.scope=layerwise``, where the two differ only in how they rank a layer's weights.

Run it with ``method=custom method._target_=my_method.UnitNormalisedMagnitude`` and this folder on
``PYTHONPATH`` (see run.sh)."""

from __future__ import annotations

import torch

from ssa_experiments.pruning.methods.oneshot import OneShot


class UnitNormalisedMagnitude(OneShot):
    """One-shot pruning at the start of fine-tuning, ranked by |w| / mean |w| of the weight's output unit."""

    # The method.<key>s this method reads beyond the ones every method has: none (one-shot takes no schedule).
    reads = ()
    # Prunes all at once, at the first fine-tuning step (a gradual method reaches its target at
    # method.anneal_epochs and says gradual = True).
    gradual = False

    def scores(self) -> dict[str, torch.Tensor]:
        """``super().scores()`` is ``|w|`` of every prunable weight (the configured criterion), by layer name;
        dim 0 of a conv or linear weight is its output unit."""
        normalised = {}
        for name, score in super().scores().items():
            unit_mean = score.flatten(1).mean(1).clamp_min(torch.finfo(score.dtype).tiny)
            normalised[name] = score / unit_mean.view(-1, *([1] * (score.dim() - 1)))
        return normalised
