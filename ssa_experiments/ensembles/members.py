"""What makes a run an ensemble member (``ensemble.member`` set; docs/ensembles.md), beyond its mask.

A member is an ordinary run: ``run.py`` asks here for its seeds' config and its target scorer, and its
callback (``outputs.py``), once it has completed, for the outputs the combiner
(``python -m ssa_experiments.cli.ensemble``) reads without retraining:

    logits.pt   torch.save of
                {"format": 1, "splits": {name: {"logits": float16 (N, C), "targets": int64 (N)}}}
                with names "test", "val" (when the data has a validation split) and
                "corrupt/<corruption>/<severity>" for every ``ensemble.corruptions`` x ``ensemble.severities``
                (``data/corruptions.py``)

The logits are those of the network the final epoch's test metrics were measured on (BatchNorm recalibrated
for the target mask), float16 (enough for softmax averaging, half the disk). The corrupted test sets are
generated from a fixed seed (0, not the run's), so every member of every method sees the same images, and
cached under ``<parent.cache_dir>/corruptions``. Their accuracies go into the summary (from the float32
logits), per corruption and severity, per corruption, and as one mean.

The corrupted sets are evaluations of the finished member, not part of its identity: asking a completed
member for sets it has not saved (``run`` with more ``ensemble.corruptions`` or ``ensemble.severities``)
rebuilds its evaluated network from ``model.pt`` and adds their logits and accuracies
(``complete_evaluations``), computed as a member trained with them from the start computes them (bit for
bit on the CPU: tests/test_member_evaluations.py); it never retrains it.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.seeds import finetune_seed, parent_seed
from ssa_experiments.data.base import ImageData
from ssa_experiments.data.corruptions import corrupted_splits, split_name
from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import Batches, DeviceBatches, RunBatches, TorchBatches, make_batches
from ssa_experiments.ensembles import flops
from ssa_experiments.ensembles.targets import MemberMasks, member_scores
from ssa_experiments.models import build_model
from ssa_experiments.pruning.targets import Scorer, prunable_modules
from ssa_experiments.repro import numerics, provenance
from ssa_experiments.runtime.devices import pick_device
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.store.files import (
    LOGITS,
    LOGITS_FORMAT,
    MODEL,
    SUMMARY,
    atomic_torch_save,
    atomic_write_json,
    read_summary,
)

log = logging.getLogger(__name__)
CORRUPTION_SEED = 0  # fixed: every member and method is evaluated on the very same corrupted images


def member_scorer(cfg: DictConfig) -> Scorer | None:
    """What chooses an ensemble member's target (a function of parent, index and seed), for the pruning
    method to use instead of ``pruning.criterion``; None for a run that is not a member."""
    e = cfg.ensemble
    if e.member is None:
        return None
    spec = MemberMasks(kind=e.masks, member=int(e.member), seed=int(cfg.seed), noise=float(e.noise))
    return functools.partial(member_scores, spec=spec)


def with_parent_seed(cfg: DictConfig) -> DictConfig:
    """``cfg`` as the parent sees it: its ``seed`` replaced by ``parent_seed(cfg)`` (the parent cache keys on
    the seed, so a member's own parent enters the key through its derived seed and nothing else). The same
    object when the seed is unchanged."""
    seed = parent_seed(cfg)
    if seed == cfg.seed:
        return cfg
    out = copy.deepcopy(cfg)
    out.seed = seed
    return out


def member_record(cfg: DictConfig) -> dict[str, Any]:
    """What a member's summary says about its place in the ensemble and the seeds it derived."""
    e = cfg.ensemble
    return {
        "member": int(e.member),
        "size": int(e.size),
        "masks": e.masks,
        "independent_parents": bool(e.independent_parents),
        "parent_seed": parent_seed(cfg),
        "finetune_seed": finetune_seed(cfg),
    }


@torch.no_grad()
def predict(net: nn.Module, batches: Batches, precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 logits, int64 targets) of every sample of ``batches`` in order, on the CPU; eval mode, as
    ``loop.evaluate`` measures accuracy."""
    net.eval()
    logits, targets = [], []
    for x, y in batches.epoch(0):
        with precision.autocast():
            out = net(precision.inputs(x))
        logits.append(out.float().cpu())
        targets.append(y.cpu())
    return torch.cat(logits), torch.cat(targets).long()


def batches_like(test: Batches, data: ImageData, x: torch.Tensor, device: torch.device) -> Batches:
    """Batches over test images ``x`` built exactly like ``test`` (pipeline, batch size, normalisation)."""
    swapped = replace(data, test_x=x)
    if isinstance(test, TorchBatches):
        return TorchBatches(swapped, "test", test.batch_size, device, test.seed, test.num_workers)
    return DeviceBatches(swapped, "test", test.batch_size, device, test.seed)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return 100.0 * float((logits.argmax(1) == targets).float().mean())


def corruption_summary(acc: dict[str, float]) -> dict[str, Any]:
    """``{"corrupt/<c>/<s>": acc}`` as the summary's fields: every set, the mean per corruption (over its
    severities) and the mean over all sets (the mean of the per-corruption means: equal severity counts)."""
    per: dict[str, dict[str, float]] = {}
    for name, value in acc.items():
        _, corruption, severity = name.split("/")
        per.setdefault(corruption, {})[severity] = value
    by_corruption = {c: sum(v.values()) / len(v) for c, v in per.items()}
    return {
        "corrupt_acc": per,
        "corrupt_acc_by_corruption": by_corruption,
        "corrupt_acc_mean": sum(acc.values()) / len(acc) if acc else None,
    }


def corrupted_sets(
    data: ImageData, cfg: DictConfig, corruptions: list[str], severities: list[int]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The corrupted copies of the test set every member is evaluated on: fixed seed, shared cache."""
    return corrupted_splits(
        data.test_x, data.test_y, corruptions, severities,
        seed=CORRUPTION_SEED, cache_dir=Path(cfg.parent.cache_dir) / "corruptions",
    )  # fmt: skip


def requested_sets(cfg: DictConfig) -> list[str]:
    """``corrupt/<c>/<s>`` for every ``ensemble.corruptions`` x ``ensemble.severities``, in that order."""
    return [split_name(c, int(s)) for c in cfg.ensemble.corruptions for s in cfg.ensemble.severities]


def save_outputs(
    out: Path,
    net: nn.Module,
    batches: RunBatches,
    data: ImageData,
    cfg: DictConfig,
    precision: Precision,
) -> dict[str, Any]:
    """Write ``logits.pt`` of the evaluated network ``net`` (clean test, val, every corrupted test set) and
    return the summary's fields: the member record, the file's name and the corrupted-data accuracies."""
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {"test": predict(net, batches.test, precision)}
    if batches.val is not None:
        splits["val"] = predict(net, batches.val, precision)
    corrupted = corrupted_sets(data, cfg, list(cfg.ensemble.corruptions), list(cfg.ensemble.severities))
    acc = {}
    for name, (x, _) in corrupted.items():
        splits[name] = predict(net, batches_like(batches.test, data, x, precision.device), precision)
        acc[name] = accuracy(*splits[name])
    atomic_torch_save(out / LOGITS, logits_payload(splits))
    return {"ensemble": member_record(cfg), "logits_file": LOGITS, **corruption_summary(acc)}


def logits_payload(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """What ``logits.pt`` holds (module docstring): float16 logits, int64 targets, per split."""
    return {
        "format": LOGITS_FORMAT,
        "splits": {
            name: {"logits": logits.half(), "targets": targets} for name, (logits, targets) in splits.items()
        },
    }


# -- evaluations added to a completed member ------------------------------------------------------------
def stored_logits(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{split: {"logits", "targets"}}`` of a run's ``logits.pt`` as saved (float16), {} without one."""
    path = Path(out) / LOGITS
    if not path.exists():
        return {}
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != LOGITS_FORMAT:
        raise ValueError(f"{path}: not a logits file of format {LOGITS_FORMAT}")
    return dict(payload["splits"])


def stored_accuracies(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's ``corrupt_acc`` as ``{"corrupt/<c>/<s>": acc}``, in the order it holds them."""
    per = summary.get("corrupt_acc") or {}
    return {f"corrupt/{c}/{s}": float(v) for c, by in per.items() for s, v in by.items()}


def missing_evaluations(out: Path, cfg: DictConfig) -> list[str]:
    """The splits ``cfg`` asks a completed member for that its run directory lacks: the clean ones
    (``test``, ``val``) missing from ``logits.pt``, and every requested corrupted set missing from
    ``logits.pt`` or from the summary's ``corrupt_acc`` (a set in only one of them is computed again)."""
    out = Path(out)
    summary = read_summary(out) or {}
    saved, acc = stored_logits(out), stored_accuracies(summary)
    clean = ["test", "val"] if summary.get("val_acc") is not None else ["test"]  # val: when the data has it
    return [n for n in clean if n not in saved] + [
        n for n in requested_sets(cfg) if n not in saved or n not in acc
    ]


def evaluated_network(out: Path, cfg: DictConfig, data: ImageData, precision: Precision) -> nn.Module:
    """The network a completed run was evaluated on, rebuilt from its ``model.pt`` (``export_state_dict``
    of it: recalibrated BatchNorm statistics, pruned weights zero), placed as ``run`` places its model."""
    path = Path(out) / MODEL
    with torch.random.fork_rng(devices=[]):  # building initialises weights: no draw from the global RNG
        model = build_model(
            cfg.model, data.in_channels, data.image_shape[-1], data.num_classes, data.image_shape
        )
    model = model.to(precision.device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    state = torch.load(path, map_location=precision.device, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        why = str(err).strip().splitlines()[0]
        raise ConfigError(
            "model", f"{path} does not load into the configured model ({why}); force=true retrains the run"
        ) from err
    return model.eval()


def complete_evaluations(out: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """Add to the completed member in ``out`` the evaluations ``cfg`` asks for that it lacks, without
    retraining it: the corrupted test sets of ``ensemble.corruptions`` x ``ensemble.severities`` (and a
    clean split missing from ``logits.pt``). Its evaluated network is rebuilt from ``model.pt`` and its
    logits computed as ``save_outputs`` computes them (the same corrupted images, batches, device and
    precision, ``train.cpu_threads``), merged into ``logits.pt`` and the summary's corrupted-data accuracies
    (each file replaced atomically, ``logits.pt`` first). Returns the updated summary; None when nothing is
    missing. Raises ConfigError (``train.save_model``) when the member was stored without ``model.pt``."""
    out = Path(out)
    summary = read_summary(out)
    if summary is None or summary.get("status") != "completed":
        raise ValueError(f"{out}: not a completed run")
    missing = missing_evaluations(out, cfg)
    if not missing:
        return None
    if not (out / MODEL).exists():
        raise ConfigError(
            "train.save_model",
            f"{out} holds a member stored without {MODEL} (train.save_model=false), so "
            f"{', '.join(missing)} cannot be evaluated without retraining it: force=true retrains it",
        )
    log.info("member completed in %s: evaluating %s from %s, not retraining", out, ", ".join(missing), MODEL)
    started, threads = time.time(), torch.get_num_threads()
    torch.set_num_threads(cfg.train.cpu_threads)  # as run() sets it: CPU numbers depend on it
    try:
        device = pick_device(cfg.device)
        if device.type == "cpu":  # as run() checks: the mode the member's numbers were computed in
            numerics.check(cfg.train.cpu_numerics)
        precision = Precision.for_device(device, cfg.train.amp, cfg.train.channels_last)
        data = load_data(cfg.data)
        batches = make_batches(
            data, cfg.data.pipeline, cfg.train.batch_size, device, finetune_seed(cfg), cfg.data.num_workers
        )
        net = evaluated_network(out, cfg, data, precision)
        new: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name in missing:
            if name == "test":
                new[name] = predict(net, batches.test, precision)
            elif name == "val":
                new[name] = predict(net, batches.val, precision)
            else:
                _, corruption, severity = name.split("/")
                ((x, _),) = corrupted_sets(data, cfg, [corruption], [int(severity)]).values()
                new[name] = predict(net, batches_like(batches.test, data, x, device), precision)
    finally:
        torch.set_num_threads(threads)

    saved = stored_logits(out)
    splits = {**saved, **logits_payload(new)["splits"]}
    order = [n for n in ("test", "val") if n in splits] + requested_sets(cfg)
    order += [n for n in saved if n not in order]
    atomic_torch_save(out / LOGITS, {"format": LOGITS_FORMAT, "splits": {n: splits[n] for n in order}})

    acc = {**stored_accuracies(summary), **{n: accuracy(*new[n]) for n in new if n.startswith("corrupt/")}}
    # summed in the order a member trained with these sets sums them (the file's order)
    acc = {n: acc[n] for n in [*order, *acc] if n in acc}
    record = {
        "splits": sorted(new),
        "device": str(device),
        "wall_time_s": time.time() - started,
        "provenance": provenance.software_and_machine(numerics.active_mode()),
    }
    updated = {
        **summary,
        "logits_file": LOGITS,
        **corruption_summary(acc),
        "evaluated_later": [*summary.get("evaluated_later", []), record],
    }
    atomic_write_json(out / SUMMARY, updated)
    return updated


def training_flops(
    cfg: DictConfig,
    data: ImageData,
    steps_per_epoch: int,
    history: list[dict[str, Any]],
    parent_info: dict[str, Any],
) -> dict[str, Any]:
    """The member's training FLOPs (``flops.py``: 3 x forward x samples, prunable layers at the density in
    use): its dense parent's (``parent.epochs`` as configured, also for a parent brought by ``parent.path``)
    and its own fine-tuning's (annealing's denser epochs included; RigL's dense gradients at its mask
    updates, ``finetune_dense_gradients``, included). ``parent_id`` tells the table which
    members share one parent, so a Prune-and-Tune ensemble is charged one parent, a dense ensemble one each.
    The architecture is counted on the meta device: no compute, no draw from any RNG."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build_model(
            cfg.model, data.in_channels, data.image_shape[-1], data.num_classes, data.image_shape
        )
    names = prunable_modules(model, cfg.pruning.keep_first_layer, cfg.pruning.keep_last_layer)
    forward = flops.forward_flops(model, (1, *data.image_shape), names)
    # a MIMO step trains on its batch repeated (one forward pass: M examples, counted by forward_flops)
    batch = int(cfg.train.batch_size) * int(cfg.model.mimo_batch_repetitions)
    steps = int(history[-1]["step"]) if history else 0
    density = flops.child_density(history[-1], history) if history else 1.0
    # RigL (dynamic sparse training growing by gradient): a dense weight gradient at every mask update
    updates = int(history[-1].get("mask_updates", 0)) if history and cfg.method.name == "rigl" else 0
    dense_gradients = flops.dense_gradient_flops(forward, density, updates, batch)
    record = {"finetune_dense_gradients": dense_gradients} if cfg.method.name == "rigl" else {}
    return {
        "forward_per_sample": forward.dense,
        "parent": flops.parent_flops(forward, int(cfg.parent.epochs), steps_per_epoch, batch),
        "finetune": flops.child_flops(forward, steps, batch, density) + dense_gradients,
        "parent_id": str(parent_info.get("hash") or parent_info.get("path") or f"seed{parent_seed(cfg)}"),
        **record,
    }
