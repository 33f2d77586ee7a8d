"""The criteria that need more than the weights: SNIP and GraSP (training batches) and SynFlow (the network).

Each returns scores per prunable layer, the lowest removed by ``targets.target_masks``, so any method that
chooses its target from scores (one-shot, iterative, annealing, ...) takes any criterion. Every criterion
scores the *dense* stored weights, as magnitude does: the network with every mask set to one (a weight
already removed is zero in storage, so it scores zero, and the methods that keep removals give it -inf).

They compute on a deep copy of the model, so the model itself is left exactly as it was: BatchNorm's running
statistics, the masks, the RNG. The copy runs in train mode for SNIP and GraSP (batch statistics, as in the
references' training graphs) and in eval mode for SynFlow (BatchNorm as a fixed affine map, Tanaka et al.).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ssa_experiments.pruning.masking import Mask, attach_masks, dense_weight, set_mask

# Wang et al.'s code divides the logits by T = 200 before the loss, so the softmax is far from saturated and
# the Hessian-gradient product is not ~0 at a confident initialisation; kept as in the reference.
GRASP_TEMPERATURE = 200.0


@dataclass(frozen=True)
class ScoreData:
    """What the data-dependent criteria may see: a fixed list of training batches (on the model's device),
    the run's loss and one sample's shape (SynFlow's all-ones input). Built by the training run's set-up
    (``training/run.py``), which is where batches exist; the pruning package never reads a data set."""

    batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
    loss_fn: nn.Module
    input_shape: tuple[int, ...]


SCORING_SEED = 0


@contextmanager
def private_rng(device: torch.device) -> Iterator[None]:
    """Scoring draws (dropout in the copy's forward passes) from a fixed seed, and the global RNG of the CPU
    and of ``device`` is as it was afterwards: scoring never shifts a run's later draws, and its scores are
    a function of the weights and batches alone."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(SCORING_SEED)
        yield


def _dense_copy(model: nn.Module, names: Sequence[str]) -> tuple[nn.Module, dict[str, nn.Module]]:
    """A deep copy of ``model`` with every mask of its prunable layers ``names`` set to one (attached where
    the layer has none yet, so SynFlow's rounds can mask it), and those layers by name."""
    net = copy.deepcopy(model)
    found = dict(net.named_modules())
    modules = {n: found[n] for n in names}
    bare = {n: m for n, m in modules.items() if not isinstance(_mask_of(m), Mask)}
    attach_masks(bare)
    with torch.no_grad():
        for m in modules.values():
            mask = _mask_of(m)
            set_mask(mask, torch.ones_like(mask.eval_mask))
    return net, modules


def _mask_of(module: nn.Module) -> Mask | None:
    from torch.nn.utils import parametrize

    from ssa_experiments.pruning.masking import weight_name

    name = weight_name(module)
    if not parametrize.is_parametrized(module, name):
        return None
    return next((p for p in getattr(module.parametrizations, name) if isinstance(p, Mask)), None)


def _loss_grads(
    net: nn.Module, weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module,
    temperature: float = 1.0, create_graph: bool = False,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    return torch.autograd.grad(loss_fn(net(x) / temperature, y), weights, create_graph=create_graph)


def snip_scores(model: nn.Module, names: Sequence[str], data: ScoreData) -> dict[str, torch.Tensor]:
    """SNIP's connection sensitivity (Lee et al. 2019): |g ⊙ w|, g the gradient of the loss summed over
    ``data.batches`` (each batch's mean loss) with respect to the dense weights w."""
    net, modules = _dense_copy(model, names)
    net.train()
    weights = [dense_weight(m) for m in modules.values()]
    total = [torch.zeros_like(w) for w in weights]
    for x, y in data.batches:
        for t, g in zip(total, _loss_grads(net, weights, x, y, data.loss_fn), strict=True):
            t.add_(g)
    return {n: (g * w).detach().abs().float() for n, g, w in zip(modules, total, weights, strict=True)}


def grasp_scores(
    model: nn.Module, names: Sequence[str], data: ScoreData, temperature: float = GRASP_TEMPERATURE
) -> dict[str, torch.Tensor]:
    """GraSP (Wang et al. 2020), negated to fit "the lowest are removed".

    GraSP's score is S = -w ⊙ (H g): g the gradient of the loss (logits / ``temperature``) summed over the
    batches, H g the Hessian-gradient product by double backpropagation (the gradient of z = gᵀ ∇L, g held
    fixed, summed over the batches). Wang et al.'s code removes the weights with the *highest* S (removing
    them reduces the gradient norm least or increases it); this returns -S = w ⊙ (H g), whose lowest
    ``target_masks`` removes: the same weights.
    """
    net, modules = _dense_copy(model, names)
    net.train()
    weights = [dense_weight(m) for m in modules.values()]
    g = [torch.zeros_like(w) for w in weights]
    for x, y in data.batches:
        for t, gb in zip(g, _loss_grads(net, weights, x, y, data.loss_fn, temperature), strict=True):
            t.add_(gb)
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in data.batches:
        grads = _loss_grads(net, weights, x, y, data.loss_fn, temperature, create_graph=True)
        z = sum((gi * fi).sum() for gi, fi in zip(g, grads, strict=True))
        for t, h in zip(hg, torch.autograd.grad(z, weights), strict=True):
            t.add_(h)
    return {n: (w * h).detach().float() for n, w, h in zip(modules, weights, hg, strict=True)}


def synflow_scores(
    model: nn.Module,
    names: Sequence[str],
    input_shape: Sequence[int],
    sparsity: float,
    rounds: int,
    prune: Callable[[dict[str, torch.Tensor], float], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """Iterative Synaptic Flow (Tanaka et al. 2020), data-free: scores whose lowest ``sparsity`` fraction is
    the mask of its last round.

    On a float64 copy with every parameter and buffer replaced by its absolute value (BatchNorm in eval mode:
    a positive affine map, as the paper's code linearises it), R = 1ᵀ f(1) for an all-ones input of one
    sample's shape, scores |θ ⊙ ∂R/∂θ|. Round k = 1..rounds scores the network masked by the rounds before
    and prunes to the exponential schedule's sparsity 1 - (1 - sparsity)^(k / rounds) with ``prune(scores,
    sparsity)`` (the run's scope and pattern: ``target_masks``). Returned: round ``rounds``' scores, -inf
    where an earlier round removed the weight, so ``prune(scores, sparsity)`` is that round's mask.
    """
    net, modules = _dense_copy(model, names)
    net.double().eval()
    with torch.no_grad():
        for t in (*net.parameters(), *net.buffers()):
            if t.is_floating_point():
                t.abs_()
    device = dense_weight(next(iter(modules.values()))).device
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    weights = [dense_weight(m) for m in modules.values()]
    keep = {n: torch.ones_like(w, dtype=torch.bool) for n, w in zip(modules, weights, strict=True)}
    scores: dict[str, torch.Tensor] = {}
    for k in range(1, rounds + 1):
        with torch.no_grad():
            for n, m in modules.items():
                set_mask(_mask_of(m), keep[n])
        grads = torch.autograd.grad(net(x).sum(), weights)
        scores = {
            n: (g * w).detach().abs().float().masked_fill(~keep[n], float("-inf"))
            for n, g, w in zip(modules, grads, weights, strict=True)
        }
        if k < rounds:
            keep = prune(scores, 1.0 - (1.0 - sparsity) ** (k / rounds))
    return scores
