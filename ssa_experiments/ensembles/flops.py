"""Training FLOPs: what the ensembles table charges each way of building an ensemble.

A Prune-and-Tune ensemble costs one dense parent plus N short, sparse fine-tunings; a dense ensemble costs N
full trainings. The count is the usual estimate:

    forward FLOPs per sample   counted by ``torch.utils.flop_counter.FlopCounterMode`` on one batch (matmul,
                               convolution and attention ops, 2 FLOPs per multiply-add; normalisation,
                               activations and bias adds are not counted: they are a small share)
    training FLOPs             3 × forward (the backward pass costs about twice the forward) × samples seen
                               (steps × batch size)

Prunable layers are counted apart from the rest, so a sparse network's FLOPs scale its prunable layers by
their density (the fraction of their weights in use) while the dense rest (classifier head, attention
scores) is charged in full. Per-layer densities are used when known (the run summary's ``layer_sparsity``),
since global pruning leaves layers of very different cost at very different densities; otherwise one
density for all prunable layers. These are FLOPs a sparse kernel could skip, not time saved: unstructured
sparsity does not speed up the dense kernels our runs execute (a 99 %-sparse child trains as fast as its
dense parent here).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

BACKWARD_FACTOR = 3.0  # forward + backward ≈ 3 × forward


@dataclass(frozen=True)
class ForwardFlops:
    """Forward FLOPs of one sample: ``prunable`` per prunable layer (by module name) at full density, and
    ``rest``: everything else (dense head, attention scores, ...)."""

    prunable: dict[str, float]
    rest: float

    @property
    def dense(self) -> float:
        return self.rest + sum(self.prunable.values())

    def at_density(self, density: float | Mapping[str, float]) -> float:
        """Forward FLOPs per sample with the prunable layers at ``density`` (one number, or per layer; a layer
        missing from the mapping counts as dense)."""
        return self.rest + prunable_flops(self.prunable, density)

    def to_dict(self) -> dict[str, Any]:
        return {"prunable": dict(self.prunable), "rest": self.rest, "dense": self.dense}


def prunable_flops(layer_flops: Mapping[str, float], density: float | Mapping[str, float]) -> float:
    """Σ_l FLOPs_l × density_l: the prunable layers' FLOPs with only the weights in use counted."""
    if isinstance(density, Mapping):
        return sum(f * float(density.get(name, 1.0)) for name, f in layer_flops.items())
    return float(density) * sum(layer_flops.values())


def training_flops(forward_per_sample: float, steps: int, batch_size: int) -> float:
    """3 × forward × samples seen (steps × batch size; a short last batch is counted as full)."""
    return BACKWARD_FACTOR * forward_per_sample * steps * batch_size


def parent_flops(forward: ForwardFlops, epochs: int, steps_per_epoch: int, batch_size: int) -> float:
    """The dense parent's training FLOPs: every layer dense for ``epochs × steps_per_epoch`` steps."""
    return training_flops(forward.dense, epochs * steps_per_epoch, batch_size)


def dense_ensemble_flops(
    forward: ForwardFlops, size: int, epochs: int, steps_per_epoch: int, batch_size: int
) -> float:
    """A dense ensemble of ``size`` members, each trained from scratch like the parent."""
    return size * parent_flops(forward, epochs, steps_per_epoch, batch_size)


def child_flops(
    forward: ForwardFlops, steps: int, batch_size: int, density: float | Mapping[str, float]
) -> float:
    """One child's fine-tuning FLOPs at ``density`` (its mean density over the fine-tuning, see
    ``child_density``; the cost is linear in density, so the mean over steps gives the exact total)."""
    return training_flops(forward.at_density(density), steps, batch_size)


def dense_gradient_flops(
    forward: ForwardFlops, density: float | Mapping[str, float], updates: int, batch_size: int
) -> float:
    """RigL's extra cost: at each mask update the prunable layers' weight gradient is dense (it scores the
    inactive connections), so that step costs f_D instead of f_S for it (Evci et al. 2020: 2 f_S + f_D
    instead of 3 f_S per sample), the prunable layers only."""
    extra = sum(forward.prunable.values()) - prunable_flops(forward.prunable, density)
    return extra * updates * batch_size


def mean_expected_density(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The step-weighted mean of ``1 − expected_train_sparsity`` over a run's epoch rows (``metrics.jsonl``):
    the fraction of prunable weights in use while training, annealing included. None if no row has it."""
    total = weight = 0.0
    previous = 0
    for row in rows:
        if "expected_train_sparsity" not in row or "epoch" not in row:
            continue
        step = int(row.get("step", previous + 1))
        n = max(step - previous, 0) if "step" in row else 1
        previous = step
        total += n * (1.0 - float(row["expected_train_sparsity"]))
        weight += n
    return total / weight if weight else None


def layer_densities(
    final_layers: Mapping[str, float], final: float, mean_density: float | None
) -> dict[str, float]:
    """Per-layer mean densities over training, from the final per-layer densities and the global mean.

    While annealing, the weights to be removed are in use with a probability that does not depend on their
    layer (temperature annealing: exactly; random annealing: in expectation), so each layer keeps the same
    fraction ``q = (mean − final) / (1 − final)`` of its removed weights: d_l = final_l + (1 − final_l) · q.
    Without a mean (no metrics), the final densities.
    """
    if mean_density is None or final >= 1.0:
        return dict(final_layers)
    q = min(max((mean_density - final) / (1.0 - final), 0.0), 1.0)
    return {name: d + (1.0 - d) * q for name, d in final_layers.items()}


def child_density(
    summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] = ()
) -> float | dict[str, float]:
    """A completed child's mean density over its fine-tuning, from its ``summary.json`` and epoch rows.

    Per layer (``layer_sparsity``) when the summary has it, else one number: the mean expected density if
    the rows give it, else the final density ``1 − sparsity``.
    """
    final = 1.0 - float(summary.get("sparsity") or 0.0)
    mean = mean_expected_density(rows)
    layers = summary.get("layer_sparsity")
    if isinstance(layers, Mapping) and layers:
        return layer_densities({k: 1.0 - float(v) for k, v in layers.items()}, final, mean)
    return final if mean is None else mean


def run_child_flops(
    forward: ForwardFlops, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] = ()
) -> float:
    """A completed child run's fine-tuning FLOPs from its ``summary.json`` (``steps``, the config's
    ``train.batch_size``, its densities) and its ``metrics.jsonl`` rows (``results.read_metrics``)."""
    batch_size = int(summary["config"]["train"]["batch_size"])
    return child_flops(forward, int(summary["steps"]), batch_size, child_density(summary, rows))


def forward_flops(
    model: nn.Module,
    input_shape: Sequence[int],
    prunable: Iterable[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> ForwardFlops:
    """Forward FLOPs per sample of ``model`` on a batch of ``input_shape`` (N, C, ...), prunable layers apart.

    ``prunable``: module names (as in ``model.named_modules()`` and a summary's ``layer_sparsity``); default
    ``pruning.targets.prunable_modules(model)`` with its defaults. The batch runs on a copy of the model on
    the meta device: nothing is computed, so a Wide-ResNet costs no time, and ``model`` is left untouched.
    An ``nn.MultiheadAttention``'s prunable share is its q/k/v in-projection (and its ``out_proj`` when that
    is listed), counted analytically since the module calls them as functions.
    """
    if prunable is None:
        from ssa_experiments.pruning.targets import prunable_modules

        prunable = prunable_modules(model)
    names = list(prunable)
    meta = copy.deepcopy(model).to("meta").eval()
    modules = dict(meta.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"no module named {missing[0]!r} in the model")
    tokens = _count_attention_tokens(meta)
    batch = int(input_shape[0])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(torch.zeros(*input_shape, dtype=dtype, device="meta"))
    counts = counter.get_flop_counts()
    root = type(meta).__name__
    total = float(counter.get_total_flops())
    layers = {n: _module_flops(counts, root, n, modules, tokens) for n in names}
    per_sample = {n: f / batch for n, f in layers.items()}
    return ForwardFlops(prunable=per_sample, rest=total / batch - sum(per_sample.values()))


def _count_attention_tokens(model: nn.Module) -> dict[str, int]:
    """Hooks that record how many tokens each ``nn.MultiheadAttention`` projects (filled during the forward
    pass; the returned dict is written to in place)."""
    tokens: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):

            def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], n: str = name) -> None:
                query = args[0] if args else kwargs["query"]
                tokens[n] = tokens.get(n, 0) + query.numel() // m.embed_dim

            module.register_forward_pre_hook(hook, with_kwargs=True)
    return tokens


def _module_flops(
    counts: dict[str, dict[Any, int]],
    root: str,
    name: str,
    modules: dict[str, nn.Module],
    tokens: dict[str, int],
) -> float:
    """A prunable module's forward FLOPs on the batch (FlopCounterMode names modules ``<Root>.<name>``)."""
    module = modules[name]
    if isinstance(module, nn.MultiheadAttention):
        return 2.0 * tokens.get(name, 0) * module.in_proj_weight.numel()
    parent_name, _, leaf = name.rpartition(".")
    parent = modules.get(parent_name)
    if leaf == "out_proj" and isinstance(parent, nn.MultiheadAttention):
        return 2.0 * tokens.get(parent_name, 0) * module.weight.numel()
    return float(sum(counts.get(f"{root}.{name}", {}).values()))
