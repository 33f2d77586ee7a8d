"""The combiner's report (``ssa-ensemble``, its ``ensemble.json``) as two tidy frames,
what Table 2 and the ensemble-size figure are drawn from:

    ensembles.csv        one row per ensemble (a method at one seed): its test metrics, its mean member's,
                         its corrupted-data metrics and its training FLOPs; every score of the combiner
                         (``ensemble.SCORES``), so the calibration can be read: ``confidence`` (mean top
                         probability, %) and ``confidence_gap`` (confidence − accuracy, points: > 0
                         over-confident), as ``member_*`` for the mean member, ``corrupt_*`` over the
                         corrupted sets
    ensemble_curve.csv   one row per ensemble x split (test, corrupt/mean) x k: the size curve

Both are written next to the table (``write_csvs``) and read back by ``load``, so the table and the figure
can be redrawn from committed files alone, as the other figures are from ``runs.csv``.

FLOPs come from the members' summaries (``summary.json``: ``flops``, written by ``members.training_flops``):
an ensemble is charged each distinct parent once (``parent_id``: one for Prune and Tune, one per member for
a dense ensemble with ``ensemble.independent_parents``) plus every member's own training. These are FLOPs
a sparse kernel could skip; unstructured sparsity does not make our dense kernels faster (``flops.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ssa_experiments.ensembles.combine import DIVERSITY, JSON_NAME, SCORES
from ssa_experiments.store.files import DamagedFile, read_summary

ENSEMBLES_CSV = "ensembles.csv"
CURVE_CSV = "ensemble_curve.csv"
CURVE_SPLITS = ("test", "corrupt/mean")
# A row's method as the paper's Table 2 names it; annealed children are "Prune and Tune + <annealing>".
METHOD_LABELS = {
    "dense": "Dense ensemble",
    "one_shot": "Prune and Tune",
    "temperature_annealing": "Prune and Tune + temperature annealing",
    "random_annealing": "Prune and Tune + random annealing",
    "iterative": "Prune and Tune + iterative pruning",
}
DST_METHODS = ("set", "rigl")  # dynamic sparse training (pruning/methods/dst.py)
LABEL_ORDER = [*METHOD_LABELS.values(), "FreeTickets (DST ensemble, rigl)", "FreeTickets (DST ensemble, set)"]


def label(
    method: str,
    independent_parents: bool,
    masks: str | None,
    from_scratch: bool = False,
    mimo_heads: int = 1,
) -> str:
    """The row of an ensemble: its method, "dense fine-tuned children" for dense members of one parent, and
    the member masks where they are not the paper's anti-random ones.

    Two rows of the paper's Table 2 are runs of their own kind: FreeTickets (Liu et al. 2022), members
    trained by dynamic sparse training from their own initialisation (``parent.epochs=0``,
    ``ensemble.independent_parents``, ``method=rigl|set``: the "DST ensemble"), and MIMO (Havasi et al.
    2021), one network with ``model.mimo_heads`` heads trained from scratch (``docs/methods-dst.md``)."""
    if mimo_heads > 1:
        return f"MIMO ({mimo_heads} heads)"
    if method in DST_METHODS and from_scratch:
        text = f"FreeTickets (DST ensemble, {method})"
        if not independent_parents:
            text += " (one initialisation)"
        return text if masks in (None, "random") else f"{text} ({masks} masks)"
    if method == "dense":
        return "Dense ensemble" if independent_parents else "Dense children of one parent"
    text = METHOD_LABELS.get(method, f"Prune and Tune + {method}")
    if independent_parents:
        text += " (own parents)"
    return text if masks in (None, "anti_random") else f"{text} ({masks} masks)"


def label_rank(text: str) -> tuple[int, str]:
    head = next((i for i, lab in enumerate(LABEL_ORDER) if text == lab), len(LABEL_ORDER))
    return (head, text)


def member_flops(run_dir: str | Path) -> dict[str, Any] | None:
    """A member's ``flops`` record from its summary, or None (no summary, or written before FLOPs were)."""
    try:
        summary = read_summary(Path(run_dir))
    except (OSError, DamagedFile):
        return None
    flops = (summary or {}).get("flops")
    return flops if isinstance(flops, dict) else None


def ensemble_flops(records: Sequence[Mapping[str, Any] | None]) -> tuple[float, float] | None:
    """(parents, members) training FLOPs of one ensemble: each distinct parent once, every member's own
    training; None unless every member has a record."""
    if not records or any(r is None for r in records):
        return None
    parents = {str(r["parent_id"]): float(r["parent"]) for r in records if r}
    return sum(parents.values()), sum(float(r["finetune"]) for r in records if r)


def _metrics(result: Mapping[str, Any] | None, prefix: str, kinds: Iterable[str]) -> dict[str, float]:
    """``prefix + metric`` for the ensemble's (and, as ``member_*``, the mean member's) numbers of a split."""
    out: dict[str, float] = {}
    if not result:
        return out
    for metric in kinds:
        if metric in result.get("ensemble", {}):
            out[f"{prefix}{metric}"] = float(result["ensemble"][metric])
        if metric in result.get("mean_member", {}):
            out[f"{prefix}member_{metric}"] = float(result["mean_member"][metric])
    return out


def _context(e: Mapping[str, Any]) -> dict[str, Any]:
    ident = e.get("identity") or {}
    ens = ident.get("ensemble") or {}
    independent = bool(ens.get("independent_parents", False))
    from_scratch = (ident.get("parent") or {}).get("epochs") == 0
    heads = int((ident.get("model") or {}).get("mimo_heads") or 1)
    return {
        "ensemble": e["id"],
        "label": label(str(e.get("method")), independent, e.get("masks"), from_scratch, heads),
        "method": e.get("method"),
        "data": (ident.get("data") or {}).get("name"),
        "model": (ident.get("model") or {}).get("name") or (ident.get("model") or {}).get("arch"),
        "seed": e.get("seed"),
        "sparsity": 0.0 if e.get("method") == "dense" else e.get("sparsity"),
    }


def ensemble_rows(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per ensemble of a combiner report (FLOPs read from the members' run directories)."""

    rows = []
    for e in report["ensembles"]:
        splits = e.get("splits", {})
        flops = ensemble_flops([member_flops(m["run_dir"]) for m in e.get("members", [])])
        rows.append(
            {
                **_context(e),
                "members": e.get("n_members"),
                "complete": bool(e.get("complete", True)),
                **_metrics(splits.get("test"), "", (*SCORES, *DIVERSITY)),
                **_metrics(splits.get("corrupt/mean"), "corrupt_", SCORES),
                "flops_parents": None if flops is None else flops[0],
                "flops_members": None if flops is None else flops[1],
                "flops": None if flops is None else sum(flops),
            }
        )
    return pd.DataFrame(rows)


def curve_rows(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per ensemble x split (``CURVE_SPLITS``) x k of the size curve (``--size`` of the combiner):
    each metric's mean over member subsets of size k, and its std over them (``<metric>_std``)."""
    rows = []
    for e in report["ensembles"]:
        for split in CURVE_SPLITS:
            for point in (e.get("splits", {}).get(split) or {}).get("curve", []):
                rows.append({**_context(e), "split": split, **point})
    return pd.DataFrame(rows)


def _report_path(path: Path) -> Path | None:

    if path.is_dir():
        found = path / JSON_NAME
        return found if found.exists() else None
    return path if path.suffix == ".json" else None


def load(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ensembles, curve) from combiner reports (``ensemble.json``, or a directory holding one) and/or from
    ``ensembles.csv`` files (``ensemble_curve.csv`` read from beside each)."""

    rows, curves = [], []
    for p in map(Path, paths):
        report = _report_path(p)
        if report is not None:
            data = json.loads(report.read_text())
            rows.append(ensemble_rows(data))
            curves.append(curve_rows(data))
        elif p.suffix == ".csv" and p.exists():
            rows.append(pd.read_csv(p))
            beside = p.with_name(CURVE_CSV)
            if beside.exists():
                curves.append(pd.read_csv(beside))
        else:
            raise SystemExit(f"{p}: neither a combiner report ({JSON_NAME}) nor an {ENSEMBLES_CSV}")
    rows = [r for r in rows if not r.empty]
    curves = [c for c in curves if not c.empty]
    return (
        pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
        pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
    )


def write_csvs(rows: pd.DataFrame, curve: pd.DataFrame, out: Path) -> list[Path]:
    """``ensembles.csv`` and ``ensemble_curve.csv`` under ``out``: what ``load`` reads back."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / ENSEMBLES_CSV, out / CURVE_CSV]
    rows.to_csv(paths[0], index=False)
    curve.to_csv(paths[1], index=False)
    return paths
