"""Combine ensemble members' saved predictions, without retraining (the paper's Table 2; docs/ensembles.md).

    python -m ssa_experiments.cli.ensemble RUNS_OR_SWEEP [...] [--size [K]] [--out DIR] [--max-subsets 50]
    ssa-ensemble ...                                                        (console script)

Members are the completed runs with ``ensemble.member`` set and a ``logits.pt`` (``members.py``), found under
the given sweep directories, store roots or run directories by ``store/read.py``, which finds runs for the
tables too. Members form one ensemble when their run identities (``summary.json``) agree once
``ensemble.member`` is left out: a sweep over methods × seeds gives one ensemble per (method, seed).
``ensemble.size`` is not part of an identity (member 0 of a 4- and of a 6-member ensemble is one stored run),
so an ensemble is whatever members the roots hold; ``requested_size`` (Hydra's record of the job, else the
summary) flags a short one.

The ensemble predicts the mean of its members' probabilities (softmax of each member's logits, in float32),
never the softmax of the mean logits. Per split ("test", "val", every "corrupt/<corruption>/<severity>",
and the means "corrupt/<corruption>/mean" and "corrupt/mean" over the corrupted sets) it reports, for the
ensemble, every member, and their mean:

    acc            top-1 accuracy, % (argmax; ties go to the lower class index)
    nll            mean over samples of −log p(y): nats
    ece            expected calibration error: 15 equal-width confidence bins b, Σ_b (n_b/N)·|acc_b − conf_b|
                   (top-label, L1), a fraction in [0, 1] (torchmetrics ``multiclass_calibration_error``)
    brier          mean over samples of Σ_c (p_c − 1[c = y])²: in [0, 2]
    confidence     mean over samples of max_c p_c, % (the ensemble's: of its averaged probabilities)
    confidence_gap confidence − acc, percentage points: > 0 over-confident, < 0 under-confident (the mean
                   member's is its mean confidence − its mean accuracy)
    disagreement   (ensemble only) mean over member pairs of the fraction of samples whose argmax differs
    kl             (ensemble only) mean over member pairs of the symmetrised KL divergence
                   ½[KL(p_i ‖ p_j) + KL(p_j ‖ p_i)], each averaged over samples: nats (= the mean of
                   KL(p_i ‖ p_j) over ordered pairs i ≠ j)

``--size K`` adds the ensemble-size curve for k = 1..K (``--size`` alone: up to every member): each metric
averaged (and its std) over member subsets of size k: all C(N, k) subsets when there are at most
``--max-subsets`` of them (or at most N), else that many distinct subsets drawn with ``random.Random`` seeded
by (``--subset-seed``, k). At k = 1 the curve is the mean member, at k = N the full ensemble.

Writes ``ensemble.json`` (the nested report) and ``ensemble.csv`` (tidy: one row per ensemble × split ×
kind × k × member × metric; kinds ``ensemble`` (all members), ``member``, ``mean_member``, ``curve``; columns
``value``, ``std`` (over subsets, curve rows only), ``n_subsets``) into ``--out`` (default: the first root).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from ssa_experiments.repro import numerics

if not numerics.torch_started():  # the combiner's float sums in the default (portable) CPU numerics too
    numerics.enter("portable")

import pandas as pd
import torch

from ssa_experiments.config.identity import NOT_IDENTITY
from ssa_experiments.config.renamed import current
from ssa_experiments.store.files import (
    LOGITS,
    LOGITS_FORMAT,
    atomic_write_bytes,
    atomic_write_json,
    flatten,
)
from ssa_experiments.store.read import hydra_config, stored_runs

ECE_BINS = 15
MAX_SUBSETS = 50
JSON_NAME = "ensemble.json"
CSV_NAME = "ensemble.csv"
SCORES = ("acc", "nll", "ece", "brier", "confidence", "confidence_gap")
DIVERSITY = ("disagreement", "kl")
UNITS = {
    "acc": "% top-1",
    "nll": "nats, mean over samples",
    "ece": f"fraction in [0, 1], {ECE_BINS} equal-width bins, L1 (torchmetrics)",
    "brier": "mean over samples of sum over classes of (p - onehot)^2, in [0, 2]",
    "confidence": "% (mean over samples of the top class's probability)",
    "confidence_gap": "percentage points, confidence - acc (> 0: over-confident)",
    "disagreement": "fraction of samples, mean over member pairs",
    "kl": "nats, symmetrised KL between two members, mean over member pairs",
}
CSV_COLUMNS = [
    "ensemble", "setting", "method", "sparsity", "seed", "masks", "members", "split", "kind", "k", "member",
    "metric", "value", "std", "n_subsets",
]  # fmt: skip


# -- reading a member's logits ----------------------------------------------------------------------------
def load_logits(run_dir: str | Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{split: (logits float32 (N, C), targets int64 (N))}`` from a run's ``logits.pt``."""
    payload = torch.load(Path(run_dir) / LOGITS, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != LOGITS_FORMAT:
        raise ValueError(f"{Path(run_dir) / LOGITS}: not a logits file of format {LOGITS_FORMAT}")
    return {
        name: (split["logits"].float(), split["targets"].long()) for name, split in payload["splits"].items()
    }


# -- metrics of probabilities (pure) ----------------------------------------------------------------------
def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last dimension in float32 (float16 logits are widened first)."""
    return torch.log_softmax(logits.float(), dim=-1)


def mean_log_probs(member_log_probs: torch.Tensor) -> torch.Tensor:
    """log of the mean of the members' probabilities, (M, N, C) -> (N, C): log(1/M Σ_m p_m), computed as a
    logsumexp so a confident member's log(0) never appears. Averaging probabilities, not logits."""
    m = member_log_probs.shape[0]
    return torch.logsumexp(member_log_probs, dim=0) - math.log(m)


def accuracy(lp: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy in % (argmax: the first of tied classes)."""
    return 100.0 * float((lp.argmax(-1) == targets).float().mean())


def nll(lp: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log-likelihood of the targets, in nats."""
    return float(-lp.gather(-1, targets[:, None]).mean())


def ece(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error (top-label, L1, ``n_bins`` equal-width bins on [0, 1]) by torchmetrics: a
    maintained implementation, so our numbers are comparable with others'. A fraction, not %."""
    from torchmetrics.functional.classification import multiclass_calibration_error  # slow import: on use

    probs = probs.float().clamp(0.0, 1.0)  # probabilities: torchmetrics must not softmax them again
    value = multiclass_calibration_error(
        probs, targets, num_classes=probs.shape[-1], n_bins=n_bins, norm="l1"
    )
    return float(value)


def brier(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Multiclass Brier score: mean over samples of Σ_c (p_c − 1[c = y])² (0 perfect, 2 the worst)."""
    onehot = torch.nn.functional.one_hot(targets, probs.shape[-1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(-1).mean())


def confidence(lp: torch.Tensor) -> float:
    """Mean confidence in %: the mean over samples of the top class's probability (of the averaged
    probabilities, for an ensemble), on the scale of ``accuracy``."""
    return 100.0 * float(lp.max(-1).values.double().exp().mean())


def scores(lp: torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS) -> dict[str, float]:
    """acc, nll, ece, brier, confidence and confidence_gap (confidence − acc, points: > 0 over-confident)
    of one predictive distribution given as log-probabilities (N, C)."""
    probs = lp.exp()
    acc, conf = accuracy(lp, targets), confidence(lp)
    return {
        "acc": acc,
        "nll": nll(lp, targets),
        "ece": ece(probs, targets, n_bins),
        "brier": brier(probs, targets),
        "confidence": conf,
        "confidence_gap": conf - acc,
    }


def disagreement_matrix(member_log_probs: torch.Tensor) -> torch.Tensor:
    """(M, M): fraction of samples on which members i and j predict different classes."""
    pred = member_log_probs.argmax(-1)  # (M, N)
    return (pred[:, None, :] != pred[None, :, :]).float().mean(-1)


def kl_matrix(member_log_probs: torch.Tensor) -> torch.Tensor:
    """(M, M): KL(p_i ‖ p_j) = Σ_c p_i,c (log p_i,c − log p_j,c), averaged over samples (nats)."""
    m = member_log_probs.shape[0]
    out = torch.zeros(m, m)
    for i in range(m):
        p_i = member_log_probs[i].exp()
        for j in range(m):
            if i != j:
                diff = member_log_probs[i] - member_log_probs[j]
                out[i, j] = (p_i * diff).sum(-1).mean()
    return out


def pair_mean(matrix: torch.Tensor, subset: Sequence[int]) -> float:
    """Mean of ``matrix`` over ordered pairs i ≠ j of ``subset`` (for KL: the symmetrised mean over pairs)."""
    idx = torch.tensor(list(subset))
    sub = matrix[idx][:, idx]
    k = len(subset)
    return float((sub.sum() - sub.diagonal().sum()) / (k * (k - 1)))


def subsets(n: int, k: int, max_subsets: int = MAX_SUBSETS, seed: int = 0) -> list[tuple[int, ...]]:
    """Member subsets of size k: all of them when C(n, k) <= max(max_subsets, n), else ``max_subsets``
    distinct ones drawn by ``random.Random`` seeded from (seed, k): the same subsets in every process."""
    if not 1 <= k <= n:
        raise ValueError(f"subset size {k} outside 1..{n}")
    if math.comb(n, k) <= max(max_subsets, n):
        return list(combinations(range(n), k))
    rng = random.Random(seed * 1_000_003 + k)
    chosen: set[tuple[int, ...]] = set()
    while len(chosen) < max_subsets:
        chosen.add(tuple(sorted(rng.sample(range(n), k))))
    return sorted(chosen)


def ensemble_scores(
    member_log_probs: torch.Tensor,
    targets: torch.Tensor,
    subset: Sequence[int],
    disagree: torch.Tensor,
    kl: torch.Tensor,
    n_bins: int = ECE_BINS,
) -> dict[str, float]:
    """The scores of the ensemble of ``subset``, and its diversity when it has two members or more."""
    out = scores(mean_log_probs(member_log_probs[list(subset)]), targets, n_bins)
    if len(subset) > 1:
        out["disagreement"] = pair_mean(disagree, subset)
        out["kl"] = pair_mean(kl, subset)
    return out


def size_curve(
    member_log_probs: torch.Tensor,
    targets: torch.Tensor,
    max_k: int,
    disagree: torch.Tensor,
    kl: torch.Tensor,
    max_subsets: int = MAX_SUBSETS,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> list[dict[str, float]]:
    """Per k = 1..max_k: every metric's mean and ``<metric>_std`` (population std) over member subsets."""
    n = member_log_probs.shape[0]
    rows = []
    for k in range(1, min(max_k, n) + 1):
        chosen = subsets(n, k, max_subsets, seed)
        each = [ensemble_scores(member_log_probs, targets, s, disagree, kl, n_bins) for s in chosen]
        row: dict[str, float] = {"k": k, "n_subsets": len(chosen)}
        for metric in each[0]:
            values = torch.tensor([e[metric] for e in each], dtype=torch.float64)
            row[metric] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(unbiased=False))
        rows.append(row)
    return rows


def evaluate_split(
    member_logits: Sequence[torch.Tensor],
    targets: torch.Tensor,
    max_k: int | None = None,
    max_subsets: int = MAX_SUBSETS,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """Everything reported for one split: the full ensemble, each member, their mean, and (``max_k``) the
    size curve. ``member_logits``: one (N, C) tensor per member, same samples in the same order."""
    lp = torch.stack([log_probs(x) for x in member_logits])
    disagree, kl = disagreement_matrix(lp), kl_matrix(lp)
    members = [scores(lp[i], targets, n_bins) for i in range(len(lp))]
    out: dict[str, Any] = {
        "ensemble": ensemble_scores(lp, targets, range(len(lp)), disagree, kl, n_bins),
        "members": members,
        "mean_member": {m: sum(s[m] for s in members) / len(members) for m in SCORES},
    }
    if max_k:
        out["curve"] = size_curve(lp, targets, max_k, disagree, kl, max_subsets, seed, n_bins)
    return out


def mean_tree(trees: Sequence[Any]) -> Any:
    """The element-wise mean of equally shaped nested dicts/lists of numbers (the corruption means)."""
    first = trees[0]
    if isinstance(first, Mapping):
        return {k: mean_tree([t[k] for t in trees]) for k in first if all(k in t for t in trees)}
    if isinstance(first, list):
        return [mean_tree([t[i] for t in trees]) for i in range(min(len(t) for t in trees))]
    return sum(float(t) for t in trees) / len(trees)


def with_corruption_means(splits: dict[str, Any]) -> dict[str, Any]:
    """``splits`` plus "corrupt/<corruption>/mean" (over its severities) and "corrupt/mean" (over every
    corrupted set), averaging every reported number."""
    groups: dict[str, list[Any]] = {}
    for name, result in splits.items():
        if name.startswith("corrupt/") and name.count("/") == 2:
            groups.setdefault(name.split("/")[1], []).append(result)
    out = dict(splits)
    for corruption, results in groups.items():
        out[f"corrupt/{corruption}/mean"] = mean_tree(results)
    every = [r for results in groups.values() for r in results]
    if every:
        out["corrupt/mean"] = mean_tree(every)
    return out


# -- finding and grouping members -------------------------------------------------------------------------
@dataclass
class Member:
    run_dir: Path
    index: int
    summary: dict[str, Any]
    requested_size: int | None


@dataclass
class Ensemble:
    key: dict[str, Any]  # the members' common identity (ensemble.member left out)
    members: list[Member] = field(default_factory=list)

    @property
    def id(self) -> str:
        """``<method>-s<sparsity>-seed<seed>-<8 hex digits of the key>``: readable, unique by the hash."""
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True, default=str).encode()).hexdigest()[:8]
        method = (self.key.get("method") or {}).get("name", "run")
        return f"{method}-s{self.key.get('sparsity')}-seed{self.key.get('seed')}-{digest}"


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def group_key(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What members of one ensemble share: the run identity (else the config minus where it ran) without
    ``ensemble.member`` and ``ensemble.size`` (which never changes a member's numbers)."""
    source = summary.get("identity") or summary.get("config") or {}
    key = json.loads(json.dumps(source, default=str))  # a deep copy of plain data
    for dotted in (*NOT_IDENTITY, "ensemble.member", "ensemble.size"):
        _drop(key, dotted)
    return key


def _requested_size(run_dir: Path, summary: Mapping[str, Any]) -> int | None:
    """The ensemble size the job asked for: Hydra's record beside a sweep's link, else the summary's."""
    for config in (hydra_config(run_dir), summary.get("config") or {}):
        size = (config.get("ensemble") or {}).get("size")
        if size is not None:
            return int(size)
    return None


def find_members(roots: Iterable[str | Path]) -> tuple[list[Member], list[tuple[str, str]]]:
    """The ensemble members under ``roots``, and (run_dir, why) for every run found that is not one."""
    members, skipped = [], []
    for run in stored_runs(list(roots)):
        run_dir = run.run_dir
        index = (run.config.get("ensemble") or {}).get("member")
        if index is None:
            skipped.append((str(run_dir), "not an ensemble member"))
        elif run.status != "completed":
            skipped.append((str(run_dir), f"status {run.status}"))
        elif not (run_dir / LOGITS).exists():
            skipped.append((str(run_dir), f"no {LOGITS}"))
        else:
            summary = run.summary or {}
            members.append(Member(run_dir, int(index), summary, _requested_size(run_dir, summary)))
    return members, skipped


def group_members(members: Iterable[Member]) -> list[Ensemble]:
    """Members with equal ``group_key`` form one ensemble, members in index order; ensembles by id."""
    groups: dict[str, Ensemble] = {}
    for m in members:
        key = group_key(m.summary)
        groups.setdefault(json.dumps(key, sort_keys=True, default=str), Ensemble(key)).members.append(m)
    for e in groups.values():
        e.members.sort(key=lambda m: (m.index, str(m.run_dir)))
    return sorted(groups.values(), key=lambda e: e.id)


def settings(ensembles: Sequence[Ensemble]) -> list[str]:
    """Each ensemble's label: its method plus the identity keys (other than the seed) that differ between
    that method's ensembles, as ``analysis.aggregate.settings`` labels runs (a key one method does not read
    never labels another's rows)."""
    flat = [flatten(current(e.key)) for e in ensembles]  # identities keep old spellings; labels use today's
    methods = [str((e.key.get("method") or {}).get("name", "run")) for e in ensembles]
    varying: dict[str, list[str]] = {}
    for method in set(methods):
        same = [f for f, m in zip(flat, methods, strict=True) if m == method]
        keys = sorted({k for f in same for k in f} - {"seed", "method.name"})
        varying[method] = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in same}) > 1]
    return [
        " ".join([m, *(f"{k}={f.get(k)}" for k in varying[m])]) for f, m in zip(flat, methods, strict=True)
    ]


# -- combining --------------------------------------------------------------------------------------------
def split_order(name: str) -> tuple[int, str, str]:
    """test, val, then the corrupted sets by corruption and severity (means last within a corruption)."""
    if name in ("test", "val"):
        return (0 if name == "test" else 1, "", "")
    parts = name.split("/")
    corruption = parts[1] if len(parts) > 1 else ""
    return (2, corruption if len(parts) == 3 else "~", parts[-1].rjust(8) if parts[-1] != "mean" else "~")


def combine_ensemble(
    ensemble: Ensemble,
    max_k: int | None = None,
    max_subsets: int = MAX_SUBSETS,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """Every split's report for one ensemble (the splits all its members saved, with equal targets)."""
    logits = [load_logits(m.run_dir) for m in ensemble.members]
    common = sorted(set.intersection(*(set(x) for x in logits)), key=split_order)
    missing = sorted(set.union(*(set(x) for x in logits)) - set(common), key=split_order)
    splits: dict[str, Any] = {}
    for name in common:
        targets = logits[0][name][1]
        for m, member in zip(ensemble.members, logits, strict=True):
            if not torch.equal(member[name][1], targets):
                raise ValueError(f"{m.run_dir}: targets of split {name!r} differ from the first member's")
        splits[name] = evaluate_split([x[name][0] for x in logits], targets, max_k, max_subsets, seed, n_bins)
    splits = with_corruption_means(splits)
    cfg = ensemble.members[0].summary.get("config") or {}
    requested = {m.requested_size for m in ensemble.members if m.requested_size is not None}
    return {
        "id": ensemble.id,
        "method": (cfg.get("method") or {}).get("name"),
        "sparsity": cfg.get("sparsity"),
        "seed": cfg.get("seed"),
        "masks": (cfg.get("ensemble") or {}).get("masks"),
        "n_members": len(ensemble.members),
        "requested_size": max(requested) if requested else None,
        "complete": not requested or len(ensemble.members) >= max(requested),
        "members": [{"index": m.index, "run_dir": str(m.run_dir)} for m in ensemble.members],
        "splits_missing_in_some_members": missing,
        "identity": ensemble.key,
        "splits": {name: splits[name] for name in sorted(splits, key=split_order)},
    }


def combine(
    roots: Iterable[str | Path],
    max_k: int | None = None,
    max_subsets: int = MAX_SUBSETS,
    seed: int = 0,
    n_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """The whole report (what ``ensemble.json`` holds) for every ensemble under ``roots``. ``max_k``: the
    size curve up to that many members (None: none; 0 or less: up to every member)."""
    roots = [str(r) for r in roots]
    members, skipped = find_members(roots)
    ensembles = group_members(members)
    reports = []
    for ensemble, setting in zip(ensembles, settings(ensembles), strict=True):
        k = None if max_k is None else (len(ensemble.members) if max_k <= 0 else max_k)
        reports.append({"setting": setting, **combine_ensemble(ensemble, k, max_subsets, seed, n_bins)})
    return {
        "format": 1,
        "roots": roots,
        "ece_bins": n_bins,
        "max_subsets": max_subsets,
        "subset_seed": seed,
        "units": UNITS,
        "ensembles": reports,
        "skipped": [{"run_dir": d, "reason": r} for d, r in skipped],
    }


# -- output -----------------------------------------------------------------------------------------------
def tidy(report: Mapping[str, Any]) -> pd.DataFrame:
    """The report as one row per ensemble × split × kind × k × member × metric (``CSV_COLUMNS``)."""
    rows = []
    for e in report["ensembles"]:
        base = {c: e.get(c) for c in ("setting", "method", "sparsity", "seed", "masks")}
        base.update(ensemble=e["id"], members=e["n_members"])
        n = e["n_members"]
        for split, result in e["splits"].items():
            at = {**base, "split": split}
            rows += _rows(at, "ensemble", n, None, result["ensemble"], n_subsets=1)
            for m, s in zip(e["members"], result["members"], strict=True):
                rows += _rows(at, "member", 1, m["index"], s, n_subsets=1)
            rows += _rows(at, "mean_member", 1, None, result["mean_member"], n_subsets=n)
            for point in result.get("curve", []):
                rows += _rows(at, "curve", int(point["k"]), None, point, n_subsets=point["n_subsets"])
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    return df.astype({"k": int, "n_subsets": int, "members": int, "member": "Int64"})  # member: int or empty


def _rows(
    at: dict[str, Any], kind: str, k: int, member: int | None, values: Mapping[str, Any], n_subsets: float
) -> list[dict[str, Any]]:
    return [
        {
            **at,
            "kind": kind,
            "k": k,
            "member": member,
            "metric": metric,
            "value": values[metric],
            "std": values.get(f"{metric}_std"),
            "n_subsets": n_subsets,
        }
        for metric in (*SCORES, *DIVERSITY)
        if metric in values
    ]


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``ensemble.json`` and ``ensemble.csv`` in ``out_dir``, each written atomically."""
    out_dir = Path(out_dir)
    json_path, csv_path = out_dir / JSON_NAME, out_dir / CSV_NAME
    atomic_write_json(json_path, report)
    atomic_write_bytes(csv_path, tidy(report).to_csv(index=False).encode())
    return json_path, csv_path


def describe(report: Mapping[str, Any]) -> str:
    """A few lines per ensemble: test accuracy, NLL, ECE of the ensemble against its mean member."""
    lines = []
    for e in report["ensembles"]:
        test = e["splits"].get("test")
        short = "" if e["complete"] else f" (of {e['requested_size']} requested)"
        lines.append(f"{e['id']}: {e['n_members']} members{short}  [{e['setting']}]")
        if test:
            ens, mean = test["ensemble"], test["mean_member"]
            lines.append(
                f"  test  ensemble acc {ens['acc']:.2f}  nll {ens['nll']:.4f}  ece {ens['ece']:.4f}"
                f"  | mean member acc {mean['acc']:.2f}  nll {mean['nll']:.4f}  ece {mean['ece']:.4f}"
            )
            if "confidence" in ens:
                lines.append(
                    f"        confidence - accuracy: ensemble {ens['confidence_gap']:+.2f}"
                    f"  | mean member {mean['confidence_gap']:+.2f}  (points; > 0: over-confident)"
                )
        corrupt = e["splits"].get("corrupt/mean")
        if corrupt:
            lines.append(f"  corrupt/mean  ensemble acc {corrupt['ensemble']['acc']:.2f}")
    return "\n".join(lines)
