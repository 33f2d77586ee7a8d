"""How a run looks in Weights & Biases: the conventions a W&B user expects, in one place.

* **group** = the sweep (``logger.group``, else Hydra's sweep directory's name in a multirun, else the
  experiment preset's name, else the job directory's name; outside Hydra the store's or the run directory's
  parent folder), so ``aggregate --wandb --group <sweep>`` finds a sweep's runs;
* **job_type** = the stage: ``parent`` (the dense parent's training), ``finetune`` (a run), ``ensemble``
  (a Prune-and-Tune member); **name** = the run's store name (``store/runs.py``); **tags** = the setting;
* **config** = the run's identity (``config/identity.py``: what it computes, only the keys its method reads),
  never runtime plumbing (``output_dir``, ``store.*``, ``force``, ``logger.*``);
* **history** under ``train/``, ``val/``, ``test/`` and ``pruning/``, with ``epoch`` and ``global_step`` as
  step metrics (``define_metric``); **summary** = summary.json's numbers: the final epoch's and the best
  epoch chosen by validation;
* **artifacts**: ``model.pt`` and the evaluated masks (``model-<store name>``); the parent's weights
  (``parent-<hash>``, alias ``final`` and ``epoch<k>`` for rewinding checkpoints), which an online child
  ``use_artifact``s, so W&B's lineage links every run to its parent;
* a **stable id** per store key (``wandb_run_id``), so publishing a stored run again (``cli/wandb_publish``)
  or resuming a killed one is the same W&B run;
* **online without a network**: one quick probe of the W&B host per sweep (``reachable``), its answer cached
  in the sweep directory; an unreachable host is said in one line and the runs log offline.

Nothing here ever writes the API key: W&B reads it from its own settings or the environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig

from ssa_experiments.config.targets import option_label
from ssa_experiments.store.files import MODEL, flatten
from ssa_experiments.store.runs import run_key

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 3.0  # a reachable W&B host answers a TCP connect in far less
PROBE_FILE = ".wandb_reachable.json"  # in the sweep directory: one probe per sweep, shared by its workers
STEP_METRICS = ("epoch", "global_step")
NAMESPACES = ("train", "val", "test")
# row keys that are about training but have no train_ prefix
TRAIN_KEYS = {"lr": "train/lr", "epoch_time_s": "train/epoch_time_s", "step": "global_step"}
_probed: dict[str, bool] = {}  # host:port -> reachable, for this process


# -- identity of a W&B run ----------------------------------------------------------------------------------


def wandb_run_id(identity: dict[str, Any], out: Path) -> str:
    """A run in the store (its directory named by its store key) has one id per store key, wherever the
    store lives: a resumed run, a published one and a re-published one are the same W&B run. A run outside
    the store: the same config in the same directory gives the same id, another directory another run."""
    out = Path(out)
    if out.name == run_key(identity):
        key = json.dumps({"store_key": out.name})
    else:
        key = json.dumps({"identity": identity, "run_dir": str(out.resolve())}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def parent_run_id(parent_hash: str) -> str:
    return hashlib.sha256(json.dumps({"parent": parent_hash}).encode()).hexdigest()[:24]


def parent_artifact(parent_hash: str) -> str:
    return f"parent-{parent_hash}"


def stage(cfg: DictConfig) -> str:
    """The job_type: ``ensemble`` for a Prune-and-Tune member, ``finetune`` for any other run."""
    member = cfg.get("ensemble", {}).get("member") if "ensemble" in cfg else None
    return "ensemble" if member is not None else "finetune"


def tags(cfg: DictConfig) -> list[str]:
    """The setting, as tags one can filter on, after the user's own ``logger.tags``."""
    return [str(t) for t in cfg.logger.tags] + [
        f"method:{option_label(cfg.method, 'name')}", f"sparsity:{cfg.sparsity}",
        f"model:{option_label(cfg.model, 'arch')}", f"data:{option_label(cfg.data, 'name')}",
    ]  # fmt: skip


def _hydra() -> Any:
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except Exception:  # run() called outside Hydra (tests, scripts, the publish command)
        return None


def sweep_dir() -> Path | None:
    """Hydra's sweep directory in a multirun (where the sweep's shared files go), else None."""
    hc = _hydra()
    if hc is None:
        return None
    from hydra.types import RunMode

    return Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


def sweep_group(cfg: DictConfig, out: Path, identity: dict[str, Any]) -> str:
    """The W&B group (module docstring): ``logger.group``, else the sweep's name."""
    if cfg.logger.group:
        return str(cfg.logger.group)
    hc = _hydra()
    if hc is not None:
        sweep = sweep_dir()
        if sweep is not None:
            return sweep.name
        choice = hc.runtime.choices.get("experiment")
        if choice and choice != "null":
            return str(choice)
        return Path(hc.runtime.output_dir).name
    return group_of(Path(out), identity)


def group_of(out: Path, identity: dict[str, Any] | None) -> str:
    """Outside Hydra: the store's folder for a stored run (``<root>/runs/<key>`` -> ``<root>``'s name), else
    the run directory's parent folder."""
    if identity is not None and out.name == run_key(identity):
        return out.resolve().parent.parent.name
    return out.resolve().parent.name


# -- what is logged -----------------------------------------------------------------------------------------


def metric_name(key: str) -> str:
    """A metrics.jsonl key (flattened with "/") as W&B shows it: ``train_loss`` -> ``train/loss``,
    ``val_acc`` -> ``val/acc``, ``lr`` -> ``train/lr``, ``step`` -> ``global_step``; the pruning state
    (sparsity, expected_train_sparsity, layer_sparsity/<layer>, at_target) under ``pruning/``."""
    if key in STEP_METRICS:
        return key
    if key in TRAIN_KEYS:
        return TRAIN_KEYS[key]
    head, sep, tail = key.partition("_")
    if sep and head in NAMESPACES:
        return f"{head}/{tail}"
    return f"pruning/{key}"


def loggable(value: Any) -> bool:
    return isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))


def history_row(row: dict[str, Any]) -> dict[str, Any]:
    """One epoch row as W&B history: namespaced scalars."""
    return {metric_name(k): v for k, v in flatten(row, sep="/").items() if loggable(v)}


def summary_fields(summary: dict[str, Any], out: Path) -> dict[str, Any]:
    """summary.json's numbers and labels (final and best-by-validation), flat with "/" (the keys
    ``analysis.aggregate.from_wandb`` reads back), and the run's store directory."""
    flat = flatten({k: v for k, v in summary.items() if k not in ("config", "identity")}, sep="/")
    fields = {k: v for k, v in flat.items() if loggable(v) or isinstance(v, str)}
    fields["store_dir"] = str(Path(out).resolve())
    return fields


def define_metrics(run: Any) -> None:
    """``epoch`` is the x-axis of every per-epoch metric, ``global_step`` (the optimizer step) is one too."""
    for step in STEP_METRICS:
        run.define_metric(step, hidden=False)
    for space in (*NAMESPACES, "pruning"):
        run.define_metric(f"{space}/*", step_metric="epoch")


# -- online without a network -------------------------------------------------------------------------------


def _host_port(base_url: str) -> tuple[str, int]:
    url = urlparse(base_url)
    return url.hostname or "api.wandb.ai", url.port or (443 if url.scheme == "https" else 80)


def _probe(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def reachable(base_url: str, where: Path | None, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the W&B host answers a TCP connect within ``timeout_s``: asked once per process and, with
    ``where`` (a sweep directory), once per sweep: the first worker probes under a lock and writes the answer
    to ``where/.wandb_reachable.json``, the others read it. An unreachable host is said in one line, by the
    process that probed."""
    host, port = _host_port(base_url)
    name = f"{host}:{port}"
    if name in _probed:
        return _probed[name]
    cache = None if where is None else where / PROBE_FILE
    if cache is None:
        _probed[name] = _probe_and_say(host, port, timeout_s, None)
        return _probed[name]
    from filelock import FileLock

    cache.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        known = _read_probe(cache, name)
        if known is None:
            known = _probe_and_say(host, port, timeout_s, where)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"host": name, "reachable": known, "checked_at": time.time()}))
            os.replace(tmp, cache)
    _probed[name] = known
    return known


def _read_probe(cache: Path, name: str) -> bool | None:
    try:
        info = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    return bool(info["reachable"]) if isinstance(info, dict) and info.get("host") == name else None


def _probe_and_say(host: str, port: int, timeout_s: float, where: Path | None) -> bool:
    ok = _probe(host, port, timeout_s)
    if not ok:
        scope = f"every run of the sweep {where}" if where is not None else "the runs of this process"
        log.warning(
            "W&B host %s:%d is unreachable (no answer within %.0f s): %s log(s) offline under "
            "<run dir>/wandb; upload them later with `wandb sync`", host, port, timeout_s, scope,
        )  # fmt: skip
    return ok


def resolved_mode(mode: str | None) -> str:
    """``logger.mode``, else ``WANDB_MODE``, else online (W&B's own default)."""
    mode = mode or os.environ.get("WANDB_MODE") or "online"
    return {"dryrun": "offline", "run": "online"}.get(mode, mode)


def effective_mode(mode: str | None, where: Path | None) -> str:
    """The mode a run starts W&B in: offline instead of online when the W&B host cannot be reached."""
    mode = resolved_mode(mode)
    if mode == "online" and not reachable(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL, where):
        return "offline"
    return mode


# -- starting, filling and finishing a W&B run --------------------------------------------------------------


def start(
    lc: DictConfig, *, run_id: str, name: str, group: str, job_type: str, tag_list: list[str],
    config: dict[str, Any], directory: Path, mode: str,
) -> Any:  # fmt: skip
    """``wandb.init`` with this project's conventions; console captured (W&B's Logs tab)."""
    import wandb

    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=lc.project, entity=lc.entity, group=group, job_type=job_type, tags=tag_list, name=name,
        config=flatten(config), id=run_id, resume="allow", mode=mode, dir=str(directory),
        reinit="create_new",  # several runs in one worker process never mix
        settings=wandb.Settings(init_timeout=lc.init_timeout, quiet=True, console="wrap"),
    )  # fmt: skip
    define_metrics(run)
    return run


def log_rows(run: Any, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        run.log(history_row(row), step=int(row["epoch"]))


def model_artifact(out: Path, summary: dict[str, Any], masks: Path | None) -> Any:
    """``model-<store name>``: model.pt (pruned weights exactly zero) and, from a live run, the evaluated
    masks (masks.pt), with the run's headline numbers as metadata."""
    import wandb

    keys = ("method", "target_sparsity", "sparsity", "test_acc", "val_acc", "seed")
    meta = {k: summary.get(k) for k in keys}
    art = wandb.Artifact(f"model-{out.name}", type="model", metadata=meta)
    art.add_file(str(out / MODEL), name=MODEL)
    if masks is not None and masks.exists():
        art.add_file(str(masks), name=masks.name)
    return art


def parent_link(run: Any, mode: str, parent_info: dict[str, Any], cache_dir: str | None) -> None:
    """An online child ``use_artifact``s its parent's weights (W&B's lineage); offline W&B cannot
    (``use_artifact`` needs the server), so the summary's ``parent/artifact`` names it instead."""
    if parent_info.get("hash") is None or cache_dir is None:
        return
    name = parent_artifact(parent_info["hash"])
    run.summary["parent/artifact"] = f"{name}:final"
    weights = Path(cache_dir) / parent_info["hash"] / "parent.pt"
    if mode == "online" and weights.exists():
        import wandb

        art = wandb.Artifact(name, type="parent")
        art.add_file(str(weights), name="parent.pt")
        run.use_artifact(art)


def existing(out: Path, run_id: str) -> list[Path]:
    """The W&B folders a run already has for ``run_id`` (offline or online): it is mirrored already."""
    return sorted((Path(out) / "wandb").glob(f"*run-*-{run_id}*"))
