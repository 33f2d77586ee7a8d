"""The sanity controls (``pruning.control``; Frankle et al. 2021, Su et al. 2020): does the mask matter?

``shuffle_layerwise`` keeps how many weights each layer keeps and moves them to random positions;
``reinit`` keeps the mask and draws the weights again from the model's initialisation. Against the
unmodified target they separate *which* weights a criterion keeps from *how many per layer* it keeps, and
the mask from the weights it was chosen with.
"""

from __future__ import annotations

import torch
from torch import nn

from ssa_experiments.config.seeds import derived_seed
from ssa_experiments.pruning.masking import Mask, dense_weight


def shuffle_layerwise(keep: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Each layer keeps as many weights as in ``keep``, at the first positions of a random order of its own
    (drawn on the CPU from ``seed`` and the layer's index, the same at every call). A fixed order makes the
    shuffled masks of a gradual method nest exactly when their counts shrink, as the unshuffled ones do."""
    out = {}
    for i, (name, k) in enumerate(keep.items()):
        generator = torch.Generator().manual_seed(derived_seed(seed, i, "shuffle_layerwise"))
        order = torch.randperm(k.numel(), generator=generator).to(k.device)
        shuffled = torch.zeros(k.numel(), dtype=torch.bool, device=k.device)
        shuffled[order[: int(k.sum())]] = True
        out[name] = shuffled.view_as(k)
    return out


@torch.no_grad()
def reinitialise(modules: dict[str, nn.Module], masks: dict[str, Mask], fresh: dict[str, nn.Module]) -> None:
    """Give each masked layer the pruned weight of ``fresh`` (a newly initialised copy of the model's layers),
    zero where the train mask in force is 0 (removed weights stay exactly zero; annealing's weights outside
    the target keep a fresh value to be sampled in). Biases and normalisation layers are not touched."""
    for name, module in modules.items():
        weight = dense_weight(module)
        new = dense_weight(fresh[name]).to(device=weight.device, dtype=weight.dtype)
        weight.copy_(new * masks[name].train_mask.ne(0).to(weight.dtype))
