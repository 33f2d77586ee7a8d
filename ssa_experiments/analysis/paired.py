"""Paired comparisons over seeds: each setting against a reference method, seed by seed.

Runs of one seed share their dense parent (initialised and trained from that seed), so two methods' test
accuracies at the same seed move together: the seed-to-seed spread of either method is mostly the parent's,
not the method's. The difference at each seed removes that shared part; its mean over seeds is the effect,
and the percentile bootstrap of that mean (resampling seeds, ``bootstrap_ci``) says how sure we are of it.
Comparing the two means ± their stds instead would count the parent's spread twice and hide real effects.

A pair is two completed runs with the same seed, the same target sparsity and the same config in every key
but the ``method.*`` ones (model, data, pruning criterion, LR schedule, retraining, parent...): ``context``
says which keys count. To compare settings that differ in more than the method (another criterion, pruning
at initialisation) with one reference, name the reference by its keys (``"one_shot
pruning.criterion=magnitude parent.epochs=20"``) and the keys a pair must share (``match``, e.g.
``("pruning.scope",)``): then a pair is the same seed, sparsity and values of those keys.

A setting with no reference run of its seed and sparsity is not paired there (fewer pairs, or no row at all);
the reference's own rows are not compared with themselves. Dense is one run per seed at target sparsity 0, so
it pairs with nothing at a sparsity, except as the reference: "vs dense" pairs every setting, at every
sparsity, with the dense run of its seed (and its context minus ``pruning.*``, which dense does not read).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ssa_experiments.analysis.aggregate import NOT_SETTINGS, completed, setting_rank
from ssa_experiments.store.files import flatten

COLUMNS = [
    "setting",
    "target_sparsity",
    "n_pairs",
    "mean_diff",
    "ci_lo",
    "ci_hi",
    "wins",
    "ties",
    "reference",
]
PAIR_COLUMNS = ["run", "setting", "target_sparsity", "seed", "value", "reference_value", "diff", "reference"]


def bootstrap_ci(
    diffs: Iterable[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``diffs`` and the percentile bootstrap interval of that mean at ``level``.

    ``n_boot`` resamples of len(diffs) values drawn with replacement; lo and hi are the (1 - level) / 2 and
    (1 + level) / 2 quantiles (numpy's linear interpolation) of their means. Seeded with
    ``numpy.random.default_rng(seed)``, so a table is the same every time it is drawn. Equal values give
    lo = hi = mean (every resample is the same). One value gives NaN bounds: resampling one seed always
    returns it, and a zero-width interval would read as certainty where there is no information about the
    spread at all. No value gives (NaN, NaN, NaN). At small n the percentile bootstrap is too narrow (it
    resamples the seeds seen, with no t correction): a 95% interval covers the true mean about 75% of the time
    at n = 3, 84% at 5, 90% at 10 and 93% at 20 (normal data, simulated). Report wins/n with it.
    """
    x = np.asarray(list(diffs), dtype=float)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if np.isnan(x).any():
        raise ValueError("diffs contain NaN: drop the missing values first")
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan
    if np.all(x == x[0]):
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(lo), float(hi)


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn (level, resamples, seed): passed where a table or figure shows them."""

    level: float = 0.95
    n_boot: int = 10_000
    seed: int = 0

    def interval(self, values: Iterable[float]) -> tuple[float, float, float]:
        """(mean, lo, hi) of ``values`` by ``bootstrap_ci`` (NaN values left out)."""
        x = [float(v) for v in values if not pd.isna(v)]
        return bootstrap_ci(x, self.level, self.n_boot, self.seed)


def context(config: dict[str, Any] | None, drop_pruning: bool = False) -> str:
    """What a run shares with its pair, as canonical JSON: its flattened config without the seed, the
    ``method.*`` keys and the keys that never change a run's numbers (aggregate's ``NOT_SETTINGS``, logger,
    Hydra, store). ``drop_pruning``: without ``pruning.*`` too (dense does not read them)."""
    flat = flatten(config if isinstance(config, dict) else {})
    keep = {
        k: v
        for k, v in flat.items()
        if k not in NOT_SETTINGS
        and not k.startswith(("method.", "logger.", "hydra.", "store."))
        and not (drop_pruning and k.startswith("pruning."))
    }
    return json.dumps(keep, sort_keys=True, default=str)


def key_list(text: str) -> list[str]:
    """``--pair-on``'s value: comma-separated config keys."""
    return [k for k in text.split(",") if k]


def is_reference(done: pd.DataFrame, reference: str) -> pd.Series:
    """Which runs of ``done`` are the reference: a method name or a setting label, or a method name followed
    by ``key=value`` words (``"one_shot pruning.criterion=magnitude parent.epochs=20"``: its runs whose
    config has those values, compared as text, case-insensitively)."""
    words = reference.split()
    exact = (done["setting"] == reference) | (done["method"] == reference)
    if exact.any() or len(words) < 2 or not all("=" in w for w in words[1:]):
        return exact
    wanted = dict(w.split("=", 1) for w in words[1:])

    def matches(config: Any) -> bool:
        flat = flatten(config if isinstance(config, dict) else {})
        return all(k in flat and str(flat[k]).lower() == v.lower() for k, v in wanted.items())

    return (done["method"] == words[0]) & done["config"].map(matches)


def pairs(
    done: pd.DataFrame,
    reference: str = "one_shot",
    metric: str = "test_acc",
    match: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (run, reference run) pair, ``diff`` = run's ``metric`` - the reference's.

    ``done``: completed runs with their ``setting`` (``aggregate.completed``); ``run`` is the run's index
    label in ``done``, so callers can label pairs their own way. ``reference``: what ``is_reference``
    reads. ``match``: the config keys a pair shares besides seed and sparsity (default: every key but the
    method's, ``context``). Runs without a value of ``metric`` are left out. Several reference runs for one
    run (a reference method with a swept key of its own) are refused: name one of its settings instead.
    """
    if done.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    if not done.index.is_unique:
        raise ValueError("pairs needs a frame with a unique index (reset_index first)")
    done = done[pd.to_numeric(done[metric], errors="coerce").notna()]
    is_ref = is_reference(done, reference)
    ref, rest = done[is_ref], done[~is_ref]
    dense = bool(len(ref)) and bool((ref["method"] == "dense").all())
    if match is None:
        ctx = done["config"].map(lambda c: context(c, drop_pruning=dense))
    else:
        ctx = done["config"].map(lambda c: json.dumps([flatten(c or {}).get(k) for k in match], default=str))

    def key(i: Any, r: pd.Series) -> tuple[Any, ...]:
        sparsity = None if dense else float(r["target_sparsity"])  # vs dense: one run at any sparsity
        return (ctx[i], sparsity, int(r["seed"]))

    lookup: dict[tuple[Any, ...], pd.Series] = {}
    for i, r in ref.iterrows():
        k = key(i, r)
        if k in lookup and lookup[k]["setting"] != r["setting"]:
            raise SystemExit(
                f"reference {reference!r} has several settings for one run ({lookup[k]['setting']!r}, "
                f"{r['setting']!r}): give one of them as the reference"
            )
        lookup[k] = r
    rows = []
    for i, r in rest.iterrows():
        match = lookup.get(key(i, r))
        if match is None:
            continue  # no reference run with this seed, sparsity and config: nothing to pair with
        value, against = float(r[metric]), float(match[metric])
        rows.append({
            "run": i, "setting": r["setting"], "target_sparsity": float(r["target_sparsity"]),
            "seed": int(r["seed"]), "value": value, "reference_value": against, "diff": value - against,
            "reference": match["setting"],
        })  # fmt: skip
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def summarize(
    pairs: pd.DataFrame, keys: Sequence[str] = ("setting", "target_sparsity"), boot: Bootstrap | None = None
) -> pd.DataFrame:
    """Per ``keys``: n_pairs, mean_diff with its bootstrap interval (ci_lo, ci_hi), wins (seeds where the
    setting is strictly above the reference), ties (exactly equal) and the reference setting(s) it met."""
    boot = boot or Bootstrap()
    keys = list(keys)
    out = [*keys, *(c for c in COLUMNS if c not in keys and c not in ("setting", "target_sparsity"))]
    if pairs.empty:
        return pd.DataFrame(columns=out)
    rows = []
    for k, group in pairs.groupby(keys, sort=False):
        mean, lo, hi = boot.interval(group["diff"])
        rows.append({
            **dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)),
            "n_pairs": len(group), "mean_diff": mean, "ci_lo": lo, "ci_hi": hi,
            "wins": int((group["diff"] > 0).sum()), "ties": int((group["diff"] == 0).sum()),
            "reference": ", ".join(sorted(set(group["reference"]))),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=out)


def paired(
    df: pd.DataFrame,
    reference: str = "one_shot",
    metric: str = "test_acc",
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    match: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every setting of ``df`` (runs, as ``collect`` or ``read_runs`` give them) against ``reference``, per
    target sparsity: the tidy frame of ``COLUMNS``, in aggregate's row order (rules: module docstring)."""
    done = completed(df).reset_index(drop=True)
    out = summarize(pairs(done, reference, metric, match), boot=Bootstrap(level, n_boot, seed))
    out = out.sort_values(
        ["setting", "target_sparsity"], key=lambda c: c.map(setting_rank) if c.name == "setting" else c
    )
    return out.reset_index(drop=True)


def cell(row: dict[str, Any] | pd.Series) -> str:
    """ "+1.23 [+0.40, +2.05] 3/3": mean difference [interval] wins/n, " (1 tie)" where there are ties; with
    one pair, "[1 seed: no CI]" (see ``bootstrap_ci``)."""
    n, ties = int(row["n_pairs"]), int(row["ties"])
    lo, hi = row["ci_lo"], row["ci_hi"]
    ci = "[1 seed: no CI]" if n == 1 or pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
    tie = f" ({ties} tie{'' if ties == 1 else 's'})" if ties else ""
    return f"{row['mean_diff']:+.2f} {ci} {int(row['wins'])}/{n}{tie}"


def header(metric: str, reference: str, level: float = 0.95, match: Sequence[str] | None = None) -> str:
    """What a paired table shows, in one line."""
    same = "seed, sparsity and config but the method's keys"
    if reference == "dense":  # one run at every sparsity, reading no pruning.* key
        same = "seed and config but the method's and pruning keys"
    if match is not None:
        same = ", ".join(["seed", "sparsity", *match])
    return (
        f"Δ {metric} vs {reference}, mean per-seed difference [{100 * level:g}% bootstrap CI], wins/n "
        f"(pairs: same {same})"
    )


def wide(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as a table: settings as rows (in its order), target sparsities as columns, ``cell``'s
    text in each."""
    if summary.empty:
        return pd.DataFrame()
    text = summary.assign(cell=[cell(r) for r in summary.to_dict("records")])
    out = text.pivot(index="setting", columns="target_sparsity", values="cell")
    out = out.loc[list(dict.fromkeys(summary["setting"]))]
    out.index.name = "method"
    out.columns = [f"{c:g}" for c in out.columns]
    return out.fillna("")
