"""Which weights are prunable, how they are scored, and the target mask at a given sparsity.

Sparsity is always stated as a fraction of the *prunable* weights (conv and linear weights, minus the layers
kept dense), never of the whole model: that is the number the paper's x-axes use.
"""

from __future__ import annotations

import torch
from torch import nn

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_modules(
    model: nn.Module, keep_first_layer: bool = False, keep_last_layer: bool = True
) -> dict[str, nn.Module]:
    """Conv and linear modules whose ``weight`` may be pruned, in registration order.

    Biases and normalisation layers are never pruned. "First" and "last" are the first and last conv/linear
    module in registration order: the stem and the classifier head in torchvision and timm models.
    """
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    if keep_first_layer:
        found = found[1:]
    if keep_last_layer:
        found = found[:-1]
    if not found:
        raise ValueError("the model has no prunable conv/linear layer left after keep_first/last_layer")
    return dict(found)


def magnitude_scores(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: w.detach().abs().float() for name, w in weights.items()}


def random_scores(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """I.i.d. uniform scores from ``seed``, drawn on the CPU so every device gives the same subnetwork."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(w.shape, generator=g).to(w.device) for name, w in weights.items()}


def _lowest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask with the ``k`` lowest scores removed; ties go to the lower index (stable sort)."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        keep[torch.argsort(flat, stable=True)[:k]] = False
    return keep


def n_to_prune(sparsity: float, n: int) -> int:
    """Weights removed out of ``n``: ``round(sparsity * n)``, exactly as ``torch.nn.utils.prune`` counts."""
    return round(sparsity * n)


def target_masks(
    scores: dict[str, torch.Tensor], sparsity: float, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks removing the lowest-scoring ``sparsity`` fraction.

    global: one threshold over all layers (layers end at different sparsities); layerwise: every layer at
    ``sparsity``. Scores of -inf are removed first: that is how an iterative step keeps earlier removals.
    """
    if scope == "layerwise":
        return {
            n: _lowest(s.flatten(), n_to_prune(sparsity, s.numel())).view_as(s) for n, s in scores.items()
        }
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = _lowest(flat, n_to_prune(sparsity, flat.numel()))
    out, offset = {}, 0
    for name, s in scores.items():
        out[name] = keep[offset : offset + s.numel()].view_as(s)
        offset += s.numel()
    return out
