"""The W&B mirror, offline: it holds what metrics.jsonl holds, runs never mix, a resumed run is one W&B run,
a W&B failure never costs a run, and no API key lands in any file a run writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import killed_run

from ssa_experiments.store.files import flatten, read_metrics
from ssa_experiments.training.run import run
from ssa_experiments.training.wandb_mirror import wandb_run_id

WANDB = ("logger=wandb", "logger.mode=offline")


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def read_history(offline_dir: Path) -> list[dict]:
    """The metrics rows of an offline run, read back from its .wandb transaction log with W&B's own CLI."""
    (log_file,) = offline_dir.glob("*.wandb")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log_file)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    rows = [r["history"]["item"] for r in records if r.get("type") == "history"]
    return rows


def test_offline_run_mirrors_metrics_jsonl(make_cfg, tmp_path) -> None:
    summary = run(make_cfg("method=temperature_annealing", "method.anneal_epochs=1", *WANDB))
    (offline,) = offline_runs(tmp_path / "run")
    assert offline.name.endswith(wandb_run_id(summary["identity"], tmp_path / "run"))
    local = read_metrics(tmp_path / "run")
    mirrored = read_history(offline)
    assert [r["_step"] for r in mirrored] == [r["epoch"] for r in local]
    for ours, theirs in zip(local, mirrored, strict=True):
        for key in ("train_loss", "val_acc", "test_acc", "sparsity", "expected_train_sparsity"):
            assert theirs[key] == pytest.approx(ours[key])
        assert theirs["layer_sparsity/0"] == pytest.approx(ours["layer_sparsity"]["0"])


def test_two_runs_in_one_process_stay_separate(make_cfg, tmp_path) -> None:
    a = run(make_cfg("method=one_shot", "sparsity=0.5", *WANDB, run_dir="a"))
    b = run(make_cfg("method=one_shot", "sparsity=0.9", *WANDB, run_dir="b"))
    (oa,), (ob,) = offline_runs(tmp_path / "a"), offline_runs(tmp_path / "b")
    assert oa.name.endswith(wandb_run_id(a["identity"], tmp_path / "a"))
    assert ob.name.endswith(wandb_run_id(b["identity"], tmp_path / "b"))
    assert read_history(oa)[-1]["sparsity"] == pytest.approx(a["sparsity"])
    assert read_history(ob)[-1]["sparsity"] == pytest.approx(b["sparsity"])


def test_resumed_run_is_one_wandb_run(make_cfg, tmp_path) -> None:
    overrides = ("method=iterative", "method.anneal_epochs=1", *WANDB)
    killed_run(make_cfg(*overrides), 2)
    summary = run(make_cfg(*overrides))
    sessions = offline_runs(tmp_path / "run")  # offline-run-<date>_<time>-<id>[-<n>]
    assert len(sessions) == 2
    run_id = wandb_run_id(summary["identity"], tmp_path / "run")
    assert {p.name.split("-")[3] for p in sessions} == {run_id}  # one run id
    # The same config run again into another directory (a new sweep) is a new W&B run, not a resumed one.
    assert wandb_run_id(summary["identity"], tmp_path / "elsewhere") != run_id


def test_a_failing_wandb_never_costs_the_run(make_cfg, tmp_path, monkeypatch, caplog) -> None:
    import wandb

    def broken(*args, **kwargs):
        raise wandb.errors.CommError("init timed out")

    monkeypatch.setattr(wandb, "init", broken)
    summary = run(make_cfg("method=one_shot", *WANDB))
    assert summary["status"] == "completed" and len(read_metrics(tmp_path / "run")) == 3
    assert "W&B init failed" in caplog.text


def test_no_api_key_in_any_file_a_run_writes(make_cfg, tmp_path, monkeypatch) -> None:
    key = "0123456789abcdef0123456789abcdef01234567"  # key-shaped: 40 hex characters
    monkeypatch.setenv("WANDB_API_KEY", key)
    run(make_cfg("method=one_shot", *WANDB))
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_flatten_gives_the_keys_users_override() -> None:
    assert flatten({"method": {"name": "x", "initial_temperature": 0.5}, "seed": 1}) == {
        "method.name": "x", "method.initial_temperature": 0.5, "seed": 1,
    }  # fmt: skip
