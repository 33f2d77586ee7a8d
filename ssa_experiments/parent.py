"""The dense parent: trained once per (model, data, pre-training config, seed), then reused by every run.

Cache layout: ``<parent.cache_dir>/<hash>/parent.pt`` plus ``meta.json`` (the key, the file's SHA-256,
the parent's test accuracy). The hash covers exactly the fields that change the trained weights, so a sweep
over methods, sparsities or fine-tuning settings trains one parent per seed. A file lock makes parallel
jobs that need the same parent wait for the first one instead of training it again; an entry whose checksum
does not match (a torn copy, a damaged disk) is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssa_experiments.results import atomic_torch_save, atomic_write_json

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # bump when what a parent is (training code) changes in a way old entries must not be reused
# Where the data comes from, not what the parent sees (num_workers: augmentation is a function of the sample
# index, not of the worker). data.pipeline stays in the key: the two pipelines draw different augmentations.
DATA_FIELDS_IGNORED = ("root", "num_workers")


def parent_key(cfg: DictConfig) -> dict[str, Any]:
    """Exactly the config fields that determine the parent's weights."""
    data = {
        k: v
        for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
        if k not in DATA_FIELDS_IGNORED
    }
    parent = OmegaConf.to_container(cfg.parent, resolve=True)
    return {
        "format": CACHE_FORMAT,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": data,
        "epochs": parent["epochs"],
        "schedule": parent["schedule"],
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "batch_size": cfg.train.batch_size,
        "label_smoothing": cfg.train.label_smoothing,
        "max_steps_per_epoch": cfg.train.max_steps_per_epoch,
        "amp": cfg.train.amp,  # bf16 autocast on CUDA changes the weights
        "channels_last": cfg.train.channels_last,  # so do the kernels a memory layout selects
        "cpu_threads": cfg.train.cpu_threads,  # and, on a CPU, the order of float sums
        "seed": cfg.seed,
    }


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A user's checkpoint: a plain state_dict, or a dict holding one under 'state_dict' or 'model'."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _read_entry(entry: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The cached parent if the entry is complete and its checksum matches, else None."""
    weights, meta_path = entry / "parent.pt", entry / "meta.json"
    if not (weights.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("sha256") != file_sha256(weights):
            log.warning("parent cache entry %s fails its checksum: rebuilding it", entry)
            return None
        return torch.load(weights, map_location="cpu", weights_only=True), meta
    except Exception as err:  # unreadable meta or pickle: treat as absent and rebuild
        log.warning("parent cache entry %s is unreadable (%s): rebuilding it", entry, err)
        return None


def get_parent(
    cfg: DictConfig,
    model: nn.Module,
    train_parent: Callable[[nn.Module], dict[str, float]],
) -> dict[str, Any]:
    """Load the dense parent's weights into ``model`` (from parent.path, the cache, or by training it).

    Returns a small record for the run's summary: where the parent came from and its test accuracy.
    """
    if cfg.parent.path:
        model.load_state_dict(load_checkpoint_file(cfg.parent.path))
        log.info("parent: loaded %s", cfg.parent.path)
        return {"source": "path", "path": str(cfg.parent.path)}
    if not cfg.parent.cache:
        metrics = train_parent(model)
        return {"source": "trained", **metrics}

    key = parent_key(cfg)
    entry = Path(cfg.parent.cache_dir) / key_hash(key)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        cached = _read_entry(entry)
        if cached is not None:
            state, meta = cached
            model.load_state_dict(state)
            log.info(
                "parent: reusing cached parent %s (test_acc %.2f%%)",
                entry,
                meta.get("test_acc", float("nan")),
            )
            metrics = {k: v for k, v in meta.items() if k not in ("key", "sha256")}
            return {"source": "cache", "hash": entry.name, **metrics}  # what the run that trained it saw
        log.info("parent: training dense parent %s (%d epochs)", entry.name, cfg.parent.epochs)
        metrics = train_parent(model)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic_torch_save(entry / "parent.pt", state)
        atomic_write_json(
            entry / "meta.json", {"key": key, "sha256": file_sha256(entry / "parent.pt"), **metrics}
        )
        return {"source": "trained", "hash": entry.name, **metrics}
