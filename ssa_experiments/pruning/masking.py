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


def _dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense in one of the standard layouts: contiguous or channels-last (2-D/3-D)."""
    if t.is_contiguous():
        return True
    if t.dim() == 4:
        return t.is_contiguous(memory_format=torch.channels_last)
    return t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d)


def dense_views(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of the 1-D ``flat`` with the shapes and memory layouts of ``like``.

    Each view covers its own ``numel`` elements of ``flat`` with the same strides as its model (contiguous or
    channels-last; other layouts get contiguous views), so views of several flat buffers made from the same
    ``like`` line up element for element: one elementwise op on the flat buffers is that op on every layer.
    """
    views, offset = [], 0
    for t in like:
        stride = t.stride() if _dense(t) else torch.empty(t.shape, device="meta").stride()
        views.append(flat.as_strided(t.shape, stride, flat.storage_offset() + offset))
        offset += t.numel()
    if offset != flat.numel():
        raise ValueError(f"flat buffer holds {flat.numel()} elements, the tensors {offset}")
    return views


def share_train_masks(masks: list[Mask], flat: torch.Tensor) -> list[torch.Tensor]:
    """Make every ``train_mask`` a view of ``flat`` (see ``dense_views``), keeping its values and layout.

    A stochastic method then writes every layer's sample with one kernel. The buffers stay ordinary buffers:
    state_dict, load_state_dict and in-place updates are unchanged. Moving or casting the model afterwards
    gives them new storage, which ``shares_train_masks`` detects. Returns the views.
    """
    views = dense_views(flat, [m.train_mask for m in masks])
    for mask, view in zip(masks, views, strict=True):
        view.copy_(mask.train_mask)
        mask.train_mask = view  # re-registers the buffer (nn.Module.__setattr__)
    return views


def shares_train_masks(masks: list[Mask], views: list[torch.Tensor]) -> bool:
    """Whether each mask's ``train_mask`` is still the view ``share_train_masks`` made of it."""
    return all(m.train_mask.data_ptr() == v.data_ptr() for m, v in zip(masks, views, strict=True))


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
