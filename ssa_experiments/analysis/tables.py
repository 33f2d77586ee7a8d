"""Tables: the paper's Table 1 (pruning criterion × method, one column per target sparsity) and aggregate's
settings × sparsity, each written as Markdown, LaTeX and a numeric CSV (setting, sparsity, mean, std, n).

Cells are the final-epoch test accuracy, mean ± std over seeds (n seeds), of completed runs counted once per
(setting, sparsity, seed). The best mean of each column is in bold; the dense reference is never bolded: it
is what the pruned networks are measured against, not a competitor. Reached through the figures command:

    python -m ssa_experiments.cli.figures table1 --runs CSV_OR_DIRS... --out DIR
    python -m ssa_experiments.cli.figures table --runs CSV_OR_DIRS... --out DIR
    python -m ssa_experiments.cli.figures baselines --runs CSV_OR_DIRS... --out DIR   # one table per sparsity

With ``--paired REF`` each of these also writes NAME_paired.md/.tex/.csv: per cell, the mean over seeds of the
difference to REF's run of the same seed (same parent), its percentile bootstrap interval and the seeds won
(``*_paired`` functions, ``write_paired``; the pairing is analysis/paired.py's).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ssa_experiments.analysis import paired
from ssa_experiments.analysis.aggregate import completed
from ssa_experiments.analysis.paired import Bootstrap
from ssa_experiments.store.files import flatten

ORDER = ["dense", "one_shot", "iterative", "random_annealing", "temperature_annealing"]
NAMES = {
    "dense": "dense",
    "one_shot": "one-shot",
    "random_annealing": "random annealing",
    "temperature_annealing": "temperature annealing",
    "stochastic_constant": "stochastic constant",
    "dropconnect_target": "DropConnect on target",
    "soft_annealing": "soft annealing",
}
CAPTION = "test accuracy (%), final epoch, mean ± std over seeds (n = seeds); best per column in bold"


def stats(
    done: pd.DataFrame,
    keys: list[str],
    metric: str = "test_acc",
    by: str | None = None,
    ci: Bootstrap | None = None,
) -> pd.DataFrame:
    """mean, std (0 for one seed) and count of ``metric`` per ``keys``; with ``by``, its mean as ``score``;
    with ``ci``, the bootstrap interval of the mean over the group's values (seeds) as ``ci_lo``, ``ci_hi``
    (NaN for one value: see ``paired.bootstrap_ci``)."""
    agg = {"mean": (metric, "mean"), "std": (metric, "std"), "count": (metric, "count")}
    if by is not None:
        agg["score"] = (by, "mean")
    if done.empty:
        return pd.DataFrame(columns=[*keys, *agg, *(("ci_lo", "ci_hi") if ci is not None else ())])
    out = done.groupby(keys).agg(**agg).reset_index()
    out["std"] = out["std"].fillna(0.0)
    if ci is not None:  # the groups in agg's order (both sorted by keys)
        bounds = [ci.interval(values)[1:] for _, values in done.groupby(keys)[metric]]
        out["ci_lo"], out["ci_hi"] = [b[0] for b in bounds], [b[1] for b in bounds]
    return out


def natural(text: str) -> tuple[tuple[int, Any], ...]:
    """Sort key putting "n=2" before "n=10": the numbers in a label compared as numbers."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return tuple((0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts))


def _table1_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The completed runs with their Table 1 ``label`` and ``sparsity`` (dense: 0), one setting per cell."""
    done = completed(df)
    if done.empty:
        raise SystemExit("table1 needs completed runs; found none")
    criterion = done["config"].map(
        lambda c: flatten(c if isinstance(c, dict) else {}).get("pruning.criterion")
    )
    label = [
        "dense" if m == "dense" else f"{c} / {NAMES.get(m, m)}"
        for m, c in zip(done["method"], criterion.fillna("?"), strict=True)
    ]
    done = done.assign(label=label, sparsity=done["target_sparsity"].where(done["method"] != "dense", 0.0))
    many = done.groupby(["label", "sparsity"])["setting"].unique()
    many = many[many.map(len) > 1]
    if not many.empty:
        raise SystemExit(
            "table1 expects one setting per criterion × method; filter with --where (or use `table`):\n"
            + "\n".join(f"  {k} at {s:g}: {', '.join(v)}" for (k, s), v in many.items())
        )
    return done


def _table1_sorted(out: pd.DataFrame, done: pd.DataFrame) -> pd.DataFrame:
    """Dense first, then by criterion, then by method (``ORDER``)."""
    method = {lab: m for lab, m in zip(done["label"], done["method"], strict=True)}
    rank = {m: i for i, m in enumerate(ORDER)}
    key = {
        lab: (lab != "dense", lab.split(" / ")[0], rank.get(method[lab], len(ORDER)), lab) for lab in method
    }
    return out.sort_values(["setting", "sparsity"], key=lambda c: c.map(key) if c.name == "setting" else c)


def table1(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Table 1 as numbers: one row per (label, sparsity), labels "dense" and "CRITERION / METHOD".

    The dense row pools all dense runs, whatever sparsity they were launched with. Two settings under one
    label (a swept key other than the criterion) would be averaged together: refused, with the settings.
    """
    done = _table1_runs(df)
    out = stats(done, ["label", "sparsity"], metric).rename(columns={"label": "setting", "count": "n"})
    return _table1_sorted(out, done)


def table1_paired(
    df: pd.DataFrame, reference: str = "one_shot", metric: str = "test_acc", boot: Bootstrap | None = None
) -> pd.DataFrame:
    """Table 1's cells against ``reference`` seed by seed (analysis/paired.py): one row per (label,
    sparsity) with a pair, n_pairs, mean_diff, ci_lo, ci_hi, wins, ties and the reference setting."""
    done = _table1_runs(df)
    return _table1_sorted(_paired_long(done, ["label", "sparsity"], reference, metric, boot), done)


def settings_table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """aggregate's ``table`` as numbers: one row per (setting, target sparsity)."""
    done = _settings_runs(df)
    return _settings_sorted(stats(done, ["setting", "sparsity"], metric).rename(columns={"count": "n"}))


def settings_paired(
    df: pd.DataFrame, reference: str = "one_shot", metric: str = "test_acc", boot: Bootstrap | None = None
) -> pd.DataFrame:
    """``settings_table``'s cells against ``reference`` seed by seed, as ``table1_paired``."""
    return _settings_sorted(
        _paired_long(_settings_runs(df), ["setting", "sparsity"], reference, metric, boot)
    )


def _settings_runs(df: pd.DataFrame) -> pd.DataFrame:
    done = completed(df)
    if done.empty:
        raise SystemExit("table needs completed runs; found none")
    return done.assign(sparsity=done["target_sparsity"])


def _settings_sorted(out: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(ORDER)}
    return out.sort_values(
        ["setting", "sparsity"],
        key=lambda c: (
            c.map(lambda s: (rank.get(s.split(" ")[0], len(ORDER)), natural(s))) if c.name == "setting" else c
        ),
    )


RETRAINING = {"one_cycle": "one-cycle", "finetune": "fine-tune", "lr_rewind": "LR rewind"}
BASELINE_ORDER = [
    "dense", "one-shot", "iterative (linear)", "iterative (cubic)", "iterative (geometric)", "GMP",
    "random annealing", "temperature annealing", "stochastic constant", "soft annealing",
    "DropConnect on target",
]  # fmt: skip
BASELINE_KEYS = ["label", "retraining", "sparsity"]


def retraining(flat: dict[str, Any]) -> str:
    """How a run retrains after pruning: weight rewinding (it sets ``parent.rewind_epoch``), else its LR
    schedule (one-cycle, fine-tuning at the parent's final LR, LR rewinding)."""
    k = flat.get("parent.rewind_epoch")
    if k is not None and not (isinstance(k, float) and math.isnan(k)):
        return f"weight rewind (k={int(k)})"
    name = flat.get("lr.name", "?")
    return RETRAINING.get(name, name)


def method_label(method: str, flat: dict[str, Any]) -> str:
    """The row of a run: the method, iterative pruning by its schedule, and gradual magnitude pruning (pruning
    every ``method.prune_every_steps`` steps) as a baseline of its own."""
    if method != "iterative":
        return NAMES.get(method, method)
    schedule = {"polynomial": "cubic"}.get(flat.get("method.schedule", "linear"), flat.get("method.schedule"))
    every = flat.get("method.prune_every_steps") or 0
    return f"GMP ({schedule}, every {int(every)} steps)" if every else f"iterative ({schedule})"


def _baseline_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The completed runs with their ``label`` (method), ``retraining`` and ``sparsity`` (dense: 0)."""
    done = completed(df)
    if done.empty:
        raise SystemExit("baselines needs completed runs; found none")
    flat = [flatten(c if isinstance(c, dict) else {}) for c in done["config"]]
    done = done.assign(
        label=[method_label(m, f) for m, f in zip(done["method"], flat, strict=True)],
        retraining=[retraining(f) for f in flat],
        sparsity=done["target_sparsity"].where(done["method"] != "dense", 0.0),
    )
    many = done.groupby(BASELINE_KEYS)["setting"].unique()
    many = many[many.map(len) > 1]
    if not many.empty:
        raise SystemExit(
            "baselines expects one setting per method × retraining; filter with --where:\n"
            + "\n".join(f"  {m} / {r} at {s:g}: {', '.join(v)}" for (m, r, s), v in many.items())
        )
    return done


def _baselines_sorted(out: pd.DataFrame) -> pd.DataFrame:
    """By sparsity, then method (``BASELINE_ORDER``), then retraining (one-cycle, fine-tune, LR rewind...)."""

    def rank(label: str) -> tuple[int, str]:
        head = "GMP" if label.startswith("GMP") else label
        return (BASELINE_ORDER.index(head) if head in BASELINE_ORDER else len(BASELINE_ORDER), label)

    order = {lab: i for i, lab in enumerate(sorted(set(out["setting"]), key=rank))}
    columns = {c: i for i, c in enumerate(sorted(set(out["retraining"]), key=_retraining_rank))}
    out = out.assign(_r=out["setting"].map(order), _c=out["retraining"].map(columns))
    return out.sort_values(["sparsity", "_r", "_c"]).drop(columns=["_r", "_c"]).reset_index(drop=True)


def baselines(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """The baselines table as numbers: one row per (method, retraining, sparsity).

    Two settings in one cell (another swept key) would be averaged together: refused, with the settings.
    """
    done = _baseline_runs(df)
    out = stats(done, BASELINE_KEYS, metric).rename(columns={"label": "setting", "count": "n"})
    return _baselines_sorted(out)


def baselines_paired(
    df: pd.DataFrame, reference: str = "one_shot", metric: str = "test_acc", boot: Bootstrap | None = None
) -> pd.DataFrame:
    """The baselines' cells against ``reference`` seed by seed, as ``table1_paired``: a method with one
    retraining against the reference with the same retraining (the LR schedule and rewinding are part of
    what a pair shares)."""
    return _baselines_sorted(_paired_long(_baseline_runs(df), BASELINE_KEYS, reference, metric, boot))


def _retraining_rank(label: str) -> tuple[int, str]:
    first = ["one-cycle", "fine-tune", "LR rewind"]
    return (first.index(label) if label in first else len(first), label)


def _grid(
    long: pd.DataFrame, spread_dense: bool, column: str = "sparsity", best: Mapping[Any, str] | None = None
) -> tuple[list[str], list[Any], dict, set]:
    """Rows, columns, cells {(row, column): the long table's record} and the bold cells of a long table.

    Columns are the values of ``column``: sparsities (sorted), or labels (in order of appearance). ``best``:
    per column, "max" (the default), "min" (a loss, a cost) or "none" (nothing to rank, nothing bold)."""
    rows = list(dict.fromkeys(long["setting"]))
    dense = long["setting"].str.split(" ").str[0] == "dense"
    values = long.loc[~dense, column] if spread_dense else long[column]
    numeric = pd.api.types.is_numeric_dtype(long[column])
    columns = sorted(set(values)) if numeric else list(dict.fromkeys(values))
    cells = {}
    for r in long.to_dict("records"):
        dense_row = r["setting"].split(" ")[0] == "dense"
        for c in columns if spread_dense and dense_row else [r[column]]:
            cells[r["setting"], c] = r
    bold = set()
    for c in columns:
        how = (best or {}).get(c, "max")
        if how == "none":
            continue
        means = {r: cells[r, c]["mean"] for r in rows if (r, c) in cells and r.split(" ")[0] != "dense"}
        top = (min if how == "min" else max)(means.values(), default=math.nan)
        bold |= {(r, c) for r, m in means.items() if math.isclose(m, top)}
    return rows, columns, cells, bold


def _caption(spread_dense: bool) -> str:
    return CAPTION + (
        "; dense: the unpruned network, one result repeated in every column" if spread_dense else ""
    )


def _head(c: Any) -> str:
    """A column's title: a sparsity as a percentage, a label as it is."""
    return f"{100 * c:g}%" if isinstance(c, int | float) else str(c)


def _cell(cell: Mapping[str, Any], spec: str, pm: str) -> str:
    """A cell, mean ± std (n=…), with ``spec`` the number format (default ".2f"); one seed has no spread, so
    ``mean (n=1)`` (aggregate's ``cell`` says the same)."""
    if int(cell["n"]) == 1:
        return f"{cell['mean']:{spec}} (n=1)"
    return f"{cell['mean']:{spec}}{pm}{cell['std']:{spec}} (n={int(cell['n'])})"


@dataclass(frozen=True)
class _Syntax:
    """How one output format writes a table: everything else (rows, columns, bold cells) is shared."""

    head: Callable[[str, list[str]], list[str]]  # (caption, header cells) -> the lines above the body
    row: Callable[[list[str]], str]
    foot: tuple[str, ...]
    bold: str  # format string around a bold cell's text
    pm: str  # between mean and std
    label: Callable[[str], str]  # escapes a row or column title


def _render(
    long: pd.DataFrame,
    first: str,
    syntax: _Syntax,
    spread_dense: bool = False,
    column: str = "sparsity",
    best: Mapping[Any, str] | None = None,
    fmt: Mapping[Any, str] | None = None,
    caption: str | None = None,
    cell_text: Callable[[Mapping[str, Any]], str] | None = None,
) -> str:
    """The table of ``long`` in ``syntax``; ``best``: see ``_grid``; ``fmt``: a number format per column
    (default ".2f"); ``caption``: instead of the accuracy caption; ``cell_text``: a cell's text from its
    record, instead of mean ± std (n=…)."""
    rows, columns, cells, bold = _grid(long, spread_dense, column, best)
    header = [syntax.label(first), *(syntax.label(_head(c)) for c in columns)]
    lines = syntax.head(caption or _caption(spread_dense), header)
    for r in rows:
        shown = []
        for c in columns:
            if (r, c) not in cells:
                text = ""
            elif cell_text is not None:
                text = cell_text(cells[r, c])
            else:
                text = _cell(cells[r, c], (fmt or {}).get(c, ".2f"), syntax.pm)
            shown.append(syntax.bold.format(text) if (r, c) in bold else text)
        lines.append(syntax.row([syntax.label(r), *shown]))
    return "\n".join([*lines, *syntax.foot]) + "\n"


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text.replace("τ", r"$\tau$")


MARKDOWN = _Syntax(
    head=lambda caption, cells: [f"{caption}.", "", _markdown_row(cells), "|" + "---|" * len(cells)],
    row=_markdown_row,
    foot=(),
    bold="**{}**",
    pm=" ± ",
    label=str,
)
LATEX = _Syntax(
    head=lambda caption, cells: [
        f"% {caption}. Needs \\usepackage{{booktabs}}.",
        "\\begin{tabular}{l" + "c" * (len(cells) - 1) + "}",
        "\\toprule",
        " & ".join(cells) + r" \\",
        "\\midrule",
    ],
    row=lambda cells: " & ".join(cells) + r" \\",
    foot=("\\bottomrule", "\\end{tabular}"),
    bold="\\textbf{{{}}}",
    pm=" $\\pm$ ",
    label=_tex,
)


def markdown(long: pd.DataFrame, first: str, **options: Any) -> str:
    """A Markdown table; ``options``: those of ``_render`` (spread_dense, column, best, fmt, caption,
    cell_text)."""
    return _render(long, first, MARKDOWN, **options)


def latex(long: pd.DataFrame, first: str, **options: Any) -> str:
    """A LaTeX (booktabs) tabular; ``options`` as in ``markdown``."""
    return _render(long, first, LATEX, **options)


def write(
    long: pd.DataFrame,
    out: Path,
    name: str,
    first: str,
    spread_dense: bool = False,
    column: str = "sparsity",
    best: Mapping[Any, str] | None = None,
    fmt: Mapping[Any, str] | None = None,
    caption: str | None = None,
) -> list[Path]:
    """``name``.md, .tex and .csv (the numbers, unrounded) under ``out``; ``column``: what the columns are;
    ``best``, ``fmt``, ``caption``: as in ``markdown``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"]
    options = {"spread_dense": spread_dense, "column": column, "best": best, "fmt": fmt, "caption": caption}
    paths[0].write_text(markdown(long, first, **options))
    paths[1].write_text(latex(long, first, **options))
    keys = ["setting", column] if column == "sparsity" else ["setting", column, "sparsity"]
    long[[*keys, "mean", "std", "n"]].to_csv(paths[2], index=False)
    return paths


# ---- paired tables: every cell against a reference, seed by seed (analysis/paired.py) ----------------------

PAIRED_CAPTION = (
    "Δ {metric} vs {reference}: mean over seeds of the per-seed difference (runs of one seed share their "
    "dense parent; a pair: same seed, sparsity and config but the method's keys) [{level:g}% percentile "
    "bootstrap CI over seeds, seed {seed}], wins/n: seeds where the row is above {reference} (ties counted "
    "apart); [1 seed: no CI] where there is one pair"
)


def _paired_long(
    done: pd.DataFrame, keys: list[str], reference: str, metric: str, boot: Bootstrap | None
) -> pd.DataFrame:
    """The pairs of ``done`` summarised per ``keys`` (columns of ``done``; "label", the row, becomes
    ``setting``)."""
    done = done.reset_index(drop=True)
    pairs = paired.pairs(done, reference, metric)
    if pairs.empty:
        raise SystemExit(
            f"--paired {reference}: no completed {reference} run shares a seed, sparsity and config with "
            "another run"
        )
    at = pairs["run"].to_numpy(dtype=int)
    pairs = pairs.assign(**{k: done[k].to_numpy()[at] for k in keys})
    return paired.summarize(pairs, keys, boot).rename(columns={"label": "setting"})


def write_paired(
    long: pd.DataFrame,
    out: Path,
    name: str,
    first: str,
    reference: str,
    column: str = "sparsity",
    boot: Bootstrap | None = None,
    metric: str = "test accuracy (percentage points)",
) -> list[Path]:
    """``name``_paired.md, .tex and .csv under ``out``: ``long`` (a ``*_paired`` frame) with one cell per
    (row, column), "Δ [CI] wins/n" (``paired.cell``), nothing bold (a difference is not a ranking); the CSV
    has the unrounded numbers, the interval's level and seed."""
    boot = boot or Bootstrap()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}_paired.md", out / f"{name}_paired.tex", out / f"{name}_paired.csv"]
    caption = PAIRED_CAPTION.format(
        metric=metric, reference=reference, level=100 * boot.level, seed=boot.seed
    )
    options = {
        "column": column, "best": dict.fromkeys(set(long[column]), "none"), "caption": caption,
        "cell_text": paired.cell,
    }  # fmt: skip
    paths[0].write_text(markdown(long, first, **options))
    paths[1].write_text(latex(long, first, **options))
    keys = ["setting", column] if column == "sparsity" else ["setting", column, "sparsity"]
    numbers = ["n_pairs", "mean_diff", "ci_lo", "ci_hi", "wins", "ties", "reference"]
    long[[*keys, *numbers]].assign(level=boot.level, bootstrap_seed=boot.seed).to_csv(paths[2], index=False)
    return paths


# ---- the files of each table, and of its paired table against ``reference`` when one is given -----------


def write_table1(
    done: pd.DataFrame, out: Path, reference: str | None = None, boot: Bootstrap | None = None
) -> list[Path]:
    """table1.md/.tex/.csv (and table1_paired.* against ``reference``) under ``out``."""
    paths = write(table1(done), out, "table1", "criterion / method", spread_dense=True)
    if reference:
        paired_long = table1_paired(done, reference, boot=boot)
        paths += write_paired(paired_long, out, "table1", "criterion / method", reference, boot=boot)
    return paths


def write_settings(
    done: pd.DataFrame, out: Path, reference: str | None = None, boot: Bootstrap | None = None
) -> list[Path]:
    """table.md/.tex/.csv, aggregate's settings × sparsity (and table_paired.*), under ``out``."""
    paths = write(settings_table(done), out, "table", "setting")
    if reference:
        paired_long = settings_paired(done, reference, boot=boot)
        paths += write_paired(paired_long, out, "table", "setting", reference, boot=boot)
    return paths


def write_baselines(
    done: pd.DataFrame, out: Path, reference: str | None = None, boot: Bootstrap | None = None
) -> list[Path]:
    """baselines_sS.md/.tex/.csv, one table per sparsity S with the dense reference as its first row (and
    baselines_sS_paired.* where something pairs at S) under ``out``."""
    long, paths = baselines(done), []
    dense = long[long["sparsity"] == 0]
    for s, part in long[long["sparsity"] > 0].groupby("sparsity"):
        both = pd.concat([dense, part])
        paths += write(both, out, f"baselines_s{s:g}", "method", column="retraining")
    if reference:  # a sparsity where nothing pairs has no paired table
        diffs = baselines_paired(done, reference, boot=boot)
        for s, part in diffs[diffs["sparsity"] > 0].groupby("sparsity"):
            paths += write_paired(
                part, out, f"baselines_s{s:g}", "method", reference, column="retraining", boot=boot
            )
    return paths


# ---- Table 2: ensembles (the combiner's report, read by analysis/ensembles.py) ----------------------------

# (field of ensembles.csv, column title, best, number format, scale): ensemble test metrics, then cost
TABLE2_COLUMNS = [
    ("acc", "accuracy (%)", "max", ".2f", 1.0),
    ("nll", "NLL", "min", ".3f", 1.0),
    ("ece", "ECE (%)", "min", ".2f", 100.0),
    ("corrupt_acc", "corrupted accuracy (%)", "max", ".2f", 1.0),
    ("corrupt_nll", "corrupted NLL", "min", ".3f", 1.0),
    ("member_acc", "mean member accuracy (%)", "max", ".2f", 1.0),
    ("disagreement", "disagreement (%)", "none", ".2f", 100.0),
    ("flops_ratio", "training FLOPs / dense ensemble", "min", ".2f", 1.0),
]
# Rows of the paper's Table 2 that a table without their runs names (issue 14; paper.md records no numbers
# for them): a table with a rerun row (``ensembles/report.py``: "FreeTickets (...)", "MIMO (...)") omits it.
PUBLISHED = {"FreeTickets": None, "MIMO": None}
PUBLISHED_NOTE = "paper's numbers, not rerun (paper.md records none)"
FLOP_UNITS = ((1e18, "EFLOPs"), (1e15, "PFLOPs"), (1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"))


def flop_unit(values: pd.Series) -> tuple[float, str]:
    """The unit in which the median of ``values`` is at least 1: (scale, name)."""
    median = float(values.median()) if values.notna().any() else 0.0
    return next(((s, n) for s, n in FLOP_UNITS if median >= s), (1.0, "FLOPs"))


def with_flops_ratio(rows: pd.DataFrame) -> pd.DataFrame:
    """``flops_ratio``: each ensemble's training FLOPs over the mean of the dense ensembles' of its data set
    (NaN where there is no dense ensemble to compare with)."""
    if "flops" not in rows:
        return rows.assign(flops_ratio=float("nan"))
    dense = rows[rows["label"] == "Dense ensemble"].groupby("data")["flops"].mean()
    return rows.assign(flops_ratio=rows["flops"] / rows["data"].map(dense))


def table2(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Table 2 as numbers, one long frame per data set (setting = the ensemble's method, metric = the column
    title): mean, std and n over seeds (one ensemble per seed) of the complete ensembles only."""
    done = rows[rows["complete"].astype(bool)] if "complete" in rows else rows
    if done.empty:
        raise SystemExit("table2 needs complete ensembles (every requested member combined); found none")
    done = with_flops_ratio(done)
    scale, unit = flop_unit(done["flops"]) if "flops" in done else (1.0, "FLOPs")
    columns = [*TABLE2_COLUMNS, ("flops", f"training {unit}", "min", ".1f", 1.0 / scale)]
    out = {}
    for data, per in done.groupby("data", sort=True):
        parts = []
        for field, title, _, _, factor in columns:
            if field not in per or per[field].isna().all():
                continue
            s = stats(per.assign(value=per[field] * factor), ["label"], "value")
            parts.append(s[s["count"] > 0].assign(metric=title))  # a row without it (MIMO: no disagreement)
        long = pd.concat(parts, ignore_index=True).rename(columns={"label": "setting", "count": "n"})
        long = long.assign(sparsity=long["setting"].map(per.groupby("label")["sparsity"].first()))
        order = {lab: i for i, lab in enumerate(sorted(set(long["setting"]), key=_ensemble_rank))}
        long = long.assign(_r=long["setting"].map(order)).sort_values("_r", kind="stable").drop(columns="_r")
        long.attrs.update(best={t: b for _, t, b, _, _ in columns}, fmt={t: f for _, t, _, f, _ in columns})
        long.attrs["context"] = _table2_context(per)
        out[str(data)] = long.reset_index(drop=True)
    return out


def _ensemble_rank(text: str) -> tuple[int, str]:
    from ssa_experiments.ensembles.report import label_rank

    return label_rank(text)


def _table2_context(per: pd.DataFrame) -> str:
    models = "/".join(sorted({str(m) for m in per["model"].dropna()})) or "?"
    members = "/".join(str(int(m)) for m in sorted(set(per["members"].dropna())))
    sparsity = "/".join(f"{100 * s:g}%" for s in sorted(set(per.loc[per["method"] != "dense", "sparsity"])))
    return f"{models} on {per['data'].iloc[0]}, {members} members, children at {sparsity or '-'} sparsity"


def table2_caption(context: str) -> str:
    return (
        f"Ensembles ({context}): ensemble test metrics (probabilities averaged), mean ± std over seeds "
        "(n = seeds, one ensemble each); NLL in nats; ECE over 15 bins; corrupted: mean over the corrupted "
        "test sets; training FLOPs: parent(s) + members, 3 × forward, prunable layers at their density in "
        "use (not a speed-up: unstructured sparsity runs on dense kernels); best per column in bold "
        "(disagreement not ranked)"
    )


def not_rerun(settings: Iterable[str]) -> list[str]:
    """The ``PUBLISHED`` methods with no rerun row among ``settings`` (a row label starting with the name)."""
    return [name for name in PUBLISHED if not any(str(s).startswith(name) for s in settings)]


def _published_rows(path: Path, n_columns: int, names: list[str]) -> None:
    """Append the rows of the methods not rerun (``names``) to a written Markdown or LaTeX table."""
    text = path.read_text()
    if not names:
        return
    if path.suffix == ".md":
        rows = "".join(f"| {name} | {PUBLISHED_NOTE} |" + " |" * (n_columns - 1) + "\n" for name in names)
        path.write_text(text + rows)
    else:
        note = _tex(PUBLISHED_NOTE)
        rows = "".join(f"{name} & \\multicolumn{{{n_columns}}}{{l}}{{{note}}} \\\\\n" for name in names)
        path.write_text(text.replace("\\bottomrule", "\\midrule\n" + rows + "\\bottomrule"))


def write_table2(rows: pd.DataFrame, out: Path) -> list[Path]:
    """table2.md/.tex/.csv (``table2_<data>.*`` when there are several data sets) under ``out``, with the
    rows of the methods not rerun appended to the Markdown and LaTeX."""
    tables = table2(rows)
    paths = []
    for data, long in tables.items():
        name = "table2" if len(tables) == 1 else f"table2_{data}"
        written = write(
            long, out, name, "ensemble", column="metric", best=long.attrs["best"], fmt=long.attrs["fmt"],
            caption=table2_caption(long.attrs["context"]),
        )  # fmt: skip
        n_columns = long["metric"].nunique()
        for path in written[:2]:
            _published_rows(path, n_columns, not_rerun(long["setting"]))
        paths += written
    return paths


# ---- tuned configurations (hparams_search=, docs/tuning.md) -----------------------------------------------

TUNED_CAPTION = (
    "test accuracy (%) of each method's tuned configuration: per seed and sparsity, the trial with the best "
    "{by} (chosen on validation, never on test), then its final-epoch test accuracy; mean ± std over seeds "
    "(n = seeds)"
)


def tuned_choices(done: pd.DataFrame, by: str = "val_acc") -> pd.DataFrame:
    """Per (method, target sparsity, seed): the trial a tuner would report, the completed run with the highest
    ``by`` (its objective, a validation metric) among that method's runs, with how many trials it was chosen
    from and its test accuracy. Ties go to the first run in ``done``'s order, as Optuna's ``best_trial`` does
    to the first trial. Choosing on a test metric is refused: a table of test accuracy chosen on test is the
    optimistic bias this table exists to avoid."""
    if by.startswith("test"):
        raise ValueError(f"the tuned configuration is chosen on validation, not on {by}")
    rows = []
    for (method, sparsity, seed), runs in done.groupby(["method", "target_sparsity", "seed"], sort=True):
        scored = runs[pd.to_numeric(runs[by], errors="coerce").notna()]
        if scored.empty:
            continue  # no run of this method has the objective (val_fraction=0): nothing to choose on
        best = scored.loc[pd.to_numeric(scored[by]).idxmax()]
        rows.append({
            "method": method, "sparsity": sparsity, "seed": seed, "trials": len(runs), by: best[by],
            "test_acc": best["test_acc"], "setting": best["setting"], "run_dir": best["run_dir"],
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "sparsity", "seed", "trials", by, "test_acc", "setting",
                                       "run_dir"])  # fmt: skip


def write_tuned(done: pd.DataFrame, out: Path, by: str = "val_acc") -> list[Path]:
    """tuned.md/.tex/.csv (methods × sparsity, test accuracy of the configurations chosen on ``by``) and
    tuned_choices.csv (which run was chosen per method, sparsity and seed, from how many trials) under
    ``out``."""
    choices = tuned_choices(done, by)
    if choices.empty:
        raise SystemExit(f"tuned: no completed run has {by} (tune with data.val_fraction > 0)")
    long = stats(choices.assign(setting=choices["method"]), ["setting", "sparsity"]).rename(
        columns={"count": "n"}
    )
    paths = write(_settings_sorted(long), out, "tuned", "method", caption=TUNED_CAPTION.format(by=by))
    out.mkdir(parents=True, exist_ok=True)
    choices.to_csv(out / "tuned_choices.csv", index=False)
    return [*paths, out / "tuned_choices.csv"]
