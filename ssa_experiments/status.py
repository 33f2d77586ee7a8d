"""Where a sweep stands: ``python -m ssa_experiments.status SWEEP_OR_STORE [...]`` (also ``ssa-status``).

Counts the runs a sweep asked for by what they are now: completed, running (its lock is held), failed,
diverged, incomplete (started, then killed: a re-launch resumes it) and missing (asked for, no directory
yet), lists the failed ones with their one-line errors, and exits 1 while anything failed or diverged. What a
sweep asked for is read back from its ``multirun.yaml`` (the preset's sweep parameters and the command line),
expanded as Hydra's basic sweeper expands them, so the jobs a killed sweep never started are counted too.
Given a store root (``outputs/store``), it reports every stored run. A multirun ends with the same line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ssa_experiments import store
from ssa_experiments.config import short_dirname
from ssa_experiments.results import CHECKPOINT, METRICS, SUMMARY

STATES = ("completed", "running", "failed", "diverged", "incomplete", "missing")
BAD = ("failed", "diverged")


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


def run_state(job_dir: Path) -> dict[str, Any]:
    """What one job (or stored run) directory holds now."""
    run_dir = job_dir / store.LINK if (job_dir / store.LINK).is_symlink() else job_dir
    row: dict[str, Any] = {"job_dir": str(job_dir), "run_dir": str(run_dir.resolve()), "error": None}
    if not job_dir.exists():
        return {**row, "status": "missing"}
    summary_path = run_dir / SUMMARY
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        return {**row, "status": summary.get("status", "failed"), "error": summary.get("error")}
    if store.is_running(run_dir.resolve()):
        return {**row, "status": "running"}
    return {**row, "status": "incomplete"}  # started (maybe with a checkpoint to resume from), not running


def states(root: Path) -> pd.DataFrame:
    """One row per run ``root`` asked for (a sweep) or holds (a store root, or a tree of run directories)."""
    jobs = asked_for(root)
    if jobs is None:
        runs = root / "runs" if (root / "runs").is_dir() else root
        jobs = sorted({p.parent for name in (SUMMARY, METRICS, CHECKPOINT) for p in runs.rglob(name)})
    return pd.DataFrame([run_state(j) for j in jobs], columns=["job_dir", "run_dir", "status", "error"])


def summary_line(df: pd.DataFrame, where: str) -> str:
    counts = df["status"].value_counts()
    parts = ", ".join(f"{int(counts.get(s, 0))} {s}" for s in STATES)
    return f"{where}: {len(df)} runs: {parts}"


class SweepStatus(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml): a multirun's last line is its status."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        print(summary_line(states(sweep), f"sweep {sweep}"), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("roots", nargs="+", help="sweep directories or store roots")
    args = parser.parse_args(argv)
    bad = False
    for root in map(Path, args.roots):
        if not root.exists():
            print(f"error: {root} does not exist", file=sys.stderr)
            return 2
        df = states(root)
        for _, r in df[df["status"].isin(BAD)].iterrows():
            error = (r["error"] or "").strip().splitlines()
            print(f"  {r['status']:<9} {r['job_dir']}: {error[0] if error else ''}")
        print(summary_line(df, str(root)))
        bad |= bool(df["status"].isin(BAD).any())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
