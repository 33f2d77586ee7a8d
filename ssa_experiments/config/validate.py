"""The config schema and every bad-input rule, in one place.

The dataclasses are registered in Hydra's ConfigStore and ``conf/config.yaml`` extends them, so a key that is
not in the schema (a typo) or a value of the wrong type fails at composition, before any compute.
``validate`` adds the rules a type cannot express (ranges, cross-field rules, paths that must exist).
Key names are frozen: renaming one breaks users' sweeps; deprecate instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssa_experiments.config.methods import (
    ANNEAL_SCHEDULES,
    DROP_SCHEDULES,
    DST_METHODS,
    GRADUAL_METHODS,
    ITERATIVE_SCHEDULES,
    METHOD_KEYS,
    METHODS,
    RESCORE_METHODS,
)
from ssa_experiments.config.schema import (
    ARCHS,
    CONTROLS,
    CORRUPTIONS,
    CRITERIA,
    DATA_SETS,
    ENSEMBLE_MASKS,
    LOADED_DATA_SETS,
    LR_SCHEDULES,
    OBJECTIVES,
    PARENT_DERIVED_SCHEDULES,
    SCOPES,
    SEVERITIES,
    SIGNAL_ARCHS,
    SIGNAL_DATA_SETS,
    Config,
    ConfigError,
    parse_pattern,
    resolve_root,
)
from ssa_experiments.config.targets import check_targets, method_declaration
from ssa_experiments.repro.numerics import MODES as CPU_NUMERICS


def check_num_samples(n: int) -> None:
    """MNIST-1D's generator makes ``n // 10`` samples per class, so ``n`` must be a multiple of 10 (else the
    set is silently smaller than asked), and at least 100 (10 per class, a test set of 20)."""
    if n < 100 or n % 10:
        raise ConfigError("data.num_samples", f"must be a multiple of 10 and >= 100, got {n}")


def _choice(value: str, allowed: tuple[str, ...] | list[str], name: str) -> None:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive(value: float, name: str, allow_zero: bool = False) -> None:
    """A finite number > 0 (>= 0 with ``allow_zero``): NaN and infinity are refused, as NaN compares false."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, f"must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value}")


def _in_range(value: float, name: str, low: float, high: float, closed_high: bool = False) -> None:
    """``low <= value < high`` (``<= high`` with ``closed_high``); NaN is never in range."""
    if not (low <= value <= high if closed_high else low <= value < high):
        raise ConfigError(name, f"must be in [{low:g}, {high:g}{']' if closed_high else ')'}, got {value}")


def _closest(key: str, known: list[str]) -> str:
    """The real key a typo most likely meant (difflib), as a hint; '' when none is close."""
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


# the groups a user brings an option of their own to (``=custom`` with its ``_target_``)
OWN_GROUPS = ("model.", "data.", "method.")


def check_closed(node: Any, prefix: str = "") -> None:
    """Refuse a key that a node typed by a schema dataclass does not declare.

    Hydra's ``+key=value`` adds a key under ``open_dict``: ``+train.finetune_epoch=3`` (a typo) composes, and
    nothing ever reads it. A node whose schema is a dataclass is closed: every key must be one of its fields.
    A node typed as a plain dict (``model.kwargs``, passed to timm) or untyped (a group a user brings with its
    own ``_target_``) is open and is not checked, and so is a ``=custom`` node (its schema declares
    ``_target_``): the keys beyond its fields are the user's arguments to the target."""
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    fields = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
    if fields is not None and "_target_" in fields:
        fields = None
    for key in node:
        name = f"{prefix}{key}"
        if fields is not None and key not in fields and key != "_target_":  # check_targets says more
            own = f" (a {prefix[:-1]} of your own: {prefix[:-1]}=custom)" if prefix in OWN_GROUPS else ""
            raise ConfigError(name, f"is not a config key{_closest(str(key), fields)}{own}")
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            check_closed(child, f"{name}.")


def validate_lr(s: Any, prefix: str) -> None:
    _choice(s.name, LR_SCHEDULES, f"{prefix}.name")
    _positive(s.lr, f"{prefix}.lr")
    if not 0 < s.pct_start < 1:
        raise ConfigError(f"{prefix}.pct_start", f"must be in (0, 1), got {s.pct_start}")
    _in_range(s.decay_start, f"{prefix}.decay_start", 0, 1, closed_high=True)
    _in_range(s.decay_end, f"{prefix}.decay_end", 0, 1, closed_high=True)
    if s.decay_end < s.decay_start:
        raise ConfigError(f"{prefix}.decay_end", f"must be >= decay_start={s.decay_start}, got {s.decay_end}")
    _positive(s.div_factor, f"{prefix}.div_factor")
    _positive(s.final_div_factor, f"{prefix}.final_div_factor")
    _positive(s.gamma, f"{prefix}.gamma")
    for m in s.milestones:  # fractions of training
        _in_range(m, f"{prefix}.milestones", 0, 1, closed_high=True)
    _positive(s.final_ratio, f"{prefix}.final_ratio", allow_zero=True)
    _positive(s.min_ratio, f"{prefix}.min_ratio", allow_zero=True)


def validate_model(m: Any) -> None:
    """Sizes a model is built from: at least one of each (0 builds nothing and fails deep inside torch)."""
    for key in ("width", "depth", "widen_factor", "patch_size", "heads"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}", f"must be >= 1, got {getattr(m, key)}")
    _in_range(m.dropout, "model.dropout", 0, 1)
    for key in ("mimo_heads", "mimo_batch_repetitions"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}", f"must be >= 1, got {getattr(m, key)}")
    if m.mimo_batch_repetitions > 1 and m.mimo_heads == 1:
        raise ConfigError(
            "model.mimo_batch_repetitions", "repeats MIMO's batches: needs model.mimo_heads > 1"
        )


# integer sizes and counts and their minimum: below it a run builds nothing, or fails deep inside torch
MINIMUMS = {
    "data.image_size": 1, "data.crop_padding": 0, "data.num_workers": 0, "data.num_train": 1,
    "data.num_test": 1, "data.num_classes": 2, "data.channels": 1, "train.checkpoint_every": 0,
    "train.checkpoint_every_steps": 0, "train.max_steps_per_epoch": 0,
}  # fmt: skip


def validate_minimums(cfg: DictConfig | Config) -> None:
    """``MINIMUMS`` of the keys a node has: a data set read from the user's files (``data=custom|npz|
    image_folder``) has its own schema, without most of the built-in data sets' keys, or leaves them unset."""
    for dotted, low in MINIMUMS.items():
        group, key = dotted.split(".")
        value = getattr(cfg, group).get(key)
        if value is not None and value < low:
            raise ConfigError(dotted, f"must be >= {low}, got {value}")
    split_seed = cfg.data.get("split_seed")
    if split_seed is not None and not 0 <= split_seed < 2**32:  # numpy's seeds
        raise ConfigError("data.split_seed", f"must be in [0, 2**32), got {split_seed}")


def check_device(cfg: DictConfig | Config) -> None:
    """A CUDA device this machine has (torch's view), before anything is written or computed; not part of
    ``validate``, which judges a config on any machine."""
    name = str(cfg.device)
    if not name.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = name.partition(":")[2]
    if not count:
        raise ConfigError(
            "device", f"{name} asked for, but torch sees no GPU on this machine: use cpu or auto"
        )
    if index and (not index.isdigit() or int(index) >= count):
        raise ConfigError("device", f"{name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")


def validate_ensemble(cfg: DictConfig | Config) -> None:
    """The ``ensemble.*`` rules, checked for every run (a default run's values are valid), so a bad preset
    fails before its first member trains."""
    e = cfg.ensemble
    _choice(e.masks, ENSEMBLE_MASKS, "ensemble.masks")
    _positive(e.size, "ensemble.size")
    _positive(e.noise, "ensemble.noise", allow_zero=True)
    if e.masks == "anti_random" and e.size % 2:
        raise ConfigError(
            "ensemble.size", f"anti_random masks come in pairs: needs an even size, not {e.size}"
        )
    if e.member is not None and not 0 <= e.member < e.size:
        raise ConfigError("ensemble.member", f"must be in [0, ensemble.size={e.size}), got {e.member}")
    if e.independent_parents and cfg.parent.path is not None:
        raise ConfigError(
            "ensemble.independent_parents",
            "each member trains its own parent from a derived seed, parent.path brings one: unset one",
        )
    for name in e.corruptions:
        _choice(name, CORRUPTIONS, "ensemble.corruptions")
    bad = [s for s in e.severities if s not in SEVERITIES]
    if bad:
        raise ConfigError("ensemble.severities", f"{bad} not in {list(SEVERITIES)}")


def validate_pruning(p: Any, sparsity: float, method: str, pretrained: bool = False) -> None:
    """The ``pruning.*`` rules (docs/methods-baselines.md): known criterion, scope, control; an n:m pattern
    that is well formed, fixes the sparsity at 1 - n/m and is not moved out of its groups by the shuffle
    control. Shared by ``validate`` and the library's ``Pruner``."""
    _choice(p.criterion, CRITERIA, "pruning.criterion")
    _choice(p.scope, SCOPES, "pruning.scope")
    _choice(p.control, CONTROLS, "pruning.control")
    if p.score_batches < 1:
        raise ConfigError("pruning.score_batches", f"must be >= 1, got {p.score_batches}")
    if p.synflow_rounds < 1:
        raise ConfigError("pruning.synflow_rounds", f"must be >= 1, got {p.synflow_rounds}")
    if p.control == "reinit" and pretrained:
        raise ConfigError(
            "pruning.control",
            "reinit draws the weights again from the model's initialisation; model.pretrained=true would "
            "give it the pretrained weights instead",
        )
    try:
        nm = parse_pattern(p.pattern)
    except ValueError as err:
        raise ConfigError("pruning.pattern", str(err)) from None
    if nm is None or method == "dense":
        return
    n, m = nm
    if abs(sparsity - (1 - n / m)) > 1e-9:
        raise ConfigError(
            "pruning.pattern", f"{p.pattern} keeps {n} of every {m}: sparsity must be {1 - n / m:g}, not "
            f"{sparsity}",
        )  # fmt: skip
    if p.scope != "global":
        raise ConfigError(
            "pruning.scope", f"pattern {p.pattern} puts every layer at {1 - n / m:g}: leave it global"
        )
    if p.control == "shuffle_layerwise":
        raise ConfigError(
            "pruning.control", f"shuffle_layerwise moves kept weights out of their {n}:{m} groups"
        )
    if method in ("set", "rigl"):  # drop and grow per layer: the mask leaves the n:m layout
        raise ConfigError(
            "pruning.pattern", f"{method} drops and grows connections per layer, not per group of {m}: its "
            f"masks would not stay {n}:{m}; use pruning.pattern=unstructured",
        )  # fmt: skip


def validate_retraining(cfg: DictConfig | Config) -> None:
    """The retraining baselines' rules: a derived schedule needs a parent schedule to read, LR rewinding must
    stay within the parent's epochs, and weight rewinding needs epoch checkpoints of a parent trained here."""
    p, t = cfg.parent, cfg.train.finetune_epochs
    if p.lr.name in PARENT_DERIVED_SCHEDULES:
        raise ConfigError("parent.lr.name", f"{p.lr.name!r} is a fine-tuning schedule only")
    if cfg.lr.name in PARENT_DERIVED_SCHEDULES and p.epochs <= 0:
        raise ConfigError(
            "parent.epochs",
            f"lr={cfg.lr.name} replays the parent's LR schedule: set parent.epochs and "
            "parent.lr to those the parent was trained with",
        )
    for k in p.save_epochs:
        if not 0 <= k < p.epochs:
            raise ConfigError("parent.save_epochs", f"each must be in [0, parent.epochs={p.epochs}), got {k}")
    k = p.rewind_epoch
    if k is not None:
        if p.path is not None:
            raise ConfigError(
                "parent.rewind_epoch",
                "needs the parent's epoch checkpoints, which parent.path (final weights only) does not have",
            )
        if not 0 <= k < p.epochs:
            raise ConfigError("parent.rewind_epoch", f"must be in [0, parent.epochs={p.epochs}), got {k}")
    # lr_rewind replays the parent's epochs from parent.epochs - t (from k when rewinding): all must exist
    most = p.epochs - (0 if k is None else k)
    if cfg.lr.name == "lr_rewind" and t > most:
        after = "" if k is None else f" after parent.rewind_epoch={k}"
        raise ConfigError(
            "train.finetune_epochs",
            f"lr=lr_rewind replays {t} parent epochs, the parent has {most}{after}: need <= {most}",
        )


def validate_dst(m: Any) -> None:
    """The keys of dynamic sparse training (set, rigl): ΔT, α, its decay and the stop fraction."""
    _positive(m.update_every, "method.update_every")
    if not 0 < m.drop_fraction < 1:
        raise ConfigError("method.drop_fraction", f"must be in (0, 1), got {m.drop_fraction}")
    _choice(m.drop_schedule, DROP_SCHEDULES, "method.drop_schedule")
    if not 0 < m.end_fraction <= 1:
        raise ConfigError("method.end_fraction", f"must be in (0, 1], got {m.end_fraction}")


def method_facts(m: Any) -> tuple[tuple[str, ...], bool]:
    """(the ``method.*`` keys a method reads, whether it is gradual): the registry's declaration of a
    built-in method, the class attributes of a custom one (``targets.method_declaration``)."""
    if m.name == "custom":
        return method_declaration(m._target_)
    return METHOD_KEYS[m.name], m.name in GRADUAL_METHODS


def validate_loaded_data(d: Any) -> None:
    """The keys of the data sets read from the user's files (``data/files.py``): the files exist, and the
    normalisation, when given, is one positive std per mean."""
    if d.name == "image_folder" and (d.root in (None, "???") or not Path(d.root).expanduser().is_dir()):
        raise ConfigError(
            "data.root", f"no image folder at {d.root!r}: set data.root=DIR (DIR/train, DIR/test)"
        )
    if d.name == "npz" and (d.path in (None, "???") or not Path(d.path).expanduser().is_file()):
        raise ConfigError("data.path", f"no .npz file at {d.path!r}: set data.path=FILE")
    if d.name in LOADED_DATA_SETS and (d.mean is None) != (d.std is None):
        raise ConfigError(
            "data.mean" if d.mean is None else "data.std", "set both data.mean and data.std, or neither"
        )


def validate_method(m: Any, criterion: str, epochs: int, epochs_field: str = "train.finetune_epochs") -> None:
    """The ``method.*`` rules: its keys' ranges and choices, and that a gradual method reaches its target
    before the last of ``epochs`` fine-tuning epochs (``epochs_field`` names that number in the error). Shared
    by ``validate`` and the library's ``Pruner``, so a method option is judged the same way in both."""
    reads, gradual = method_facts(m)
    if m.name == "iterative":
        _choice(m.schedule, ITERATIVE_SCHEDULES, "method.schedule")
    else:
        _choice(m.schedule, ANNEAL_SCHEDULES, "method.schedule")
    _choice(m.granularity, ("epoch", "step"), "method.granularity")
    _choice(m.resample, ("step", "epoch"), "method.resample")
    if "initial_temperature" in reads and not 0 < m.initial_temperature <= 1:
        raise ConfigError("method.initial_temperature", f"must be in (0, 1], got {m.initial_temperature}")
    if m.name == "random_annealing" and not 0 < m.max_initial_probability <= 1:
        raise ConfigError(
            "method.max_initial_probability", f"must be in (0, 1], got {m.max_initial_probability}"
        )
    if m.name == "dropconnect_target" and not 0 < m.initial_drop_rate < 1:  # kept weights scale by 1/(1 - r)
        raise ConfigError("method.initial_drop_rate", f"must be in (0, 1), got {m.initial_drop_rate}")
    _positive(m.decay_rate, "method.decay_rate")
    _positive(m.prune_every_steps, "method.prune_every_steps", allow_zero=True)
    if m.prune_every_steps and "prune_every_steps" not in reads:
        raise ConfigError(
            "method.prune_every_steps",
            f"is read by method=iterative only (gradual magnitude pruning), not {m.name}",
        )
    if m.rescore and "rescore" not in reads:
        raise ConfigError(
            "method.rescore",
            f"is read by {', '.join(RESCORE_METHODS)} only, not {m.name} (iterative always re-scores; the "
            "controls fix P or the target from the start)",
        )
    if m.rescore and criterion == "random":
        raise ConfigError(
            "method.rescore", "pruning.criterion=random draws the same scores again: nothing to re-score"
        )
    if gradual:
        _positive(m.anneal_epochs, "method.anneal_epochs")
        if m.anneal_epochs >= epochs:  # the target must be trained on its own
            raise ConfigError(
                "method.anneal_epochs",
                f"{m.anneal_epochs} must be < {epochs_field}={epochs} "
                "(the target mask is in force from epoch anneal_epochs on; at least one epoch must train it)",
            )
    if m.name in DST_METHODS:
        validate_dst(m)


def validate(cfg: DictConfig | Config) -> None:
    """Raise ConfigError for the first bad value; called before any data is read or model built."""
    if isinstance(cfg, DictConfig):
        check_closed(cfg)
    if not 0 <= cfg.sparsity < 1:
        raise ConfigError("sparsity", f"must be in [0, 1), got {cfg.sparsity}")
    if not 0 <= cfg.seed < 2**32:  # numpy's seeds
        raise ConfigError("seed", f"must be in [0, 2**32), got {cfg.seed}")
    m = cfg.method
    _choice(m.name, (*METHODS, "custom"), "method.name")
    _choice(cfg.model.arch, (*ARCHS, "custom"), "model.arch")
    _choice(cfg.data.name, (*DATA_SETS, *LOADED_DATA_SETS), "data.name")
    check_targets(cfg)  # the user's code: importable, takes its arguments; built-in options take none
    known_kind = cfg.model.arch != "custom" and cfg.data.name not in ("custom", "npz")  # else: once read
    if known_kind and (cfg.data.name in SIGNAL_DATA_SETS) != (cfg.model.arch in SIGNAL_ARCHS):
        raise ConfigError(
            "model.arch",
            f"{cfg.model.arch} does not fit data={cfg.data.name}: 1-D signals "
            f"({', '.join(SIGNAL_DATA_SETS)}) need a 1-D model ({', '.join(SIGNAL_ARCHS)}), images a 2-D one",
        )
    if cfg.data.name == "mnist1d":
        check_num_samples(cfg.data.num_samples)
    _choice(cfg.data.pipeline, ("device", "torch"), "data.pipeline")
    validate_pruning(cfg.pruning, cfg.sparsity, m.name, bool(cfg.model.get("pretrained", False)))
    _choice(cfg.optimizer.name, ("sgd", "adamw"), "optimizer.name")
    _positive(cfg.optimizer.weight_decay, "optimizer.weight_decay", allow_zero=True)
    _in_range(cfg.optimizer.momentum, "optimizer.momentum", 0, 1)
    for beta in cfg.optimizer.betas:
        _in_range(beta, "optimizer.betas", 0, 1)
    if cfg.model.arch != "custom":
        validate_model(cfg.model)
    validate_minimums(cfg)
    validate_loaded_data(cfg.data)
    validate_lr(cfg.lr, "lr")
    validate_lr(cfg.parent.lr, "parent.lr")
    _positive(cfg.train.finetune_epochs, "train.finetune_epochs")
    _positive(cfg.train.batch_size, "train.batch_size")
    _positive(cfg.train.cpu_threads, "train.cpu_threads")
    _choice(cfg.train.cpu_numerics, CPU_NUMERICS, "train.cpu_numerics")
    if not isinstance(cfg.train.compile, bool):
        raise ConfigError("train.compile", f"must be true or false, got {cfg.train.compile!r}")
    _positive(cfg.train.runs_per_device, "train.runs_per_device")
    _choice(cfg.objective, OBJECTIVES, "objective")
    _positive(cfg.parent.epochs, "parent.epochs", allow_zero=True)  # 0: pruning at initialisation
    validate_retraining(cfg)
    if not 0 <= cfg.train.label_smoothing < 1:
        raise ConfigError("train.label_smoothing", f"must be in [0, 1), got {cfg.train.label_smoothing}")
    validate_method(m, cfg.pruning.criterion, cfg.train.finetune_epochs)
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError("data.val_fraction", f"must be in [0, 1), got {cfg.data.val_fraction}")
    _positive(cfg.eval.bn_recalibration_batches, "eval.bn_recalibration_batches", allow_zero=True)
    validate_ensemble(cfg)
    _choice(cfg.logger.name, ("local", "wandb"), "logger.name")
    _choice(cfg.logger.progress, ("auto", "bar", "lines", "none"), "logger.progress")
    if cfg.logger.mode is not None:
        _choice(cfg.logger.mode, ("online", "offline", "disabled"), "logger.mode")
    _positive(cfg.logger.init_timeout, "logger.init_timeout")
    if cfg.store.lock_timeout_s is not None:
        _positive(cfg.store.lock_timeout_s, "store.lock_timeout_s", allow_zero=True)
    if cfg.device not in ("auto", "cpu") and not str(cfg.device).startswith("cuda"):
        raise ConfigError("device", f"unknown device {cfg.device!r}; use auto, cpu, cuda or cuda:N")
    if cfg.data.name in ("cifar10", "cifar100", "tiny_imagenet"):
        root = resolve_root(cfg.data)
        if not root.is_dir():
            raise ConfigError(
                "data.root",
                f"data directory {str(root)!r} does not exist; set data.root=... or SSA_DATA_DIR to a copy "
                f"of {cfg.data.name} (see docs/data-and-models.md)",
            )
    if cfg.parent.path is not None and not Path(cfg.parent.path).is_file():
        raise ConfigError("parent.path", f"no checkpoint file at {cfg.parent.path!r}")
