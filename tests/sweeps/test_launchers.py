"""Launchers beyond one process: the launcher configs compose, joblib gives the sequential results, and the
one-job-per-GPU rule (``ssa_experiments.runtime.devices``) holds without a GPU.

The SLURM launcher's end-to-end tests need a cluster: tests/test_slurm.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from helpers import TINY_SWEEP, accuracies, compose_hydra, isolated, sweep

from ssa_experiments.runtime.devices import claim_gpu, device_for_job, gpu_ids

# ---- the launcher configs --------------------------------------------------------------------------------


# Our joblib.yaml has the plugin's config name (so that `hydra/launcher=joblib` gets our defaults): Hydra
# validates it against the plugin's schema and says that this matching is deprecated. Harmless under <1.4.
SCHEMA_MATCHING = r"ignore:\s*'hydra/launcher/joblib' is validated against ConfigStore schema:UserWarning"


@pytest.mark.filterwarnings(SCHEMA_MATCHING)
def test_joblib_config_composes_with_the_plugin_target() -> None:
    launcher = compose_hydra("hydra/launcher=joblib").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2
    assert compose_hydra("hydra/launcher=joblib", "hydra.launcher.n_jobs=4").hydra.launcher.n_jobs == 4


def test_slurm_config_extends_submitit_slurm() -> None:
    launcher = compose_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu"
    assert str(launcher.submitit_folder).endswith("/.submitit/%j")  # in the sweep dir; %j: SLURM's job id
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.mem_gb) == (120, 2, 8)
    assert launcher.array_parallelism == 16
    assert "qos" in launcher and "additional_parameters" in launcher  # the plugin's own keys stay available


# ---- joblib end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_joblib_sweep_gives_the_sequential_results(tmp_path: Path) -> None:
    """Two workers, four runs: the same test accuracy per (method, seed) as the default sequential launcher.
    Several runs at once on one device (here the CPU, ``train.runs_per_device=2``; on a GPU the same slots)
    give the numbers of the same runs one at a time. (~75 s on 2 busy cores: each worker imports torch.)"""
    started = time.monotonic()
    seq = sweep(*TINY_SWEEP, *isolated(tmp_path / "seq"), timeout=300)
    assert seq.returncode == 0, seq.stderr[-3000:]
    par = sweep(
        *TINY_SWEEP, *isolated(tmp_path / "joblib"), "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "train.runs_per_device=2", timeout=300,
    )  # fmt: skip
    assert par.returncode == 0, par.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in par.stdout + par.stderr  # it did run through joblib
    expected = accuracies(tmp_path / "seq" / "sweep")
    assert len(expected) == 4
    assert accuracies(tmp_path / "joblib" / "sweep") == expected
    print(f"joblib vs sequential, 4 tiny runs: {time.monotonic() - started:.0f} s for both")


# ---- one job per GPU (no GPU needed) ---------------------------------------------------------------------


def test_two_claims_get_different_gpus(tmp_path: Path) -> None:
    with claim_gpu(2, tmp_path, env={}) as a, claim_gpu(2, tmp_path, env={}) as b:
        assert {a, b} == {"cuda:0", "cuda:1"}


def test_claim_in_another_process_gets_another_gpu(tmp_path: Path) -> None:
    """The real case: joblib workers are processes. The lock is the OS's, so it holds across them."""
    code = (
        "import sys; from ssa_experiments.runtime.devices import claim_gpu\n"
        "with claim_gpu(2, sys.argv[1], env={}) as d: print(d)\n"
    )
    with claim_gpu(2, tmp_path, env={}) as mine:
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 0, out.stderr
    assert mine == "cuda:0"
    assert out.stdout.strip() == "cuda:1"


def test_runs_per_device_shares_each_gpu_spreading_over_gpus_first(tmp_path: Path) -> None:
    """train.runs_per_device=k: k slots per GPU, slot 0 of every GPU taken before slot 1 of any."""
    with ExitStack() as stack:
        got = [stack.enter_context(claim_gpu(2, tmp_path, env={}, per_gpu=2)) for _ in range(4)]
        assert got == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
        with pytest.raises(TimeoutError), claim_gpu(2, tmp_path, env={}, timeout=0.3, poll_s=0.05, per_gpu=2):
            pass  # all four slots held
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["gpu-0.lock", "gpu-0.slot1.lock", "gpu-1.lock", "gpu-1.slot1.lock"]  # slot 0: k = 1's
    with (
        device_for_job("auto", 1, tmp_path, env={}, per_gpu=3) as a,
        device_for_job("auto", 1, tmp_path, env={}, per_gpu=3) as b,
    ):
        assert a == b == "cuda:0"


def test_released_gpu_is_reused(tmp_path: Path) -> None:
    with claim_gpu(2, tmp_path, env={}) as first:
        pass
    with claim_gpu(2, tmp_path, env={}) as again:
        assert again == first == "cuda:0"


def test_released_even_when_the_job_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), claim_gpu(1, tmp_path, env={}):
        raise RuntimeError("the run died")
    with claim_gpu(1, tmp_path, env={}, timeout=1) as device:
        assert device == "cuda:0"


def test_all_gpus_busy_waits_then_times_out(tmp_path: Path) -> None:
    with claim_gpu(1, tmp_path, env={}), pytest.raises(TimeoutError):  # noqa: SIM117 (the order matters)
        with claim_gpu(1, tmp_path, env={}, timeout=0.3, poll_s=0.05):
            pass


def test_no_gpu_claims_and_changes_nothing(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3"}
    before = dict(os.environ)
    with claim_gpu(0, tmp_path / "locks", env=env) as device:
        assert device is None
    assert not (tmp_path / "locks").exists()
    assert env == {"CUDA_VISIBLE_DEVICES": "3"}
    assert dict(os.environ) == before
    with device_for_job("auto", 0, tmp_path / "locks", env={}) as device:
        assert device == "cpu"
    assert not (tmp_path / "locks").exists()


def test_locks_name_physical_gpus(tmp_path: Path) -> None:
    """A process that sees physical GPUs 2,3 must not collide with one that sees 0,1."""
    assert gpu_ids(2, {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert gpu_ids(2, {}) == ["0", "1"]
    other = {"CUDA_VISIBLE_DEVICES": "2,3"}
    with claim_gpu(2, tmp_path, env={}) as a, claim_gpu(2, tmp_path, env=other) as b:
        assert (a, b) == ("cuda:0", "cuda:0")  # index within each process's own view
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-0.lock", "gpu-2.lock"]


def test_device_for_job_policy(tmp_path: Path) -> None:
    with device_for_job("cpu", 4, tmp_path, env={}) as device:
        assert device == "cpu"  # an explicit device is never overridden
    with device_for_job("auto", 2, tmp_path, env={"SLURM_JOB_ID": "7"}) as device:
        assert device == "cuda"  # SLURM chose the job's GPU: no lock
    assert not list(tmp_path.iterdir())
    with device_for_job("auto", 2, tmp_path, env={}) as a, device_for_job("auto", 2, tmp_path, env={}) as b:
        assert (a, b) == ("cuda:0", "cuda:1")
