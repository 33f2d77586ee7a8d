"""Which runs a figure draws and which configuration it calls the best.

Every figure drawn from runs starts from ``prepare``: completed runs only, each (setting, sparsity, seed)
once, filtered by ``--where`` (the rule is in the package docstring). "The best configuration" is chosen on
mean final-epoch validation accuracy unless ``--select-on test`` asks for the paper's optimistic choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ssa_experiments.analysis.aggregate import completed
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import stats
from ssa_experiments.config.methods import METHOD_KEYS
from ssa_experiments.store.files import flatten

TAU, N = "method.initial_temperature", "method.anneal_epochs"
SELECT = {"val_acc": "selected on validation", "test_acc": "selected on test (optimistic)"}


def family(method: str, config: dict[str, Any] | None) -> str:
    """The method, with iterative pruning split by its schedule: the paper's linear steps and Zhu & Gupta's
    cubic ones are different baselines, with different colours."""
    if method != "iterative":
        return str(method)
    schedule = ((config or {}).get("method") or {}).get("schedule", "linear")
    return f"iterative ({'cubic' if schedule == 'polynomial' else schedule})"


def parse_where(items: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"--where takes key=value (a dotted config key), not {item!r}")
        pairs.append((key, value))
    return pairs


def _equal(value: Any, want: str) -> bool:
    if isinstance(value, bool):
        return want.lower() == str(value).lower()
    if isinstance(value, int | float):
        try:
            return math.isclose(float(want), value)
        except ValueError:
            return False
    return str(value) == want


def matches(method: str, config: dict[str, Any], where: Sequence[tuple[str, str]]) -> bool:
    """Whether a run passes the ``--where`` filters (the rule is in the package docstring)."""
    flat = flatten(config if isinstance(config, dict) else {})
    for key, want in where:
        name = key.removeprefix("method.")
        if (
            key.startswith("method.")
            and key != "method.name"
            and name not in METHOD_KEYS.get(method, (name,))
        ):
            continue  # a key this method never reads cannot tell its runs apart
        if key not in flat or not _equal(flat[key], want):
            return False
    return True


def prepare(df: pd.DataFrame, where: Sequence[tuple[str, str]] = ()) -> pd.DataFrame:
    """The completed runs passing ``where``, each (setting, sparsity, seed) once, with their ``setting``,
    ``family`` and flattened config (``flat``). Filtered first, so the labels name only what still varies."""
    keep = [matches(m, c, where) for m, c in zip(df["method"], df["config"], strict=True)]
    done = completed(df[keep] if where else df)
    return done.assign(
        family=[family(m, c) for m, c in zip(done["method"], done["config"], strict=True)],
        flat=[flatten(c if isinstance(c, dict) else {}) for c in done["config"]],
    )


def value(done: pd.DataFrame, key: str) -> pd.Series:
    """A config key of every run, as numbers (NaN where absent or not a number)."""
    return pd.to_numeric(done["flat"].map(lambda f: f.get(key)), errors="coerce")


def best_config(
    df: pd.DataFrame,
    by: str = "val_acc",
    report: str = "test_acc",
    group: str = "method",
    ci: Bootstrap | None = None,
) -> pd.DataFrame:
    """Per ``group`` × target sparsity, the setting with the best mean ``by`` over seeds (the first label on a
    tie), with the mean, std and count of ``report`` for it and its selection ``score``.

    By default the choice sees validation accuracy only, never the test accuracy it reports; ``by="test_acc"``
    is the paper's (optimistic) choice. ``df``: runs (``collect``/``read_runs``) or ``prepare``'s frame.
    ``ci``: also the bootstrap interval of the reported mean (``stats``).
    """
    done = df if "family" in df else prepare(df)
    per = stats(done, [group, "target_sparsity", "setting"], report, by, ci)
    if per.empty:
        return per
    if per["score"].isna().all():
        raise SystemExit(f"no {by} in these runs: nothing to select the best configuration on")
    per = per.sort_values(
        [group, "target_sparsity", "score", "setting"],
        ascending=[True, True, False, True],
        na_position="last",
    )
    return per.drop_duplicates([group, "target_sparsity"]).reset_index(drop=True)


def best_line(sub: pd.DataFrame, x: str, by: str, ci: Bootstrap | None = None) -> pd.DataFrame:
    """Stats of one plotted line per value of ``x``; should several settings share an x (another swept key),
    the best of them by ``by``."""
    s = stats(sub, [x, "setting"], by=by, ci=ci)
    s = s.sort_values([x, "score", "setting"], ascending=[True, False, True], na_position="last")
    return s.drop_duplicates(x).sort_values(x)
