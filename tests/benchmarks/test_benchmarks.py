"""The benchmark scripts keep working: each runs whole in its seconds-long ``--quick`` mode and exits 0.

``make bench`` prints the ratios and judges them; here only that the scripts run (a ratio from a few steps
on a busy CI machine means nothing), so a script that breaks fails CI, not the next ``make bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
# Every file under benchmarks/ and the test that runs it in --quick mode (machine.py: their shared module).
COVERED = {
    "bench_compile.py": "test_bench_compile_quick_times_eager_and_compiled",
    "bench_loop.py": "test_bench_loop_quick_times_every_part_of_our_run",
    "bench_masks.py": "test_bench_masks_quick_runs_every_method",
    "bench_pipeline.py": "test_bench_pipeline_quick_times_both_pipelines",
    "bench_runs_per_device.py": "test_bench_runs_per_device_quick_counts_runs_per_hour",
    "bench_sweep.py": "test_bench_sweep_quick_reads_its_runs_through_the_store",
    "machine.py": "a module, not a script",
}


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *args], cwd=BENCH, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_every_benchmark_script_is_run_by_a_test() -> None:
    """A new script under benchmarks/ without a --quick test fails here, not when it has rotted."""
    assert {p.name for p in BENCH.glob("*.py")} == set(COVERED)


@pytest.mark.slow
def test_bench_masks_quick_runs_every_method(tmp_path: Path) -> None:
    done = bench("bench_masks.py", "--quick", "--json", str(tmp_path / "masks.json"))
    assert "RATIO stochastic/dense" in done.stdout and "ESTIMATE (additive, low-noise)" in done.stdout
    results = json.loads((tmp_path / "masks.json").read_text())
    methods = {"dense", "one_shot", "temperature_annealing", "random_annealing"}
    assert set(results["ratio_to_dense"]) == methods
    assert set(results["estimate_low_noise"]) == set(results["ratio_to_dense"])


@pytest.mark.slow
def test_bench_pipeline_quick_times_both_pipelines(tmp_path: Path) -> None:
    done = bench("bench_pipeline.py", "--quick", "--json", str(tmp_path / "pipeline.json"))
    assert "RATIO device/torch images/s" in done.stdout
    results = json.loads((tmp_path / "pipeline.json").read_text())
    assert set(results["images_per_s"]) == {"device", "torch"} and results["ratio_device_to_torch"] > 0


@pytest.mark.slow
def test_bench_sweep_quick_reads_its_runs_through_the_store() -> None:
    done = bench("bench_sweep.py", "--quick", "--", "logger.progress=none", timeout=600)
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


@pytest.mark.slow
def test_bench_compile_quick_times_eager_and_compiled(tmp_path: Path) -> None:
    done = bench("bench_compile.py", "--quick", "--json", str(tmp_path / "compile.json"))
    assert "RATIO compiled/eager epoch time" in done.stdout
    results = json.loads((tmp_path / "compile.json").read_text())
    assert results["ratio_compiled_to_eager_epoch"] > 0
    assert results["compiled"]["test_acc"] == results["eager"]["test_acc"]


@pytest.mark.slow
def test_bench_runs_per_device_quick_counts_runs_per_hour(tmp_path: Path) -> None:
    done = bench("bench_runs_per_device.py", "--quick", "--json", str(tmp_path / "runs.json"))
    assert "RESULT cpu: 2/2 runs" in done.stdout
    assert json.loads((tmp_path / "runs.json").read_text())["settings"]["cpu"]["runs_per_hour"] > 0
