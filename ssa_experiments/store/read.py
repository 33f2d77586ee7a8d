"""Reading runs back from the store: every run directory below some roots (sweep directories, store roots,
run directories), each once, with what it holds. ``analysis/aggregate.py`` shapes these records into its
table (``collect``) and ``ensembles/combine.py`` finds its members among them: one reader, so both see the
same runs, and neither of those layers has to import the other.

A root is searched recursively, following a sweep's ``run`` links into the store; a directory reached twice
(two sweeps, or two requests that are one computation) is one record. A directory holding a ``summary.json``
is a run with that summary's status; one with a log or a checkpoint but no summary (a killed run) is
``incomplete``, and what it was asked to compute comes from Hydra's record of its job; one whose summary is
damaged (torn, not a summary) is ``damaged``, with a warning naming the file: one bad file is one record,
never the end of the reading.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssa_experiments.config.renamed import current
from ssa_experiments.store.files import CHECKPOINT, METRICS, SUMMARY, DamagedFile, read_summary

INCOMPLETE = "incomplete"  # started, never finished: a log or a checkpoint, no summary
DAMAGED = "damaged"  # a summary that cannot be read as one


@dataclass(frozen=True)
class StoredRun:
    """One run directory as a reader finds it."""

    run_dir: Path  # as reached from its root (through a sweep's link, not resolved)
    status: str  # the summary's ("completed", "failed", "diverged"), else INCOMPLETE or DAMAGED
    # what the run was asked to compute, in today's spelling (``renamed.current``): the summary's config, or
    # for an incomplete run Hydra's record of its job ({} when there is none, and for a damaged run)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None  # the summary as read (None unless there is a readable one)


def stored_runs(roots: str | Path | Iterable[str | Path]) -> Iterator[StoredRun]:
    """Every run directory under ``roots``, in order (roots as given, directories sorted within each), each
    real directory once."""
    roots = [roots] if isinstance(roots, str | Path) else list(roots)
    seen: set[str] = set()
    for root in roots:
        for path, files in run_dirs(Path(root), seen):
            try:
                summary = read_summary(path) if SUMMARY in files else None
            except (DamagedFile, OSError) as err:
                # stacklevel 3: the caller of the function iterating this generator (collect's caller)
                warnings.warn(f"{err}; counted as damaged, not read", stacklevel=3)
                yield StoredRun(path, DAMAGED)
                continue
            if summary is not None:
                yield StoredRun(path, summary["status"], current(summary.get("config") or {}), summary)
            elif METRICS in files or CHECKPOINT in files:
                yield StoredRun(path, INCOMPLETE, hydra_config(path))


def run_dirs(root: Path, seen: set[str]) -> Iterator[tuple[Path, set[str]]]:
    """Every directory under ``root`` holding run files, with its file names; links followed, each real
    directory once (``seen``: the real paths already visited, shared across roots)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        files = set(filenames)
        if files & {SUMMARY, METRICS, CHECKPOINT}:
            yield Path(dirpath), files


def hydra_config(run_dir: Path) -> dict[str, Any]:
    """What a run's job was asked to compute, from Hydra's record of its config (``.hydra/config.yaml``), in
    today's spelling; {} when there is none. A stored run reached through a sweep's link has no record of its
    own: Hydra's is beside the link."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        path = run_dir.parent / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    from omegaconf import OmegaConf  # slow import: only when a run needs it

    return current(OmegaConf.to_container(OmegaConf.load(path), resolve=False))  # type: ignore[arg-type]
