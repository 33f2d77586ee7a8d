"""Stochastic Subnetwork Annealing: masks sampled from P(t), annealed to the target over n epochs.

``Annealing`` holds what every annealing method and control shares (the target, P(t), re-scoring, masked
weight decay, the mask generator's state); ``TemperatureAnnealing`` and ``RandomAnnealing`` differ only in
p(0). The pieces with one job each live beside it: the sampler in ``../sampling.py``, the flat buffers it
samples into in ``../flat_groups.py``, the schedule s(t/n) in ``../sparsity_schedules.py``, the masked decay
in ``../weight_decay.py``. The controls that take one ingredient away are in ``controls.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssa_experiments.config.methods import spec
from ssa_experiments.pruning.flat_groups import FlatGroup, flat_groups
from ssa_experiments.pruning.masking import attach_masks, dense_weight, set_mask
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.sampling import generator_state, mask_generator, restore_generator
from ssa_experiments.pruning.sparsity_schedules import anneal_progress, initial_density, schedule_factor
from ssa_experiments.pruning.weight_decay import apply_masked_weight_decay, masked_weight_decay_rate


class Annealing(PruningMethod):
    """Stochastic Subnetwork Annealing: masks sampled from P(t), annealed to the target over n epochs.

    Subclasses choose p(0) for the weights outside the target (``initial_probabilities``); the controls also
    override the hooks ``progress_factor`` (s), ``fill_probabilities`` (P) and ``resample`` (M from P).

    Sampling is ``sampling.sample_keep`` (M = U < P) on the flat buffers of ``flat_groups.py``.
    ``self.prob`` holds per-layer views of the flat P, updated in place; ``self.keep`` views of the target.

    ``method.schedule`` gives s: a shape in keep-probability space, or a curve of the expected density
    (``geometric``, ``density_linear``), converted to s with ``self.densities`` = (d0, d_T), the expected
    density of the prunable weights at s = 1 and at the target (``expected_densities``, fixed at ``start``).
    Re-scoring (``method.rescore``): see ``rescore``.

    Long for a reason: its hooks share one state (P, ``final``, ``factor``) the controls override piecewise.
    """

    stochastic = True

    def start(self, model: nn.Module) -> None:
        if self.cfg.rescore and not spec(self.name).rescores:
            raise ValueError(f"method.rescore: {self.name} does not re-score its target")
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.groups: list[FlatGroup] = []  # none yet: ``scores`` sees the initial target's choice
        target = self.target()
        self.generator = mask_generator(next(iter(target.values())).device, self.seed)
        for name, k in target.items():
            set_mask(self.masks[name], k, train=False)  # evaluation always sees the target
        self.groups = flat_groups(self.masks, self.initial_probabilities)
        self.keep: dict[str, torch.Tensor] = {}
        self._prob_views: dict[str, torch.Tensor] = {}
        for g in self.groups:
            self.keep.update(zip(g.names, g.keep_views, strict=True))
            self._prob_views.update(g.layer_views(g.prob))
        self.prob: dict[str, torch.Tensor] = {}
        self.final = False
        self.factor = 1.0
        self.densities = self.expected_densities()

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
        removed = sum(g.removed() for g in self.groups)
        p0_sum = sum(g.p0_sum() for g in self.groups)
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

    def fill_probabilities(self, g: FlatGroup, factor: float) -> None:
        """Write P(t) into ``g.prob``: 1 on the target, ``p0 * factor`` elsewhere."""
        g.fill(factor)

    def resample(self) -> None:
        if not self.prob:
            return
        for g in self.groups:
            g.sample(self.generator)
            g.publish()

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        if self.cfg.rescore and 0 < epoch < self.cfg.anneal_epochs and not self.final:
            self.rescore()
        self.set_progress(anneal_progress(epoch, 0, steps_per_epoch, self.cfg.anneal_epochs, "epoch"))
        if self.cfg.resample == "epoch" and not self.final:
            self.resample()

    def resume_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        """P(t) as ``begin_epoch`` left it, rebuilt from the restored target (the eval masks) and p(0); not
        re-scored (the target chosen at this epoch's start is the restored one) and not re-sampled (the
        epoch's or the last step's sample is the restored train mask, the generator past it)."""
        self.set_progress(anneal_progress(epoch, 0, steps_per_epoch, self.cfg.anneal_epochs, "epoch"))

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        if self.final:
            return
        if self.cfg.granularity == "step":
            self.set_progress(anneal_progress(epoch, step, steps_per_epoch, self.cfg.anneal_epochs, "step"))
        if self.cfg.resample == "step" and not self.final:
            self.resample()

    # -- re-scoring ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def rescore(self) -> None:
        """Re-choose the target from the current weights, in place; the caller's ``set_progress`` then
        rebuilds P around it.

        With ``method.rescore``, at the start of each epoch 1 .. n-1 the target is re-chosen from the
        *current* weights by the rule that chose it from the parent (``target()``: criterion, scope,
        layer-collapse check; epoch 0's would be the initial one, the weights have not moved), and P is
        rebuilt around it: 1 on the new target, ``p_i(0) * s(t/n)`` elsewhere (random annealing: each
        weight's own p_i, drawn at ``start`` for every weight). Not at epoch n: the final mask is the target
        chosen at epoch n-1, the one that epoch trained with P = 1, so no weight changes role as annealing
        ends. "Masks only shrink, as for iterative" means here: before epoch n annealing removes no weight
        (outside the target a weight is annealed, not zeroed), so a weight leaving the target is annealed
        with the others and may re-enter it at a later update if its magnitude grows back; what only shrinks
        is the *support* of P, {P > 0}: the target is re-chosen among the weights still in it (a weight with
        P = 0 for good, p_i(0) = 0, cannot enter it, as iterative re-scores among the weights still in its
        mask). That support is every weight until epoch n (tau0 > 0; random p_i > 0 almost surely), then the
        final target, whose complement is zeroed. The expected density follows the schedule whatever the
        re-scoring (temperature annealing exactly: the target's size and tau0 are fixed; random annealing up
        to the change in mean p_i over the re-chosen complement, s being a function of progress alone). The
        flat buffers keep their layout: the new target is copied into the same ``keep`` storage (the layers'
        eval masks), p(0) into the same ``p0``. With ``rescore=false`` nothing of this runs.
        """
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
            gone = g.out_of_support()
            if gone is None:
                continue
            for name, out in g.layer_views(gone).items():
                scores[name] = scores[name].masked_fill(out, float("-inf"))
        return scores

    # -- weight decay restricted to the sampled mask ------------------------------------------------------
    def self_decayed_params(self) -> list[torch.Tensor]:
        return [] if self.cfg.decay_sampled_out else [dense_weight(m) for m in self.modules.values()]

    def before_optimizer_step(self, lr: float) -> None:
        """With ``decay_sampled_out=false``: weight decay on the weights of this step's mask only
        (``weight_decay.py``); a weight sampled out of this step is not decayed."""
        if self.optimizer is None or self.cfg.decay_sampled_out:
            return
        rate = masked_weight_decay_rate(self.optimizer)
        if rate:
            apply_masked_weight_decay(
                self.optimizer, self.self_decayed_params(), self.decay_masks(), lr, rate
            )

    def decay_masks(self) -> list[torch.Tensor]:
        """Per layer, what weight decay is multiplied by with ``decay_sampled_out=false``: the train mask."""
        return [m.train_mask for m in self.masks.values()]

    # -- accounting and state -----------------------------------------------------------------------------
    def expected_train_sparsity(self) -> float:
        if self.final or not self.prob:
            return super().expected_train_sparsity()
        total = sum(g.prob.numel() for g in self.groups)
        return 1.0 - float(sum(g.prob.sum() for g in self.groups)) / total

    def report(self) -> dict[str, Any]:
        return {**super().report(), "anneal_factor": self.factor}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **generator_state(self.generator)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        restore_generator(self.generator, state)
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
