"""What makes a run an ensemble member (``ensemble.member`` set; README, "Ensembles"), beyond its mask.

A member is an ordinary run: ``run.py`` asks here for its seeds' config, its mask spec and, once it has
completed, for the outputs the combiner (``python -m ssa_experiments.ensemble``) reads without retraining:

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
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from ssa_experiments import flops
from ssa_experiments.config import finetune_seed, parent_seed
from ssa_experiments.data.corruptions import corrupted_splits
from ssa_experiments.data.datasets import ImageData
from ssa_experiments.data.loaders import Batches, DeviceBatches, RunBatches, TorchBatches
from ssa_experiments.loop import Precision
from ssa_experiments.models import build_model
from ssa_experiments.pruning.targets import MemberMasks, prunable_modules
from ssa_experiments.results import LOGITS, LOGITS_FORMAT, atomic_torch_save

CORRUPTION_SEED = 0  # fixed: every member and method is evaluated on the very same corrupted images


def member_masks(cfg: DictConfig) -> MemberMasks | None:
    """The mask spec of an ensemble member (its target is a function of parent, index and seed), or None."""
    e = cfg.ensemble
    if e.member is None:
        return None
    return MemberMasks(kind=e.masks, member=int(e.member), seed=int(cfg.seed), noise=float(e.noise))


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
    corrupted = corrupted_splits(
        data.test_x, data.test_y, list(cfg.ensemble.corruptions), list(cfg.ensemble.severities),
        seed=CORRUPTION_SEED, cache_dir=Path(cfg.parent.cache_dir) / "corruptions",
    )  # fmt: skip
    acc = {}
    for name, (x, _) in corrupted.items():
        splits[name] = predict(net, batches_like(batches.test, data, x, precision.device), precision)
        acc[name] = accuracy(*splits[name])
    payload = {
        "format": LOGITS_FORMAT,
        "splits": {
            name: {"logits": logits.half(), "targets": targets} for name, (logits, targets) in splits.items()
        },
    }
    atomic_torch_save(out / LOGITS, payload)
    return {"ensemble": member_record(cfg), "logits_file": LOGITS, **corruption_summary(acc)}


def training_flops(
    cfg: DictConfig,
    data: ImageData,
    steps_per_epoch: int,
    history: list[dict[str, Any]],
    parent_info: dict[str, Any],
) -> dict[str, Any]:
    """The member's training FLOPs (``flops.py``: 3 x forward x samples, prunable layers at the density in
    use): its dense parent's (``parent.epochs`` as configured, also for a parent brought by ``parent.path``)
    and its own fine-tuning's (annealing's denser epochs included). ``parent_id`` tells the table which
    members share one parent, so a Prune-and-Tune ensemble is charged one parent, a dense ensemble one each.
    The architecture is counted on the meta device: no compute, no draw from any RNG."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    names = prunable_modules(model, cfg.pruning.keep_first_layer, cfg.pruning.keep_last_layer)
    forward = flops.forward_flops(model, (1, *data.image_shape), names)
    batch = int(cfg.train.batch_size)
    steps = int(history[-1]["step"]) if history else 0
    density = flops.child_density(history[-1], history) if history else 1.0
    return {
        "forward_per_sample": forward.dense,
        "parent": flops.parent_flops(forward, int(cfg.parent.epochs), steps_per_epoch, batch),
        "finetune": flops.child_flops(forward, steps, batch, density),
        "parent_id": str(parent_info.get("hash") or parent_info.get("path") or f"seed{parent_seed(cfg)}"),
    }
