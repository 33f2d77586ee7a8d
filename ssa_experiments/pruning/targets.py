"""Which weights are prunable, how they are scored, and the target mask at a given sparsity.

Sparsity is always stated as a fraction of the *prunable* weights (conv and linear weights, and the packed
q/k/v in-projection of ``nn.MultiheadAttention``, minus the layers kept dense), never of the whole model: that
is the number the paper's x-axes use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ssa_experiments.config.schema import ConfigError, parse_pattern

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Where torchvision (and many hand-written) models keep their classifier, tried in this order when the model
# has no timm ``get_classifier()``.
HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")
# What chooses a target instead of ``pruning.criterion``: scores from the weights of the prunable layers
# (e.g. an ensemble member's, ``ensembles/targets.py``); the lowest are removed.
Scorer = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def _weight_transforming_types() -> tuple[type[nn.Module], ...]:
    """Conv/linear subclasses whose forward() transforms the stored weight before using it.

    A mask is a parametrization of the stored weight, so it acts *before* such a transform, which undoes it:
    standardising a masked weight (subtract the mean, divide by the std) makes the zeros non-zero again.
    These are timm's weight-standardised convolutions (BiT/ResNetV2 ``*_bit``, NFNet, NF-ResNet, ...); the
    other conv/linear subclasses in ``timm.layers`` (``Conv2dSame``, ``Linear``) use the weight as stored.
    """
    try:
        from timm.layers import ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d, StdConv2dSame
    except ImportError:  # timm is optional for the pruning code
        return ()
    return (StdConv2d, StdConv2dSame, ScaledStdConv2d, ScaledStdConv2dSame)


def _unmaskable_reason(module: nn.Module) -> str | None:
    """Why a mask on ``module``'s pruned weight would not reach its forward pass, or None if it would."""
    transforming = _weight_transforming_types()
    if transforming and isinstance(module, transforming):
        return (
            "standardises its weight inside forward(): a pruning mask applied to the stored weight is undone "
            "by the standardisation, so the layer would run with dense weights while the report counts them "
            "as pruned. Weight-standardised models (BiT/ResNetV2 *_bit, NFNet, NF-ResNet) are not supported; "
            "choose a model with plain convolutions"
        )
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    if any(isinstance(h, (WeightNorm, SpectralNorm)) for h in module._forward_pre_hooks.values()):
        return (
            "recomputes its weight before every forward pass (a torch.nn.utils.weight_norm or spectral_norm "
            "hook), which would overwrite or undo a pruning mask; not supported"
        )
    if isinstance(module, nn.MultiheadAttention) and not module._qkv_same_embed_dim:
        return (
            "has separate q/k/v projection weights (kdim/vdim differ from embed_dim); only the packed "
            "in_proj_weight of an nn.MultiheadAttention is pruned, so these weights would be neither pruned "
            "nor counted; not supported"
        )
    return None


def _declared_classifiers(model: nn.Module) -> list[nn.Module] | None:
    """The classifier(s) the model names through its own API, or None if it has no such API.

    timm: ``get_classifier()``, which returns a module, a tuple of modules (distilled DeiT: ``(head,
    head_dist)``) or ``Identity`` when built without classes. Otherwise the first of ``HEAD_ATTRIBUTES`` that
    is a module (torchvision: ``fc`` in ResNets, ``classifier`` in VGG/MobileNet/EfficientNet/DenseNet,
    ``heads`` in ViT, ``head`` in Swin).
    """
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        found = get_classifier()
        items = found if isinstance(found, (tuple, list)) else (found,)
        return [m for m in items if isinstance(m, nn.Module)]
    for attr in HEAD_ATTRIBUTES:
        found = getattr(model, attr, None)
        if isinstance(found, nn.Module):
            return [found]
    return None


def classifier_heads(model: nn.Module) -> dict[str, nn.Module]:
    """The conv/linear module(s) that produce the model's outputs, by name, in registration order.

    Each classifier the model names (see ``_declared_classifiers``) contributes its *last* conv/linear module
    in registration order: the layer that outputs the logits (the classifier itself when it is a Linear or a
    1x1 Conv, e.g. ResNetV2's ``head.fc``). The hidden layers of a classifier block (VGG's ``classifier.0``
    and ``classifier.3``, most of VGG's weights) are ordinary prunable layers. A model that names a
    classifier without weights (timm with ``num_classes=0``: ``Identity``) has no head. A model with no such
    API (our ``nn.Sequential`` models) falls back to its last conv/linear module in registration order.
    """
    names = {id(m): name for name, m in model.named_modules()}
    declared = _declared_classifiers(model)
    if declared is None:
        declared = [model]  # fallback: the last conv/linear of the whole model
    heads: dict[int, nn.Module] = {}
    for classifier in declared:
        last = None
        for m in classifier.modules():
            if isinstance(m, PRUNABLE_TYPES):
                last = m
        if last is not None and id(last) in names:
            heads[id(last)] = last
    return {name: m for name, m in model.named_modules() if id(m) in heads}


def prunable_layers(model: nn.Module) -> list[str]:
    """The names of every layer the masks can act on, whatever keep_first/last_layer keep dense."""
    return [n for n, m in model.named_modules() if isinstance(m, (*PRUNABLE_TYPES, nn.MultiheadAttention))]


def prunable_modules(
    model: nn.Module, keep_first_layer: bool = False, keep_last_layer: bool = True
) -> dict[str, nn.Module]:
    """Modules whose pruned weight (``masking.weight_name``) may be pruned, in registration order.

    Conv and linear modules (``weight``) and ``nn.MultiheadAttention`` (its packed q/k/v ``in_proj_weight``;
    its ``out_proj`` is an ``nn.Linear`` and is listed on its own). Biases and normalisation layers are never
    pruned. ``keep_last_layer`` keeps every classifier head dense (``classifier_heads``: both heads of a
    distilled DeiT); ``keep_first_layer`` keeps the first remaining module in registration order (the stem).

    Raises ``ConfigError`` (field ``model``) when a module to be pruned would not see its mask: a
    weight-standardised convolution, a weight_norm/spectral_norm hook, or an ``nn.MultiheadAttention`` with
    separate q/k/v weights. Call it right after building the model to fail before any training.
    """
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, (*PRUNABLE_TYPES, nn.MultiheadAttention))
    ]
    if keep_last_layer:
        heads = classifier_heads(model)
        found = [(name, m) for name, m in found if name not in heads]
    if keep_first_layer:
        found = found[1:]
    if not found:
        raise ConfigError(
            "pruning.keep_first_layer" if keep_first_layer else "pruning.keep_last_layer",
            "the model has no prunable conv/linear layer left after keep_first_layer/keep_last_layer",
        )
    refused = [(name, m, reason) for name, m in found if (reason := _unmaskable_reason(m)) is not None]
    if refused:
        name, m, reason = refused[0]
        more = f" (as are {len(refused) - 1} more layers)" if len(refused) > 1 else ""
        cls = f"{type(m).__module__}.{type(m).__qualname__}"
        raise ConfigError("model", f"layer {name!r} is a {cls}{more}, which {reason}")
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


def erk_densities(shapes: dict[str, Sequence[int]], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities (Evci et al. 2020) of layers of weight ``shapes`` at overall ``density``.

    Each layer's density is ``eps * sum(shape) / prod(shape)``: (n_out + n_in + k_h + k_w) / (n_out n_in k_h
    k_w) for a 2-D conv, (n_in + n_out) / (n_in n_out) for a linear layer. ``eps`` is chosen so the layers
    keep ``density`` of all their weights together. A layer the formula would give a density > 1 is kept
    dense and ``eps`` is solved again for the others, repeatedly, adding on each pass the layers with the
    largest raw factor, as google-research/rigl's ``sparse_utils`` does: so the densities keep their ERK
    ratios wherever they can, and the budget still adds up.
    """
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / sizes[n] for n, s in shapes.items()}
    total = sum(sizes.values())
    dense: set[str] = set()
    while True:
        sparse = [n for n in shapes if n not in dense]
        if not sparse:  # density 1: every layer dense
            return dict.fromkeys(shapes, 1.0)
        budget = density * total - sum(sizes[n] for n in dense)  # weights the non-dense layers keep
        eps = budget / sum(raw[n] * sizes[n] for n in sparse)
        largest = max(raw[n] for n in sparse)
        if eps * largest <= 1.0:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.update(n for n in sparse if raw[n] == largest)


def layer_densities(shapes: dict[str, Sequence[int]], sparsity: float, scope: str) -> dict[str, float] | None:
    """Each layer's density before scores are seen: ``layerwise``: 1 - sparsity everywhere; ``erk``:
    ``erk_densities``; ``global``: None (one threshold: the scores decide how many each layer keeps).

    What a method that draws its own masks (a random sparse initialisation) asks for its per-layer budget.
    """
    if scope == "global":
        return None
    if scope == "layerwise":
        return dict.fromkeys(shapes, 1.0 - sparsity)
    if scope == "erk":
        return erk_densities(shapes, 1.0 - sparsity)
    raise ValueError(f"unknown pruning scope {scope!r}")


def _by_layer(scores: dict[str, torch.Tensor], sparsities: dict[str, float]) -> dict[str, torch.Tensor]:
    """Each layer removes its own sparsity's share of its weights, the lowest scores."""
    return {
        n: _lowest(s.flatten(), n_to_prune(sparsities[n], s.numel())).view_as(s) for n, s in scores.items()
    }


def _global(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """One threshold over all layers: the ``k`` lowest scores of all removed."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = _lowest(flat, k)
    out, offset = {}, 0
    for name, s in scores.items():
        out[name] = keep[offset : offset + s.numel()].view_as(s)
        offset += s.numel()
    return out


def _input_last(t: torch.Tensor) -> torch.Tensor:
    """A weight (out, in, *kernel) as (out, *kernel, in): the input dimension last, so consecutive elements
    of a row are consecutive input channels (NVIDIA's 2:4 layout for linear layers and convolutions)."""
    return t.movedim(1, -1) if t.dim() > 2 else t


def check_pattern(shapes: dict[str, Sequence[int]], pattern: str) -> None:
    """Refuse (field ``pruning.pattern``) a layer whose input dimension is not a whole number of groups."""
    nm = parse_pattern(pattern)
    if nm is None:
        return
    m = nm[1]
    bad = [(name, s[1]) for name, s in shapes.items() if len(s) < 2 or s[1] % m]
    if bad:
        name, n_in = bad[0]
        raise ConfigError(
            "pruning.pattern",
            f"{pattern} groups {m} consecutive input weights, but layer {name!r} has {n_in} inputs (not a "
            f"multiple of {m}){f' and {len(bad) - 1} more layers' if len(bad) > 1 else ''}; keep it dense "
            "(pruning.keep_first_layer=true for a stem on RGB images) or use another pattern",
        )


def nm_masks(scores: dict[str, torch.Tensor], n: int, m: int) -> dict[str, torch.Tensor]:
    """N:M keep-masks: in every group of ``m`` consecutive input weights of an output (and kernel position),
    the ``n`` highest scores are kept; ties go to the lower input index."""
    out = {}
    for name, s in scores.items():
        rows = _input_last(s).reshape(-1, m)
        top = torch.argsort(rows, dim=1, descending=True, stable=True)[:, :n]
        keep = torch.zeros_like(rows, dtype=torch.bool).scatter_(1, top, True)
        moved = keep.view(_input_last(s).shape)
        out[name] = moved.movedim(-1, 1) if s.dim() > 2 else moved
    return out


def _nm_target(scores: dict[str, torch.Tensor], sparsity: float, n: int, m: int) -> dict[str, torch.Tensor]:
    """The N:M mask at its own sparsity 1 - n/m; below it (an iterative step on the way), the lowest-scoring
    ``sparsity`` fraction of all weights, chosen among those the N:M mask removes, so a path of such steps
    nests and ends on exactly n of every m."""
    final = nm_masks(scores, n, m)
    total = sum(s.numel() for s in scores.values())
    removed = total - sum(int(k.sum()) for k in final.values())
    k = n_to_prune(sparsity, total)
    if k > removed:
        raise ValueError(f"pattern {n}:{m} removes {removed} of {total} weights, asked for {k}")
    if k == removed:
        return final
    protected = {name: s.masked_fill(final[name], float("inf")) for name, s in scores.items()}
    return _global(protected, k)


def target_masks(
    scores: dict[str, torch.Tensor],
    sparsity: float,
    scope: str = "global",
    pattern: str = "unstructured",
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks removing the lowest-scoring ``sparsity`` fraction.

    global: one threshold over all layers (layers end at different sparsities); layerwise: every layer at
    ``sparsity``; erk: each layer at its Erdős–Rényi-Kernel density (``erk_densities``). ``pattern`` "n:m"
    keeps the n highest scores of every m consecutive input weights instead (``nm_masks``; the scope is not
    read: every layer is at 1 - n/m). Scores of -inf are removed first: that is how an iterative step keeps
    earlier removals.
    """
    nm = parse_pattern(pattern)
    if nm is not None:
        return _nm_target(scores, sparsity, *nm)
    if scope == "layerwise":  # the sparsity itself, not 1 - (1 - sparsity): the count rounds the same
        return _by_layer(scores, dict.fromkeys(scores, sparsity))
    densities = layer_densities({n: tuple(s.shape) for n, s in scores.items()}, sparsity, scope)
    if densities is not None:
        return _by_layer(scores, {n: 1.0 - d for n, d in densities.items()})
    return _global(scores, n_to_prune(sparsity, sum(s.numel() for s in scores.values())))
