"""``Pruner``: the pruning methods for one's own training loop, and the one way the Hydra runner drives them.

    pruner = Pruner(model, "temperature_annealing", sparsity=0.98, epochs=10, steps_per_epoch=len(loader),
                    anneal_epochs=5, optimizer=optimizer)
    for epoch in range(10):
        for x, y in loader:
            pruner.step()                       # before the forward pass: masks are sampled here
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    state = pruner.export()                     # plain state_dict, pruned weights exactly zero
    evaluated = pruner.recalibrated(train_inputs)  # BatchNorm statistics of the target network

What it adds to a method (``methods/base.py``, whose hooks it calls in the runner's order):

* the method's options as keyword arguments, judged by the runner's own rules (``config/validate.py``) and
  refused in one line naming the option: an unknown one, one the method does not read, a bad value;
* the position in training: ``step()`` counts steps and begins each epoch itself (``begin_epoch``) every
  ``steps_per_epoch`` steps, so a loop needs no epoch call (``begin_epoch(epoch)`` states it explicitly,
  as the runner does, and checks the epoch before it ran ``steps_per_epoch`` steps);
* the optimizer hook: a step pre-hook (``register_step_pre_hook``) runs the method's
  ``before_optimizer_step`` inside ``optimizer.step()``, after backward, so no call can be forgotten; with
  ``decay_sampled_out=false`` the pruned weights move to a param group whose decay the method applies to
  the sampled mask only (``weight_decay.leave_decay_to_method``).

torch.ao.pruning users know this as prepare (the constructor), ``step`` and ``squash_mask`` (``export``);
jaxpruner users as the wrapped optimizer (here a hook on their own optimizer, which stays theirs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from ssa_experiments.config.methods import GRADUAL_METHODS, METHOD_KEYS, METHODS
from ssa_experiments.config.schema import ConfigError, MethodConfig, PruningConfig
from ssa_experiments.config.validate import validate_method, validate_pruning
from ssa_experiments.pruning.criteria import ScoreData
from ssa_experiments.pruning.masking import export_state_dict
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.recalibration import recalibrated
from ssa_experiments.pruning.targets import Scorer
from ssa_experiments.pruning.weight_decay import leave_decay_to_method

PRUNING_OPTIONS = tuple(PruningConfig.__dataclass_fields__)  # criterion, scope, keep_*_layer, allow_*
METHOD_OPTIONS = tuple(k for k in MethodConfig.__dataclass_fields__ if k != "name")


def method_options(name: str, options: Mapping[str, Any]) -> tuple[MethodConfig, PruningConfig]:
    """(method config, pruning config) of ``Pruner(model, name, **options)``: the schema's defaults, the
    options typed by it; an unknown option, one ``name`` does not read, or a value of the wrong type is a
    ``ConfigError`` naming the option."""
    if name not in METHODS:
        raise ConfigError("method", f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    method = OmegaConf.structured(MethodConfig(name=name))
    pruning = OmegaConf.structured(PruningConfig())
    reads = METHOD_KEYS[name]
    for key, value in options.items():
        if key in METHOD_OPTIONS and key not in reads:
            what = ", ".join(reads) if reads else "no option"
            raise ConfigError(key, f"{name} does not read it (it reads {what})")
        if key not in METHOD_OPTIONS and key not in PRUNING_OPTIONS:
            choices = ", ".join((*reads, *PRUNING_OPTIONS))
            raise ConfigError(key, f"unknown option of {name}; choose among {choices}")
        try:
            setattr(method if key in METHOD_OPTIONS else pruning, key, value)
        except OmegaConfBaseException as err:  # a value the schema's type cannot hold
            raise ConfigError(key, f"{value!r}: {str(err).splitlines()[0]}") from None
    if name in GRADUAL_METHODS and "anneal_epochs" not in options:
        raise ConfigError("anneal_epochs", f"{name} needs it: the epoch from which its target is in force")
    # typed and checked: plain dataclasses from here (a DictConfig's attribute read costs microseconds, the
    # method reads its options every step)
    return OmegaConf.to_object(method), OmegaConf.to_object(pruning)  # type: ignore[return-value]


def _plain(err: ConfigError) -> ConfigError:
    """The runner's field names as the library's arguments: ``method.x`` / ``pruning.x`` -> ``x``."""
    name = err.field_name.removeprefix("method.").removeprefix("pruning.")
    return ConfigError(name, str(err).removeprefix(f"{err.field_name}: "))


def _plain_object(cfg: Any) -> Any:
    """A DictConfig of the schema as its dataclass (the same values; a DictConfig's attribute read costs
    microseconds); anything else as it is."""
    return OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg


class Pruner:
    """A pruning method on ``model``, driven step by step (module docstring).

    ``method`` is a method's name with its options as keyword arguments (``PruningConfig``'s keys too:
    ``criterion``, ``scope``, ``keep_first_layer``, ...), or the runner's already validated ``method`` and
    ``pruning`` configs. The masks are attached to ``model`` here, from its weights as they are now (the
    trained dense network); an optimizer built before or after holds the same parameters. ``epochs``: the
    training epochs in all (a gradual method's ``anneal_epochs`` must be fewer); ``seed`` seeds what the
    method draws (mask samples, random p(0)); ``scorer`` chooses the target instead of ``criterion``.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str | DictConfig | MethodConfig,
        sparsity: float,
        *,
        epochs: int,
        steps_per_epoch: int,
        seed: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
        pruning: DictConfig | PruningConfig | None = None,
        scorer: Scorer | None = None,
        score_data: ScoreData | None = None,
        **options: Any,
    ) -> None:
        if isinstance(method, str):
            if pruning is not None:
                raise ConfigError(
                    "pruning", "pass the pruning options as keyword arguments with a method name"
                )
            method, pruning = method_options(method, options)
            try:
                check_setting(method, pruning, sparsity, epochs, steps_per_epoch)
            except ConfigError as err:
                raise _plain(err) from None
        elif options:
            raise ConfigError(next(iter(options)), "with a method config, its options belong in the config")
        else:  # the runner's validated configs, as plain dataclasses: the method reads them every step
            method, pruning = _plain_object(method), _plain_object(pruning)
        self.model, self.epochs, self.steps_per_epoch = model, epochs, steps_per_epoch
        self.method: PruningMethod = make_method(method, pruning or PruningConfig(), sparsity, seed, scorer)
        self.method.score_data = score_data  # the batches snip and grasp score the target with
        self.method.start(model)
        self.method.plan(epochs, steps_per_epoch)  # dynamic sparse training schedules its updates by it
        self.epoch: int | None = None  # the epoch begun last; None before the first
        self.step_in_epoch = 0  # steps of it taken
        self.optimizer: torch.optim.Optimizer | None = None
        self._hook: Any = None
        if optimizer is not None:
            self.bind_optimizer(optimizer)

    # -- the optimizer --------------------------------------------------------------------------------------
    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Let the method reach ``optimizer`` (a final mask clears the removed weights' momentum; masked
        decay), and run its ``before_optimizer_step`` at the start of every ``optimizer.step()``."""
        leave_decay_to_method(optimizer, self.method.self_decayed_params())
        if self._hook is not None:
            self._hook.remove()
        self.optimizer = optimizer
        self.method.bind_optimizer(optimizer)
        self._hook = optimizer.register_step_pre_hook(self._before_optimizer_step)

    def _before_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        groups = optimizer.param_groups
        lr = next((g["lr"] for g in groups if "masked_weight_decay" in g), groups[0]["lr"])
        self.method.before_optimizer_step(lr)

    # -- the position in training ---------------------------------------------------------------------------
    def begin_epoch(self, epoch: int | None = None) -> None:
        """Begin ``epoch`` (default: the next one): iterative pruning steps, annealing's per-epoch updates.
        ``step`` calls it itself at each epoch's first step; the runner calls it to read ``at_target``
        before the epoch trains, and to resume at a checkpoint's epoch."""
        if self.epoch is not None and 0 < self.step_in_epoch != self.steps_per_epoch:
            raise ValueError(
                f"epoch {self.epoch} ran {self.step_in_epoch} steps, the Pruner was set up with "
                f"steps_per_epoch={self.steps_per_epoch}: pass the number of steps one epoch takes"
            )
        epoch = (0 if self.epoch is None else self.epoch + 1) if epoch is None else epoch
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch {epoch} is outside the {self.epochs} epochs the Pruner was set up for")
        self.epoch, self.step_in_epoch = epoch, 0
        self.method.begin_epoch(epoch, self.steps_per_epoch)

    def resume_at(self, epoch: int, step: int) -> None:
        """Continue inside ``epoch`` after ``step`` of its steps, from a checkpoint written there (the model,
        masks included, the optimizer and ``load_state_dict`` restored first): the method's start-of-epoch
        work (iterative pruning, re-scoring, the epoch's mask sample) is in the restored state and is *not*
        done again; only what the method derives from its position is set (``resume_epoch``)."""
        if not 0 <= epoch < self.epochs or not 0 <= step < self.steps_per_epoch:
            raise ValueError(
                f"step {step} of epoch {epoch} is outside the {self.epochs} epochs x {self.steps_per_epoch} "
                "steps the Pruner was set up for"
            )
        self.epoch, self.step_in_epoch = epoch, step
        self.method.resume_epoch(epoch, step, self.steps_per_epoch)

    def step(self) -> None:
        """Call once per training step, before the forward pass: begins the next epoch when one is due,
        then the method's ``before_step`` (stochastic masks are sampled here, GMP prunes on its grid)."""
        if self.epoch is None or self.step_in_epoch == self.steps_per_epoch:
            self.begin_epoch()
        assert self.epoch is not None
        self.method.before_step(self.epoch, self.step_in_epoch, self.steps_per_epoch)
        self.step_in_epoch += 1

    # -- what comes out -------------------------------------------------------------------------------------
    @property
    def at_target(self) -> bool:
        """Whether training now uses the final, deterministic target mask."""
        return self.method.at_target

    def report(self) -> dict[str, Any]:
        """The mask in force: ``sparsity`` (of the prunable weights, evaluation mask), ``layer_sparsity``
        per layer, ``expected_train_sparsity``, ``prunable_params`` (and annealing's ``anneal_factor``)."""
        return self.method.report()

    def export(self, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The pruned network as a plain state_dict (``x.weight``, pruned weights exactly zero, no mask
        buffers) that loads into an unpruned instance of the architecture; of ``model`` if given (a copy of
        the pruner's model, e.g. with recalibrated BatchNorm statistics), else of the pruner's model."""
        return export_state_dict(self.model if model is None else model)

    def recalibrated(self, inputs: Iterable[torch.Tensor], num_batches: int = 20) -> nn.Module:
        """The network to evaluate: a copy of the model, in eval mode, with BatchNorm statistics recalibrated
        for the target mask over the first ``num_batches`` of ``inputs`` (training inputs; labels are not
        needed); the model itself when it has no BatchNorm. The runner's ``eval.bn_recalibration_batches``
        (``recalibration.py``). Pass it to ``export`` to save the network evaluated."""
        return recalibrated(self.model, inputs, num_batches)

    def state_dict(self) -> dict[str, Any]:
        """The method's own state (its mask generator; the masks are the model's buffers): with the
        model's and the optimizer's, what a resumed loop needs; resume with ``begin_epoch(epoch)`` from a
        state saved between epochs, with ``resume_at(epoch, step)`` from one saved inside an epoch."""
        return self.method.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state)


def check_setting(method: Any, pruning: Any, sparsity: float, epochs: int, steps_per_epoch: int) -> None:
    """The runner's rules for a method setting (``config/validate.py``), as the library's arguments."""
    if not 0 <= sparsity < 1:
        raise ConfigError("sparsity", f"must be in [0, 1), got {sparsity}")
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, f"must be an integer >= 1, got {value!r}")
    validate_pruning(pruning, sparsity, method.name)
    validate_method(method, pruning.criterion, epochs, "epochs")
