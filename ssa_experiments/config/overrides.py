"""What the command line itself can get wrong, before Hydra composes it: a key given twice.

Hydra applies overrides in order, so ``seed=1 seed=2`` silently runs seed 2; in a long sweep command the
first value is easily the one meant. One key, one value: the second is refused in one line naming the key.
"""

from __future__ import annotations

from collections.abc import Iterable

from ssa_experiments.config.schema import ConfigError


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
