"""What a run writes into its directory, and how: atomically, so a killed run never leaves a torn file.

metrics.jsonl    one JSON line per epoch (appended; a resumed run truncates it to its checkpoint)
checkpoint.pt    model, optimizer, method, RNG states, epoch: for resuming (removed once the run completes)
model.pt         a completed run's pruned network: a plain state_dict, pruned weights exactly zero
summary.json     written last: its presence with status "completed" means the run is done

A file that is there but cannot be what it claims (a summary torn by a full disk or a copy, ``null``, a
completed summary without the identity that run.py always writes) is damaged: ``read_summary`` raises
``DamagedFile`` naming it, so no reader ever takes it for a result (status and aggregate report it as
``damaged``; a run computes again). ``remove_temporaries`` drops the ``.*.tmp`` files of writes a kill
interrupted.

A full disk (or quota) is ``DiskFull``, naming the file: an atomic write leaves the previous file as it was
and no temporary behind; an appended metrics row is undone, so the file never ends in a torn line. Nothing
written before is lost, and the relaunch (once there is space) resumes from the last checkpoint.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
# the times a scheduler's time limit stopped the run and it was requeued (cli/train.py); shown by ``status``
REQUEUES = "requeues.jsonl"
LOGITS = (
    "logits.pt"  # ensemble members: the evaluated network's logits (members.py writes, ensemble.py reads)
)
LOGITS_FORMAT = 1
STATUSES = ("completed", "failed", "diverged")  # what run.py and train.py write into a summary
# what a summary must hold to be read as a result; a completed (or diverged) one written by run.py also
# holds its identity, without which no run trusts it as its own
READ_KEYS = ("method",)
TRUST_KEYS = ("identity",)


class DamagedFile(ValueError):
    """A run file that is present but unreadable or not what it claims to be; the message names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} is damaged: {reason}")
        self.path = Path(path)
        self.reason = reason


class DiskFull(OSError):
    """A write refused for want of space (ENOSPC) or quota (EDQUOT); the message names the file and says
    what to do. An ``OSError``, so whatever handled one before still does."""

    def __init__(self, path: Path, err: OSError) -> None:
        super().__init__(
            err.errno,
            f"cannot write {path}: {os.strerror(err.errno or 0)} (errno {err.errno}); free space and launch "
            "again: completed runs are kept, an interrupted one resumes from its last checkpoint",
        )
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.strerror)


FULL = (errno.ENOSPC, errno.EDQUOT)


def _full(path: Path, err: OSError) -> OSError:
    return DiskFull(path, err) if err.errno in FULL and not isinstance(err, DiskFull) else err


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _full(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _full(path, err) from None
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` into memory, then ``atomic_write_bytes``: torch's own writer reports a full disk as a
    RuntimeError of its zip writer ("unexpected pos"), which names neither the file nor the cause."""
    import torch  # here, not at the top: the entry points import this module before the CPU numerics are set

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch row; a row the disk had no room for is undone (the file is cut back to its size
    before), so the file never ends in a torn line."""
    path = run_dir / METRICS
    with open(path, "a") as f:
        size = f.tell()
        try:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
        except OSError as err:
            f.truncate(size)
            raise _full(path, err) from None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return read_metrics_checked(run_dir)[0]


def read_metrics_checked(run_dir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The intact epoch rows before the first torn line, and what is wrong with the file (None: nothing).
    A kill mid-write tears the last line only; a torn line with rows after it is damage of another kind,
    and either way the rows after it are not trusted."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return [], None
    rows: list[dict[str, Any]] = []
    lines = path.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            return rows, f"line {i + 1} of {len(lines)} is torn: {len(rows)} intact rows before it"
        rows.append(row)
    return rows, None


def rewrite_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Keep only the epochs a resumed checkpoint covers."""
    atomic_write_bytes(
        run_dir / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    )


def summary_problem(summary: Any, trusted: bool = False) -> str | None:
    """What makes ``summary`` no result (None: it is one). ``trusted``: also what a run needs to take a
    completed summary as its own (the identity run.py writes into every completed or diverged summary)."""
    if not isinstance(summary, dict):
        return f"holds {json.dumps(summary)[:40]}, not a JSON object"
    status = summary.get("status")
    if status not in STATUSES:
        return f"status {status!r} is none of {', '.join(STATUSES)}"
    if status == "failed":  # train.py's record of an error: status, error, config
        return None
    missing = [k for k in READ_KEYS if summary.get(k) is None]
    if trusted:
        missing += [k for k in TRUST_KEYS if not isinstance(summary.get(k), dict) or not summary[k]]
    return f"a {status} summary without {', '.join(missing)}" if missing else None


def read_summary(run_dir: Path, trusted: bool = False) -> dict[str, Any] | None:
    """The run's summary; None if it has none; ``DamagedFile`` (naming the file) if it is not one."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFile(path, f"not valid JSON ({err})") from None
    problem = summary_problem(summary, trusted)
    if problem:
        raise DamagedFile(path, problem)
    return summary


def set_aside(path: Path) -> Path:
    """Move a damaged file out of the way (``<name>.damaged``, replacing an older one): kept for a look,
    never read again."""
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    return aside


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Remove the ``.<name>.*.tmp`` files of atomic writes that a kill interrupted (only while no one else
    writes the directory: under the run's lock, or in a directory the run owns)."""
    removed = []
    for tmp in Path(run_dir).glob(".*.tmp"):
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def flatten(tree: dict[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """``{"method": {"name": "x"}} -> {"method.name": "x"}``: the keys W&B shows and the CLI overrides use."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, sep, name))
        else:
            flat[name] = value
    return flat
