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

The lock (``<run dir>.lock``) is the kernel's (``flock``): a holder that dies releases it. Its holder writes
its host and pid into the file, so a waiter can say whom it waits for: it logs that when it starts waiting
and every ``LOG_EVERY_S`` after, and gives up after ``store.lock_timeout_s`` (``LockTimeout``, naming the
holder; a stopped holder, SIGSTOP or a suspended job, is named as stopped). A lock file is removed only by
its holder, and a process that got a lock on a file no longer at that path tries again, so removing one
never lets two writers in. A path the store cannot use (read-only, too long, a directory where the lock
file belongs) is a ``StoreError``: one line naming it, before anything is computed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.store.files import CHECKPOINT, FULL, METRICS, MODEL, REQUEUES, SUMMARY, DiskFull

log = logging.getLogger(__name__)
LINK = "run"  # in a sweep's job directory: the run it asked for, in the store
POLL_S = 0.2  # how often a waiter tries the lock again
LOG_EVERY_S = 60.0  # how often a waiter says again whom it waits for


class StoreError(ConfigError):
    """The store cannot be used where ``store.root`` points (or a file in it is in the way)."""

    def __init__(self, message: str) -> None:
        super().__init__("store.root", message)


class LockTimeout(RuntimeError):
    """Waited ``store.lock_timeout_s`` for a run's lock; the message names the lock and its holder."""


def store_error(path: Path, err: OSError) -> StoreError:
    return StoreError(f"cannot use {path}: {err.strerror or err} (errno {err.errno})")


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
    try:
        job_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # read-only file system, a name too long, a file in the way
        raise store_error(job_dir, err) from None
    path = job_dir / LINK
    rel = os.path.relpath(target.resolve(), job_dir.resolve())
    if path.is_symlink() and os.readlink(path) == rel:
        return
    tmp = job_dir / f".{LINK}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(rel, target_is_directory=True)
    os.replace(tmp, path)  # atomic: a reader sees the old link or the new one


def exists(path: Path) -> bool:
    """``path.exists()``, False also where the path cannot even be asked about (a name too long)."""
    try:
        return path.exists()
    except OSError:
        return False


def lock_path(directory: Path) -> Path:
    return Path(str(directory) + ".lock")  # beside the run, so discarding the run never drops its lock


def _not_a_directory(path: Path) -> None:
    if path.is_dir():
        raise StoreError(f"{path} is a directory where the run's lock file belongs: remove it")


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its holder wrote it: ``pid P on host H since T`` (+ stopped)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "an unknown process (it wrote no owner)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    text = f"pid {info['pid']} on host {info.get('host')} since {since}"
    if info.get("host") == socket.gethostname():
        try:
            state = Path(f"/proc/{int(info['pid'])}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError, ValueError):
            state = ""
        if state in ("T", "t"):
            text += " (stopped: SIGSTOP or a suspended job; SIGCONT or end it)"
    return text


class Claim:
    """A held run lock: ``release(remove=True)`` also deletes the lock file (a run refused before it wrote
    anything leaves none behind)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd, self.remove = path, fd, False

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            if self.remove:
                self.path.unlink(missing_ok=True)  # while held: a waiter that then gets the old file retries
            else:
                os.ftruncate(self.fd, 0)  # the owner is gone with the lock
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = -1


def acquire(path: Path, timeout_s: float | None = None) -> Claim:
    """Take the lock at ``path``, waiting at most ``timeout_s`` (None: for ever), logging its holder."""
    _not_a_directory(path)
    started, logged = time.monotonic(), None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            _not_a_directory(path)
            raise
        except OSError as err:
            raise store_error(path, err) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            waited = time.monotonic() - started
            if timeout_s is not None and waited >= timeout_s:
                raise LockTimeout(
                    f"gave up after {waited:.0f} s (store.lock_timeout_s={timeout_s:g}) waiting for the "
                    f"run's lock {path}, held by {holder(path)}"
                ) from None
            if logged is None or time.monotonic() - logged >= LOG_EVERY_S:
                log.warning("waiting for the run's lock %s, held by %s (store.lock_timeout_s=%s)",
                            path, holder(path), timeout_s)  # fmt: skip
                logged = time.monotonic()
            time.sleep(POLL_S)
            continue
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder removed the file before we got it: take the one at the path now
            os.close(fd)
            continue
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
        except OSError as err:  # a full disk: the lock is released, the file stays empty (no holder)
            os.close(fd)
            raise (DiskFull(path, err) if err.errno in FULL else store_error(path, err)) from None
        return Claim(path, fd)


@contextmanager
def claimed(directory: Path, timeout_s: float | None = None) -> Iterator[Claim]:
    """Hold the run's lock while it is computed: never two writers."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise store_error(directory.parent, err) from None
    claim = acquire(lock_path(directory), timeout_s)
    try:
        yield claim
    finally:
        claim.release()


def is_running(directory: Path) -> bool:
    """Whether another process holds the run's lock right now (computing it, or waiting to). Asking leaves
    nothing behind: a run that was never claimed has no lock file, and none is created for it."""
    path = lock_path(directory)
    if not path.exists():
        return False
    _not_a_directory(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # a lock we got is released with the descriptor
    return False


def discard(directory: Path) -> None:
    """Remove what a run wrote, so it is computed again from scratch (``force=true``)."""
    for name in (SUMMARY, METRICS, CHECKPOINT, MODEL, REQUEUES):
        (directory / name).unlink(missing_ok=True)


def requeues(directory: Path) -> int:
    """How many times a scheduler's time limit stopped the run and requeued it (``note_requeue``)."""
    try:
        return sum(1 for line in (directory / REQUEUES).read_text().splitlines() if line.strip())
    except OSError:
        return 0


def note_requeue(directory: Path, why: str) -> int:
    """Append one line (time, host, SLURM job, why) to the run's ``requeues.jsonl``; returns the count.
    Appended, not rewritten: a torn last line from a kill is one more line, never a lost count."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", ""))
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    record = {"time": time.time(), "host": socket.gethostname(), "job": f"{job}_{task}" if task else job,
              "why": why}  # fmt: skip
    with open(directory / REQUEUES, "a") as f:
        f.write(json.dumps(record) + "\n")
    return requeues(directory)


def withdraw(job_dir: Path, directory: Path) -> bool:
    """Undo ``link`` for a run refused before it computed anything (a bad config found while reading the
    data): no empty run directory and no link to one is left behind. Call it holding the run's lock (whose
    file the caller then removes: True when the run was withdrawn)."""
    try:
        if directory.is_dir() and any(directory.iterdir()):
            return False
        if directory.is_dir():
            directory.rmdir()
    except OSError:  # a store it could not write to: there is nothing of the run in it either
        pass
    if (job_dir / LINK).is_symlink():
        (job_dir / LINK).unlink()
    return True
