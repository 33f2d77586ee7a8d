"""The config schema and every bad-input rule, in one place.

The dataclasses are registered in Hydra's ConfigStore and ``conf/config.yaml`` extends them, so a key that is
not in the schema (a typo) or a value of the wrong type fails at composition, before any compute.
``validate`` adds the rules a type cannot express (ranges, cross-field rules, paths that must exist).
Key names are frozen: renaming one breaks users' sweeps; deprecate instead.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssa_experiments.config.methods import METHOD_KEY_DEFAULTS, METHOD_KEYS
from ssa_experiments.config.renamed import historical
from ssa_experiments.config.schema import SIGNAL_DATA_SETS, Config, to_container
from ssa_experiments.config.sources import folder_digest
from ssa_experiments.config.targets import custom_method_reads
from ssa_experiments.repro.provenance import COMPUTE_VERSION, file_sha256

# Where a run executes, reads from, logs or is stored, what it saves, how it is tuned: not what it computes.
# The device and the train.* keys of precision are replaced by what they do (``compute_identity``).
NOT_IDENTITY = (
    "output_dir", "device", "parent.cache_dir", "parent.save_epochs", "parent.cache", "data.root",
    "data.num_workers", "logger", "store", "force", "objective", "train.checkpoint_every",
    "train.checkpoint_every_steps", "train.save_model", "train.amp", "train.channels_last",
    "train.cpu_threads", "train.cpu_numerics", "train.compile", "train.runs_per_device",
)  # fmt: skip
# The fields each LR schedule reads (training/lr.py lr_at); the parent-derived ones read the parent's.
LR_SCHEDULE_KEYS = {
    "constant": ("lr",),
    "one_cycle": ("lr", "pct_start", "div_factor", "final_div_factor"),
    "cosine": ("lr", "min_ratio"),
    "step": ("lr", "milestones", "gamma"),
    "parent_swa_style": ("lr", "decay_start", "decay_end", "final_ratio"),
    "finetune": (),
    "lr_rewind": (),
}
# data.* keys only some data sets read; dropped from the run's and the parent's identity for the others, so
# adding a data set never changes the store keys and cached parents of the existing ones
DATA_KEYS_READ_BY = {"num_samples": ("mnist1d",)}
# pruning.* keys added after runs were stored: at these values they compute what runs did before, and are
# dropped from the identity, so every existing store key stays; a criterion's own keys only where it reads
# them
PRUNING_KEY_DEFAULTS = {"control": "none", "pattern": "unstructured"}
PRUNING_KEYS_READ_BY = {"score_batches": ("snip", "grasp"), "synflow_rounds": ("synflow",)}


def pruning_identity(pruning: dict[str, Any]) -> dict[str, Any]:
    """The ``pruning`` node without its keys at their historical default (``PRUNING_KEY_DEFAULTS``) and
    without the criterion's keys another criterion does not read (``PRUNING_KEYS_READ_BY``)."""
    criterion = pruning.get("criterion")
    return {
        k: v
        for k, v in pruning.items()
        if not (k in PRUNING_KEY_DEFAULTS and v == PRUNING_KEY_DEFAULTS[k])
        and criterion in PRUNING_KEYS_READ_BY.get(k, (criterion,))
    }


# model.* keys added after runs and parents were stored: at these values they build the model they built
# before (no MIMO wrapper), and are dropped from the run's identity and the parent's key
MODEL_KEY_DEFAULTS = {"mimo_heads": 1, "mimo_batch_repetitions": 1}


def model_identity(model: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` node without the keys at their historical default (``MODEL_KEY_DEFAULTS``)."""
    return {k: v for k, v in model.items() if not (k in MODEL_KEY_DEFAULTS and v == MODEL_KEY_DEFAULTS[k])}


def data_identity(data: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` node without the keys its data set does not read (``DATA_KEYS_READ_BY``); a data set
    read from the user's files as what the files hold, not where they are (``data_source_identity``)."""
    name = data.get("name")
    kept = {k: v for k, v in data.items() if name in DATA_KEYS_READ_BY.get(k, (name,))}
    source = data_source_identity(kept)
    if source:
        kept = {k: v for k, v in kept.items() if k not in ("root", "path")}
    return {**kept, **source}


# what data_source_identity adds: kept in a run's identity although data.root is not
SOURCE_KEYS = ("folder_sha256", "path_sha256")


def data_source_identity(data: dict[str, Any]) -> dict[str, Any]:
    """``data=image_folder``: the folder's digest (``sources.folder_digest``) for its ``root``;
    ``data=npz``: the file's SHA-256 for its ``path``. Two folders of other images are two data sets, one
    folder copied elsewhere is one. Empty for every other data set (their ``root`` says where, not what)."""
    if data.get("name") == "image_folder":
        return {"folder_sha256": folder_digest(Path(str(data["root"])).expanduser())}
    if data.get("name") == "npz":
        return {"path_sha256": content_sha256(Path(str(data["path"])).expanduser())}
    return {}


def lr_identity(lr: dict[str, Any]) -> dict[str, Any]:
    """An LR schedule as the fields its shape reads (``lr.gamma`` under one_cycle changes nothing)."""
    name = lr.get("name")
    return {"name": name, **{k: lr[k] for k in LR_SCHEDULE_KEYS.get(name, tuple(lr)) if k != "name"}}


def device_type(device: str) -> str:
    """cpu or cuda: what ``device`` (auto, cpu, cuda, cuda:N) computes on here (auto asks torch)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def compute_identity(cfg: DictConfig | Config) -> dict[str, Any]:
    """How the numbers are computed, as applied rather than as asked: on a CPU the numerics mode and the
    thread count (the order of float sums); on CUDA bf16 autocast and channels-last, which the CPU ignores;
    and the code's ``COMPUTE_VERSION``; on both, ``torch.compile`` when it is on (its fused kernels round
    differently from eager: training/compile.py), absent when off so that eager keys never moved. Part of
    every run's identity and every parent's key."""
    t = cfg.train
    compiled = {"compile": True} if t.compile else {}
    if device_type(cfg.device) == "cuda":
        images = cfg.data.name not in SIGNAL_DATA_SETS  # channels-last acts on 4-D inputs only
        return {
            "version": COMPUTE_VERSION,
            "device": "cuda",
            "autocast": "bfloat16" if t.amp else None,
            "channels_last": bool(t.channels_last and images),
            **compiled,
        }
    return {
        "version": COMPUTE_VERSION,
        "device": "cpu",
        "cpu_numerics": t.cpu_numerics,
        "cpu_threads": t.cpu_threads,
        **compiled,
    }


@functools.cache
def _content_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def content_sha256(path: str | Path) -> str:
    """A file's SHA-256, computed once per (path, size, mtime) in a process."""
    st = os.stat(path)
    return _content_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def parent_source_identity(path: str | None) -> dict[str, Any]:
    """A brought parent (``parent.path``) as its content, not its path: the same file anywhere is one
    parent, another file at the same path is another."""
    return {} if path is None else {"path_sha256": content_sha256(path)}


def _normalised_prune_every(cfg: DictConfig | Config, every: int) -> int:
    """0 when GMP's period equals the steps per epoch: that is per-epoch pruning (bit-identical), one run."""
    if not every or cfg.method.name != "iterative":
        return every
    from ssa_experiments.data.loaders import training_steps_per_epoch  # reads the data set: only here

    return 0 if every == training_steps_per_epoch(cfg) else every


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus ``NOT_IDENTITY`` and every key the run does not read, plus how it is
    computed (``compute_identity``): two runs with equal identities compute the same numbers, and two runs
    that compute the same numbers have equal identities as far as the config can tell (the dense run at any
    requested sparsity is one run)."""
    ident = historical(to_container(cfg))  # the LR schedule as ``schedule``: store keys never move
    data = data_identity(ident.get("data", {}))  # before data.root goes: an image folder's root says what
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = ident
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    method = ident.get("method", {})
    if method.get("name") == "custom":  # its target, its declared reads and the keys the user added
        reads = custom_method_reads(method)
    else:
        reads = METHOD_KEYS.get(method.get("name"), tuple(method))
    if "prune_every_steps" in method:
        method["prune_every_steps"] = _normalised_prune_every(cfg, method["prune_every_steps"])
    ident["method"] = {
        k: v
        for k, v in method.items()
        if (k == "name" or k in reads) and not (k in METHOD_KEY_DEFAULTS and v == METHOD_KEY_DEFAULTS[k])
    }
    if method.get("name") == "iterative" and method.get("schedule") == "cubic":
        ident["method"]["schedule"] = "polynomial"  # two names of one schedule: one run
    ident["data"] = {k: v for k, v in data.items() if k in ident.get("data", {}) or k in SOURCE_KEYS}
    if "pruning" in ident:
        ident["pruning"] = pruning_identity(ident["pruning"])
    ident["model"] = model_identity(ident.get("model", {}))
    ident["sparsity"] = float(ident["sparsity"]) + 0.0  # -0.0 is 0.0
    if method.get("name") == "dense":
        ident["sparsity"] = 0.0
        ident.pop("pruning", None)
        ident.pop("eval", None)  # the dense network is evaluated as trained: nothing to recalibrate
    parent = ident.get("parent", {})
    if parent.get("rewind_epoch") is None:
        parent.pop("rewind_epoch", None)
    parent.update(parent_source_identity(parent.pop("path", None)))
    if "schedule" in parent:
        parent["schedule"] = lr_identity(parent["schedule"])
    if "schedule" in ident:
        ident["schedule"] = lr_identity(ident["schedule"])
    ident.update(ensemble_identity(ident.pop("ensemble", None), method.get("name")))
    ident["compute"] = compute_identity(cfg)
    return ident


def ensemble_identity(ensemble: dict[str, Any] | None, method: str | None) -> dict[str, Any]:
    """The ``ensemble`` entry of a run's identity: none for a non-member (so every identity from before
    ensembles existed is unchanged), else the keys that change a member's numbers or outputs: not ``size``
    (validation only: member 0 of a 4- and of a 6-member ensemble is one run), ``noise`` only for
    magnitude_random, and no mask keys for a dense member (it prunes nothing)."""
    if not ensemble or ensemble.get("member") is None:
        return {}
    # size: validation only; corruptions and severities: evaluations of the finished member, added to a
    # stored one without retraining it (members.py), so asking for one more never recomputes a member
    kept = {k: v for k, v in ensemble.items() if k not in ("size", "corruptions", "severities")}
    if kept.get("masks") != "magnitude_random" or method == "dense":
        kept.pop("noise", None)
    if method == "dense":
        kept.pop("masks", None)
    return {"ensemble": kept}
