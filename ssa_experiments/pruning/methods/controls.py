"""The controls: each keeps one ingredient of temperature annealing and drops another (issue 15).

``stochastic_constant`` keeps its noise and drops the annealing, ``dropconnect_target`` keeps the noise but
only on the target (no extra weights), ``soft_annealing`` keeps the schedule and drops the noise. Each is a
small subclass of ``Annealing`` overriding its hooks (``progress_factor``, ``fill_probabilities``,
``resample``), so everything else (schedule, generator, re-scoring, masked decay) is annealing's own.
"""

from __future__ import annotations

import torch
from torch import nn

from ssa_experiments.pruning.flat_groups import FlatGroup
from ssa_experiments.pruning.masking import zero_pruned
from ssa_experiments.pruning.methods.annealing import Annealing, TemperatureAnnealing


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

    def start(self, model: nn.Module) -> None:
        super().start(model)
        for name, k in self.keep.items():  # removed weights are exactly zero from step 0, as in one-shot
            zero_pruned(self.modules[name], k, self.optimizer)
        for g in self.groups:  # and the train mask is the target until the first sample
            g.mask.copy_(g.keep)
            g.publish()

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

    def fill_probabilities(self, g: FlatGroup, factor: float) -> None:
        torch.mul(g.keep, 1.0 - self.cfg.initial_drop_rate * factor, out=g.prob)

    def resample(self) -> None:
        if not self.prob:
            return
        scale = 1.0 / (1.0 - self.drop_rate)
        for g in self.groups:
            g.sample(self.generator)
            g.mask.mul_(scale)
            g.publish()

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

    Checkpoints keep its fractional train mask as it is (``checkpoint._compact`` stores only 0/1 masks as
    bool); ``set_progress`` rewrites it at the start of every epoch (every step at granularity=step), and on
    a resume inside an epoch (``resume_epoch``).
    """

    name = "soft_annealing"
    stochastic = False

    def set_progress(self, progress: float) -> None:
        super().set_progress(progress)
        if self.final:
            return
        for g in self.groups:
            g.mask.copy_(g.prob)
            g.publish()

    def resample(self) -> None:
        """Nothing to sample: ``set_progress`` writes P(t) itself into the train mask."""
