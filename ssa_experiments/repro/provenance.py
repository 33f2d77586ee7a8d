"""What computed a number: the compute version (in every run's identity) and the software and machine (in
every summary), so a published number says what can reproduce it.

``COMPUTE_VERSION`` is the contract between the code and the run store: a change that alters any number a
run or a parent computes must bump it, so the store and the parent cache never serve a result of the old
code as one of the new. ``tests/test_golden.py`` enforces it: a few tiny runs whose exact metrics, weight
digests and store keys are pinned in ``tests/golden.json`` fail until the version is bumped and the values
are renewed (``python scripts/renew_golden.py``) in the same commit.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# 1: portable CPU numerics, the identity with device, precision and numerics (issue 21)
COMPUTE_VERSION = 1


@functools.cache
def code_version() -> dict[str, Any]:
    """The git commit of the checkout the package runs from and whether it has uncommitted changes; the
    package version where there is no checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]  # <checkout>/ssa_experiments/repro/provenance.py
    version: dict[str, Any] = {"package": _package_version()}
    if not (root / ".git").exists():
        return version
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(
            _git(root, "status", "--porcelain", "--untracked-files=no", "--", "ssa_experiments", "conf")
        )
    except (OSError, subprocess.SubprocessError):
        return version
    return {**version, "git_commit": commit, "git_dirty": dirty}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def _package_version() -> str | None:
    try:
        return metadata.version("ssa-experiments")
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo(field: str) -> str | None:
    """The first ``field`` line of ``/proc/cpuinfo`` (None where there is no such file or line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.cache
def processor() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    return _cpuinfo("model name") or platform.processor() or platform.machine()


@functools.cache
def cpu_vendor() -> str:
    """GenuineIntel, AuthenticAMD...: portable numerics give the same bits within one vendor only
    (docs/numbers.md)."""
    return _cpuinfo("vendor_id") or platform.processor() or "unknown"


def software_and_machine(numerics_mode: str | None) -> dict[str, Any]:
    """The summary's ``provenance`` field: versions, the CPU kernels torch used, the numerics mode."""
    import torch

    from ssa_experiments.repro import numerics

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "compute_version": COMPUTE_VERSION,
        "code": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "cpu_capability": numerics.capability(),
        "cpu_numerics": numerics_mode,
        "processor": processor(),
        "machine": platform.machine(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def file_sha256(path: str | Path) -> str:
    """A file's content digest: what a brought or cached parent is identified and checked by, wherever it
    lies."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
