"""Portable CPU numerics (numerics.py): set before torch starts by every entry point, checked by every run,
recorded in every summary; and main() returns a validation metric, never a test one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TINY_SWEEP, isolated, sweep, without_keys

from ssa_experiments.repro import numerics

AVX2 = numerics.capability() == numerics.PORTABLE_CAPABILITY  # this test process runs portable (conftest)
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in numerics.PORTABLE_ENV}


def python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env or CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_environment_mode_is_all_three_or_none() -> None:
    assert numerics.environment_mode(numerics.PORTABLE_ENV) == "portable"
    assert numerics.environment_mode({k: v.upper() for k, v in numerics.PORTABLE_ENV.items()}) == "portable"
    assert numerics.environment_mode({}) == "native"
    assert numerics.environment_mode({"ATEN_CPU_CAPABILITY": "avx2"}) is None  # one alone is not enough
    assert numerics.environment_mode({**numerics.PORTABLE_ENV, "MKL_CBWR": "AVX512"}) is None


def test_the_entry_points_import_no_torch_before_the_numerics_are_set() -> None:
    done = python(
        "import sys, ssa_experiments.cli.train, ssa_experiments.cli.status, ssa_experiments.config; "
        "print('torch' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.skipif(not AVX2, reason="portable numerics need an x86-64 CPU with AVX2")
def test_enter_portable_before_torch_gives_avx2_kernels() -> None:
    done = python(
        "from ssa_experiments.repro import numerics; numerics.enter('portable'); import torch; "
        "numerics.check('portable'); print(torch.backends.cpu.get_cpu_capability(), numerics.active_mode())"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AVX2", "portable"]


def test_a_process_that_started_torch_in_another_mode_is_refused_in_one_line() -> None:
    done = python("import torch\nfrom ssa_experiments.repro import numerics\nnumerics.enter('portable')")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "ssa_experiments.repro.numerics.NumericsError: train.cpu_numerics=portable: this process"
    )
    assert "before importing torch" in last
    native_then_portable = python(
        "from ssa_experiments.repro import numerics; numerics.enter('native'); import torch; "
        "numerics.enter('portable')"
    )
    assert "NumericsError" in native_then_portable.stderr


def test_an_unknown_mode_fails_validation(make_cfg) -> None:
    from ssa_experiments.config.schema import ConfigError
    from ssa_experiments.config.validate import validate

    with pytest.raises(ConfigError, match=r"train\.cpu_numerics"):
        validate(make_cfg("train.cpu_numerics=fast"))


@pytest.mark.skipif(not AVX2, reason="portable numerics need an x86-64 CPU with AVX2")
def test_run_records_provenance_and_refuses_a_mismatched_mode(make_cfg) -> None:
    from ssa_experiments.repro import provenance
    from ssa_experiments.repro.numerics import NumericsError
    from ssa_experiments.repro.provenance import COMPUTE_VERSION
    from ssa_experiments.training.run import run

    summary = run(make_cfg("method=one_shot", "sparsity=0.5"))
    p = summary["provenance"]
    assert (p["cpu_numerics"], p["cpu_capability"], p["compute_version"]) == (
        "portable",
        "AVX2",
        COMPUTE_VERSION,
    )
    assert p["torch"].startswith("2.") and p["processor"] and p["code"]["package"]
    assert set(p["code"]) <= {"package", "git_commit", "git_dirty"}
    package_root = Path(provenance.__file__).resolve().parents[2]
    if (package_root / ".git").exists():  # run from a checkout (the tests, CI): the commit it runs
        head = subprocess.run(["git", "-C", str(package_root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        assert p["code"]["git_commit"] == head and isinstance(p["code"]["git_dirty"], bool)
    else:  # an installed wheel: its version only
        assert "git_commit" not in p["code"]
    with pytest.raises(NumericsError, match="native"):  # this process runs portable
        run(make_cfg("method=one_shot", "sparsity=0.5", "train.cpu_numerics=native", run_dir="native"))


@pytest.mark.slow
@pytest.mark.skipif(not AVX2, reason="portable numerics need an x86-64 CPU with AVX2")
def test_cli_sets_the_mode_before_torch_and_joblib_workers_inherit_it(tmp_path: Path) -> None:
    """From a shell with none of the variables set: the CLI puts each process (here two joblib workers) in
    portable numerics itself; native is another run (another store key) on torch's own kernels."""
    from ssa_experiments.analysis.aggregate import collect

    par = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "-m", *TINY_SWEEP, *isolated(tmp_path / "j"),
         "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
        cwd=REPO, env={**CLEAN_ENV, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert par.returncode == 0, par.stderr[-3000:]
    runs = collect(tmp_path / "j" / "sweep")
    assert len(runs) == 4
    for run_dir in runs["run_dir"]:
        p = json.loads((Path(run_dir) / "summary.json").read_text())["provenance"]
        assert (p["cpu_numerics"], p["cpu_capability"]) == ("portable", "AVX2")
    native = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "-m",
         *without_keys(TINY_SWEEP, ["seed=0", "method=one_shot"]), *isolated(tmp_path / "n"),
         "train.cpu_numerics=native", "seed=0", "method=one_shot"],
        cwd=REPO, env={**CLEAN_ENV, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert native.returncode == 0, native.stderr[-3000:]
    (run_dir,) = collect(tmp_path / "n" / "sweep")["run_dir"]
    p = json.loads((Path(run_dir) / "summary.json").read_text())["provenance"]
    own = python("import torch; print(torch.backends.cpu.get_cpu_capability())").stdout.strip()
    assert p["cpu_numerics"] == "native" and p["cpu_capability"] == own  # AVX512 on an AVX-512 machine
    assert Path(run_dir).resolve() not in {Path(d).resolve() for d in runs["run_dir"]}


@pytest.mark.slow
def test_main_returns_the_validation_metric_to_a_sweeper_and_refuses_one_without_validation(
    tmp_path: Path,
) -> None:
    record = tmp_path / "returns.json"
    env = {"PYTHONPATH": str(REPO / "tests"), "RECORD_RETURNS": str(record)}
    tuner = "hydra.sweeper._target_=hydra_plugins.recording_sweeper.RecordingSweeper"
    one = [*TINY_SWEEP[:-3], "method=one_shot", "seed=0", *isolated(tmp_path / "a"), tuner]
    done = sweep(*one, "objective=val_acc,best_val_acc", timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    from ssa_experiments.analysis.aggregate import collect

    (summary_dir,) = collect(tmp_path / "a" / "sweep")["run_dir"]  # one run: objective is not its identity
    summary = json.loads((Path(summary_dir) / "summary.json").read_text())
    assert json.loads(record.read_text()) == [summary["val_acc"], summary["best_val_acc"]]
    assert summary["val_acc"] != summary["test_acc"] or summary["val_loss"] is not None
    refused = sweep(*one, "data.val_fraction=0", timeout=300, env=env)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip().splitlines()[-1].startswith("error: data.val_fraction: is 0, so there is no")
    )
