"""End to end: every method through the real configs; results files; resume; failures in a sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import GRADUAL

from ssa_experiments.config.identity import run_identity
from ssa_experiments.data.datasets import load_data
from ssa_experiments.models import build_model
from ssa_experiments.store.files import read_metrics, read_summary
from ssa_experiments.training.run import run
from ssa_experiments.training.summary import best_by_validation

METHODS = ["dense", "one_shot", "iterative", "random_annealing", "temperature_annealing"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_end_to_end(make_cfg, method: str, tmp_path: Path) -> None:
    extra = [] if method in ("dense", "one_shot") else ["method.anneal_epochs=2"]
    cfg = make_cfg(f"method={method}", "sparsity=0.8", *extra)
    summary = run(cfg)
    on_disk = read_summary(tmp_path / "run")
    assert on_disk == json.loads(json.dumps(summary, default=str))
    assert on_disk["status"] == "completed" and on_disk["method"] == method
    for key in (
        "target_sparsity", "sparsity", "seed", "test_acc", "val_acc", "best_epoch", "best_val_acc",
        "test_acc_at_best_val", "epochs", "epochs_at_target", "steps", "lr_trace_sha256", "wall_time_s",
    ):  # fmt: skip
        assert key in on_disk
    assert "best_test_acc" not in on_disk  # nothing is selected on the test set
    assert on_disk["config"]["method"]["name"] == method  # the resolved config rides along
    assert on_disk["epochs"] == 3 and 0 <= on_disk["test_acc"] <= 100
    expected = 0.0 if method == "dense" else 0.8
    assert on_disk["target_sparsity"] == expected
    assert on_disk["sparsity"] == pytest.approx(expected, abs=1e-3)  # exactly the target, of prunable weights
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all("layer_sparsity" in r and "expected_train_sparsity" in r and "val_acc" in r for r in rows)
    assert on_disk["test_acc"] == rows[-1]["test_acc"]  # the final epoch's, not a selected one
    assert on_disk["epochs_at_target"] == (1 if extra else 3)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # removed once the run completed
    assert (tmp_path / "run" / "model.pt").exists()


def test_annealing_logs_expected_density_per_epoch(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "method=temperature_annealing",
        "method.initial_temperature=0.5",
        "method.anneal_epochs=2",
        "sparsity=0.8",
    )
    run(cfg)
    expected = [r["expected_train_sparsity"] for r in read_metrics(tmp_path / "run")]
    # p = 0.5, 0.25, then the target; the target itself is round(0.8 * n) / n of the prunable weights
    assert expected == pytest.approx([0.8 * 0.5, 0.8 * 0.75, 0.8], abs=1e-3)


def test_learns_the_synthetic_task(make_cfg) -> None:
    summary = run(make_cfg("method=one_shot", "sparsity=0.5", "parent.epochs=4"))
    assert summary["parent"]["test_acc"] > 60  # 4 classes: chance is 25%
    assert summary["test_acc"] > 60


def _train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, run from ``tmp_path`` with its parent cache there."""
    return subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", *args, f"parent.cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip


FAST_CLI = ["data=synthetic", "model.width=8", "parent.epochs=1", "train.finetune_epochs=2", "device=cpu"]


@pytest.mark.slow
def test_hydra_multirun_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _train(
        [
            "-m",
            *FAST_CLI,
            "method=one_shot,temperature_annealing",
            "method.anneal_epochs=1",
            "sparsity=0.5,0.9",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run/summary.json"))]
    assert len(summaries) == 4
    assert {(s["method"], s["target_sparsity"]) for s in summaries} == {
        (m, s) for m in ("one_shot", "temperature_annealing") for s in (0.5, 0.9)
    }
    assert sorted(s["parent"]["source"] for s in summaries) == ["cache", "cache", "cache", "trained"]


@pytest.mark.slow
def test_failed_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    # model.depth=9 builds a 9-block CNN whose pooling shrinks an 8x8 input to nothing: a runtime failure
    # after validation, in the first job only.
    proc = _train(
        [
            "-m",
            *FAST_CLI,
            "method=one_shot",
            "model.depth=9,1",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # the sweep went on, and its exit code says one failed
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/run/summary.json"))
    assert statuses == ["completed", "failed"]
    failed = next(
        json.loads(p.read_text())
        for p in sweep.glob("*/run/summary.json")
        if json.loads(p.read_text())["status"] == "failed"
    )
    assert "error" in failed and failed["config"]["model"]["depth"] == 9


@pytest.mark.slow
def test_single_run_cli_writes_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "one"
    proc = _train(
        [
            *FAST_CLI,
            "method=random_annealing",
            "method.anneal_epochs=1",
            "sparsity=0.95",
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = read_summary(run_dir / "run")  # the run lives in the store; Hydra's directory links to it
    assert summary["status"] == "completed" and summary["sparsity"] == pytest.approx(0.95, abs=1e-3)
    assert (run_dir / "run" / "metrics.jsonl").exists() and (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / "run").resolve().parent == (tmp_path / "outputs" / "store" / "runs").resolve()


@pytest.mark.slow
def test_parallel_jobs_train_the_parent_once(tmp_path: Path) -> None:
    """Two processes that need the same parent at the same time: the file lock makes one wait and reuse."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ssa_experiments.cli.train", *FAST_CLI[:2], *FAST_CLI[3:],
             "parent.epochs=5", "method=one_shot",  # not FAST_CLI[2]: given twice is refused
             f"sparsity={s}", f"hydra.run.dir={tmp_path / f'job{i}'}",
             f"parent.cache_dir={tmp_path / 'cache'}"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i, s in enumerate((0.5, 0.8))
    ]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:] if p.stderr else ""
    sources = sorted(read_summary(tmp_path / f"job{i}" / "run")["parent"]["source"] for i in range(2))
    assert sources == ["cache", "trained"]
    assert len(list((tmp_path / "cache").glob("*/parent.pt"))) == 1


@pytest.mark.slow
def test_the_same_run_asked_for_twice_at_once_is_computed_once(tmp_path: Path) -> None:
    """Two processes start the same run: one computes it, the other waits on the store's lock, reuses it."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ssa_experiments.cli.train", *FAST_CLI, "method=one_shot",
             f"hydra.run.dir={tmp_path / f'job{i}'}", f"parent.cache_dir={tmp_path / 'cache'}"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:] if p.stderr else ""
    runs = {(tmp_path / f"job{i}" / "run").resolve() for i in range(2)}
    stored = {p for p in (tmp_path / "outputs" / "store" / "runs").glob("one_shot-*") if p.is_dir()}
    assert len(runs) == 1 and runs == stored
    (stored,) = runs
    assert len(read_metrics(stored)) == 2  # one writer: two epochs, not four lines from two writers


def test_a_run_dir_of_another_config_is_refused(make_cfg, tmp_path: Path) -> None:
    """Re-running into a directory that holds another config's results must not silently reuse them."""
    from ssa_experiments.config.schema import ConfigError

    run(make_cfg("method=one_shot", "sparsity=0.5"))
    again = run(make_cfg("method=one_shot", "sparsity=0.5", "device=cpu"))  # same identity: skipped
    assert again["status"] == "completed"
    with pytest.raises(ConfigError, match="output_dir"):
        run(make_cfg("method=one_shot", "sparsity=0.9"))
    assert read_summary(tmp_path / "run")["target_sparsity"] == 0.5


@pytest.mark.slow
def test_a_two_key_sweep_never_shares_a_directory(tmp_path: Path) -> None:
    """The quick-start preset names its run directories from every overridden key: sweeping a key it does not
    name by default (method.initial_temperature) must give one directory per config, not a refusal."""
    sweep = tmp_path / "sweep"
    proc = _train(
        ["-m", "experiment=quickstart", *FAST_CLI, "method=temperature_annealing", "method.anneal_epochs=1",
         "sparsity=0.9", "seed=0", "method.initial_temperature=0.25,0.5", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run/summary.json"))]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    assert sorted(s["config"]["method"]["initial_temperature"] for s in summaries) == [0.25, 0.5]
    assert all("initial_temperature" in p.parent.parent.name for p in sweep.glob("*/run/summary.json"))


def test_long_sweep_directory_names_are_shortened_uniquely() -> None:
    from ssa_experiments.config.schema import short_dirname

    assert short_dirname("method=one_shot,seed=0") == "method=one_shot,seed=0"
    a, b = short_dirname("x" * 200 + "a"), short_dirname("x" * 200 + "b")
    assert len(a) == len(b) == 120 and a != b
    assert short_dirname("model.kwargs.f=/a/b") == "model.kwargs.f=_a_b"


@pytest.mark.parametrize("method", GRADUAL)
def test_last_possible_anneal_epochs_still_trains_the_target(make_cfg, method: str) -> None:
    summary = run(make_cfg(f"method={method}", "method.anneal_epochs=2", "train.finetune_epochs=3"))
    assert summary["epochs_at_target"] == 1
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_best_epoch_is_chosen_by_validation_among_epochs_at_target() -> None:
    history = [  # epoch 1 is denser than the target: highest val and test, never eligible
        {"epoch": 1, "at_target": False, "val_acc": 99.0, "test_acc": 98.0},
        {"epoch": 2, "at_target": True, "val_acc": 80.0, "test_acc": 90.0},  # best test
        {"epoch": 3, "at_target": True, "val_acc": 85.0, "test_acc": 70.0},  # best val
        {"epoch": 4, "at_target": True, "val_acc": 85.0, "test_acc": 75.0},  # a tie: the earlier wins
    ]
    assert best_by_validation(history) == {
        "best_epoch": 3,
        "best_val_acc": 85.0,
        "test_acc_at_best_val": 70.0,
    }
    no_val = [{k: v for k, v in r.items() if k != "val_acc"} for r in history]
    assert best_by_validation(no_val)["best_epoch"] is None


def test_runs_report_validation_numbers(make_cfg) -> None:
    summary = run(make_cfg("method=iterative", "method.anneal_epochs=1", "sparsity=0.9"))
    assert summary["val_acc"] is not None and summary["best_epoch"] in (2, 3)  # epoch 1 is not at target
    assert "val_acc" in summary["parent"]
    assert summary["torch_threads"] == torch.get_num_threads() == 1  # train.cpu_threads, recorded


def test_cpu_threads_come_from_the_config_not_from_the_launcher(make_cfg) -> None:
    """joblib's workers get cores / n_jobs threads, a sequential sweep all of them: the config decides."""
    torch.set_num_threads(2)  # as a process with more cores would start
    one = make_cfg("method=one_shot", "sparsity=0.5")
    assert run(one)["torch_threads"] == 1 and torch.get_num_threads() == 1
    two = make_cfg("method=one_shot", "sparsity=0.5", "train.cpu_threads=2", run_dir="two")
    assert run_identity(two) != run_identity(one)  # the numbers may differ, so the runs do
    assert run(two)["torch_threads"] == 2
    torch.set_num_threads(1)


@pytest.mark.parametrize("method", ["one_shot", "temperature_annealing"])
def test_saved_model_is_sparse_and_loads_into_the_plain_architecture(make_cfg, tmp_path, method) -> None:
    cfg = make_cfg(f"method={method}", "method.anneal_epochs=1", "sparsity=0.8")
    summary = run(cfg)
    state = torch.load(tmp_path / "run" / "model.pt")
    assert summary["model_file"] == "model.pt"
    data = load_data(cfg.data)
    plain = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    plain.load_state_dict(state)  # strict: exactly the architecture's keys, no mask buffers
    prunable = [k for k in summary["layer_sparsity"]]
    weights = torch.cat([state[f"{k}.weight"].flatten() for k in prunable])
    assert int((weights == 0).sum()) / weights.numel() == pytest.approx(summary["sparsity"], abs=1e-12)
    assert (
        run(make_cfg(f"method={method}", "train.save_model=false", "method.anneal_epochs=1", run_dir="n"))[
            "model_file"
        ]
        is None
    )
    assert not (tmp_path / "n" / "model.pt").exists()
