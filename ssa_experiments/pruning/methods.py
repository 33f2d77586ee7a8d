"""The pruning methods, all behind one interface the training loop calls.

    start(model)                 once, on the trained dense parent: choose the target, attach masks
    bind_optimizer(optimizer)    so a mask that becomes final can clear the removed weights' optimizer state
    begin_epoch(epoch, steps)    before each epoch: iterative steps, per-epoch annealing updates
    before_step(epoch, step, n)  before each training forward pass: stochastic masks are sampled here
    before_optimizer_step(lr)    after backward: weight decay restricted to the sampled mask, if configured
    at_target                    whether the deterministic target mask is in force (for epochs_at_target)
    report()                     sparsity accounting of the mask in force, logged every epoch
    state_dict()/load_state_dict only what the model's own state_dict does not hold (RNG state)

Controls that isolate what annealing does (each a small subclass of ``Annealing``): ``stochastic_constant``
(its noise, no annealing), ``dropconnect_target`` (noise on the target only, no extra weights) and
``soft_annealing`` (its schedule, no noise).

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

from ssa_experiments.config.schema import MethodConfig, PruningConfig
from ssa_experiments.pruning.errors import LayerCollapse
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
from ssa_experiments.pruning.schedules import (
    anneal_progress,
    initial_density,
    is_pruning_step,
    iterative_sparsity,
    schedule_factor,
    step_epoch,
)
from ssa_experiments.pruning.targets import (
    MemberMasks,
    magnitude_scores,
    member_scores,
    prunable_modules,
    random_scores,
    target_masks,
)


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


log = logging.getLogger(__name__)


class PruningMethod:
    """Dense: the reference. No masks; reports the (zero) sparsity of the prunable weights."""

    name = "dense"
    stochastic = False

    def __init__(
        self,
        method: MethodConfig,
        pruning: PruningConfig,
        sparsity: float,
        seed: int,
        member: MemberMasks | None = None,
    ) -> None:
        self.cfg, self.pruning, self.sparsity, self.seed = method, pruning, sparsity, seed
        # An ensemble member's target comes from ``member`` (``targets.member_scores``), not from
        # ``pruning.criterion``; ``seed`` is then the member's fine-tuning seed (its mask samples).
        self.member = member
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
        if self.member is not None:
            return member_scores(weights, self.member)
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

    Gradual magnitude pruning (``method.prune_every_steps = k > 0``, Zhu & Gupta's Δt): a pruning step
    before every k-th training step (global steps 0, k, 2k, ...) instead of once per epoch, at the sparsity
    of the same schedule at t = epoch + step / steps_per_epoch, and the target at the start of epoch n
    whether or not a step falls there, so ``at_target`` and ``epochs_at_target`` are those of every other
    method. k = steps_per_epoch is the per-epoch schedule exactly. Each step scores and sorts every prunable
    weight, so a small k costs a sort per k steps.
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
        if self.cfg.prune_every_steps and epoch < self.cfg.anneal_epochs:
            return  # gradual magnitude pruning: ``before_step`` prunes on its own grid of steps
        self.prune_to(epoch)

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        every = self.cfg.prune_every_steps
        if every and epoch < self.cfg.anneal_epochs and is_pruning_step(epoch, step, steps_per_epoch, every):
            self.prune_to(step_epoch(epoch, step, steps_per_epoch))

    def prune_to(self, t: float) -> None:
        """Prune to the schedule's sparsity at t epochs (fractional between epochs with GMP)."""
        s = iterative_sparsity(t, self.cfg.anneal_epochs, self.sparsity, self.cfg.schedule)
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

    Subclasses choose p(0) for the weights outside the target (``initial_probabilities``); the controls also
    override the hooks ``progress_factor`` (s), ``fill_probabilities`` (P) and ``resample`` (M from P).

    Sampling is ``sample_keep`` (M = U < P) done on flat buffers: every layer's P, U and train mask are views
    of one buffer each (per mask dtype/device), so a step costs two kernels whatever the number of layers.
    On the CPU generator the draws are the very numbers one ``torch.rand`` per layer (in layer order) gives.
    ``self.prob`` holds per-layer views of the flat P, updated in place; ``self.keep`` views of the target.

    ``method.schedule`` gives s: a shape in keep-probability space, or a curve of the expected density
    (``geometric``, ``density_linear``), converted to s with ``self.densities`` = (d0, d_T), the expected
    density of the prunable weights at s = 1 and at the target (``expected_densities``, fixed at ``start``).

    Re-scoring (``method.rescore``, where ``supports_rescore``): at the start of each epoch 1 .. n-1 the
    target is re-chosen from the *current* weights by the rule that chose it from the parent (``target()``:
    criterion, scope, layer-collapse check; epoch 0's would be the initial one, the weights have not moved),
    and P is rebuilt around it: 1 on the new target, ``p_i(0) * s(t/n)`` elsewhere (random annealing: each
    weight's own p_i, drawn at ``start`` for every weight). Not at epoch n: the final mask is the target
    chosen at epoch n-1, the one that epoch trained with P = 1, so no weight changes role as annealing ends.
    "Masks only shrink, as for iterative" means here: before epoch n annealing removes no weight (outside the
    target a weight is annealed, not zeroed), so a weight leaving the target is annealed with the others
    and may re-enter it at a later update if its magnitude grows back; what only shrinks is the *support*
    of P, {P > 0}: the target is re-chosen among the weights still in it (a weight with P = 0 for good,
    p_i(0) = 0, cannot enter it, as iterative re-scores among the weights still in its mask). That support
    is every weight until epoch n (tau0 > 0; random p_i > 0 almost surely), then the final target, whose
    complement is zeroed. The expected density follows the schedule whatever the re-scoring (temperature
    annealing exactly: the target's size and tau0 are fixed; random annealing up to the change in mean p_i
    over the re-chosen complement, s being a function of progress alone). The flat buffers keep their
    layout: the new target is copied into the same ``keep`` storage (the layers' eval masks), p(0) into the
    same ``p0``. With ``rescore=false`` nothing of this runs.
    """

    stochastic = True
    supports_rescore = True  # the controls that fix P or the target from the start do not re-score

    def start(self, model: nn.Module) -> None:
        if self.cfg.rescore and not self.supports_rescore:
            raise ValueError(f"method.rescore: {self.name} does not re-score its target")
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.groups: list[_FlatGroup] = []  # none yet: ``scores`` sees the initial target's choice
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
        self.densities = self.expected_densities()

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

    def target_density(self) -> float:
        """d_T: the fraction of prunable weights in the target (1 - sparsity, up to rounding)."""
        total = sum(g.keep.numel() for g in self.groups)
        return sum(int(g.keep.sum()) for g in self.groups) / total

    def expected_densities(self) -> tuple[float, float]:
        """(d0, d_T): the expected density 1 - E[sparsity] of the prunable weights at s = 1 and at s = 0.

        Annealing: d0 = (1 - s_T) + s_T * mean p(0) over the weights outside the target, with s_T their
        actual fraction, so the density schedules make the logged ``expected_train_sparsity`` 1 - d(t)
        exactly. For random annealing the density schedules scale every p_i by the same
        s(x) = mean p(t) / mean p(0): the mean follows d(t), each p_i keeps its rank.
        """
        d_target = self.target_density()
        removed = sum(int((~g.keep).sum()) for g in self.groups)
        p0_sum = sum(
            float(g.p0.sum(dtype=torch.float64))
            if isinstance(g.p0, torch.Tensor)
            else g.p0 * int((~g.keep).sum())
            for g in self.groups
        )
        return initial_density(1.0 - d_target, p0_sum / removed if removed else 0.0), d_target

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
        self.factor = self.progress_factor(progress)
        for g in self.groups:
            self.fill_probabilities(g, self.factor)
        self.prob = self._prob_views

    def progress_factor(self, progress: float) -> float:
        """s(t/n), the factor ``fill_probabilities`` scales by: the configured annealing schedule."""
        return schedule_factor(progress, self.cfg.schedule, self.cfg.decay_rate, self.densities)

    def fill_probabilities(self, g: _FlatGroup, factor: float) -> None:
        """Write P(t) into ``g.prob``: 1 on the target, ``p0 * factor`` elsewhere (allocation-free)."""
        annealed_probabilities(g.keep, g.p0, factor, out=g.prob)

    def resample(self) -> None:
        if not self.prob:
            return
        for g in self.groups:
            sample_keep(g.prob, self.generator, u=g.u, out=g.mask)
            self._publish(g)

    @staticmethod
    def _publish(g: _FlatGroup) -> None:
        """Make the layers' ``train_mask`` buffers see ``g.mask``: they are its views unless the model was
        moved or cast after ``start`` (then they have storage of their own, and get a copy)."""
        if not shares_masks(g.masks, g.mask_views):
            for m, v in zip(g.masks, g.mask_views, strict=True):
                m.train_mask.copy_(v)

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        if self.cfg.rescore and 0 < epoch < self.cfg.anneal_epochs and not self.final:
            self.rescore()
        self.set_progress(anneal_progress(epoch, 0, steps_per_epoch, self.cfg.anneal_epochs, "epoch"))
        if self.cfg.resample == "epoch" and not self.final:
            self.resample()

    @torch.no_grad()
    def rescore(self) -> None:
        """Re-choose the target from the current weights, in place (see the class docstring); the caller's
        ``set_progress`` then rebuilds P around it."""
        for name, k in self.target().items():
            self.keep[name].copy_(k)  # the flat target ...
            set_mask(self.masks[name], k, train=False)  # ... and the eval mask, if the model moved since
        self.refresh_initial_probabilities()

    def refresh_initial_probabilities(self) -> None:
        """Make p(0) fit a re-chosen target; one number for every removed weight needs nothing."""

    def scores(self) -> dict[str, torch.Tensor]:
        """When re-scoring: weights out of the support of P for good (off the target, p(0) = 0) score -inf."""
        scores = super().scores()
        if not (self.cfg.rescore and self.groups):
            return scores
        for g in self.groups:
            if isinstance(g.p0, torch.Tensor):
                gone = ~g.keep & (g.p0 == 0)
            elif g.p0 == 0:
                gone = ~g.keep
            else:
                continue
            for name, out in zip(g.names, dense_views(gone, g.keep_views), strict=True):
                scores[name] = scores[name].masked_fill(out, float("-inf"))
        return scores

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
        masks = self.decay_masks()
        if isinstance(self.optimizer, torch.optim.AdamW):
            torch._foreach_addcmul_(params, params, masks, value=-lr * wd)
        else:
            torch._foreach_addcmul_([p.grad for p in params], params, masks, value=wd)

    def decay_masks(self) -> list[torch.Tensor]:
        """Per layer, what weight decay is multiplied by with ``decay_sampled_out=false``: the train mask."""
        return [m.train_mask for m in self.masks.values()]

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
        if self.cfg.rescore:  # the model's state held a re-chosen target: p(0) must follow it
            self.refresh_initial_probabilities()


class TemperatureAnnealing(Annealing):
    """Every weight outside the target starts at the same probability, the initial temperature tau0."""

    name = "temperature_annealing"

    def initial_probabilities(self, keep: torch.Tensor) -> float:
        return self.cfg.initial_temperature


class RandomAnnealing(Annealing):
    """Every weight outside the target starts at its own probability p_i ~ U(0, max_initial_probability).

    Drawn on the CPU from the run's seed, layer by layer in order, so every device gets the same p_i.
    Every weight gets a draw, the target's too (then masked to 0): re-scoring replays them
    (``raw_probabilities``) when a weight leaves the target.
    """

    name = "random_annealing"
    P0_SEED_OFFSET = 104729

    def start(self, model: nn.Module) -> None:
        self._p0_generator = torch.Generator().manual_seed(self.seed + self.P0_SEED_OFFSET)
        super().start(model)

    def _draw(self, keep: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """p_i ~ U(0, max_initial_probability) for every weight of a flat group, on the CPU generator."""
        u = torch.rand(keep.shape, generator=generator).to(keep.device)
        return u.mul_(self.cfg.max_initial_probability)

    def initial_probabilities(self, keep: torch.Tensor) -> torch.Tensor:
        return self._draw(keep, self._p0_generator).masked_fill_(keep, 0.0)

    def raw_probabilities(self) -> list[torch.Tensor]:
        """Every weight's own p_i per flat group, the target's included: the draws of ``start`` replayed from
        the seed, so re-scoring stores no copy of them (it needs them n - 1 times per run)."""
        generator = torch.Generator().manual_seed(self.seed + self.P0_SEED_OFFSET)
        return [self._draw(g.keep, generator) for g in self.groups]

    def refresh_initial_probabilities(self) -> None:
        """p(0) = the weight's own p_i off the re-chosen target, 0 on it, written into the same buffer."""
        for g, raw in zip(self.groups, self.raw_probabilities(), strict=True):
            g.p0.copy_(raw.masked_fill_(g.keep, 0.0))


# -- controls: each keeps one ingredient of temperature annealing and drops another (issue 15) -----------


class StochasticConstant(TemperatureAnnealing):
    """Control: annealing's noise without the annealing.

    Masks are sampled exactly as in temperature annealing (M = 1[U < P], same generator, ``method.resample``)
    but from a P that never changes: 1 on the target, tau0 (``method.initial_temperature``) elsewhere, for
    epochs 0 .. n-1; from epoch n the target, abruptly (``at_target``). Against temperature annealing at equal
    tau0 and n it asks whether the *gradual* decline of P matters, or only training on random supersets of
    the target before it is imposed. s(x) = 1 for x < 1, so ``method.schedule``, ``decay_rate`` and
    ``granularity`` are not read (nothing to interpolate); the report's ``anneal_factor`` is 1, then 0.
    """

    name = "stochastic_constant"
    supports_rescore = False

    def progress_factor(self, progress: float) -> float:
        return 1.0

    def set_progress(self, progress: float) -> None:
        if progress < 1.0 and self.prob:
            return  # P is constant: filled once, not once per step at granularity=step
        super().set_progress(progress)


class DropConnectTarget(Annealing):
    """Control: stochasticity without the extra weights.

    The target from the start: the removed weights are zeroed in storage at ``start`` (as one-shot does) and
    have P = 0 throughout. The target's own weights get DropConnect: weight i is kept with probability
    ``1 - r(t)``, ``r(t) = r0 * s(t/n)``, r0 = ``method.initial_drop_rate`` (a key of its own: tau0 is the
    keep-probability of weights *outside* the target, r0 a drop-probability of weights *inside* it; sharing
    the key would tie every tau0 sweep of annealing to this control), s and its updates from the same
    schedule machinery as annealing (``schedule``, ``granularity``, ``decay_rate``), sampled with the same
    generator and sampler (``resample``). From epoch n, r = 0: the deterministic target (``at_target``).

    Kept weights are rescaled by ``1 / (1 - r(t))`` (inverted DropConnect, as inverted dropout), so the
    expected training weight is the target's own, E[M_i w_i] = w_i: the control adds zero-mean
    multiplicative noise to the very network that is evaluated, and nothing else. Without the rescaling every
    training pass would see the target shrunk by (1 - r) on average, a train/eval mismatch of scale (which
    BN recalibration cannot fix in layers with no BatchNorm after them, e.g. an MLP or the classifier) that
    annealing does not have (it never removes a target weight), and the comparison would mix noise with
    scale. So the train mask holds 0 or ``1 / (1 - r)``, and ``r0 < 1`` is required.

    ``expected_train_sparsity`` is 1 - mean(P) = s_T + (1 - s_T) r(t): the expected fraction of prunable
    weights that are zero in a training step (the rescaling does not change which ones).
    """

    name = "dropconnect_target"
    supports_rescore = False  # the weights outside the target are zeroed at start: nothing to re-choose from

    def start(self, model: nn.Module) -> None:
        super().start(model)
        for name, k in self.keep.items():  # removed weights are exactly zero from step 0, as in one-shot
            zero_pruned(self.modules[name], k, self.optimizer)
        for g in self.groups:  # and the train mask is the target until the first sample
            g.mask.copy_(g.keep)
            self._publish(g)

    def initial_probabilities(self, keep: torch.Tensor) -> float:
        return 0.0  # no weight outside the target is ever sampled in

    def expected_densities(self) -> tuple[float, float]:
        """(d_T (1 - r0), d_T): the density is d_T (1 - r0 s), so the density schedules bring it from the
        target's at drop rate r0 up to the target's own, e.g. geometric: r(t) = 1 - (1 - r0)^(1 - x)."""
        d_target = self.target_density()
        return d_target * (1.0 - self.cfg.initial_drop_rate), d_target

    @property
    def drop_rate(self) -> float:
        """r(t) = r0 * s(t/n) in force now; 0 once the target is final."""
        return 0.0 if self.final else self.cfg.initial_drop_rate * self.factor

    def fill_probabilities(self, g: _FlatGroup, factor: float) -> None:
        torch.mul(g.keep, 1.0 - self.cfg.initial_drop_rate * factor, out=g.prob)

    def resample(self) -> None:
        if not self.prob:
            return
        scale = 1.0 / (1.0 - self.drop_rate)
        for g in self.groups:
            sample_keep(g.prob, self.generator, u=g.u, out=g.mask)
            g.mask.mul_(scale)
            self._publish(g)

    def decay_masks(self) -> list[torch.Tensor]:
        """The 0/1 indicator of this step's weights, not M: the 1/(1 - r) scale is for the forward pass, and a
        sampled-in weight is decayed as the optimizer would (with ``decay_sampled_out=false``)."""
        return [m.train_mask.ne(0).to(m.train_mask.dtype) for m in self.masks.values()]


class SoftAnnealing(TemperatureAnnealing):
    """Control: annealing's gradual schedule without its noise.

    Nothing is sampled: the train mask *is* P(t), the expected mask of temperature annealing: 1 on the
    target, ``tau0 * s(t/n)`` elsewhere (``initial_temperature``, ``schedule``, ``granularity``,
    ``decay_rate`` and ``rescore`` as in temperature annealing; ``resample`` is not read). A weight outside
    the target thus enters every training pass scaled by P(t) (a fractional train mask: it is in the weight's
    dtype) and gets the gradient P(t) * dL/d(P w). From epoch n the target (``at_target``); evaluation
    always sees the boolean target (``eval_mask``, set at ``start``), BN recalibration included.

    ``expected_train_sparsity`` is 1 - mean(P(t)) over the prunable weights: the number temperature annealing
    reports at the same tau0 and t (its expected mask is this mask), i.e. the fraction of the dense network's
    weight mass switched off. It is not a count of zeros: no multiplier is 0 before epoch n. With
    ``decay_sampled_out=false`` each weight's decay is multiplied by P(t), annealing's decay in expectation.

    Checkpoints store train masks as bool (``checkpoint._compact``), rounding P(t) up to 1; harmless, since
    the mask is a function of progress alone and ``set_progress`` rewrites it at the start of every epoch
    (every step at granularity=step), before any forward pass.
    """

    name = "soft_annealing"
    stochastic = False

    def set_progress(self, progress: float) -> None:
        super().set_progress(progress)
        if self.final:
            return
        for g in self.groups:
            g.mask.copy_(g.prob)
            self._publish(g)

    def resample(self) -> None:
        """Nothing to sample: ``set_progress`` writes P(t) itself into the train mask."""


METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls
    for cls in (
        PruningMethod,
        OneShot,
        Iterative,
        TemperatureAnnealing,
        RandomAnnealing,
        StochasticConstant,
        DropConnectTarget,
        SoftAnnealing,
    )
}


def make_method(
    method: MethodConfig,
    pruning: PruningConfig,
    sparsity: float,
    seed: int,
    member: MemberMasks | None = None,
) -> PruningMethod:
    """The configured method; ``member`` makes it choose an ensemble member's target (every method
    composes with every ``ensemble.masks``: they only replace the scores)."""
    if method.name not in METHODS:
        raise ValueError(f"method.name: unknown method {method.name!r}; choose one of {sorted(METHODS)}")
    return METHODS[method.name](method, pruning, sparsity, seed, member=member)
