"""Command-line entry point: ``python -m ssa_experiments.cli.train [overrides]`` (also ``ssa-train``).

Thin by design: compose the config (Hydra), put the process in the config's CPU numerics before torch starts
(``numerics.py``: this module's imports are torch-free for that reason), place the run in the store
(``store/runs.py``: its directory is a function of what it computes; Hydra's job directory links to it) under
the run's lock, give it a device (``runtime/devices.py``: one GPU per job, or
``train.runs_per_device`` jobs per GPU), hand it to ``run``, and turn
failures into what a shell user needs. A bad config prints one line naming the field and exits 2 before any
compute (a renamed key, e.g. ``schedule=`` for ``lr=``, before Hydra composes: ``config/renamed.py``); a run
that fails later records ``status: failed`` in its summary. In a multirun the failure is logged and the sweep
goes on, so one bad job never costs the others their results; a single run exits 1.
"""

from __future__ import annotations

import logging
import os
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

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.overrides import refuse_bad_values, refuse_repeated
from ssa_experiments.config.paths import CONFIG_NAME, conf_dir
from ssa_experiments.config.renamed import refuse_renamed
from ssa_experiments.config.schema import ConfigError, register_configs, to_container
from ssa_experiments.config.validate import check_device, validate
from ssa_experiments.pruning.errors import LayerCollapse
from ssa_experiments.repro import numerics
from ssa_experiments.runtime.devices import device_for_job
from ssa_experiments.store import runs as store
from ssa_experiments.store.files import SUMMARY, DamagedFile, DiskFull, atomic_write_json, read_summary
from ssa_experiments.training import interrupt

log = logging.getLogger("ssa_experiments")
# refused before any compute: one line, exit 2, nothing left in the store
REFUSED = (ConfigError, numerics.NumericsError)
REQUEUE_WAIT_S = 60  # a requeued job waits this long for SLURM to end it (KillWait is 30 s by default)
register_configs()


def _record_failure(cfg: DictConfig, err: BaseException, started: float) -> None:
    out = Path(cfg.output_dir)
    try:
        previous = read_summary(out)
    except (DamagedFile, OSError):
        previous = None  # a damaged summary is no result to keep (run() sets one aside before it runs)
    if previous is not None and previous.get("status") == "completed":
        return  # what failed came after the run (evaluations added later): its result stays
    record = {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "traceback": traceback.format_exc(),
        "method": cfg.method.name,
        "target_sparsity": cfg.sparsity,
        "seed": cfg.seed,
        "wall_time_s": time.time() - started,
        "config": to_container(cfg),
        **({"collapsed_layers": err.layers} if isinstance(err, LayerCollapse) else {}),
    }
    try:
        atomic_write_json(out / SUMMARY, record)
    except OSError as write_err:  # the directory itself is unusable: say so, the original error stands
        log.error("could not record the failure in %s: %s", out / SUMMARY, write_err)


def _in_store(cfg: DictConfig) -> Path | None:
    """Move the run into the store (``store.py``): the job directory Hydra made keeps a link to it."""
    if not cfg.store.root:
        return None
    validate(cfg)  # a bad config fails here, before anything is linked or locked
    check_device(cfg)
    out = store.run_dir(cfg.store.root, run_identity(cfg))
    store.link(Path(cfg.output_dir), out)
    cfg.output_dir = str(out)
    return out


def _run_on_a_device(cfg: DictConfig, run: Callable[[DictConfig], dict[str, Any]]) -> dict[str, Any]:
    """``device=auto`` on a machine with GPUs: the job holds one free GPU slot for its run
    (``runtime/devices.py``), taken once the run's own lock is held, so a job waiting on another's run never
    blocks a GPU."""
    import torch

    with device_for_job(cfg.device, torch.cuda.device_count(), per_gpu=cfg.train.runs_per_device) as device:
        cfg.device = device  # not part of the run's identity: where a run executes never changes what it is
        if device.startswith("cuda:"):
            torch.cuda.set_device(device)  # plain torch.cuda calls and autocast then use the claimed GPU
        return run(cfg)


def _serves_a_sweeper() -> bool:
    """Whether a sweeper reads what main() returns (Optuna, Nevergrad): Hydra's basic sweeper ignores it."""
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and not str(hc.sweeper.get("_target_", "")).endswith("BasicSweeper")


def run_line(job: str, summary: dict[str, Any], seconds: float) -> str:
    """A multirun's one line per run: which job, its status, its headline numbers, how long, where."""
    acc = lambda key: "-" if summary.get(key) is None else f"{summary[key]:.2f}%"  # noqa: E731
    sparsity = summary.get("sparsity")
    return (
        f"[{job}] {summary.get('status')}: test_acc {acc('test_acc')}  val_acc {acc('val_acc')}  "
        f"sparsity {'-' if sparsity is None else f'{sparsity:.4f}'}  ({seconds:.1f} s)"
    )


def _objective(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """The validation metric named by ``objective`` (default val_acc): what a tuner optimises."""
    value = summary.get(cfg.objective)
    return None if value is None else float(value)


def _hand_over(cfg: DictConfig, stop: interrupt.Interrupted, handler: Any) -> None:
    """The run stopped at a boundary on the scheduler's signal, its checkpoint saved and its lock released:
    note the requeue in the run directory (``status`` shows it), then let submitit's handler requeue the job
    (it exits the process). When ``max_num_timeout`` requeues are used up it raises instead, and the run is
    recorded as failed, naming the limit."""
    out = Path(cfg.output_dir)
    count = store.note_requeue(out, str(stop))
    log.warning("%s: %s; requeue %d of this run", out, stop, count)
    try:
        handler(stop.signum, None)
    except SystemExit:  # requeued (submitit's ``scontrol requeue``, then sys.exit(-1))
        if os.environ.get("SLURM_JOB_ID"):
            # Let SLURM end the job step itself: a step that exits first (code 255) races the requeue, and
            # was measured to leave the job FAILED, the sweep then giving up on it.
            log.info("requeued; waiting up to %d s for SLURM to end this job step", REQUEUE_WAIT_S)
            time.sleep(REQUEUE_WAIT_S)
        raise
    except Exception as err:  # submitit's UncompletedJobError: "timed-out too many times"
        timed_out = TimeoutError(
            f"{out}: time limit reached {count} time(s), requeues used up (hydra.launcher.max_num_timeout): "
            f"{err}; relaunch to resume from its checkpoint"
        )
        _record_failure(cfg, timed_out, time.time())
        raise timed_out from None
    raise SystemExit(-1)  # a handler that neither requeued nor refused: end the job as submitit would


# an absolute path (config/paths.py): the checkout's conf/ or the wheel's copy, whatever the working directory
@hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name=CONFIG_NAME)
def _main(cfg: DictConfig) -> float | None:
    signum = interrupt.submitit_signal()  # a SLURM job: its time-limit signal stops the run at a boundary
    if signum is None:
        return _main_body(cfg, None)
    with interrupt.deferred(signum) as handler:
        return _main_body(cfg, handler)


def _main_body(cfg: DictConfig, handler: Any) -> float | None:
    started = time.time()
    job_dir, out = Path(cfg.output_dir), None
    try:
        numerics.enter(cfg.train.cpu_numerics)  # before anything imports torch
        from ssa_experiments.training.run import run

        if _serves_a_sweeper() and not cfg.data.val_fraction:
            raise ConfigError(
                "data.val_fraction",
                f"is 0, so there is no validation split for the sweeper to optimise ({cfg.objective}); "
                "tuning on the test set is refused: set data.val_fraction > 0",
            )
        out = _in_store(cfg)
        # one writer; a second asker waits (at most store.lock_timeout_s, saying for whom), then skips
        with store.claimed(out, cfg.store.lock_timeout_s) if out else nullcontext() as claim:
            try:
                if out and cfg.force:
                    store.discard(out)
                summary = _run_on_a_device(cfg, run)
            except interrupt.Interrupted:
                raise  # not a failure: the checkpoint stands and the job is requeued below
            except REFUSED:
                if claim is not None and store.withdraw(job_dir, out):
                    claim.remove = True  # nothing of the run is left, nor its lock file
                raise
            except Exception as err:
                _record_failure(cfg, err, started)
                raise
    except interrupt.Interrupted as stop:
        if handler is None:
            raise
        try:
            _hand_over(cfg, stop, handler)
        except TimeoutError as err:
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                log.error("%s", err)
                return None
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
    except REFUSED as err:
        if out is not None and not store.exists(out):  # refused before the lock: no link to nowhere either
            store.withdraw(job_dir, out)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except store.LockTimeout as err:  # nothing was computed or written: the holder's run is untouched
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("%s; the sweep continues without this run", err)
            return None
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            record = Path(cfg.output_dir) / SUMMARY
            where = f"recorded in {record}" if record.exists() else f"not recorded: {record} is not there"
            log.error("run failed (%s); %s; the sweep continues", err, where)
            return None
        if isinstance(err, LayerCollapse | DiskFull):  # a known outcome, not a bug: one line, no traceback
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        raise
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:  # the sweep's log: one line per run, whatever logger.progress says
        log.info(
            "%s", run_line(f"job {hc.job.num} {Path(cfg.output_dir).name}", summary, time.time() - started)
        )
    return _objective(cfg, summary)


def main() -> None:
    """Refuse a renamed key on the command line before Hydra composes (Hydra would report a missing group
    in many lines, exit 1, without the new name), a key given twice (Hydra keeps the last silently), a
    value of the wrong type or an unknown group choice (``overrides.py``), then hand it to Hydra."""
    try:
        refuse_renamed(sys.argv[1:])
        refuse_repeated(sys.argv[1:])
        refuse_bad_values(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
