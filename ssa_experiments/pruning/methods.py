"""The pruning methods, all behind one interface the training loop calls.

    start(model)                 once, on the trained dense parent: choose the target, attach masks
    bind_optimizer(optimizer)    so a mask that becomes final can clear the removed weights' optimizer state
    begin_epoch(epoch, steps)    before each epoch: iterative steps, per-epoch annealing updates
    before_step(epoch, step, n)  before each training forward pass: stochastic masks are sampled here
    before_optimizer_step(lr)    after backward: weight decay restricted to the sampled mask, if configured
    at_target                    whether the deterministic target mask is in force (for epochs_at_target)
    report()                     sparsity accounting of the mask in force, logged every epoch
    state_dict()/load_state_dict only what the model's own state_dict does not hold (RNG state)

The masks themselves are buffers of the model (see ``masking.py``), so a model checkpoint holds them.
Every method that prunes gradually reaches its target at the start of epoch ``method.anneal_epochs`` (see
``schedules.py``), so at equal n every method trains the same number of epochs on its final mask.
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
    share_masks,
    shares_masks,
    zero_pruned,
)
from ssa_experiments.pruning.schedules import anneal_factor, anneal_progress, iterative_sparsity
from ssa_experiments.pruning.targets import magnitude_scores, prunable_modules, random_scores, target_masks


def annealed_probabilities(
    keep: torch.Tensor, p0: torch.Tensor | float, factor: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """P(t): 1 on the target subnetwork (``keep``, bool), ``p0 * s(t/n)`` elsewhere.

    ``p0`` is a tensor (0 on the target) or one number for every removed weight (temperature annealing:
    no per-weight buffer needed). ``out`` makes it allocation-free.
    """
    if isinstance(p0, torch.Tensor):
        return torch.add(keep, p0, alpha=factor, out=out)
    if out is None:
        out = torch.empty(keep.shape, device=keep.device)
    return out.fill_(p0 * factor).masked_fill_(keep, 1.0)


def sample_keep(
    prob: torch.Tensor,
    generator: torch.Generator,
    u: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """M ~ Bernoulli(P) as ``U < P`` with U ~ Uniform[0, 1): P = 1 always keeps, P = 0 never does.

    ``u`` (a buffer for U) and ``out`` (the mask, any dtype) let the per-step call allocate nothing.
    (``Tensor.bernoulli_`` would need no ``u``, but measured 4.5x slower on CPU.)
    """
    if u is None:
        u = torch.empty_like(prob)
    u.uniform_(generator=generator)  # the same numbers torch.rand(..., generator=) draws
    return torch.lt(u, prob, out=out)


class LayerCollapse(RuntimeError):
    """A target that removes every weight of a layer: the network is disconnected there."""

    def __init__(self, layers: list[str]) -> None:
        super().__init__(
            f"the target removes every weight of layer(s) {', '.join(layers)} (layer collapse: the network "
            "is disconnected there); lower the sparsity, use pruning.scope=layerwise, or set "
            "pruning.allow_layer_collapse=true to run anyway"
        )
        self.layers = layers


log = logging.getLogger(__name__)


class PruningMethod:
    """Dense: the reference. No masks; reports the (zero) sparsity of the prunable weights."""

    name = "dense"
    stochastic = False

    def __init__(self, method: MethodConfig, pruning: PruningConfig, sparsity: float, seed: int) -> None:
        self.cfg, self.pruning, self.sparsity, self.seed = method, pruning, sparsity, seed
        self.modules: dict[str, nn.Module] = {}
        self.masks: dict[str, Mask] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.collapsed_layers: list[str] = []

    def start(self, model: nn.Module) -> None:
        self.modules = prunable_modules(model, self.pruning.keep_first_layer, self.pruning.keep_last_layer)

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        pass

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        pass

    def before_optimizer_step(self, lr: float) -> None:
        pass

    @property
    def at_target(self) -> bool:
        """Whether training now uses the final deterministic mask (dense: the dense network is the target)."""
        return True

    def self_decayed_params(self) -> list[torch.Tensor]:
        """Parameters whose weight decay this method applies itself (the optimizer must not decay them)."""
        return []

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
        # A layer collapse seen by an earlier pruning step (iterative) is not seen again after a resume.
        return {"collapsed_layers": list(self.collapsed_layers)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collapsed_layers = sorted(set(self.collapsed_layers) | set(state.get("collapsed_layers", [])))

    # -- shared by the pruning methods --------------------------------------------------------------
    def scores(self) -> dict[str, torch.Tensor]:
        weights = {n: dense_weight(m) for n, m in self.modules.items()}
        if self.pruning.criterion == "random":
            return random_scores(weights, self.seed)
        return magnitude_scores(weights)

    def target(self, sparsity: float | None = None) -> dict[str, torch.Tensor]:
        """Keep-masks at ``sparsity`` (default: the target's); refuses a layer collapse unless allowed."""
        keep = target_masks(
            self.scores(), self.sparsity if sparsity is None else sparsity, self.pruning.scope
        )
        collapsed = [name for name, k in keep.items() if not bool(k.any())]
        if collapsed:  # global thresholds can empty a whole layer, which disconnects the network
            self.collapsed_layers = sorted(set(self.collapsed_layers) | set(collapsed))
            if not self.pruning.allow_layer_collapse:
                raise LayerCollapse(collapsed)
            log.warning("target removes every weight of layer(s) %s (layer collapse)", ", ".join(collapsed))
        return keep

    def apply_final(self, keep: dict[str, torch.Tensor]) -> None:
        """Make ``keep`` the deterministic mask for training and evaluation; zero what it removes."""
        for name, k in keep.items():
            set_mask(self.masks[name], k)
            zero_pruned(self.modules[name], k, self.optimizer)


class OneShot(PruningMethod):
    """Prune to the target at the start of fine-tuning; fixed from then on."""

    name = "one_shot"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.apply_final(self.target())


class Iterative(PruningMethod):
    """Reach the target over ``anneal_epochs`` epochs, re-scoring the current weights at each pruning step.

    Epoch e trains at sparsity ``target * g(e / n)``: dense in epoch 0 (as annealing starts from P(0)),
    the target from epoch n on, exactly when annealing's mask becomes the target.
    """

    name = "iterative"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.epoch = 0
        # Random scores are drawn once, so successive steps remove nested random subsets.
        self._fixed_scores = super().scores() if self.pruning.criterion == "random" else None

    def scores(self) -> dict[str, torch.Tensor]:
        scores = self._fixed_scores or super().scores()
        # Weights already removed are removed first again: masks only ever shrink.
        return {n: s.masked_fill(self.masks[n].eval_mask == 0, float("-inf")) for n, s in scores.items()}

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        self.epoch = epoch
        if epoch > self.cfg.anneal_epochs:
            return
        s = iterative_sparsity(epoch, self.cfg.anneal_epochs, self.sparsity, self.cfg.schedule)
        if s > 0:
            self.apply_final(self.target(s))

    @property
    def at_target(self) -> bool:
        return self.epoch >= self.cfg.anneal_epochs


@dataclass
class _FlatGroup:
    """The stochastic layers of one mask dtype/device, as consecutive views of flat buffers.

    ``mask`` is the storage of the layers' ``train_mask`` buffers and ``keep`` that of their bool
    ``eval_mask`` buffers (the target; see ``masking.share_masks``); ``prob``, ``u`` and ``p0`` have the
    same layout, so each step is one ``uniform_`` into ``u`` and one ``torch.lt(u, prob, out=mask)``: no
    per-layer kernels, no allocation. ``p0`` is one number (temperature annealing) or a flat tensor.
    Memory per prunable weight: train mask (weight dtype) + target (1 byte) + prob + u (+ p0 for random).
    """

    names: list[str]
    masks: list[Mask]
    mask_views: list[torch.Tensor]
    keep_views: list[torch.Tensor]
    keep: torch.Tensor
    p0: torch.Tensor | float
    prob: torch.Tensor
    u: torch.Tensor
    mask: torch.Tensor


class Annealing(PruningMethod):
    """Stochastic Subnetwork Annealing: masks sampled from P(t), annealed to the target over n epochs.

    Subclasses only choose p(0) for the weights outside the target (``initial_probabilities``).

    Sampling is ``sample_keep`` (M = U < P) done on flat buffers: every layer's P, U and train mask are views
    of one buffer each (per mask dtype/device), so a step costs two kernels whatever the number of layers.
    On the CPU generator the draws are the very numbers one ``torch.rand`` per layer (in layer order) gives.
    ``self.prob`` holds per-layer views of the flat P, updated in place; ``self.keep`` views of the target.
    """

    stochastic = True

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        target = self.target()
        device = next(iter(target.values())).device
        self.generator = torch.Generator(device=device).manual_seed(self.seed + 7919)
        for name, k in target.items():
            set_mask(self.masks[name], k, train=False)  # evaluation always sees the target
        self.groups = self._flat_groups()
        self.keep: dict[str, torch.Tensor] = {}
        self._prob_views: dict[str, torch.Tensor] = {}
        for g in self.groups:
            self.keep.update(zip(g.names, g.keep_views, strict=True))
            self._prob_views.update(zip(g.names, dense_views(g.prob, g.mask_views), strict=True))
        self.prob: dict[str, torch.Tensor] = {}
        self.final = False
        self.factor = 1.0

    def _flat_groups(self) -> list[_FlatGroup]:
        by_kind: dict[tuple[torch.device, torch.dtype], list[str]] = {}
        for name, mask in self.masks.items():
            by_kind.setdefault((mask.train_mask.device, mask.train_mask.dtype), []).append(name)
        groups = []
        for (device, dtype), names in by_kind.items():
            masks = [self.masks[n] for n in names]
            total = sum(m.train_mask.numel() for m in masks)
            mask = torch.empty(total, dtype=dtype, device=device)
            keep = torch.empty(total, dtype=torch.bool, device=device)
            views = share_masks(masks, mask, "train_mask")
            keep_views = share_masks(masks, keep, "eval_mask")
            prob = torch.empty(total, dtype=torch.promote_types(dtype, torch.float32), device=device)
            p0 = self.initial_probabilities(keep)
            groups.append(
                _FlatGroup(names, masks, views, keep_views, keep, p0, prob, torch.empty_like(prob), mask)
            )
        return groups

    def initial_probabilities(self, keep: torch.Tensor) -> torch.Tensor | float:
        """p(0) of the weights outside the target (``keep`` is the flat bool target): a number or a tensor."""
        raise NotImplementedError

    @property
    def at_target(self) -> bool:
        return self.final

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
            if not shares_masks(g.masks, g.mask_views):  # the model was moved/cast after start
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

    def self_decayed_params(self) -> list[torch.Tensor]:
        return [] if self.cfg.decay_sampled_out else [dense_weight(m) for m in self.modules.values()]

    @torch.no_grad()
    def before_optimizer_step(self, lr: float) -> None:
        """With ``decay_sampled_out=false``: weight decay on the weights of this step's mask only.

        Those weights sit in a param group with no decay of its own (``optim.make_optimizer``); this adds it
        back in the optimizer's own form, times M: coupled L2 in the gradient for SGD, decoupled shrinkage
        for AdamW. A weight sampled out of this step is not decayed.
        """
        if self.optimizer is None or self.cfg.decay_sampled_out:
            return
        wd = next(
            (g["masked_weight_decay"] for g in self.optimizer.param_groups if "masked_weight_decay" in g), 0
        )
        if not wd:
            return
        params = self.self_decayed_params()
        masks = [m.train_mask for m in self.masks.values()]
        if isinstance(self.optimizer, torch.optim.AdamW):
            torch._foreach_addcmul_(params, params, masks, value=-lr * wd)
        else:
            torch._foreach_addcmul_([p.grad for p in params], params, masks, value=wd)

    def expected_train_sparsity(self) -> float:
        if self.final or not self.prob:
            return super().expected_train_sparsity()
        total = sum(g.prob.numel() for g in self.groups)
        return 1.0 - float(sum(g.prob.sum() for g in self.groups)) / total

    def report(self) -> dict[str, Any]:
        return {**super().report(), "anneal_factor": self.factor}

    def state_dict(self) -> dict[str, Any]:
        # Generator.get_state() is a CPU ByteTensor for CPU and CUDA generators alike; it must stay on the
        # CPU (set_state accepts nothing else), and a CPU state cannot seed a CUDA generator or vice versa.
        return {
            **super().state_dict(),
            "generator": self.generator.get_state(),
            "generator_device": self.generator.device.type,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get("generator_device", "cpu")
        if saved != self.generator.device.type:
            raise ValueError(
                f"the checkpoint's mask generator ran on {saved}, this run's on {self.generator.device.type}"
            )
        self.generator.set_state(state["generator"].cpu())


class TemperatureAnnealing(Annealing):
    """Every weight outside the target starts at the same probability, the initial temperature tau0."""

    name = "temperature_annealing"

    def initial_probabilities(self, keep: torch.Tensor) -> float:
        return self.cfg.initial_temperature


class RandomAnnealing(Annealing):
    """Every weight outside the target starts at its own probability p_i ~ U(0, max_initial_probability).

    Drawn on the CPU from the run's seed, layer by layer in order, so every device gets the same p_i.
    """

    name = "random_annealing"

    def start(self, model: nn.Module) -> None:
        self._p0_generator = torch.Generator().manual_seed(self.seed + 104729)
        super().start(model)

    def initial_probabilities(self, keep: torch.Tensor) -> torch.Tensor:
        u = torch.rand(keep.shape, generator=self._p0_generator).to(keep.device)
        return u.mul_(self.cfg.max_initial_probability).masked_fill_(keep, 0.0)


METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls for cls in (PruningMethod, OneShot, Iterative, TemperatureAnnealing, RandomAnnealing)
}


def make_method(method: MethodConfig, pruning: PruningConfig, sparsity: float, seed: int) -> PruningMethod:
    if method.name not in METHODS:
        raise ValueError(f"method.name: unknown method {method.name!r}; choose one of {sorted(METHODS)}")
    return METHODS[method.name](method, pruning, sparsity, seed)
