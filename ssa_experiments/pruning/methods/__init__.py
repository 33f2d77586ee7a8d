"""The pruning methods, one class each behind the interface of ``base.PruningMethod``.

    base.py        the interface the training loop calls, and dense (the reference)
    oneshot.py     one-shot pruning
    iterative.py   iterative pruning and gradual magnitude pruning
    annealing.py   Stochastic Subnetwork Annealing: temperature and random annealing
    controls.py    stochastic_constant, dropconnect_target, soft_annealing

Which class runs a method is its declaration's ``target`` in the registry (``config/methods.py``), so adding
a method is one class here plus one declaration there; ``method=custom`` runs the user's class named by
``method._target_`` (``config/targets.py``, docs/extending.md).
"""

from __future__ import annotations

import importlib

from ssa_experiments.config.methods import METHODS, spec
from ssa_experiments.config.schema import MethodConfig, PruningConfig
from ssa_experiments.config.targets import method_class as custom_method_class
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.targets import Scorer


def method_class(name: str) -> type[PruningMethod]:
    """The class the registry declares for method ``name`` ("module:Class", imported on demand)."""
    if name not in METHODS:
        raise ValueError(f"method.name: unknown method {name!r}; choose one of {sorted(METHODS)}")
    module, cls = spec(name).target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_method(
    method: MethodConfig,
    pruning: PruningConfig,
    sparsity: float,
    seed: int,
    scorer: Scorer | None = None,
) -> PruningMethod:
    """The configured method; ``scorer`` (e.g. an ensemble member's) chooses its target instead of
    ``pruning.criterion`` (every method composes with every scorer: it only replaces the scores)."""
    cls = custom_method_class(method._target_) if method.name == "custom" else method_class(method.name)
    return cls(method, pruning, sparsity, seed, scorer=scorer)
