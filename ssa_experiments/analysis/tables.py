"""Tables: the paper's Table 1 (pruning criterion × method, one column per target sparsity) and aggregate's
settings × sparsity, each written as Markdown, LaTeX and a numeric CSV (setting, sparsity, mean, std, n).

Cells are the final-epoch test accuracy, mean ± std over seeds (n seeds), of completed runs counted once per
(setting, sparsity, seed). The best mean of each column is in bold; the dense reference is never bolded: it
is what the pruned networks are measured against, not a competitor. Reached through the figures command:

    python -m ssa_experiments.figures table1 --runs CSV_OR_DIRS... --out DIR
    python -m ssa_experiments.figures table --runs CSV_OR_DIRS... --out DIR
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ssa_experiments.analysis.aggregate import completed
from ssa_experiments.sinks import flatten

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
    done: pd.DataFrame, keys: list[str], metric: str = "test_acc", by: str | None = None
) -> pd.DataFrame:
    """mean, std (0 for one seed) and count of ``metric`` per ``keys``; with ``by``, its mean as ``score``."""
    agg = {"mean": (metric, "mean"), "std": (metric, "std"), "count": (metric, "count")}
    if by is not None:
        agg["score"] = (by, "mean")
    if done.empty:
        return pd.DataFrame(columns=[*keys, *agg])
    out = done.groupby(keys).agg(**agg).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def natural(text: str) -> tuple[tuple[int, Any], ...]:
    """Sort key putting "n=2" before "n=10": the numbers in a label compared as numbers."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text)
    return tuple((0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts))


def table1(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Table 1 as numbers: one row per (label, sparsity), labels "dense" and "CRITERION / METHOD".

    The dense row pools all dense runs, whatever sparsity they were launched with. Two settings under one
    label (a swept key other than the criterion) would be averaged together: refused, with the settings.
    """
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
    out = stats(done, ["label", "sparsity"], metric).rename(columns={"label": "setting", "count": "n"})
    method = {lab: m for lab, m in zip(done["label"], done["method"], strict=True)}
    rank = {m: i for i, m in enumerate(ORDER)}
    key = {
        lab: (lab != "dense", lab.split(" / ")[0], rank.get(method[lab], len(ORDER)), lab) for lab in method
    }
    return out.sort_values(["setting", "sparsity"], key=lambda c: c.map(key) if c.name == "setting" else c)


def settings_table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """aggregate's ``table`` as numbers: one row per (setting, target sparsity)."""
    done = completed(df)
    if done.empty:
        raise SystemExit("table needs completed runs; found none")
    done = done.assign(sparsity=done["target_sparsity"])
    out = stats(done, ["setting", "sparsity"], metric).rename(columns={"count": "n"})
    rank = {m: i for i, m in enumerate(ORDER)}
    return out.sort_values(
        ["setting", "sparsity"],
        key=lambda c: (
            c.map(lambda s: (rank.get(s.split(" ")[0], len(ORDER)), natural(s))) if c.name == "setting" else c
        ),
    )


def _grid(long: pd.DataFrame, spread_dense: bool) -> tuple[list[str], list[float], dict, set]:
    """Rows, columns, cells {(row, column): (mean, std, n)} and the bold cells of a long table."""
    rows = list(dict.fromkeys(long["setting"]))
    dense = long["setting"].str.split(" ").str[0] == "dense"
    columns = sorted(set(long.loc[~dense, "sparsity"] if spread_dense else long["sparsity"]))
    cells = {}
    for r in long.itertuples(index=False):
        for c in columns if spread_dense and r.setting.split(" ")[0] == "dense" else [r.sparsity]:
            cells[r.setting, c] = (r.mean, r.std, int(r.n))
    bold = set()
    for c in columns:
        means = {r: cells[r, c][0] for r in rows if (r, c) in cells and r.split(" ")[0] != "dense"}
        best = max(means.values(), default=math.nan)
        bold |= {(r, c) for r, m in means.items() if math.isclose(m, best)}
    return rows, columns, cells, bold


def _caption(spread_dense: bool) -> str:
    return CAPTION + (
        "; dense: the unpruned network, one result repeated in every column" if spread_dense else ""
    )


def markdown(long: pd.DataFrame, first: str, spread_dense: bool = False) -> str:
    rows, columns, cells, bold = _grid(long, spread_dense)
    lines = [
        f"{_caption(spread_dense)}.",
        "",
        "| " + " | ".join([first, *(f"{100 * c:g}%" for c in columns)]) + " |",
    ]
    lines.append("|" + "---|" * (len(columns) + 1))
    for r in rows:
        shown = []
        for c in columns:
            text = (
                f"{cells[r, c][0]:.2f} ± {cells[r, c][1]:.2f} (n={cells[r, c][2]})" if (r, c) in cells else ""
            )
            shown.append(f"**{text}**" if (r, c) in bold else text)
        lines.append("| " + " | ".join([r, *shown]) + " |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text.replace("τ", r"$\tau$")


def latex(long: pd.DataFrame, first: str, spread_dense: bool = False) -> str:
    rows, columns, cells, bold = _grid(long, spread_dense)
    lines = [
        f"% {_caption(spread_dense)}. Needs \\usepackage{{booktabs}}.",
        "\\begin{tabular}{l" + "c" * len(columns) + "}",
        "\\toprule",
        " & ".join([_tex(first), *(f"{100 * c:g}\\%" for c in columns)]) + r" \\",
        "\\midrule",
    ]
    for r in rows:
        shown = []
        for c in columns:
            text = (
                f"{cells[r, c][0]:.2f} $\\pm$ {cells[r, c][1]:.2f} (n={cells[r, c][2]})"
                if (r, c) in cells
                else ""
            )
            shown.append(f"\\textbf{{{text}}}" if (r, c) in bold else text)
        lines.append(" & ".join([_tex(r), *shown]) + r" \\")
    return "\n".join([*lines, "\\bottomrule", "\\end{tabular}"]) + "\n"


def write(long: pd.DataFrame, out: Path, name: str, first: str, spread_dense: bool = False) -> list[Path]:
    """``name``.md, .tex and .csv (the numbers, unrounded) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.md", out / f"{name}.tex", out / f"{name}.csv"]
    paths[0].write_text(markdown(long, first, spread_dense))
    paths[1].write_text(latex(long, first, spread_dense))
    long[["setting", "sparsity", "mean", "std", "n"]].to_csv(paths[2], index=False)
    return paths
