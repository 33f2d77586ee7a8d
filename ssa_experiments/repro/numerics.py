"""CPU numerics that travel: the same bits on x86-64 machines with AVX2 of one vendor, with or without AVX-512
(not between Intel and AMD: docs/numbers.md).

torch picks its CPU kernels by the instruction set it finds (ATen's dispatch, oneDNN's ISA, MKL's code
path), and kernels of different vector widths sum floats in different orders. On a pruned network at 99 %
sparsity that rounding noise grows into differences as large as the seed spread, so a number computed on an
AVX-512 machine could not be checked on an AVX2 one. ``portable`` (the default, ``train.cpu_numerics``)
caps all three at AVX2 through their environment variables; ``native`` lets torch use what the CPU has.

The variables are read once, when torch first initialises its CPU back ends, so they must be in the
environment before ``import torch``: the entry points (``train.py``, ``ensemble.py``) call ``enter`` before
anything imports torch, their import chains are torch-free for that reason, and ``check`` refuses a run whose
process started in another mode than its config asks for. Worker processes (joblib, SLURM) inherit the
environment and call ``enter`` themselves.

This module must not import torch at the top.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

MODES = ("portable", "native")
# Each alone was measured not to be enough (issue 21): all three together reproduce AVX2 results exactly.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
PORTABLE_CAPABILITY = "AVX2"  # what torch.backends.cpu.get_cpu_capability() reports in portable mode


class NumericsError(RuntimeError):
    """The process computes in another CPU numerics mode than the config asks for (one line, no traceback)."""


def environment_mode(env: Mapping[str, str] | None = None) -> str | None:
    """The mode the environment sets up: portable (all three variables at their AVX2 values), native (none
    set), or None (a mix, or other values: neither mode's guarantee holds)."""
    env = os.environ if env is None else env
    values = {k: env.get(k) for k in PORTABLE_ENV}
    if all(v is not None and v.lower() == PORTABLE_ENV[k].lower() for k, v in values.items()):
        return "portable"
    if all(v is None for v in values.values()):
        return "native"
    return None


def torch_started() -> bool:
    return "torch" in sys.modules


def enter(mode: str) -> None:
    """Put this process in ``mode`` if torch has not started yet, else check that it already is in it."""
    if mode not in MODES:
        raise NumericsError(f"train.cpu_numerics: must be one of {', '.join(MODES)}, got {mode!r}")
    if not torch_started():
        for key, value in PORTABLE_ENV.items():
            if mode == "portable":
                os.environ[key] = value
            else:
                os.environ.pop(key, None)
    check(mode)


def capability() -> str:
    """The CPU kernels torch dispatches to (AVX2, AVX512, DEFAULT, ...); imports torch."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def active_mode() -> str | None:
    """The mode this process computes in: its environment's, confirmed by torch's kernels once torch runs."""
    mode = environment_mode()
    if mode == "portable" and torch_started() and capability() != PORTABLE_CAPABILITY:
        return None  # the variables came after torch had started, or the CPU has no AVX2
    return mode


def check(mode: str) -> None:
    """Raise NumericsError (one line saying what to do) unless this process computes in ``mode``."""
    active = active_mode()
    if active == mode:
        return
    if mode == "portable" and torch_started() and environment_mode() == "portable":
        raise NumericsError(
            f"train.cpu_numerics=portable: torch runs {capability()} kernels, not {PORTABLE_CAPABILITY}: "
            "torch was imported before the portable settings, or this CPU has no AVX2 (then use "
            "train.cpu_numerics=native); from Python, call ssa_experiments.repro.numerics.enter('portable') "
            "before importing torch"
        )
    found = {k: os.environ.get(k) for k in PORTABLE_ENV}
    raise NumericsError(
        f"train.cpu_numerics={mode}: this process started in {active or 'a mixed'} mode ({found}), and the "
        "mode cannot change once torch runs: run each mode in its own process (or sweep), or from Python "
        f"call ssa_experiments.repro.numerics.enter({mode!r}) before importing torch"
    )
