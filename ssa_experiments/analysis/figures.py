"""The paper's figures and tables, drawn from result trees or from committed CSVs.

    python -m ssa_experiments.cli.figures NAME --runs CSV_OR_DIRS... --out DIR
        [--select-on val|test] [--sparsity S] [--where key=value ...]

NAME is one of
  fig1     Figure 1, temperature annealing ablation: test accuracy over τ0, one line per n, one panel per
           sparsity, one-shot as a band; last panel: the best configuration per sparsity vs one-shot
  fig2     Figure 2: random vs temperature annealing (row 1) and temperature annealing vs iterative pruning,
           linear and cubic (row 2) over n, one panel per sparsity; last panel: each method's best per
           sparsity
  curves   test (solid) and validation (dashed) accuracy per epoch of every setting at one sparsity
           (--sparsity, default the highest), dotted at the end of annealing (epoch n); needs metrics.jsonl in
           the run directories, or the epochs CSV next to a runs CSV (aggregate's --csv writes both)
  table1   Table 1 (tables.py): pruning criterion × method by sparsity, plus the dense row
  table    aggregate's settings × sparsity, as Markdown, LaTeX and CSV
  schedules  the expected density over fine-tuning of every annealing and iterative schedule (no --runs;
           --sparsity, --n, --tau0, --epochs)
  baselines  method × retraining (one-cycle, fine-tune, LR rewind, weight rewind), one table per sparsity
           (baselines_sS), as Markdown, LaTeX and CSV
  table2   Table 2, ensembles (ensembles/report.py): accuracy, NLL, ECE, corrupted data, diversity and
           training FLOPs per method, mean ± std over seeds; --runs: the combiner's ensemble.json
           (``ssa-ensemble ... --size``) or an ensembles.csv; also writes ensembles.csv
           and ensemble_curve.csv, from which it can be redrawn
  ensemble_size  ensemble accuracy, NLL and ECE vs the number of members k, one line per method, mean ±
           std over seeds; --runs as for table2
Each figure is written as NAME.png and NAME.pdf under --out (curves: curves_sS), and the paths are printed.

Only completed runs count, each (setting, sparsity, seed) once. The plotted number is the final-epoch test
accuracy (every method has the same epoch budget), mean ± std over seeds; legends give the seed counts in
words ("3 seeds"), as n is the annealing epochs. Where a figure shows "the best configuration" it is chosen
per method and sparsity by mean final-epoch validation accuracy; ``--select-on test`` chooses on test accuracy
instead, as the paper did: optimistic, and the figure's title says so. ``--errorbars ci`` draws, instead of ±
std, the percentile bootstrap interval (``--level``, default 95%, seeded by ``--bootstrap-seed``) of each mean
over its seeds: how well the mean is known, not how much the seeds spread (no bar for one seed).

``--paired REF`` (table1, table, baselines) also writes NAME_paired.md/.tex/.csv next to each table: every
cell against REF (a method or a setting label) seed by seed, "mean difference [bootstrap CI] wins/n", pairs
having the same seed, sparsity and config but for the method's keys (analysis/paired.py says why and how).

``--where key=value`` keeps the runs whose flattened config has that value (numbers compared as numbers). A
filter on a ``method.*`` key applies only to the methods that read that key (aggregate's METHOD_KEYS): with
``--where method.anneal_epochs=5`` the dense and one-shot runs stay. Any other key (``method.name`` included)
applies to every run, and a run without the key is dropped.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from ssa_experiments.analysis import tables
from ssa_experiments.analysis.aggregate import (
    METHOD_KEYS,
    completed,
    epochs,
    epochs_csv,
    read_epochs,
)
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.analysis.tables import natural, stats
from ssa_experiments.pruning.schedules import initial_density, iterative_sparsity, schedule_factor
from ssa_experiments.store.files import flatten

matplotlib.use("Agg")  # files only: no display needed, the same output on every machine

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# One colour per method in every figure; a method's settings are shades of its colour map.
COLORS = {
    "dense": "black",
    "one_shot": "tab:gray",
    "iterative (linear)": "tab:blue",
    "iterative (cubic)": "tab:purple",
    "random_annealing": "tab:orange",
    "temperature_annealing": "tab:red",
    "stochastic_constant": "tab:brown",
    "dropconnect_target": "tab:olive",
    "soft_annealing": "tab:pink",
}
CMAPS = {
    "dense": "Greys",
    "one_shot": "Greys",
    "iterative (linear)": "Blues",
    "iterative (cubic)": "Purples",
    "random_annealing": "Oranges",
    "temperature_annealing": "Reds",
    "stochastic_constant": "YlOrBr",
    "dropconnect_target": "YlGn",
    "soft_annealing": "RdPu",
}
ORDER = list(COLORS)
NAMES = {**tables.NAMES}
TAU, N = "method.initial_temperature", "method.anneal_epochs"
SHORT = {TAU: "τ0", N: "n", "method.max_initial_probability": "p_max", "pruning.criterion": "criterion"}
# methods that reach the target at n
ANNEALS = (
    "iterative", "random_annealing", "temperature_annealing", "stochastic_constant", "dropconnect_target",
    "soft_annealing",
)  # fmt: skip
SELECT = {"val_acc": "selected on validation", "test_acc": "selected on test (optimistic)"}
ACC = "test accuracy (%)"
STYLE = {"axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
         "legend.fontsize": 7.5, "legend.title_fontsize": 8, "figure.titlesize": 10}  # fmt: skip


# ---------------------------------------------------------------------------------------------- the data


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
    """Whether a run passes the ``--where`` filters (the rule is in the module docstring)."""
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


def _line(sub: pd.DataFrame, x: str, by: str, ci: Bootstrap | None = None) -> pd.DataFrame:
    """Stats of one plotted line per value of ``x``; should several settings share an x (another swept key),
    the best of them by ``by``."""
    s = stats(sub, [x, "setting"], by=by, ci=ci)
    s = s.sort_values([x, "score", "setting"], ascending=[True, False, True], na_position="last")
    return s.drop_duplicates(x).sort_values(x)


def load_epochs(sources: Sequence[str], df: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch rows: the epochs CSV next to each runs CSV, and metrics.jsonl of the run directories here."""
    parts = [
        read_epochs(p) for p in (epochs_csv(s) for s in sources if str(s).endswith(".csv")) if p.exists()
    ]
    here = df[df["run_dir"].map(lambda d: isinstance(d, str) and Path(d).is_dir())]
    if not here.empty:
        parts.append(epochs(here))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=["run_dir", "epoch", "test_acc", "val_acc"])
    return pd.concat(parts, ignore_index=True).drop_duplicates(["run_dir", "epoch"])


# ---------------------------------------------------------------------------------------------- drawing


def seeds(counts: Iterable[Any]) -> str:
    """ "3 seeds", or "2–3 seeds" where some points have fewer (said in words: n is the annealing epochs)."""
    counts = [int(c) for c in counts]
    lo, hi = min(counts, default=0), max(counts, default=0)
    return f"{hi} seed{'' if hi == 1 else 's'}" if lo == hi else f"{lo}–{hi} seeds"


def label(fam: str, count: Iterable[Any], extra: str = "") -> str:
    """ "one-shot (3 seeds)": the method's name, what sets the line apart, and its number of seeds."""
    return f"{NAMES.get(fam, fam)}{extra} ({seeds(count)})"


def shades(fam: str, k: int) -> list[Any]:
    """k colours for k settings of one method: its colour alone, or a ramp of its colour map."""
    if k <= 1:
        return [COLORS.get(fam, "tab:green")]
    return list(plt.get_cmap(CMAPS.get(fam, "Greens"))(np.linspace(0.45, 0.95, k)))


def pretty(setting: str, fam: str) -> str:
    """A setting's label for a legend: "temperature annealing τ0=0.5 n=5"."""
    _, *parts = re.split(r" (?=[\w.]+=)", setting)
    shown = []
    for part in parts:
        key, _, val = part.partition("=")
        if not (fam.startswith("iterative") and key == "method.schedule"):  # the family says it
            shown.append(f"{SHORT.get(key, key.removeprefix('method.'))}={val}")
    return " ".join([NAMES.get(fam, fam), *shown])


def context(done: pd.DataFrame) -> str:
    """What the runs are: "resnet18 on cifar10, LR schedule one_cycle"."""

    def distinct(values: Iterable[Any]) -> str:
        return "/".join(sorted({str(v) for v in values if isinstance(v, str)})) or "?"

    lr = distinct(done["flat"].map(lambda f: f.get("lr.name")))
    return f"{distinct(done['model'])} on {distinct(done['data'])}, fine-tuning LR schedule {lr}"


def spread(ci: Bootstrap | None) -> str:
    """What the error bars and bands of a figure are, for its title."""
    if ci is None:
        return "mean ± std over seeds"
    return f"mean over seeds, {100 * ci.level:g}% bootstrap CI of the mean (seeds resampled; none for 1 seed)"


def bounds(s: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Where an error bar or band of ``stats``' rows ends, below and above: the bootstrap interval of the mean
    where ``stats`` drew one (``ci_lo``, ``ci_hi``; NaN for one seed: no bar), else mean ± std."""
    if "ci_lo" in s:
        return s["ci_lo"].astype(float), s["ci_hi"].astype(float)
    return s["mean"] - s["std"], s["mean"] + s["std"]


def _errorbar(ax: Any, x: Any, s: pd.DataFrame, color: Any, text: str, **kw: Any) -> Any:
    kw = {"marker": "o", "ms": 4, "capsize": 3, "lw": 1.4, **kw}
    if "ci_lo" in s:  # asymmetric; clipped at 0 should an interval ever miss its mean (a skewed small sample)
        lo, hi = bounds(s)
        yerr = np.clip(np.vstack([s["mean"] - lo, hi - s["mean"]]).astype(float), 0.0, None)
    else:
        yerr = s["std"]
    return ax.errorbar(x, s["mean"], yerr=yerr, color=color, label=text, **kw)


def dodge(values: Sequence[float], i: int, k: int) -> float:
    """How far the i-th of k lines sharing x values is moved sideways, so their error bars stay apart."""
    span = (max(values) - min(values)) or 1.0
    return (i - (k - 1) / 2) * 0.015 * span


def _handles(ax: Any) -> dict[str, Any]:
    handles, labels = ax.get_legend_handles_labels()
    return dict(zip(labels, handles, strict=True))


def _baseline(ax: Any, s: pd.DataFrame, text: str) -> None:
    """One-shot at one sparsity: a dashed line at its mean, a band of ± one std (or its interval: ``bounds``)
    where there is one."""
    if s.empty:
        return
    m = float(s["mean"].iloc[0])
    lo, hi = (float(b.iloc[0]) for b in bounds(s))
    ax.axhline(m, color=COLORS["one_shot"], ls="--", lw=1.2, label=text)
    if not (math.isnan(lo) or math.isnan(hi)):
        ax.axhspan(lo, hi, color=COLORS["one_shot"], alpha=0.2, lw=0)


def _config_text(done: pd.DataFrame, setting: str, keys: Sequence[str]) -> str:
    flat = done.loc[done["setting"] == setting, "flat"].iloc[0]
    return "\n".join(f"{SHORT.get(k, k)}={flat[k]:g}" for k in keys if isinstance(flat.get(k), int | float))


def best_panel(
    ax: Any,
    done: pd.DataFrame,
    families: Sequence[str],
    by: str,
    keys: Sequence[str],
    legend_ax: Any = None,
    ci: Bootstrap | None = None,
) -> None:
    """Each family's best configuration per sparsity (annotated with it) against one-shot, sparsities as
    equally spaced categories, series side by side (no lines: the categories are not a continuum) so their
    error bars stay apart; each chosen configuration is written above its error bar."""
    best = best_config(done[done["family"].isin(families)], by=by, group="family", ci=ci)
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps = sorted(set(best["target_sparsity"]) | set(one["target_sparsity"]))
    pos = {s: i for i, s in enumerate(sps)}
    series = [("one_shot", one), *((f, best[best["family"] == f]) for f in families)]
    series = [(f, s) for f, s in series if not s.empty]
    offsets = np.linspace(-0.2, 0.2, len(series)) if len(series) > 1 else [0.0]
    for (fam, s), dx in zip(series, offsets, strict=True):
        x = s["target_sparsity"].map(pos) + dx
        text = label(fam, s["count"], "" if fam == "one_shot" else ", best")
        _errorbar(ax, x, s, COLORS.get(fam), text, ls="none", ms=5)
        if fam == "one_shot":
            continue
        tops = bounds(s)[1].fillna(s["mean"])  # above the error bar (at the mean where there is none)
        for xi, r, top in zip(x, s.itertuples(index=False), tops, strict=True):
            ax.annotate(
                _config_text(done, r.setting, keys), (xi, top), xytext=(0, 4),
                textcoords="offset points", fontsize=6.5, color=COLORS.get(fam), va="bottom", ha="center",
                linespacing=1.0,
            )  # fmt: skip
    ax.set_xticks(range(len(sps)), [f"{100 * s:g}" for s in sps])
    ax.set_xlim(-0.6, len(sps) - 0.4)
    ax.margins(y=0.25)
    ax.set(xlabel="target sparsity (%)", ylabel=ACC)
    ax.set_title(f"best configuration per sparsity vs one-shot\n({SELECT[by]}, test accuracy shown)")
    (legend_ax or ax).legend(*ax.get_legend_handles_labels(), loc="center left" if legend_ax else "best")


def styled(draw: Callable[..., Any]) -> Callable[..., Any]:
    """The same type sizes in every figure, without changing matplotlib's settings for anyone else."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with plt.rc_context(STYLE):
            return draw(*args, **kwargs)

    return wrapper


@styled
def fig1(done: pd.DataFrame, by: str, where: str, ci: Bootstrap | None = None) -> Figure:
    """Figure 1: temperature annealing over τ0 × n, per sparsity, against one-shot."""
    ta = done[done["method"] == "temperature_annealing"]
    ta = ta.assign(tau0=value(ta, TAU), anneal=value(ta, N)).dropna(subset=["tau0", "anneal"])
    if ta.empty or ta["tau0"].nunique() < 2:
        raise SystemExit(
            f"fig1 needs temperature_annealing runs with several {TAU} values; found none under {where}"
        )
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps, ns = sorted(ta["target_sparsity"].unique()), sorted(ta["anneal"].unique())
    taus = sorted(ta["tau0"].unique())
    lines = {(s, n): _line(ta[(ta["target_sparsity"] == s) & (ta["anneal"] == n)], "tau0", by, ci)
             for s in sps for n in ns}  # fmt: skip
    ncols = min(3, len(sps) + 1)
    nrows = math.ceil((len(sps) + 1) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.4 * nrows + 0.9), layout="constrained")
    axes = np.atleast_1d(axes).ravel()
    one_text = label("one_shot", one["count"], " ± std" if ci is None else f", {100 * ci.level:g}% CI")
    for ax, s in zip(axes, sps, strict=False):
        for i, (n, color) in enumerate(zip(ns, shades("temperature_annealing", len(ns)), strict=True)):
            line = lines[s, n]
            counts = pd.concat([lines[t, n]["count"] for t in sps])
            if not line.empty:
                x = line["tau0"] + dodge(taus, i, len(ns))
                _errorbar(ax, x, line, color, f"temperature annealing, n = {n:g} ({seeds(counts)})")
        _baseline(ax, one[one["target_sparsity"] == s], one_text)
        ax.set_xticks(taus)
        ax.set(title=f"target sparsity {100 * s:g}%", xlabel="initial temperature τ0", ylabel=ACC)
    handles: dict[str, Any] = {}
    for ax in axes[: len(sps)]:
        handles.update(_handles(ax))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(handles)))
    best_panel(axes[len(sps)], done, ["temperature_annealing"], by, [TAU, N], ci=ci)
    for ax in axes[len(sps) + 1 :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Temperature annealing ablation ({context(ta)})\n{spread(ci)}; best configuration {SELECT[by]}",
    )
    return fig


ROWS = (
    ("random vs temperature annealing", ("random_annealing", "temperature_annealing")),
    ("temperature annealing vs iterative pruning", ("temperature_annealing", "iterative (linear)",
                                                    "iterative (cubic)")),
)  # fmt: skip


@styled
def fig2(done: pd.DataFrame, by: str, where: str, ci: Bootstrap | None = None) -> Figure:
    """Figure 2: the annealing methods and iterative pruning over the annealing epochs n, against one-shot."""
    fams = list(dict.fromkeys(f for _, row in ROWS for f in row))
    runs = done[done["family"].isin(fams)]
    runs = runs.assign(anneal=value(runs, N)).dropna(subset=["anneal"])
    if not (runs["family"] == "temperature_annealing").any() or runs["family"].nunique() < 2:
        raise SystemExit(
            f"fig2 needs temperature_annealing runs and random_annealing or iterative runs over {N}; "
            f"found {sorted(runs['family'].unique()) or 'none'} under {where}"
        )
    one = stats(done[done["method"] == "one_shot"], ["target_sparsity"], ci=ci)
    sps, ns = sorted(runs["target_sparsity"].unique()), sorted(runs["anneal"].unique())
    k = len(sps)
    fig = plt.figure(figsize=(3.3 * k + 2.4, 10), layout="constrained")
    grid = fig.add_gridspec(3, k + 1, width_ratios=[1] * k + [0.75])
    one_text = label("one_shot", one["count"], " ± std" if ci is None else f", {100 * ci.level:g}% CI")
    for row, (title, row_fams) in enumerate(ROWS):
        lines = {(f, s): _line(runs[(runs["family"] == f) & (runs["target_sparsity"] == s)], "anneal", by, ci)
                 for f in row_fams for s in sps}  # fmt: skip
        handles: dict[str, Any] = {}
        for col, s in enumerate(sps):
            ax = fig.add_subplot(grid[row, col])
            for i, f in enumerate(row_fams):
                counts = pd.concat([lines[f, t]["count"] for t in sps])
                if not lines[f, s].empty:
                    text, x = label(f, counts), lines[f, s]["anneal"] + dodge(ns, i, len(row_fams))
                    handles[text] = _errorbar(ax, x, lines[f, s], COLORS[f], text)
            _baseline(ax, one[one["target_sparsity"] == s], one_text)
            handles.update(_handles(ax))
            ax.set_xticks(ns)
            ax.set(title=f"target sparsity {100 * s:g}%", xlabel="annealing epochs n")
            ax.set_ylabel(ACC if col == 0 else "")
        legend = fig.add_subplot(grid[row, k])
        legend.axis("off")
        legend.legend(list(handles.values()), list(handles), loc="center left", title=title)
    legend = fig.add_subplot(grid[2, k])
    legend.axis("off")
    present = [f for f in fams if (runs["family"] == f).any()]
    best_panel(fig.add_subplot(grid[2, :k]), done, present, by, [N], legend_ax=legend, ci=ci)
    fig.suptitle(
        f"Annealing and iterative pruning over the annealing epochs n ({context(runs)})\n"
        f"{spread(ci)}; best configuration {SELECT[by]}",
    )
    return fig


@styled
def curves(
    done: pd.DataFrame, rows: pd.DataFrame, sparsity: float | None, where: str, ci: Bootstrap | None = None
) -> tuple[Figure, float]:
    """Accuracy per epoch of each setting at one target sparsity (dense as the reference), so the drop when
    the mask reaches the target (dotted: epoch n) is visible; bands: ± std, or with ``ci`` the interval of
    the mean over seeds at each epoch."""
    sparse = done[done["method"] != "dense"]
    if sparse.empty:
        raise SystemExit(f"curves needs completed pruning runs; found none under {where}")
    s = (
        float(sparse["target_sparsity"].max())
        if sparsity is None
        else sparsity / (100 if sparsity > 1 else 1)
    )
    at = done[np.isclose(done["target_sparsity"].astype(float), s) | (done["method"] == "dense")]
    at = at.assign(anneal=value(at, N).where(at["method"].isin(ANNEALS)))
    cols = [c for c in ("test_acc", "val_acc") if c in rows]
    data = rows[["run_dir", "epoch", *cols]].merge(
        at[["run_dir", "setting", "family", "anneal"]], on="run_dir"
    )
    if not (data["family"] != "dense").any():
        raise SystemExit(
            f"curves needs per-epoch data of runs at sparsity {s:g} (metrics.jsonl in the run directories, "
            "or "
            f"the epochs CSV next to a runs CSV); found none under {where}"
        )
    rank = {f: i for i, f in enumerate(ORDER)}
    order = at.drop_duplicates("setting")
    order = order.iloc[
        sorted(range(len(order)), key=lambda i: (rank.get(order["family"].iloc[i], len(ORDER)),
                                                 natural(order["setting"].iloc[i])))
    ]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True, layout="constrained")
    for fam, group in order.groupby("family", sort=False):
        for (setting, anneal), color in zip(
            zip(group["setting"], group["anneal"], strict=True), shades(fam, len(group)), strict=True
        ):
            runs = data[data["setting"] == setting]
            if runs.empty:
                continue
            text = f"{pretty(setting, fam)} ({seeds([runs['run_dir'].nunique()])})"
            for ax, col, style in zip(axes, ("test_acc", "val_acc"), ("-", "--"), strict=True):
                if col not in cols or runs[col].isna().all():
                    continue
                line = stats(runs, ["epoch"], col, ci=ci)
                lo, hi = bounds(line)
                on_top = 3 if fam in ("dense", "one_shot") else 2  # the references stay visible
                ax.plot(line["epoch"], line["mean"], style, color=color, lw=1.4, label=text, zorder=on_top)
                ax.fill_between(line["epoch"], lo, hi, color=color, alpha=0.15, lw=0)
                if not pd.isna(anneal):
                    ax.axvline(anneal, color=color, ls=":", lw=1.2)
    axes[0].set(title="test accuracy (solid)", xlabel="epoch", ylabel=ACC)
    axes[1].set(title="validation accuracy (dashed)", xlabel="epoch", ylabel="validation accuracy (%)")
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center")
    fig.suptitle(
        f"Accuracy per epoch at target sparsity {100 * s:g}% ({context(at)})\n"
        f"{spread(ci)} (bands); dotted: end of annealing (epoch n, the mask is the target after it)",
    )
    return fig, s


def expected_density(
    t: float,
    schedule: str,
    sparsity: float,
    n: int,
    tau0: float = 0.5,
    granularity: str = "step",
    method: str = "annealing",
) -> float:
    """The expected density of the prunable weights at epoch t (fractional: within an epoch) for temperature
    annealing (``method="annealing"``) or iterative pruning, from the pure functions of ``schedules.py``."""
    t = t if granularity == "step" else math.floor(t)
    if method == "iterative":
        return 1.0 - iterative_sparsity(t, n, sparsity, schedule)
    d_target = 1.0 - sparsity
    if t >= n:
        return d_target
    d0 = initial_density(sparsity, tau0)
    return d_target + schedule_factor(t / n, schedule, densities=(d0, d_target)) * (d0 - d_target)


@styled
def schedules_figure(sparsity: float, n: int, tau0: float, epochs: int) -> Figure:
    """Expected density over fine-tuning of every annealing and iterative schedule (log scale: the last step
    of a schedule linear in keep-probability removes most of the weights still in use at high sparsity)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, layout="constrained")
    t = np.linspace(0, epochs, 40 * epochs + 1)
    annealing = ["linear", "cosine", "exponential", "cubic", "geometric"]
    for i, schedule in enumerate(annealing):
        color = plt.get_cmap("Reds")(0.35 + 0.6 * i / (len(annealing) - 1))
        for granularity, style in (("step", "-"), ("epoch", ":")):
            d = [expected_density(x, schedule, sparsity, n, tau0, granularity) for x in t]
            axes[0].plot(t, d, style, color=color, lw=1.4, label=f"{schedule} (per {granularity})")
    for i, schedule in enumerate(["linear", "polynomial", "geometric"]):
        color = plt.get_cmap("Blues")(0.45 + 0.25 * i)
        d = [expected_density(x, schedule, sparsity, n, granularity="epoch", method="iterative") for x in t]
        axes[1].plot(t, d, color=color, lw=1.4, label=f"iterative {pretty_schedule(schedule)} (per epoch)")
        d = [expected_density(x, schedule, sparsity, n, method="iterative") for x in t]
        axes[1].plot(t, d, ":", color=color, lw=1.2, label=f"{pretty_schedule(schedule)}, per step (GMP)")
    for ax, title in zip(axes, (f"temperature annealing, τ0 = {tau0:g}", "iterative pruning"), strict=True):
        ax.set(title=title, xlabel="epoch", yscale="log")
        ax.axvline(n, color="gray", ls="--", lw=0.8)
        ax.legend(loc="upper right")
    axes[0].set_ylabel("expected density of the prunable weights")
    axes[1].yaxis.set_tick_params(labelleft=True)
    fig.suptitle(
        f"Schedules to {100 * sparsity:g}% sparsity over n = {n} epochs (dashed: epoch n, the target from "
        "then on)\nlinear/cosine/exponential/cubic: curves of the keep-probability; geometric: of the density"
    )
    return fig


def pretty_schedule(schedule: str) -> str:
    return "cubic" if schedule == "polynomial" else schedule


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with plt.rc_context(STYLE):  # ticks are laid out when drawn: the same sizes as the figure's text
        fig.savefig(paths[0], dpi=150, bbox_inches="tight")
        # no creation date in the PDF: redrawing the same runs gives byte-identical files
        fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return paths


ENSEMBLE_METRICS = (("acc", "ensemble test accuracy (%)"), ("nll", "ensemble test NLL (nats)"),
                    ("ece", "ensemble test ECE (fraction, 15 bins)"))  # fmt: skip
ENSEMBLE_COLORS = {"dense": COLORS["dense"], "one_shot": COLORS["one_shot"]}


@styled
def ensemble_size(curve: pd.DataFrame, where: str, ci: Bootstrap | None = None) -> Figure:
    """Ensemble metrics vs the number of members k, one line per method (its colour), one row of panels per
    data set: each seed's ensemble averaged over member subsets of size k, then mean ± std over seeds (with
    ``ci``: the bootstrap interval of that mean over seeds)."""
    test = curve[curve["split"] == "test"] if "split" in curve else curve
    if test.empty or "k" not in test:
        raise SystemExit(
            f"ensemble_size needs the combiner's size curve (ssa-ensemble ... --size); "
            f"found none under {where}"
        )
    metrics = [(m, t) for m, t in ENSEMBLE_METRICS if m in test and test[m].notna().any()]
    data_sets = sorted(test["data"].astype(str).unique())
    fig, axes = plt.subplots(
        len(data_sets), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(data_sets) + 0.8),
        layout="constrained", squeeze=False,
    )  # fmt: skip
    from ssa_experiments.ensembles.report import label_rank

    labels = sorted(test["label"].unique(), key=label_rank)
    for row, data in enumerate(data_sets):
        per = test[test["data"].astype(str) == data]
        for col, (metric, title) in enumerate(metrics):
            ax = axes[row, col]
            for i, lab in enumerate(labels):
                line = stats(per[per["label"] == lab], ["k"], metric, ci=ci)
                if line.empty:
                    continue
                method = str(per.loc[per["label"] == lab, "method"].iloc[0])
                color = ENSEMBLE_COLORS.get(method, COLORS.get(method, f"C{i}"))
                x = line["k"] + dodge(list(line["k"]), i, len(labels))
                _errorbar(ax, x, line, color, f"{lab} ({seeds(line['count'])})")
            ax.set_xticks(sorted(per["k"].unique()))
            ax.set(xlabel="members k", ylabel=title, title=f"{data}: {title.removeprefix('ensemble test ')}")
    handles: dict[str, Any] = {}
    for ax in axes.ravel():
        handles.update(_handles(ax))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(2, len(handles)))
    fig.suptitle(
        f"Ensemble size: each seed's ensemble averaged over member subsets of size k; {spread(ci)}\n"
        "(k = 1: the mean member; probabilities averaged)"
    )
    return fig


def ensemble_outputs(
    name: str, sources: list[str], out: Path, where: str, ci: Bootstrap | None = None
) -> list[Path]:
    """table2 (and the CSVs it is drawn from) or the ensemble_size figure, from combiner reports or CSVs."""
    from ssa_experiments.ensembles import report as ensembles

    rows, curve = ensembles.load(sources)
    if rows.empty:
        raise SystemExit(f"no ensembles under {where}")
    if name == "ensemble_size":
        return save(ensemble_size(curve, where, ci), out, "ensemble_size")
    paths = tables.write_table2(rows, out)
    if not all(str(s).endswith(".csv") for s in sources):  # drawn from reports: keep what they gave
        paths += ensembles.write_csvs(rows, curve, out)
    return paths
