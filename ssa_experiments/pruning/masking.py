"""Where masks meet weights: a ``torch.nn.utils.parametrize`` parametrization, so any model works unchanged.

The stored weight lives in ``parametrizations.<name>.original`` (``name`` is ``weight``, or
``in_proj_weight`` for ``nn.MultiheadAttention``) and the forward pass sees ``original * mask``. The mask
never writes into the stored weight: a weight sampled out in one step keeps its value so it can be sampled
back in later (multiplying in place would destroy it). The optimizer may still move a sampled-out weight
(momentum from earlier steps; weight decay unless ``method.decay_sampled_out=false``). Once a mask is final,
the removed weights and their optimizer state are zeroed (``PruningMethod.apply_final``, ``methods/base.py``),
so they stay exactly zero and a saved model is truly sparse. Where a mask is sampled: ``sampling.py``.

Two masks per layer: ``train_mask`` (what training forward passes use: sampled for stochastic methods; in
the weight's dtype, since it is multiplied every step) and ``eval_mask`` (the deterministic target, bool:
1 byte per weight). ``module.train()/eval()`` picks between them.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.utils import parametrize


def weight_name(module: nn.Module) -> str:
    """The name of the parameter pruned in ``module``: one weight matrix per prunable module."""
    return "in_proj_weight" if isinstance(module, nn.MultiheadAttention) else "weight"


class Mask(nn.Module):
    """Parametrization ``weight -> weight * mask``; masks are buffers: they move and save with the model."""

    def __init__(self, keep: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("train_mask", keep.to(dtype))
        self.register_buffer("eval_mask", keep.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            return weight * self.train_mask
        return weight * self.eval_mask  # bool: promoted to the weight's dtype


def attach_masks(modules: dict[str, nn.Module]) -> dict[str, Mask]:
    """Register an all-ones Mask on each module's pruned weight; returns the Masks by module name."""
    masks = {}
    for name, module in modules.items():
        param = weight_name(module)
        w = getattr(module, param)
        if parametrize.is_parametrized(module, param):
            raise ValueError(f"{name}.{param} is already parametrized")
        mask = Mask(torch.ones_like(w, dtype=torch.bool), w.dtype)
        parametrize.register_parametrization(module, param, mask)
        masks[name] = mask
    return masks


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The stored (unmasked) pruned weight, whether or not the module is parametrized."""
    param = weight_name(module)
    if parametrize.is_parametrized(module, param):
        return getattr(module.parametrizations, param).original
    return getattr(module, param)


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


def share_masks(masks: list[Mask], flat: torch.Tensor, attr: str = "train_mask") -> list[torch.Tensor]:
    """Make every mask's ``attr`` buffer a view of ``flat`` (see ``dense_views``), keeping values and layout.

    A stochastic method then writes every layer's sample with one kernel. The buffers stay ordinary buffers:
    state_dict, load_state_dict and in-place updates are unchanged. Moving or casting the model afterwards
    gives them new storage, which ``shares_masks`` detects. Returns the views.
    """
    views = dense_views(flat, [getattr(m, attr) for m in masks])
    for mask, view in zip(masks, views, strict=True):
        view.copy_(getattr(mask, attr))
        setattr(mask, attr, view)  # re-registers the buffer (nn.Module.__setattr__)
    return views


def shares_masks(masks: list[Mask], views: list[torch.Tensor], attr: str = "train_mask") -> bool:
    """Whether each mask's ``attr`` buffer is still the view ``share_masks`` made of it."""
    return all(getattr(m, attr).data_ptr() == v.data_ptr() for m, v in zip(masks, views, strict=True))


@torch.no_grad()
def zero_pruned(
    module: nn.Module, keep: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Zero the stored weights outside a *final* mask, and their optimizer state.

    The mask alone zeroes their gradient, but momentum (or Adam's moments) accumulated before the mask became
    final would keep moving them; with that state cleared, weight decay and momentum both act on exact zeros,
    so the removed weights stay zero and a saved model is truly sparse.
    """
    weight = dense_weight(module)
    weight.mul_(keep.to(weight.dtype))
    state = optimizer.state.get(weight, {}) if optimizer is not None else {}
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.shape == weight.shape:
            value.mul_(keep.to(value.dtype))


def export_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A plain state_dict (``x.weight`` = original * eval_mask, no mask buffers) that loads into an
    unpruned instance of the same architecture: the sparse network as any tool expects it.

    Built from the state_dict rather than with ``remove_parametrizations``: removing them from a deep copy
    also strips the property from the original, whose parametrized class the copy shares.
    """
    out = {}
    state = model.state_dict()
    for key, value in state.items():
        match = _PARAMETRIZED_KEY.fullmatch(key)
        if match is None:
            out[key] = value
        elif match["rest"] == "original":
            prefix, param = match["prefix"] or "", match["param"]
            out[prefix + param] = value * state[f"{prefix}parametrizations.{param}.0.eval_mask"].to(
                value.dtype
            )
    return out


_PARAMETRIZED_KEY = re.compile(
    r"(?P<prefix>.*\.)?parametrizations\.(?P<param>[^.]+)\.(?P<rest>original|0\..+)"
)


def mask_sparsity(masks: dict[str, torch.Tensor]) -> tuple[float, dict[str, float]]:
    """(global sparsity, per-layer sparsity) of {name: mask}; global weights every layer by its size."""
    zeros = {name: int((m == 0).sum()) for name, m in masks.items()}
    sizes = {name: m.numel() for name, m in masks.items()}
    total = sum(sizes.values())
    return sum(zeros.values()) / total, {name: zeros[name] / sizes[name] for name in masks}
