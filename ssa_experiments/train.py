"""Command-line entry point: ``python -m ssa_experiments.train [overrides]`` (also ``ssa-train``).

Thin by design: compose the config (Hydra), place the run in the store (``store.py``: its directory is a
function of what it computes; Hydra's job directory links to it) under the run's lock, give it a device
(``devices.py``: one GPU per job), hand it to ``run``, and turn failures into what a shell user needs. A bad
config prints one line naming the field and exits 2 before any compute; a run that fails later records
``status: failed`` in its summary. In a multirun the failure is logged and the sweep goes on, so one bad job
never costs the others their results; a single run exits 1.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ssa_experiments import store
from ssa_experiments.config import ConfigError, register_configs, run_identity, to_container, validate
from ssa_experiments.devices import device_for_job
from ssa_experiments.pruning.methods import LayerCollapse
from ssa_experiments.results import SUMMARY, atomic_write_json

log = logging.getLogger("ssa_experiments")
register_configs()


def _record_failure(cfg: DictConfig, err: BaseException, started: float) -> None:
    out = Path(cfg.output_dir)
    atomic_write_json(
        out / SUMMARY,
        {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
            "method": cfg.method.name,
            "target_sparsity": cfg.sparsity,
            "seed": cfg.seed,
            "wall_time_s": time.time() - started,
            "config": to_container(cfg),
            **({"collapsed_layers": err.layers} if isinstance(err, LayerCollapse) else {}),
        },
    )


def _in_store(cfg: DictConfig) -> Path | None:
    """Move the run into the store (``store.py``): the job directory Hydra made keeps a link to it."""
    if not cfg.store.root:
        return None
    validate(cfg)  # a bad config fails here, before anything is linked or locked
    out = store.run_dir(cfg.store.root, run_identity(cfg))
    store.link(Path(cfg.output_dir), out)
    cfg.output_dir = str(out)
    return out


def _run_on_a_device(cfg: DictConfig, run: Callable[[DictConfig], dict[str, Any]]) -> dict[str, Any]:
    """``device=auto`` on a machine with several GPUs: the job holds one free GPU for its run (devices.py),
    taken once the run's own lock is held, so a job waiting on another's run never blocks a GPU."""
    import torch

    with device_for_job(cfg.device, torch.cuda.device_count()) as device:
        cfg.device = device  # not part of the run's identity: where a run executes never changes what it is
        if device.startswith("cuda:"):
            torch.cuda.set_device(device)  # plain torch.cuda calls and autocast then use the claimed GPU
        return run(cfg)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from ssa_experiments.run import run  # after Hydra has parsed the command line: --help stays fast

    started = time.time()
    job_dir, out = Path(cfg.output_dir), None
    try:
        out = _in_store(cfg)
        with store.claimed(out) if out else nullcontext():  # one writer; a second asker waits, then skips
            if out and cfg.force:
                store.discard(out)
            try:
                summary = _run_on_a_device(cfg, run)
            except ConfigError:
                raise
            except Exception as err:
                _record_failure(cfg, err, started)
                raise
    except ConfigError as err:
        if out is not None:
            store.withdraw(job_dir, out)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("run failed (%s); recorded in %s, sweep continues", err, Path(cfg.output_dir) / SUMMARY)
            return None
        if isinstance(err, LayerCollapse):  # a known outcome, not a bug: one line, no traceback
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        raise
    return summary.get("test_acc")


if __name__ == "__main__":
    main()
