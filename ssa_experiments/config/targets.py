"""The user's own code named by ``model._target_``, ``data._target_`` and ``method._target_`` (Hydra's
convention): found, checked against the arguments it will be called with, and declared, before any compute.

Torch-free itself (the config layer); importing the user's module is what checking a target means, and the
CLI does it after the numerics mode is set. A built-in option never takes a ``_target_`` nor a key its
schema does not define: Hydra's ``+`` would otherwise add one that is silently ignored (and splits the
store). Every refusal is a ``ConfigError`` naming the field, in one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ssa_experiments.config.schema import (
    MODEL_DATA_KEYWORDS,
    ConfigError,
    CustomDataConfig,
    CustomMethodConfig,
    CustomModelConfig,
    DataConfig,
    ImageFolderConfig,
    MethodConfig,
    ModelConfig,
    NpzConfig,
)

TARGET = "_target_"
BASE_METHOD = "ssa_experiments.pruning.methods.base"  # where PruningMethod lives (not imported here)
# the schema of each option that is not the user's code: its node may hold these keys only
DATA_SCHEMAS: dict[str, type] = {"image_folder": ImageFolderConfig, "npz": NpzConfig}
CUSTOM_SCHEMAS: dict[str, type] = {
    "model": CustomModelConfig,
    "data": CustomDataConfig,
    "method": CustomMethodConfig,
}


def one_line(err: BaseException) -> str:
    """An exception as ``Type: message`` on one line (the CLI prints one line)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def fields(schema: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(schema))


def user_arguments(node: Mapping[str, Any], group: str) -> dict[str, Any]:
    """The keys of a custom option's node its schema does not define: the target's keyword arguments."""
    own = fields(CUSTOM_SCHEMAS[group])
    return {k: v for k, v in node.items() if k not in own}


def locate(path: Any, field: str) -> Any:
    """The object at dotted ``path`` ("pkg.module.Name"), as Hydra finds a ``_target_``: the first part
    imported, then each next part an attribute, or else a submodule imported. A module that exists but fails
    to import is named with its own error, not reported as missing."""
    if path in (None, "", "???"):
        raise ConfigError(
            field, "missing: set it to the dotted path of your callable, e.g. my_pkg.module.Name"
        )
    if not isinstance(path, str) or not all(part.isidentifier() for part in path.split(".")):
        raise ConfigError(field, f"{path!r} is not a dotted path (package.module.Name)")
    parts = path.split(".")
    obj = _import(parts[0], field)
    if obj is None:
        raise ConfigError(
            field,
            f"cannot import {path!r}: no module {parts[0]!r} on sys.path (is its folder on PYTHONPATH?)",
        )
    for i, attr in enumerate(parts[1:], start=1):
        if hasattr(obj, attr):
            obj = getattr(obj, attr)
            continue
        sub = _import(".".join(parts[: i + 1]), field) if isinstance(obj, types.ModuleType) else None
        if sub is None:
            raise ConfigError(field, f"{path!r}: {'.'.join(parts[:i])} has no attribute {attr!r}")
        obj = sub
    return obj


def _import(module: str, field: str) -> types.ModuleType | None:
    """``module`` imported, None if there is no such module; a module failing to import is refused."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            return None
        raise ConfigError(field, f"importing {module} failed: {one_line(err)}") from None
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(field, f"importing {module} failed: {one_line(err)}") from None


def signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without one: the call itself will tell
        return None


def named_parameters(fn: Callable[..., Any]) -> frozenset[str]:
    """The parameters ``fn`` takes by keyword, by name (not what ``**kwargs`` would swallow)."""
    sig = signature(fn)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset() if sig is None else frozenset(n for n, p in sig.parameters.items() if p.kind in kinds)


def check_call(
    fn: Any, path: str, field: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] = {}
) -> None:
    """``fn`` is callable and its signature binds ``args`` and ``kwargs`` (as the run will call it)."""
    if not callable(fn):
        raise ConfigError(field, f"{path!r} is a {type(fn).__name__}, not a callable (a class or function)")
    sig = signature(fn)
    if sig is None:
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as err:
        given = ", ".join([*(f"<{a}>" for a in args), *kwargs]) or "no arguments"
        raise ConfigError(field, f"{path}{sig} cannot be called with ({given}): {err}") from None


def model_data_keywords(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Which of the data set's keywords (``MODEL_DATA_KEYWORDS``) a custom model's callable takes."""
    named = named_parameters(fn)
    return tuple(k for k in MODEL_DATA_KEYWORDS if k in named)


def check_custom_model(node: Mapping[str, Any]) -> Callable[..., Any]:
    """The custom model's callable, checked against the call ``models.build_custom`` makes."""
    path = node.get(TARGET)
    fn = locate(path, "model._target_")
    args = user_arguments(node, "model")
    takes = model_data_keywords(fn) if callable(fn) else ()
    for key in takes:
        if key in args:
            raise ConfigError(
                f"model.{key}", f"comes from the data set ({path} takes it): remove +model.{key}"
            )
    check_call(fn, path, "model._target_", kwargs={**args, **dict.fromkeys(takes)})
    return fn


def check_custom_data(node: Mapping[str, Any]) -> Callable[..., Any]:
    path = node.get(TARGET)
    fn = locate(path, "data._target_")
    check_call(fn, path, "data._target_", kwargs=user_arguments(node, "data"))
    return fn


def method_class(path: str) -> type:
    """The custom method's class: a subclass of ``PruningMethod`` (its constructor checked too)."""
    cls = locate(path, "method._target_")
    base = sys.modules.get(BASE_METHOD)  # loaded if cls subclasses it: its module imports it
    if not (isinstance(cls, type) and base is not None and issubclass(cls, base.PruningMethod)):
        raise ConfigError(
            "method._target_",
            f"{path!r} must be a subclass of {BASE_METHOD}.PruningMethod (docs/extending.md)",
        )
    check_call(
        cls, path, "method._target_", args=("method", "pruning", "sparsity", "seed"), kwargs={"scorer": None}
    )
    return cls


def method_declaration(path: str) -> tuple[tuple[str, ...], bool]:
    """(reads, gradual) of a custom method: its class attributes ``reads`` (the ``method.*`` keys of the
    schema it depends on; default none) and ``gradual`` (reaches the target at ``method.anneal_epochs``;
    default False), the two facts a ``MethodSpec`` states for a built-in one."""
    cls = method_class(path)
    reads, gradual = getattr(cls, "reads", ()), getattr(cls, "gradual", False)
    known = fields(MethodConfig) - {"name"}
    if isinstance(reads, str) or not all(isinstance(k, str) for k in reads):
        raise ConfigError(
            "method._target_", f"{path}.reads must be a tuple of method.* key names, got {reads!r}"
        )
    unknown = sorted(set(reads) - known)
    if unknown:
        raise ConfigError(
            "method._target_", f"{path}.reads names {unknown}, not method.* keys; choose from {sorted(known)}"
        )
    if not isinstance(gradual, bool):
        raise ConfigError("method._target_", f"{path}.gradual must be True or False, got {gradual!r}")
    return tuple(reads), gradual


def custom_method_reads(node: Mapping[str, Any]) -> tuple[str, ...]:
    """Every ``method.*`` key a custom method's run depends on: its target, its declared ``reads`` and the
    keys the user added (``+method.<key>``)."""
    reads, _ = method_declaration(node[TARGET])
    return (TARGET, *reads, *user_arguments(node, "method"))


def refuse_foreign_keys(node: Mapping[str, Any], group: str, option: str, schema: type) -> None:
    """A built-in option's node holds its schema's keys only: ``+model._target_`` on ``model=small_cnn``
    would be ignored, so it is refused, pointing at ``<group>=custom``."""
    extra = [k for k in node if k not in fields(schema)]
    if not extra:
        return
    key = TARGET if TARGET in extra else extra[0]
    raise ConfigError(
        f"{group}.{key}",
        f"{group}={option} is built in and reads no {key!r} (it would be ignored): for your own "
        f"{group} use {group}=custom {group}._target_=<module.Name> (docs/extending.md)",
    )


def plain(node: Any) -> dict[str, Any]:
    """A config node as a dict (a missing ``_target_`` as "???", refused by ``locate`` in one line)."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    return dataclasses.asdict(node) if dataclasses.is_dataclass(node) else dict(node)


def check_targets(cfg: Any) -> None:
    """The ``_target_`` rules of ``validate``: a custom option's target imports and takes its arguments; a
    built-in option has none and no key its schema lacks."""
    model, data, method = (plain(cfg[group]) for group in ("model", "data", "method"))
    if model["arch"] == "custom":
        check_custom_model(model)
    else:
        refuse_foreign_keys(model, "model", model["arch"], ModelConfig)
    if data["name"] == "custom":
        check_custom_data(data)
    else:
        refuse_foreign_keys(data, "data", data["name"], DATA_SCHEMAS.get(data["name"], DataConfig))
    if method["name"] == "custom":
        method_declaration(method.get(TARGET))
    else:
        refuse_foreign_keys(method, "method", method["name"], MethodConfig)


def option_label(node: Any, key: str) -> str:
    """How a run's summary, W&B tags and tables name its model (``key`` "arch"), data set or method
    ("name"): the option's name, or for a custom one its ``_target_`` (two custom models are two names), or
    for ``model=timm`` the timm model's name (``timm:resnet50``: ``timm`` alone names any of a thousand)."""
    value = node[key]
    if value == "timm" and node.get("name"):
        return f"timm:{node['name']}"
    return str(node[TARGET]) if value == "custom" else str(value)
