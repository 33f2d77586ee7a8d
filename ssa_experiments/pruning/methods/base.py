"""The interface every pruning method implements, the training loop's only view of one; dense is its identity.

    start(model)                 once, on the trained dense parent: choose the target, attach masks
    bind_optimizer(optimizer)    so a mask that becomes final can clear the removed weights' optimizer state
    plan(epochs, steps)          the run's length, before training (dynamic sparse training stops updating
                                 at a fraction of it)
    begin_epoch(epoch, steps)    before each epoch: iterative steps, per-epoch annealing updates
    resume_epoch(epoch, step, n) instead of begin_epoch, resuming inside an epoch from a checkpoint written
                                 there: the model (masks) and state_dict are restored; set only what the
                                 method derives from its position, never redo begin_epoch's work
    before_step(epoch, step, n)  before each training forward pass: stochastic masks are sampled here
    before_optimizer_step(lr)    after backward: weight decay restricted to the sampled mask, if configured
    at_target                    whether the deterministic target mask is in force (for epochs_at_target)
    report()                     sparsity accounting of the mask in force, logged every epoch
    state_dict()/load_state_dict only what the model's own state_dict does not hold (RNG state)

The masks themselves are buffers of the model (see ``masking.py``), so a model checkpoint holds them.
Every method that prunes gradually reaches its target at the start of epoch ``method.anneal_epochs`` (see
``sparsity_schedules.py``), so at equal n every method trains the same number of epochs on its final mask.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ssa_experiments.config.schema import MethodConfig, PruningConfig
from ssa_experiments.pruning.criteria import (
    ScoreData,
    grasp_scores,
    private_rng,
    snip_scores,
    synflow_scores,
)
from ssa_experiments.pruning.errors import LayerCollapse, layer_list
from ssa_experiments.pruning.masking import Mask, dense_weight, mask_sparsity, set_mask, zero_pruned
from ssa_experiments.pruning.sanity import shuffle_layerwise
from ssa_experiments.pruning.targets import (
    Scorer,
    magnitude_scores,
    prunable_modules,
    random_scores,
    target_masks,
)

log = logging.getLogger(__name__)


def describe_layer(name: str, module: nn.Module | None) -> str:
    """A layer as a user finds it in ``print(model)``: its module name, quoted, with its kind and shape
    (``"4" (Linear 64→10)``, ``"layer4.1.conv2" (Conv2d 512→512, 3×3)``); a Sequential's index alone says
    little."""
    if module is None:
        return f'"{name}"'
    kind = type(module).__name__.removeprefix("Parametrized")  # a masked layer is torch's subclass of it
    if isinstance(module, nn.Linear):
        return f'"{name}" ({kind} {module.in_features}→{module.out_features})'
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = "×".join(str(k) for k in module.kernel_size)
        return f'"{name}" ({kind} {module.in_channels}→{module.out_channels}, {kernel})'
    return f'"{name}" ({kind})'


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
        scorer: Scorer | None = None,
    ) -> None:
        self.cfg, self.pruning, self.sparsity, self.seed = method, pruning, sparsity, seed
        # A ``scorer`` (e.g. an ensemble member's, ``ensembles/targets.py``) chooses the target instead of
        # ``pruning.criterion``; ``seed`` still seeds what the method draws itself (mask samples, p(0)).
        self.scorer = scorer
        self.modules: dict[str, nn.Module] = {}
        self.masks: dict[str, Mask] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.collapsed_layers: list[str] = []
        # What snip, grasp and synflow score with (``criteria.ScoreData``), given by the run's set-up; the
        # sparsity ``target`` asks for, which synflow's rounds need (its scores depend on it)
        self.score_data: ScoreData | None = None
        self.scoring_sparsity = sparsity
        self.model: nn.Module | None = None

    def start(self, model: nn.Module) -> None:
        self.model = model
        self.modules = prunable_modules(model, self.pruning.keep_first_layer, self.pruning.keep_last_layer)

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def plan(self, epochs: int, steps_per_epoch: int) -> None:
        """The fine-tuning budget (epochs x steps per epoch), told once before the first epoch."""

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        pass

    def resume_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        pass

    @classmethod
    def resumes_inside_epochs(cls) -> bool:
        """Whether a checkpoint written inside an epoch can be resumed exactly: ``begin_epoch`` does nothing,
        or ``resume_epoch`` says what to set instead of it. A method of one's own that overrides only
        ``begin_epoch`` is resumed from epoch boundaries (``run.py``)."""
        own_start = cls.begin_epoch is not PruningMethod.begin_epoch
        return not own_start or cls.resume_epoch is not PruningMethod.resume_epoch

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
        if self.scorer is not None:
            return self.scorer(weights)
        criterion = self.pruning.criterion
        if criterion == "random":
            return random_scores(weights, self.seed)
        if criterion == "magnitude":
            return magnitude_scores(weights)
        return self.model_scores(criterion)

    def model_scores(self, criterion: str) -> dict[str, torch.Tensor]:
        """snip, grasp, synflow: scores of the model's dense weights (``criteria.py``), on a copy, the RNG
        untouched."""
        if self.model is None or self.score_data is None:
            raise RuntimeError(f"pruning.criterion={criterion} needs the model and score_data before start()")
        names = list(self.modules)
        device = dense_weight(next(iter(self.modules.values()))).device
        with private_rng(device):
            if criterion == "snip":
                return snip_scores(self.model, names, self.score_data)
            if criterion == "grasp":
                return grasp_scores(self.model, names, self.score_data)
            if criterion == "synflow":
                return synflow_scores(
                    self.model, names, self.score_data.input_shape, self.scoring_sparsity,
                    self.pruning.synflow_rounds, self.masks_at,
                )  # fmt: skip
        raise ValueError(f"pruning.criterion: unknown criterion {criterion!r}")

    def masks_at(self, scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
        """The configured allocation of ``scores`` at ``sparsity``: scope and pattern (``target_masks``)."""
        return target_masks(scores, sparsity, self.pruning.scope, self.pruning.pattern)

    def target(self, sparsity: float | None = None) -> dict[str, torch.Tensor]:
        """Keep-masks at ``sparsity`` (default: the target's), in the configured scope and pattern, moved by
        the shuffle control if asked; refuses a layer collapse unless allowed."""
        self.scoring_sparsity = self.sparsity if sparsity is None else sparsity
        keep = self.masks_at(self.scores(), self.scoring_sparsity)
        if self.pruning.control == "shuffle_layerwise":
            keep = shuffle_layerwise(keep, self.seed)
        collapsed = [name for name, k in keep.items() if not bool(k.any())]
        if collapsed:  # global thresholds can empty a whole layer, which disconnects the network
            self.collapsed_layers = sorted(set(self.collapsed_layers) | set(collapsed))
            described = [describe_layer(n, self.modules.get(n)) for n in collapsed]
            if not self.pruning.allow_layer_collapse:
                raise LayerCollapse(collapsed, described)
            log.warning("target removes every weight of %s (layer collapse)", layer_list(described))
        return keep

    def apply_final(self, keep: dict[str, torch.Tensor]) -> None:
        """Make ``keep`` the deterministic mask for training and evaluation; zero what it removes."""
        for name, k in keep.items():
            set_mask(self.masks[name], k)
            zero_pruned(self.modules[name], k, self.optimizer)
