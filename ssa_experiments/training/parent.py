"""The dense parent: trained once per (model, data, pre-training config, seed), then reused by every run.

Cache layout: ``<parent.cache_dir>/<hash>/parent.pt`` plus ``meta.json`` (the key, the file's SHA-256,
the parent's test accuracy). The hash covers exactly the fields that change the trained weights, so a sweep
over methods, sparsities or fine-tuning settings trains one parent per seed. A file lock makes parallel
jobs that need the same parent wait for the first one instead of training it again; an entry whose checksum
does not match (a torn copy, a damaged disk) is rebuilt, never used.

A parent being trained into the cache survives a scheduler's stop (``interrupt.py``): at the next step
boundary its state (model, optimizer, every RNG, the position, inside an epoch too) is saved as
``training.pt`` in the entry, and the requeued job, finding the entry without ``parent.pt``, continues from
it to the same weights; the file goes once ``parent.pt`` is written.

Weight rewinding needs the parent's weights at the end of an earlier epoch k (``parent.rewind_epoch``; 0:
the initialisation). The entry keeps them as ``epoch_<k>.pt``, each checksummed in ``meta.json``
(``epoch_sha256``), for every epoch in ``parent.save_epochs`` and the rewind epoch. Neither is in the key:
they change which files the entry holds, not the parent. An entry that lacks an epoch a run needs is
completed by training the parent again with saving (deterministic per seed on a CPU); the cached parent.pt
stays the parent, and a warning says so if the retrained final weights differ from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from ssa_experiments.config.identity import (
    compute_identity,
    data_identity,
    lr_identity,
    model_identity,
    parent_source_identity,
)
from ssa_experiments.config.schema import LrConfig
from ssa_experiments.data.loaders import Batches, RunBatches
from ssa_experiments.pruning.masking import Mask
from ssa_experiments.repro.provenance import file_sha256
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.store.files import DamagedFile, atomic_torch_save, atomic_write_json, set_aside
from ssa_experiments.training import interrupt
from ssa_experiments.training.checkpoint import rng_states, set_rng_states
from ssa_experiments.training.loop import EpochSums, evaluate_splits, steps_per_epoch, train_epoch
from ssa_experiments.training.lr import lr_at
from ssa_experiments.training.optim import make_optimizer

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # an entry's layout; a change to what a parent computes bumps provenance.COMPUTE_VERSION
# Where the data comes from, not what the parent sees (num_workers: augmentation is a function of the sample
# index, not of the worker). data.pipeline stays in the key: the two pipelines draw different augmentations.
DATA_FIELDS_IGNORED = ("root", "num_workers")
EpochHook = Callable[[int], None]  # called with the number of parent epochs completed
# train_parent(model) or train_parent(model, on_epoch_end): trains ``model`` in place, returns its metrics
TrainParent = Callable[..., dict[str, float]]
State = dict[str, torch.Tensor]


class ParentObserver(Protocol):
    """Who watches the parent being trained (``sinks.ParentSinks``: parent_metrics.jsonl, the bar or log
    lines, the parent's W&B run): what a run's epoch callbacks are to fine-tuning. ``done``: the epochs a
    resumed training has already (their rows stay)."""

    def start(self, epochs: int, steps_per_epoch: int, done: int = 0) -> None: ...

    def step(self, step: int) -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...

    def finish(self, ok: bool) -> None: ...


class Parent(NamedTuple):
    """What a run gets from the parent besides the weights loaded into its model."""

    info: dict[str, Any]  # for the run's summary: where the parent came from, its test accuracy
    rewind_state: State | None  # the weights of epoch ``parent.rewind_epoch`` (None: no rewinding)

    def rewind(self, model: nn.Module) -> None:
        """Weight rewinding, when the run rewinds (``rewind_weights``); ``model``'s masks started already:
        they come from the trained parent."""
        if self.rewind_state is not None:
            rewind_weights(model, self.rewind_state)


PROGRESS = "training.pt"  # a parent's training state in its cache entry, while it is trained


def fit(
    model: nn.Module,
    train_batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    epochs: int,
    schedule: LrConfig,
    precision: Precision,
    max_steps: int = 0,
    on_epoch_end: EpochHook | None = None,
    observer: ParentObserver | None = None,
    evaluate_epoch: Callable[[], dict[str, float]] | None = None,
    progress: Path | None = None,
) -> None:
    """Train ``epochs`` epochs without pruning: the dense parent. ``on_epoch_end(epochs_done)`` lets the
    parent cache keep the weights weight rewinding goes back to; ``observer`` sees every step and every
    epoch's row (its training metrics and, with ``evaluate_epoch``, its validation and test metrics).

    ``progress``: where a scheduler's stop saves the training state (at the next step boundary) and where
    a later call continues from it, bit for bit; None: a stop loses the parent's epochs."""
    steps = steps_per_epoch(train_batches, max_steps)
    total = epochs * steps
    first, global_step, in_epoch = 0, 0, None
    saved = _read_progress(progress, precision.device) if progress is not None and progress.exists() else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        set_rng_states(saved["rng"])
        first, global_step, in_epoch = saved["epoch"] + 1, saved["global_step"], saved["in_epoch"]
        log.info("parent: resuming its training from %s at epoch %d", progress, first + 1)
    if observer is not None:
        observer.start(epochs, steps, first)

    def saver(epoch: int) -> Callable[[int, int, EpochSums], None] | None:
        if progress is None:
            return None
        return lambda step, at, sums: _save_progress(
            progress, model, optimizer, precision.device, epoch - 1, at,
            {"epoch": epoch, "step": step, "sums": sums.state()},
        )  # fmt: skip

    for epoch in range(first, epochs):
        t0 = time.time()
        resumed, in_epoch = in_epoch, None
        train_metrics, global_step = train_epoch(
            model, train_batches, optimizer, loss_fn, epoch, global_step,
            lambda s: lr_at(s, total, schedule), precision, None, max_steps,
            observer.step if observer is not None else None,
            start_step=resumed["step"] if resumed else 0,
            sums=EpochSums.from_state(resumed["sums"], precision.device) if resumed else None,
            save=saver(epoch),
        )  # fmt: skip
        if not math.isfinite(train_metrics["train_loss"]):
            raise FloatingPointError(
                f"dense parent diverged at epoch {epoch} (loss {train_metrics['train_loss']})"
            )
        if observer is not None:
            evaluated = evaluate_epoch() if evaluate_epoch is not None else {}
            observer.epoch({
                "epoch": epoch + 1, "step": global_step, "lr": optimizer.param_groups[0]["lr"],
                **train_metrics, **evaluated, "epoch_time_s": time.time() - t0,
            })  # fmt: skip
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
        if epoch + 1 < epochs and progress is not None and interrupt.pending() is not None:
            _save_progress(progress, model, optimizer, precision.device, epoch, global_step, None)
            interrupt.check(f"after parent epoch {epoch + 1} (its training saved)")


def _save_progress(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, epoch: int,
    global_step: int, in_epoch: dict[str, Any] | None,
) -> None:  # fmt: skip
    """The parent's training state after epoch ``epoch`` (0-based; -1: none done), inside the next one if
    ``in_epoch`` says so (``checkpoint.py``'s layout, without a pruning method)."""
    atomic_torch_save(path, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_states(device),
        "device_type": device.type, "epoch": epoch, "global_step": global_step, "in_epoch": in_epoch,
    })  # fmt: skip
    log.info("parent: its training saved to %s (after epoch %d%s)", path, epoch + 1,
             f", {in_epoch['step']} steps into the next" if in_epoch else "")  # fmt: skip


def _read_progress(path: Path, device: torch.device) -> dict[str, Any] | None:
    """A saved parent training to continue, or None (none there; or one that cannot be read or was written
    on another device type: set aside or ignored with a warning, the parent trains from its start)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(saved, dict) or "model" not in saved:
            raise DamagedFile(path, "not a parent training state")
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        aside = set_aside(path).name
        log.warning(
            "parent: %s is unreadable (%s); set aside as %s, training from the start", path, reason, aside
        )
        return None
    if saved.get("device_type") != device.type:
        log.warning("parent: %s was written on %s, this run is on %s: training from the start", path,
                    saved.get("device_type"), device.type)  # fmt: skip
        return None
    return saved


def untouched_evaluation(model: nn.Module, batches: RunBatches, precision: Precision) -> dict[str, float]:
    """The parent's validation and test metrics after an epoch, in eval mode and under a forked RNG: whatever
    an evaluation pass draws (a DataLoader without its own generator draws its workers' base seed from
    torch's global RNG) never moves the random streams the parent's training continues with, so a watched
    parent is the parent (tests/training/test_parent.py). The next ``train_epoch`` sets train mode again."""
    device = precision.device
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda):
        metrics = evaluate_splits(model, batches, precision, 0)[0]
    metrics.pop("bn_recalibration_batches", None)
    return metrics


def parent_trainer(
    cfg: DictConfig,
    batches: RunBatches,
    precision: Precision,
    loss_fn: nn.Module,
    observer: ParentObserver | None = None,
) -> TrainParent:
    """How ``load_parent`` trains the parent when it must: ``parent.epochs`` under ``parent.lr`` on the
    run's batches, then its validation and test metrics (the record the cache keeps). ``observer`` (the
    parent's progress and metrics) sees it, each epoch evaluated for it."""

    def train_parent(
        model: nn.Module, on_epoch_end: EpochHook | None = None, progress: Path | None = None
    ) -> dict[str, float]:
        opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.parent.lr.lr)
        ok = False
        try:
            fit(
                model, batches.train, opt, loss_fn, cfg.parent.epochs, cfg.parent.lr, precision,
                cfg.train.max_steps_per_epoch, on_epoch_end, observer,
                (lambda: untouched_evaluation(model, batches, precision)) if observer is not None else None,
                progress,
            )  # fmt: skip
            ok = True
        finally:
            if observer is not None:
                observer.finish(ok)
        metrics = evaluate_splits(model, batches, precision, 0)[0]
        log.info("parent: test_acc %.2f%% after %d epochs", metrics["test_acc"], cfg.parent.epochs)
        return metrics

    return train_parent


def parent_entry(cfg: DictConfig) -> tuple[Path, dict[str, Any]] | None:
    """The cache entry the parent of ``cfg`` lives in (and its key), or None: brought (``parent.path``) or
    not cached (``parent.cache=false``)."""
    if cfg.parent.path or not cfg.parent.cache:
        return None
    key = parent_key(cfg)
    return Path(cfg.parent.cache_dir) / key_hash(key), key


def parent_key(cfg: DictConfig) -> dict[str, Any]:
    """Exactly the config fields that determine the parent's weights."""
    data = {
        k: v
        for k, v in data_identity(OmegaConf.to_container(cfg.data, resolve=True)).items()
        if k not in DATA_FIELDS_IGNORED
    }
    parent = OmegaConf.to_container(cfg.parent, resolve=True)
    return {
        "format": CACHE_FORMAT,
        "model": model_identity(OmegaConf.to_container(cfg.model, resolve=True)),
        "data": data,
        "epochs": parent["epochs"],
        "schedule": lr_identity(parent["lr"]),  # the historical spelling (config/renamed.py): keys never move
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "batch_size": cfg.train.batch_size,
        "label_smoothing": cfg.train.label_smoothing,
        "max_steps_per_epoch": cfg.train.max_steps_per_epoch,
        # device type, numerics mode and threads (CPU) or autocast and memory layout (CUDA), compute version
        "compute": compute_identity(cfg),
        "seed": cfg.seed,
    }


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


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


def checkpoint_epochs(parent: DictConfig) -> list[int]:
    """The parent epochs whose weights a cache entry must hold for this run: ``parent.save_epochs`` and
    ``parent.rewind_epoch``."""
    epochs = set(parent.save_epochs)
    if parent.rewind_epoch is not None:
        epochs.add(parent.rewind_epoch)
    return sorted(epochs)


def epoch_file(epoch: int) -> str:
    return f"epoch_{epoch}.pt"


def snapshot(model: nn.Module) -> State:
    """A CPU copy of the model's state that later training does not change (``.cpu()`` alone aliases)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _read_epoch(entry: Path, meta: dict[str, Any], epoch: int, load: bool = True) -> State | None:
    """Epoch ``epoch``'s weights if the entry has them and their checksum matches ``meta``, else None
    (``load=False``: only checks, returning an empty dict when they are there)."""
    path, expected = entry / epoch_file(epoch), meta.get("epoch_sha256", {}).get(str(epoch))
    if expected is None or not path.exists():
        return None
    try:
        if file_sha256(path) != expected:
            log.warning("parent checkpoint %s fails its checksum: saving it again", path)
            return None
        return torch.load(path, map_location="cpu", weights_only=True) if load else {}
    except Exception as err:  # unreadable: treat as absent and save again
        log.warning("parent checkpoint %s is unreadable (%s): saving it again", path, err)
        return None


def train_keeping(
    model: nn.Module, train_parent: TrainParent, epochs: list[int], keep: Callable[[int, State], None],
    progress: Path | None = None,
) -> dict[str, float]:  # fmt: skip
    """Train the parent, handing ``keep`` the weights at the end of every epoch in ``epochs`` (0: before the
    first step). With no epochs to keep, ``train_parent`` is called exactly as without rewinding.
    ``progress``: where its training is saved on a scheduler's stop and continued from (``fit``)."""
    wanted = set(epochs)
    extra = {"progress": progress} if progress is not None else {}
    if not wanted:
        return train_parent(model, **extra)
    if 0 in wanted:
        keep(0, snapshot(model))

    def on_epoch_end(done: int) -> None:
        if done in wanted:
            keep(done, snapshot(model))

    return train_parent(model, on_epoch_end, **extra)


def same_weights(a: State, b: State) -> bool:
    """Bit-identical states: the same keys, and every tensor equal."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _complete_entry(
    entry: Path, meta: dict[str, Any], state: State, model: nn.Module, train_parent: TrainParent,
    missing: list[int],
) -> dict[str, Any]:  # fmt: skip
    """Train the parent again (``model`` holds its initialisation) to save the epochs the entry lacks; the
    cached ``state`` remains the parent. Returns the entry's updated meta (written)."""
    log.info(
        "parent: cache entry %s lacks epoch checkpoint(s) %s: training the parent again to save them "
        "(set parent.save_epochs in a sweep so the first run saves them)",
        entry.name,
        missing,
    )
    sums = dict(meta.get("epoch_sha256", {}))  # the epochs the entry already holds stay
    train_keeping(model, train_parent, missing, lambda k, s: sums.update({str(k): _save_epoch(entry, k, s)}))
    if not same_weights(snapshot(model), state):
        log.warning(
            "parent: retraining %s to save epoch(s) %s gave final weights that differ from the cached "
            "parent.pt (a nondeterministic device?); the cached parent is used, the saved epochs come from "
            "the retrained trajectory",
            entry.name,
            missing,
        )
    meta = {**meta, "epoch_sha256": sums}
    atomic_write_json(entry / "meta.json", meta)
    return meta


def _save_epoch(entry: Path, epoch: int, state: State) -> str:
    """Write one epoch's weights into the entry (atomically); returns their checksum for ``meta.json``."""
    atomic_torch_save(entry / epoch_file(epoch), state)
    return file_sha256(entry / epoch_file(epoch))


def load_parent(cfg: DictConfig, model: nn.Module, train_parent: TrainParent) -> Parent:
    """Load the dense parent's weights into ``model`` (from parent.path, the cache, or by training it), and
    the weights of epoch ``parent.rewind_epoch`` when the run rewinds.

    ``model`` must hold the initialisation the parent is trained from (a rebuilt model, seeded as always).
    """
    if cfg.parent.path:
        return _from_path(cfg.parent.path, model)
    if cfg.parent.epochs == 0:  # pruning at initialisation: the parent is ``model`` as built, nothing cached
        log.info("parent: parent.epochs=0, the freshly initialised network is pruned (pruning at init)")
        return Parent({"source": "initialisation", "epochs": 0}, None)
    if not cfg.parent.cache:
        return _trained_uncached(cfg.parent.rewind_epoch, model, train_parent)
    return _from_cache(cfg, model, train_parent)


def _from_path(path: str, model: nn.Module) -> Parent:
    """A user's parent (``parent.path``): never rewound (validation refuses a rewind epoch with it)."""
    model.load_state_dict(load_checkpoint_file(path))
    log.info("parent: loaded %s", path)
    return Parent({"source": "path", "path": str(path), **parent_source_identity(path)}, None)


def _trained_uncached(rewind: int | None, model: nn.Module, train_parent: TrainParent) -> Parent:
    kept: dict[int, State] = {}
    metrics = train_keeping(model, train_parent, [] if rewind is None else [rewind], kept.__setitem__)
    return Parent({"source": "trained", **metrics}, kept.get(rewind) if rewind is not None else None)


def _from_cache(cfg: DictConfig, model: nn.Module, train_parent: TrainParent) -> Parent:
    """The parent of the cache entry of ``parent_key(cfg)``, reused (completed with the epochs it lacks) or
    trained and stored, under the entry's file lock: parallel runs wait for the first one."""
    key = parent_key(cfg)
    entry = Path(cfg.parent.cache_dir) / key_hash(key)
    entry.parent.mkdir(parents=True, exist_ok=True)
    wanted, rewind = checkpoint_epochs(cfg.parent), cfg.parent.rewind_epoch
    with FileLock(str(entry) + ".lock"):
        cached = _read_entry(entry)
        if cached is not None:
            info, meta = _reuse_entry(entry, *cached, model, train_parent, wanted)
        else:
            log.info("parent: training dense parent %s (%d epochs)", entry.name, cfg.parent.epochs)
            info, meta = _fill_entry(entry, key, model, train_parent, wanted)
        rewind_state = None if rewind is None else _read_epoch(entry, meta, rewind)
    if rewind is not None and rewind_state is None:
        raise RuntimeError(
            f"parent checkpoint {entry / epoch_file(rewind)} was saved but cannot be read back"
        )
    return Parent(info, rewind_state)


def _reuse_entry(
    entry: Path, state: State, meta: dict[str, Any], model: nn.Module, train_parent: TrainParent,
    wanted: list[int],
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Load a cached parent into ``model``, first saving the epochs ``wanted`` the entry lacks. Returns the
    summary's record of it and the entry's meta."""
    missing = [k for k in wanted if _read_epoch(entry, meta, k, load=False) is None]
    if missing:
        meta = _complete_entry(entry, meta, state, model, train_parent, missing)
    model.load_state_dict(state)
    log.info("parent: reusing cached parent %s (test_acc %.2f%%)", entry, meta.get("test_acc", float("nan")))
    # what the run that trained it saw (and, if this run trained it again, for which epochs)
    metrics = {k: v for k, v in meta.items() if k not in ("key", "sha256", "epoch_sha256")}
    info = {"source": "cache", "hash": entry.name, **metrics}
    if missing:
        info["retrained_for_epochs"] = missing
    return info, meta


def _fill_entry(
    entry: Path, key: dict[str, Any], model: nn.Module, train_parent: TrainParent, wanted: list[int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the parent in ``model`` and store it (with the epochs ``wanted``) as the entry. Returns the
    summary's record of it and the entry's meta."""
    progress = entry / PROGRESS
    # the epochs a stopped training saved before its stop; every epoch this training reaches (all of them,
    # if it starts over) is saved again and replaces its entry here
    saved = [k for k in wanted if progress.exists() and (entry / epoch_file(k)).exists()]
    sums = {str(k): file_sha256(entry / epoch_file(k)) for k in saved}
    metrics = train_keeping(
        model, train_parent, wanted, lambda k, s: sums.update({str(k): _save_epoch(entry, k, s)}), progress
    )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(entry / "parent.pt", state)
    meta = {"key": key, "sha256": file_sha256(entry / "parent.pt"), **metrics}
    if sums:  # absent otherwise: an entry without epochs is written as before rewinding existed
        meta["epoch_sha256"] = sums
    atomic_write_json(entry / "meta.json", meta)
    progress.unlink(missing_ok=True)
    return {"source": "trained", "hash": entry.name, **metrics}, meta


_ORIGINAL = re.compile(r"(?P<prefix>(?:.*\.)?)parametrizations\.(?P<param>[^.]+)\.original")


@torch.no_grad()
def rewind_weights(model: nn.Module, state: State) -> None:
    """Weight rewinding: give the (possibly masked) ``model`` the weights and buffers of a plain parent
    ``state``, keeping its masks, then zero again the stored weights its masks have removed.

    The masks were chosen on the trained parent (``method.start``) and stay; a stored weight is zeroed where
    the train mask in force is 0: one-shot's and DropConnect's removed weights (they were zeroed on the
    trained weights, as the rewound ones must be), not annealing's weights outside the target (their train
    mask is 1 until the first sample: they keep their rewound values, to be sampled in and out).
    """
    own = model.state_dict()
    plain = {}
    for key in own:
        match = _ORIGINAL.fullmatch(key)
        if match is not None:
            plain[key] = match["prefix"] + match["param"]
        elif ".parametrizations." not in f".{key}":  # the masks' own buffers are not the parent's
            plain[key] = key
    missing = sorted(set(state) ^ set(plain.values()))
    if missing:
        raise KeyError(f"the parent checkpoint does not match the model: {missing[:5]}")
    for key, source in plain.items():
        own[key].copy_(state[source])
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):
            for mask in module:
                if isinstance(mask, Mask):
                    module.original.mul_(mask.train_mask.ne(0).to(module.original.dtype))
