"""The run store: a run's directory is a function of what it computes, so no run is computed twice.

A figure's one-shot baseline is asked for by Figure 1, Figure 2 and Table 1, and a re-launched sweep asks for
everything again. Each run therefore lives at ``<store.root>/runs/<readable-prefix>-<hash of its identity>/``,
and a sweep's job directory (Hydra's, named by the swept keys) holds only Hydra's record of the request and a
relative link ``run -> <that directory>``. Whoever asks first computes; a second process asking for the same
run at the same time waits on the run's file lock and then finds it completed; a killed run resumes from its
checkpoint whoever asks next. ``force=true`` discards a stored run and computes it again.

The identity ignores what cannot change a run's numbers: where it runs and logs (``config.NOT_IDENTITY``) and
the ``method.*`` keys its method never reads (one-shot at ``method.initial_temperature=0.25`` and at ``0.5``
is one run).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from ssa_experiments.results import CHECKPOINT, METRICS, MODEL, SUMMARY

LINK = "run"  # in a sweep's job directory: the run it asked for, in the store


def run_key(identity: dict[str, Any]) -> str:
    """``<method>-s<sparsity>-seed<seed>-<12 hex digits of the identity's hash>``: readable in ``ls``, unique
    by the hash (JSON with sorted keys, so equal identities hash equally in every process)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    method = (identity.get("method") or {}).get("name", "run")
    return f"{method}-s{identity.get('sparsity')}-seed{identity.get('seed')}-{digest}"


def run_dir(root: str | Path, identity: dict[str, Any]) -> Path:
    return Path(root) / "runs" / run_key(identity)


def link(job_dir: Path, target: Path) -> None:
    """Point ``job_dir/run`` at ``target`` (relative, so a moved or copied outputs tree stays intact)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / LINK
    rel = os.path.relpath(target.resolve(), job_dir.resolve())
    if path.is_symlink() and os.readlink(path) == rel:
        return
    tmp = job_dir / f".{LINK}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(rel, target_is_directory=True)
    os.replace(tmp, path)  # atomic: a reader sees the old link or the new one


def lock_path(directory: Path) -> Path:
    return Path(str(directory) + ".lock")  # beside the run, so discarding the run never drops its lock


@contextmanager
def claimed(directory: Path) -> Iterator[None]:
    """Hold the run's lock while it is computed: never two writers."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path(directory))):
        yield


def is_running(directory: Path) -> bool:
    """Whether another process holds the run's lock right now (computing it, or waiting to). Asking leaves
    nothing behind: a run that was never claimed has no lock file, and none is created for it."""
    if not lock_path(directory).exists():
        return False
    lock = FileLock(str(lock_path(directory)), timeout=0)
    try:
        with lock:
            return False
    except TimeoutError:
        return True


def discard(directory: Path) -> None:
    """Remove what a run wrote, so it is computed again from scratch (``force=true``)."""
    for name in (SUMMARY, METRICS, CHECKPOINT, MODEL):
        (directory / name).unlink(missing_ok=True)


def withdraw(job_dir: Path, directory: Path) -> None:
    """Undo ``link`` for a run refused before it computed anything (a bad config found while reading the
    data): no empty run directory and no link to one is left behind."""
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        if (job_dir / LINK).is_symlink():
            (job_dir / LINK).unlink()
