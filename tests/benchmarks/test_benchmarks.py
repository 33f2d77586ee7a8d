"""The benchmark scripts keep working (they print ratios for `make bench`; here only that they run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_bench_sweep_quick_reads_its_runs_through_the_store() -> None:
    done = subprocess.run(
        [sys.executable, "bench_sweep.py", "--quick", "--methods", "one_shot,temperature_annealing",
         "--sparsities", "0.9", "--", "logger.progress=none"],
        cwd=BENCH, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "RESULT parent trainings per seed: {0: 1, 1: 1} (goal: 1 each; met), runs 4" in done.stdout


@pytest.mark.slow
def test_bench_loop_quick_times_every_part_of_our_run() -> None:
    """A smoke run: the script works and our run's timer saw each part; the ratios themselves mean nothing."""
    done = subprocess.run(
        [sys.executable, "bench_loop.py", "--quick", "--device", "cpu"],
        cwd=BENCH, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 checkpoints" in done.stdout and "RATIO ours/minimal images/s:" in done.stdout
    assert "ESTIMATE" in done.stdout
