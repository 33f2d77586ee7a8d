"""Config keys renamed after runs were stored under them: one table, read three ways.

The learning-rate schedule was ``schedule`` (and the parent's ``parent.schedule``), the word the annealing
schedule (``method.schedule``) also uses; it is now ``lr`` (``parent.lr``). From the table:

* ``historical``: run identities and parent keys are computed in the old spelling, so every store key and
  every cached parent stays where it is (a rename changes no computation);
* ``current``: configs written before the rename (summaries, Hydra's records, runs CSVs, W&B) are read in
  the new spelling, so old and new runs aggregate as one;
* ``refuse_renamed``: an old spelling on the command line is refused in one line naming the new key, rather
  than accepted, so that one sweep never names one key twice under two spellings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ssa_experiments.config.schema import ConfigError

# (new, old) dotted keys; each pair are siblings (same parent node)
RENAMED = (("lr", "schedule"), ("parent.lr", "parent.schedule"))
WHY = "the learning-rate schedule; method.schedule is the annealing schedule"


def _moved(tree: Mapping[str, Any], src: str, dst: str) -> dict[str, Any]:
    """A copy of ``tree`` whose node at dotted ``src`` is named ``dst`` (its sibling), in the same place in
    the key order; the nodes along the path are copied, the rest shared."""
    head, _, rest = src.partition(".")
    if not rest:
        return {(dst if k == src else k): v for k, v in tree.items()}
    child = tree.get(head)
    if not isinstance(child, Mapping):
        return dict(tree)
    return {**tree, head: _moved(child, rest, dst.partition(".")[2])}


def historical(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` in the spelling its identity has always been computed in (``lr`` -> ``schedule``)."""
    out = dict(config)
    for new, old in RENAMED:
        out = _moved(out, new, old)
    return out


def current(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` in today's spelling (``schedule`` -> ``lr``), whenever it was written."""
    out = dict(config)
    for new, old in RENAMED:
        out = _moved(out, old, new)
    return out


def _respelled(override: str) -> tuple[str, str, str] | None:
    """(old key, new key, the override in the new spelling) when a Hydra override names a renamed key.

    An override is ``[~|+|++]key[@package][=value]``; flags (``-m``, ``--cfg job``) and their values never
    have the ``=`` or ``~`` of an override, so they are left alone."""
    body = override.lstrip("~+")
    prefix = override[: len(override) - len(body)]
    key, sep, value = body.partition("=")
    if not sep and "~" not in prefix:
        return None
    path, at, package = key.partition("@")
    for new, old in RENAMED:
        if path == old or path.startswith(f"{old}."):
            new_path = new + path[len(old) :]
            return path, new_path, f"{prefix}{new_path}{at}{package}{sep}{value}"
    return None


def refuse_renamed(overrides: Iterable[str]) -> None:
    """Raise ConfigError naming the new key for the first override that uses an old spelling."""
    for override in overrides:
        found = _respelled(override)
        if found is not None:
            old, new, fixed = found
            raise ConfigError(old, f"renamed to {new} ({WHY}): use {fixed}")
