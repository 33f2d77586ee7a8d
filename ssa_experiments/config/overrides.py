"""What the command line itself can get wrong, refused in one line naming the field before Hydra composes it.

* a key given twice: Hydra applies overrides in order, so ``seed=1 seed=2`` silently runs seed 2; in a long
  sweep command the first value is easily the one meant. One key, one value;
* a value of the wrong type for its schema field (``train.batch_size=abc``) or an unknown config group
  choice (``model=foo``): Hydra refuses both at composition, but in many lines with exit 1.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from omegaconf import OmegaConf, ValidationError

from ssa_experiments.config.paths import conf_dir
from ssa_experiments.config.schema import (
    Config,
    ConfigError,
    DataConfig,
    ImageFolderConfig,
    ModelConfig,
    NpzConfig,
)


def override_key(override: str) -> str | None:
    """The key an override sets (``[~|+|++]key[@package]=value``); None for a flag (``-m``, ``--cfg``) or
    a flag's value, which have neither ``=`` nor a leading ``~``."""
    if override.startswith("-"):
        return None
    body = override.lstrip("~+")
    key, sep, _ = body.partition("=")
    if not sep and not override.startswith("~"):
        return None
    return key.partition("@")[0].strip()


def refuse_repeated(overrides: Iterable[str]) -> None:
    """Raise ConfigError naming the first key the command line sets twice."""
    seen: dict[str, str] = {}
    for override in overrides:
        key = override_key(override)
        if key is None:
            continue
        if key in seen:
            raise ConfigError(key, f"given twice ({seen[key]!r} and {override!r}): keep one")
        seen[key] = override


# ``model`` and ``data`` are untyped in Config, so that ``=custom`` stays open for the user's arguments: a
# built-in option carries the built-in schema (conf/model/*.yaml, conf/data/*.yaml), a reader of the user's
# files its own, a ``=custom`` option none (its keys are the user's)
GROUP_SCHEMAS: dict[str, tuple[type, dict[str, type | None]]] = {
    "model": (ModelConfig, {"custom": None}),
    "data": (DataConfig, {"custom": None, "image_folder": ImageFolderConfig, "npz": NpzConfig}),
}


def schema_field(dotted: str, chosen: dict[str, str] | None = None) -> tuple[type, str] | None:
    """(the dataclass that declares ``dotted``'s last key, that key), or None where the schema does not type
    it (a key outside the schema, a dict's own keys such as ``model.kwargs.*``, a ``=custom`` option's keys).
    ``chosen``: the group options the command line picks (``{"model": "custom"}``)."""
    node: Any = Config
    *parents, leaf = dotted.split(".")
    if parents and parents[0] in GROUP_SCHEMAS:
        built_in, others = GROUP_SCHEMAS[parents[0]]
        option = (chosen or {}).get(parents[0])
        node = others.get(option, built_in) if option in others else built_in
        if node is None:
            return None
        parents = parents[1:]
    for key in parents:
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if key not in hints:
            return None
        node = hints[key]
    if not dataclasses.is_dataclass(node) or leaf not in {f.name for f in dataclasses.fields(node)}:
        return None
    return node, leaf


def _type_error(cls: type, leaf: str, value: Any) -> str | None:
    """OmegaConf's judgement of ``value`` for the typed field ``cls.leaf``, as a short reason, or None."""
    node = OmegaConf.structured(cls)
    try:
        node[leaf] = value
    except ValidationError:
        expected = typing.get_type_hints(cls)[leaf]
        name = expected.__name__ if isinstance(expected, type) else str(expected).replace("typing.", "")
        return f"must be of type {name}, got {value!r}"
    return None


def _group_choices(group: str) -> list[str] | None:
    folder = conf_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else None


def refuse_bad_values(overrides: Sequence[str]) -> None:
    """Raise ConfigError naming the field for a value of the wrong type (``train.batch_size=abc``) or an
    unknown config group choice (``model=foo``), which Hydra would report in many lines with exit 1. Every
    value of a sweep (``seed=0,x``) is checked. Keys outside the schema and ``hydra.*`` are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    wanted = [o for o in overrides if override_key(o) is not None]
    try:
        parsed = OverridesParser.create().parse_overrides(wanted)
    except HydraException:
        return  # a syntax error: Hydra's own message says where
    chosen = {o.key_or_group: str(o.value()) for o in parsed if o.key_or_group in GROUP_SCHEMAS}
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or key.startswith("hydra"):
            continue
        if o.is_sweep_override():
            values = getattr(o.value(), "list", None)
            if values is None:
                continue  # range(...) / interval(...): numbers by construction
        else:
            values = [o.value()]
        choices = _group_choices(key)
        if choices is not None:
            for v in values:
                if v is not None and str(v) not in choices:
                    raise ConfigError(key, f"unknown value {v!r}; choose one of {', '.join(choices)}")
            continue
        found = schema_field(key, chosen)
        if found is None:
            continue
        for v in values:
            reason = _type_error(*found, v)
            if reason:
                raise ConfigError(key, reason)
