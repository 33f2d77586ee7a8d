"""Where a sweep stands: ``python -m ssa_experiments.cli.status SWEEP_OR_STORE [...]`` (also ``ssa-status``).

Counts the runs a sweep asked for by what they are now: completed, running (its lock is held), failed,
diverged, incomplete (started, then killed: a re-launch resumes it) and missing (asked for, no directory
yet), lists the failed ones with their one-line errors, and exits 1 while anything failed or diverged. What a
sweep asked for is read back from its ``multirun.yaml`` (the preset's sweep parameters and the command line),
expanded as Hydra's basic sweeper expands them, so the jobs a killed sweep never started are counted too.
A run a SLURM time limit stopped and requeued (``requeues.jsonl`` in its directory) is listed with how
many times; the line counts them. Given a store root (``outputs/store``), it reports every stored run, also
one killed before its first epoch (an empty run directory). A run whose ``summary.json`` is damaged (torn,
not a summary) is counted ``damaged`` with the reason, and also makes the exit status 1. A multirun ends
with the same line, and exits 1 when any of its runs failed, diverged or is damaged (the other runs' results
stay), naming each such run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ssa_experiments.config.schema import short_dirname
from ssa_experiments.store import runs as store
from ssa_experiments.store.files import CHECKPOINT, METRICS, SUMMARY, DamagedFile, read_summary

STATES = ("completed", "running", "failed", "diverged", "incomplete", "missing")
DAMAGED = "damaged"  # a summary that is there but is no result: counted in the line only when there is one
BAD = ("failed", "diverged", "damaged")
NOT_DONE = ("incomplete", "missing")  # at a multirun's end: runs its jobs did not compute (``SweepStatus``)


def asked_for(sweep_dir: Path) -> list[Path] | None:
    """The job directories a multirun asked for, from its ``multirun.yaml``; None if it has none."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return None
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_cfg = OmegaConf.load(path).hydra
    params = [f"{k}={v}" for k, v in (hydra_cfg.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create()
    jobs = BasicSweeper.split_arguments(parser.parse_overrides([*params, *hydra_cfg.overrides.task]), None)[0]
    naming = hydra_cfg.job.config.override_dirname
    dirs = []
    for job in jobs:
        name = get_overrides_dirname(parser.parse_overrides(job), list(naming.exclude_keys), naming.item_sep,
                                     naming.kv_sep)  # fmt: skip
        dirs.append(sweep_dir / short_dirname(name))
    return dirs


def started_jobs(sweep_dir: Path) -> list[Path] | None:
    """The job directories of a sweep without ``multirun.yaml`` (a tuner such as Optuna picks its jobs as it
    goes, so only those started so far are known): every folder with Hydra's ``.hydra``; None if none."""
    jobs = sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()) if sweep_dir.is_dir() else []
    return jobs or None


def run_state(job_dir: Path) -> dict[str, Any]:
    """What one job (or stored run) directory holds now; ``requeues``: the times a time limit stopped it."""
    run_dir = job_dir / store.LINK if (job_dir / store.LINK).is_symlink() else job_dir
    row: dict[str, Any] = {"job_dir": str(job_dir), "run_dir": str(run_dir.resolve()), "error": None,
                           "requeues": store.requeues(run_dir)}  # fmt: skip
    if not job_dir.exists():
        return {**row, "status": "missing"}
    try:
        summary = read_summary(run_dir)
    except (DamagedFile, OSError) as err:  # one bad file is one bad row, never the whole report
        return {**row, "status": "damaged", "error": str(err)}
    if summary is not None:
        return {**row, "status": summary["status"], "error": summary.get("error")}
    try:
        running = store.is_running(run_dir.resolve())
    except store.StoreError as err:  # e.g. a directory where the lock file belongs
        return {**row, "status": "damaged", "error": str(err)}
    if running:
        return {**row, "status": "running"}
    return {**row, "status": "incomplete"}  # started (maybe with a checkpoint to resume from), not running


def states(root: Path) -> pd.DataFrame:
    """One row per run ``root`` asked for (a sweep) or holds (a store root, or a tree of run directories)."""
    jobs = asked_for(root)
    if jobs is None:  # a tuner's sweep (Optuna writes no multirun.yaml): the jobs it has started so far
        jobs = started_jobs(root)
    if jobs is None and (root / "runs").is_dir():  # a store root: every run directory is a run, even empty
        jobs = sorted(p for p in (root / "runs").iterdir() if p.is_dir() and not p.name.endswith(".lock"))
    elif jobs is None:
        jobs = sorted({p.parent for name in (SUMMARY, METRICS, CHECKPOINT) for p in root.rglob(name)})
    columns = ["job_dir", "run_dir", "status", "error", "requeues"]
    return pd.DataFrame([run_state(j) for j in jobs], columns=columns)


def summary_line(df: pd.DataFrame, where: str) -> str:
    counts = df["status"].value_counts()
    parts = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in STATES)
    if counts.get(DAMAGED, 0):
        parts += f", {int(counts[DAMAGED])} {DAMAGED}"
    requeued = int((df["requeues"] > 0).sum()) if "requeues" in df else 0
    if requeued:  # stopped by a time limit and requeued (SLURM): resumed from their checkpoints
        parts += f"; {requeued} requeued ({int(df['requeues'].sum())} time(s))"
    return f"{where}: {len(df)} runs: {parts}"


class SweepStatus(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml): a multirun's last line is its status.

    At the sweep's end a run still ``incomplete`` or ``missing`` (no summary, nobody holding its lock) was
    not computed: its job stopped without recording why (e.g. no space left even for the failure record).
    That is as bad as a failure for the exit status: a relaunch resumes it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        df = states(sweep)
        print(summary_line(df, f"sweep {sweep}"), flush=True)
        bad = (*BAD, *NOT_DONE)
        if df["status"].isin(bad).any():  # docs/sweeps.md's promise: a multirun with a bad run exits 1
            print(f"sweep {sweep}: {failures(df, bad)}; see python -m ssa_experiments.cli.status {sweep}",
                  file=sys.stderr, flush=True)  # fmt: skip
            for row in df[df["status"].isin(bad)].itertuples():  # each bad run by name, with its error
                why = (
                    first_line(row.error)
                    or "not computed (its job ended without a summary); relaunch to resume"
                )
                print(f"  {row.status}: {row.job_dir}: {why}", file=sys.stderr, flush=True)
            raise SystemExit(1)  # not an Exception: Hydra's callback runner lets it through


def failures(df: pd.DataFrame, bad: tuple[str, ...] = BAD) -> str:
    counts = df["status"].value_counts()
    return ", ".join(f"{int(counts[s])} {s}" for s in bad if counts.get(s, 0))


def first_line(error: Any) -> str:
    """The first line of a run's error text; '' when it has none (None, or NaN from pandas)."""
    lines = error.strip().splitlines() if isinstance(error, str) else []
    return lines[0] if lines else ""
