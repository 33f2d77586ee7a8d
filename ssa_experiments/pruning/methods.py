"""The pruning methods, all behind one interface the training loop calls.

    start(model)                 once, on the trained dense parent: choose the target, attach masks
    begin_epoch(epoch, steps)    before each epoch: iterative steps, per-epoch annealing updates
    before_step(epoch, step, n)  before each training forward pass: stochastic masks are sampled here
    report()                     sparsity accounting of the mask in force, logged every epoch
    state_dict()/load_state_dict only what the model's own state_dict does not hold (RNG state)

The masks themselves are buffers of the model (see ``masking.py``), so a model checkpoint holds them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssa_experiments.config import MethodConfig, PruningConfig
from ssa_experiments.pruning.masking import (
    Mask,
    attach_masks,
    dense_views,
    dense_weight,
    mask_sparsity,
    set_mask,
    share_train_masks,
    shares_train_masks,
    zero_pruned,
)
from ssa_experiments.pruning.schedules import anneal_factor, anneal_progress, iterative_sparsity
from ssa_experiments.pruning.targets import magnitude_scores, prunable_modules, random_scores, target_masks


def annealed_probabilities(
    keep: torch.Tensor, p0: torch.Tensor, factor: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """P(t): 1 on the target subnetwork, ``p0 * s(t/n)`` elsewhere (``p0`` is 0 on the target).

    ``keep`` is the target as 0/1 in P's dtype or as bool; ``out`` makes it one pass with no allocation.
    """
    return torch.add(keep.to(p0.dtype), p0, alpha=factor, out=out)


def sample_keep(
    prob: torch.Tensor,
    generator: torch.Generator,
    u: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """M ~ Bernoulli(P) as ``U < P`` with U ~ Uniform[0, 1): P = 1 always keeps, P = 0 never does.

    ``u`` (a buffer for U) and ``out`` (the mask, any dtype) let the per-step call allocate nothing.
    """
    if u is None:
        u = torch.empty_like(prob)
    u.uniform_(generator=generator)  # the same numbers torch.rand(..., generator=) draws
    return torch.lt(u, prob, out=out)


log = logging.getLogger(__name__)


class PruningMethod:
    """Dense: the reference. No masks; reports the (zero) sparsity of the prunable weights."""

    name = "dense"
    stochastic = False

    def __init__(self, method: MethodConfig, pruning: PruningConfig, sparsity: float, seed: int) -> None:
        self.cfg, self.pruning, self.sparsity, self.seed = method, pruning, sparsity, seed
        self.modules: dict[str, nn.Module] = {}
        self.masks: dict[str, Mask] = {}

    def start(self, model: nn.Module) -> None:
        self.modules = prunable_modules(model, self.pruning.keep_first_layer, self.pruning.keep_last_layer)

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        pass

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        pass

    def report(self) -> dict[str, Any]:
        if not self.masks:
            sizes = {n: dense_weight(m).numel() for n, m in self.modules.items()}
            return {
                "sparsity": 0.0,
                "expected_train_sparsity": 0.0,
                "layer_sparsity": {n: 0.0 for n in sizes},
                "prunable_params": sum(sizes.values()),
            }
        eval_sparsity, per_layer = mask_sparsity({n: m.eval_mask for n, m in self.masks.items()})
        return {
            "sparsity": eval_sparsity,
            "expected_train_sparsity": self.expected_train_sparsity(),
            "layer_sparsity": per_layer,
            "prunable_params": sum(m.eval_mask.numel() for m in self.masks.values()),
        }

    def expected_train_sparsity(self) -> float:
        """1 - mean(P) over prunable weights; for deterministic methods, the sparsity of the train mask."""
        return mask_sparsity({n: m.train_mask for n, m in self.masks.items()})[0]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # -- shared by the pruning methods --------------------------------------------------------------
    def scores(self) -> dict[str, torch.Tensor]:
        weights = {n: dense_weight(m) for n, m in self.modules.items()}
        if self.pruning.criterion == "random":
            return random_scores(weights, self.seed)
        return magnitude_scores(weights)

    def target(self) -> dict[str, torch.Tensor]:
        keep = target_masks(self.scores(), self.sparsity, self.pruning.scope)
        collapsed = [name for name, k in keep.items() if not bool(k.any())]
        if collapsed:  # global thresholds can empty a whole layer, which disconnects the network
            log.warning("target removes every weight of layer(s) %s (layer collapse)", ", ".join(collapsed))
        return keep

    def apply_final(self, keep: dict[str, torch.Tensor]) -> None:
        """Make ``keep`` the deterministic mask for training and evaluation, and zero what it removes."""
        for name, k in keep.items():
            set_mask(self.masks[name], k)
            zero_pruned(self.modules[name], k)


class OneShot(PruningMethod):
    """Prune to the target at the start of fine-tuning; fixed from then on."""

    name = "one_shot"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.apply_final(self.target())


class Iterative(PruningMethod):
    """Reach the target over ``anneal_epochs`` pruning steps, re-scoring the current weights at each step."""

    name = "iterative"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        # Random scores are drawn once, so successive steps remove nested random subsets.
        self._fixed_scores = super().scores() if self.pruning.criterion == "random" else None

    def scores(self) -> dict[str, torch.Tensor]:
        scores = self._fixed_scores or super().scores()
        # Weights already removed are removed first again: masks only ever shrink.
        return {n: s.masked_fill(self.masks[n].eval_mask == 0, float("-inf")) for n, s in scores.items()}

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        if epoch >= self.cfg.anneal_epochs:
            return
        s = iterative_sparsity(epoch, self.cfg.anneal_epochs, self.sparsity, self.cfg.schedule)
        self.apply_final(target_masks(self.scores(), s, self.pruning.scope))


@dataclass
class _FlatGroup:
    """The stochastic layers of one mask dtype/device, as consecutive views of flat buffers.

    ``mask`` is the storage of the layers' ``train_mask`` buffers (see ``masking.share_train_masks``);
    ``keep``, ``p0``, ``prob`` and ``u`` have the same layout, so each step is one ``uniform_`` into ``u`` and
    one ``torch.lt(u, prob, out=mask)``: no per-layer kernels, no allocation.
    """

    names: list[str]
    masks: list[Mask]
    mask_views: list[torch.Tensor]
    keep: torch.Tensor  # the target as 0/1 in the probabilities' dtype
    p0: torch.Tensor
    prob: torch.Tensor
    u: torch.Tensor
    mask: torch.Tensor


class Annealing(PruningMethod):
    """Stochastic Subnetwork Annealing: masks sampled from P(t), annealed to the target over n epochs.

    Subclasses only choose p(0) for the weights outside the target (``initial_probabilities``).

    Sampling is ``sample_keep`` (M = U < P) done on flat buffers: every layer's P, U and train mask are views
    of one buffer each (per mask dtype/device), so a step costs two kernels whatever the number of layers.
    On the CPU generator the draws are the very numbers one ``torch.rand`` per layer (in layer order) gives.
    ``self.prob`` and ``self.p0`` hold per-layer views of the flat buffers; ``prob`` is updated in place.
    """

    stochastic = True

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.keep = self.target()
        p0 = {n: self.initial_probabilities(k) for n, k in self.keep.items()}
        device = next(iter(self.keep.values())).device
        self.generator = torch.Generator(device=device).manual_seed(self.seed + 7919)
        for name, k in self.keep.items():
            set_mask(self.masks[name], k, train=False)  # evaluation always sees the target
        self.groups = self._flat_groups(p0)
        self.p0 = {}
        for g in self.groups:
            self.p0.update(zip(g.names, dense_views(g.p0, g.mask_views), strict=True))
        self._prob_views: dict[str, torch.Tensor] = {}
        for g in self.groups:
            self._prob_views.update(zip(g.names, dense_views(g.prob, g.mask_views), strict=True))
        self.prob: dict[str, torch.Tensor] = {}
        self.final = False
        self.factor = 1.0

    def _flat_groups(self, p0: dict[str, torch.Tensor]) -> list[_FlatGroup]:
        by_kind: dict[tuple[torch.device, torch.dtype], list[str]] = {}
        for name in self.keep:
            t = self.masks[name].train_mask
            by_kind.setdefault((t.device, t.dtype), []).append(name)
        groups = []
        for (device, dtype), names in by_kind.items():
            masks = [self.masks[n] for n in names]
            total = sum(m.train_mask.numel() for m in masks)
            mask = torch.empty(total, dtype=dtype, device=device)
            views = share_train_masks(masks, mask)
            prob_dtype = p0[names[0]].dtype
            keep = torch.empty(total, dtype=prob_dtype, device=device)  # 0/1: adds in one fast pass
            flat_p0 = torch.empty(total, dtype=prob_dtype, device=device)
            for n, k, q in zip(names, dense_views(keep, views), dense_views(flat_p0, views), strict=True):
                k.copy_(self.keep[n])
                q.copy_(p0[n])
            groups.append(
                _FlatGroup(
                    names,
                    masks,
                    views,
                    keep,
                    flat_p0,
                    torch.empty_like(flat_p0),
                    torch.empty_like(flat_p0),
                    mask,
                )
            )
        return groups

    def initial_probabilities(self, keep: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_progress(self, progress: float) -> None:
        """Update P(t) for progress t/n; at t >= n the mask becomes the target for good."""
        if self.final:
            return
        if progress >= 1.0:
            self.apply_final(self.keep)
            self.prob, self.final, self.factor = {}, True, 0.0
            return
        self.factor = anneal_factor(progress, self.cfg.schedule, self.cfg.decay_rate)
        for g in self.groups:
            annealed_probabilities(g.keep, g.p0, self.factor, out=g.prob)
        self.prob = self._prob_views

    def resample(self) -> None:
        if not self.prob:
            return
        for g in self.groups:
            sample_keep(g.prob, self.generator, u=g.u, out=g.mask)
            if not shares_train_masks(g.masks, g.mask_views):  # the model was moved/cast after start
                for m, v in zip(g.masks, g.mask_views, strict=True):
                    m.train_mask.copy_(v)

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        self.set_progress(anneal_progress(epoch, 0, steps_per_epoch, self.cfg.anneal_epochs, "epoch"))
        if self.cfg.resample == "epoch" and not self.final:
            self.resample()

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        if self.final:
            return
        if self.cfg.granularity == "step":
            self.set_progress(anneal_progress(epoch, step, steps_per_epoch, self.cfg.anneal_epochs, "step"))
        if self.cfg.resample == "step" and not self.final:
            self.resample()

    def expected_train_sparsity(self) -> float:
        if self.final or not self.prob:
            return super().expected_train_sparsity()
        total = sum(p.numel() for p in self.prob.values())
        return 1.0 - float(sum(p.sum() for p in self.prob.values())) / total

    def report(self) -> dict[str, Any]:
        return {**super().report(), "anneal_factor": self.factor}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class TemperatureAnnealing(Annealing):
    """Every weight outside the target starts at the same probability, the initial temperature tau0."""

    name = "temperature_annealing"

    def initial_probabilities(self, keep: torch.Tensor) -> torch.Tensor:
        return (~keep).float() * self.cfg.initial_temperature


class RandomAnnealing(Annealing):
    """Every weight outside the target starts at its own probability p_i ~ U(0, max_initial_probability)."""

    name = "random_annealing"

    def initial_probabilities(self, keep: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "_p0_generator"):
            self._p0_generator = torch.Generator().manual_seed(self.seed + 104729)
        u = torch.rand(keep.shape, generator=self._p0_generator).to(keep.device)
        return (~keep).float() * u * self.cfg.max_initial_probability


METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls for cls in (PruningMethod, OneShot, Iterative, TemperatureAnnealing, RandomAnnealing)
}


def make_method(method: MethodConfig, pruning: PruningConfig, sparsity: float, seed: int) -> PruningMethod:
    if method.name not in METHODS:
        raise ValueError(f"method.name: unknown method {method.name!r}; choose one of {sorted(METHODS)}")
    return METHODS[method.name](method, pruning, sparsity, seed)
