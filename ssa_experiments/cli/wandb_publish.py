"""Publish runs already in the store to Weights & Biases: ``python -m ssa_experiments.cli.wandb_publish
PATH [PATH ...]`` (also ``ssa-wandb-publish``).

PATH is a store root, a sweep directory (its ``run`` links are followed) or one run directory. Every run
with a summary becomes the W&B run of its stable id (one per store key: ``training/wandb_mirror.py``), with
the history, summary and ``model.pt`` a live ``logger=wandb`` run logs, in the W&B folder of its run
directory. Idempotent: a run whose directory already holds a W&B run of that id is skipped (``--force``:
again); a second publication of the same run is the same W&B run. ``--mode offline`` writes W&B's offline
folders (``wandb sync`` uploads them); ``online`` (the default, as W&B's own) probes the W&B host once and
falls back to offline when it cannot be reached. Exit 0 when every run was published or already was, 1 when
one failed, 2 when a PATH is not there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ssa_experiments.store.files import SUMMARY, DamagedFile, read_summary

log = logging.getLogger("ssa_experiments")


def stored_runs(paths: list[Path]) -> list[Path]:
    """Every run directory with a summary under ``paths`` (links followed), each real directory once."""
    seen: set[str] = set()
    found: list[Path] = []
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if d != "wandb")
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            if SUMMARY in filenames:
                found.append(Path(real))
    return found


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssa-wandb-publish", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="store root, sweep or run directory")
    p.add_argument("--project", default="ssa-experiments")
    p.add_argument("--entity", default=None)
    p.add_argument("--group", default=None, help="W&B group (default: the name of the first PATH)")
    p.add_argument(
        "--mode", choices=("online", "offline"), default=None, help="default: WANDB_MODE, else online"
    )
    p.add_argument("--tags", nargs="*", default=[])
    p.add_argument("--force", action="store_true", help="publish again runs W&B already holds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(f"error: no such path: {', '.join(missing)}", file=sys.stderr)
        return 2
    from ssa_experiments.training.sinks import WandB  # torch: only once the arguments are good

    group = args.group or args.paths[0].resolve().name
    counts = {"published": 0, "already": 0, "failed": 0, "skipped": 0}
    for out in stored_runs(args.paths):
        try:
            summary = read_summary(out, trusted=True)
        except DamagedFile as err:
            log.warning("%s; not published", err)
            counts["failed"] += 1
            continue
        if summary is None or "identity" not in summary or "config" not in summary:
            counts["skipped"] += 1  # a failure record: nothing computed to publish
            continue
        cfg = OmegaConf.create(summary["config"])
        cfg.logger = OmegaConf.create({
            "name": "wandb", "progress": "none", "project": args.project, "entity": args.entity,
            "group": group, "job_type": None, "tags": list(args.tags), "mode": args.mode,
            "init_timeout": 60.0,
        })  # fmt: skip
        counts[WandB(cfg, summary["identity"], out).publish(summary, force=args.force)] += 1
    print(", ".join(f"{n} {k}" for k, n in counts.items()) + f" (W&B group {group})")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
