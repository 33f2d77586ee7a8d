"""One job per GPU when several jobs share a machine (``hydra/launcher=joblib`` with one worker per GPU), or
``k`` jobs per GPU (``train.runs_per_device=k``, with ``k`` workers per GPU).

Why a lock and not ``job_num % k``: joblib hands jobs to whichever worker is free, jobs take uneven times, and
two sweeps may run on one machine at once, so no index computed from the job can say which GPU is free. Each
GPU is a lock file instead (``filelock``: an OS lock, released by the kernel if the holder dies); a job takes
the first free one for its duration and the next job takes it over, and with more jobs than GPUs the excess
waits. Lock files live in a machine-wide directory by default, so concurrent sweeps share the same rule.

Why a device string and not ``CUDA_VISIBLE_DEVICES``: CUDA reads that variable once per process, at its first
initialization, and a joblib worker process runs many jobs in turn: from the second job on, changing it would
silently do nothing. ``cuda:<i>`` works in every job of a reused worker.

Under SLURM the scheduler has already chosen the job's GPUs (``hydra.launcher.gpus_per_node=1``) and, with
device constraints, every job sees its own GPU as index 0: claiming there would serialize unrelated jobs on a
lock named "0". ``device_for_job`` therefore claims only for ``device=auto`` outside a SLURM job.

Why several runs per GPU: a CPU-scale run (MNIST-1D, digits: kilobytes of model, batches of 128) leaves a
large GPU idle, waiting on Python and kernel launches; ``k`` processes, each with its own CUDA context, fill
it. Each GPU then has ``k`` slots, each its own lock file (slot 0 is the one-job lock, so ``k = 1`` is exactly
one job per GPU); jobs take slots slot-major (slot 0 of every GPU before slot 1 of any), so runs spread over
the GPUs first. Sharing a GPU changes no number: each process computes its own run, with the same kernels,
in its own stream (``tests/sweeps/test_launchers.py``: concurrent runs equal the same runs one at a time).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

if TYPE_CHECKING:
    import torch

DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "ssa-gpu-locks"


def gpu_ids(n: int, env: Mapping[str, str] | None = None) -> list[str]:
    """Machine-wide names of this process's ``n`` visible GPUs, in CUDA's index order.

    The entries of ``CUDA_VISIBLE_DEVICES`` when it is set (a process that sees physical GPUs 2 and 3 must
    lock "2" and "3", not "0" and "1", or it would collide with a process that sees 0 and 1), else 0..n-1.
    """
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        return [str(i) for i in range(n)]
    return [entry.strip() for entry in visible.split(",") if entry.strip()][:n]


def _lock_path(lock_dir: Path, gpu: str, slot: int = 0) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", gpu)  # UUIDs (GPU-...) are ids too
    return lock_dir / (f"gpu-{name}.lock" if slot == 0 else f"gpu-{name}.slot{slot}.lock")


@contextmanager
def claim_gpu(
    n: int,
    lock_dir: str | Path = DEFAULT_LOCK_DIR,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    poll_s: float = 0.2,
    per_gpu: int = 1,
) -> Iterator[str | None]:
    """Hold one of this process's ``n`` GPUs for the ``with`` block; yields ``"cuda:<i>"`` (or ``None``).

    ``n``: how many GPUs the process sees (``torch.cuda.device_count()``; passed in so that this is testable
    without a GPU). With ``n <= 0`` nothing is claimed, no file is written and ``None`` is yielded. Each GPU
    holds ``per_gpu`` jobs at once (one slot each, see the module docstring). When every slot is held by
    another job, waits (polling every ``poll_s`` seconds) until one is released, and raises ``TimeoutError``
    after ``timeout`` seconds (``None``: waits as long as it takes).
    """
    if n <= 0:
        yield None
        return
    ids = gpu_ids(n, env)
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    slots = [(slot, index, gpu) for slot in range(per_gpu) for index, gpu in enumerate(ids)]
    while True:
        for slot, index, gpu in slots:
            lock = FileLock(str(_lock_path(lock_dir, gpu, slot)), timeout=0)
            try:
                lock.acquire()
            except Timeout:
                continue
            try:
                yield f"cuda:{index}"
            finally:
                lock.release()
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"all {len(ids)} GPUs ({', '.join(ids)}) held by other jobs ({per_gpu} per GPU) "
                f"for {timeout} s"
            )
        time.sleep(poll_s)


@contextmanager
def device_for_job(
    requested: str,
    n_gpus: int,
    lock_dir: str | Path = DEFAULT_LOCK_DIR,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    per_gpu: int = 1,
) -> Iterator[str]:
    """The device a job should use: ``requested`` unless it is ``auto``; for ``auto``, a claimed GPU (one of
    its ``per_gpu`` slots: ``train.runs_per_device``).

    ``auto`` with no GPU gives ``cpu``; inside a SLURM job (``SLURM_JOB_ID`` set) it gives ``cuda`` without
    claiming (the scheduler's allocation is the job's), see the module docstring.
    """
    env = os.environ if env is None else env
    if requested != "auto":
        yield requested
    elif n_gpus <= 0:
        yield "cpu"
    elif "SLURM_JOB_ID" in env:
        yield "cuda"
    else:
        with claim_gpu(n_gpus, lock_dir, env=env, timeout=timeout, per_gpu=per_gpu) as device:
            yield device or "cpu"


def pick_device(name: str) -> torch.device:
    """The torch device of ``device`` (auto: CUDA when there is one). torch is imported here, not at the top:
    this module is on the CLI's import chain, which must stay torch-free until the CPU numerics are set."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
