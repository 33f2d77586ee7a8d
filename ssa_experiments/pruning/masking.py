"""Where masks meet weights: a ``torch.nn.utils.parametrize`` parametrization, so any model works unchanged.

The dense weight is kept untouched in ``parametrizations.weight.original`` and the forward pass sees
``original * mask``. That matters for annealing: a weight sampled out in one step must keep its value so it
can be sampled back in later (multiplying the weight by the mask in place would destroy it).

Two masks per layer: ``train_mask`` (what training forward passes use: sampled for stochastic methods) and
``eval_mask`` (what evaluation uses: always deterministic). ``module.train()/eval()`` picks between them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class Mask(nn.Module):
    """Parametrization ``weight -> weight * mask``; masks are buffers: they move and save with the model."""

    def __init__(self, keep: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("train_mask", keep.to(dtype))
        self.register_buffer("eval_mask", keep.to(dtype))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * (self.train_mask if self.training else self.eval_mask)


def attach_masks(modules: dict[str, nn.Module]) -> dict[str, Mask]:
    """Register an all-ones Mask on each module's ``weight``; returns the parametrizations by module name."""
    masks = {}
    for name, module in modules.items():
        w = module.weight
        if parametrize.is_parametrized(module, "weight"):
            raise ValueError(f"{name}.weight is already parametrized")
        mask = Mask(torch.ones_like(w, dtype=torch.bool), w.dtype)
        parametrize.register_parametrization(module, "weight", mask)
        masks[name] = mask
    return masks


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The stored (unmasked) weight, whether or not the module is parametrized."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def set_mask(mask: Mask, keep: torch.Tensor, *, train: bool = True, eval: bool = True) -> None:
    """Copy a boolean keep-mask in place (in place so optimizer/state_dict references stay valid)."""
    if train:
        mask.train_mask.copy_(keep)
    if eval:
        mask.eval_mask.copy_(keep)


@torch.no_grad()
def zero_pruned(module: nn.Module, keep: torch.Tensor) -> None:
    """Zero the stored weights outside a *final* mask, so exported weights are truly sparse."""
    dense_weight(module).mul_(keep.to(dense_weight(module).dtype))


def export_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain state_dict (``x.weight`` = original * eval_mask, no mask buffers) that loads into an
    unpruned instance of the same architecture: the sparse network as any tool expects it.

    Built from the state_dict rather than with ``remove_parametrizations``: removing them from a deep copy
    also strips the property from the original, whose parametrized class the copy shares.
    """
    out = {}
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(".parametrizations.weight.original"):
            prefix = key.removesuffix("parametrizations.weight.original")
            out[prefix + "weight"] = value * state[prefix + "parametrizations.weight.0.eval_mask"]
        elif ".parametrizations.weight.0." not in key:
            out[key] = value
    return out


def mask_sparsity(masks: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """(global sparsity, per-layer sparsity) of {name: mask}; global weights every layer by its size."""
    zeros = {name: int((m == 0).sum()) for name, m in masks.items()}
    sizes = {name: m.numel() for name, m in masks.items()}
    total = sum(sizes.values())
    return sum(zeros.values()) / total, {name: zeros[name] / sizes[name] for name in masks}
