"""A multirun's exit code says whether anything failed (issue 26: 12); the other runs' results stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssa_experiments.store.status import SweepStatus

GOOD = {"status": "completed", "method": "one_shot", "target_sparsity": 0.5, "seed": 0, "test_acc": 50.0}


def _sweep(tmp_path: Path, *summaries: dict) -> Path:
    sweep = tmp_path / "sweep"
    for i, summary in enumerate(summaries):
        (sweep / f"job{i}").mkdir(parents=True)
        (sweep / f"job{i}" / "summary.json").write_text(json.dumps(summary))
    return sweep


def _end(sweep: Path) -> None:
    SweepStatus().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))


@pytest.mark.parametrize("bad", ["failed", "diverged"])
def test_a_multirun_with_a_bad_run_exits_1(tmp_path: Path, capsys, bad: str) -> None:
    sweep = _sweep(tmp_path, GOOD, {**GOOD, "status": bad, "error": "RuntimeError: boom"})
    with pytest.raises(SystemExit) as exit_:
        _end(sweep)
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    counts = f"{int(bad == 'failed')} failed, {int(bad == 'diverged')} diverged"
    assert f"1 completed, 0 running, {counts}" in captured.out
    assert f"sweep {sweep}: 1 {bad}; see python -m ssa_experiments.cli.status {sweep}" in captured.err
    assert json.loads((sweep / "job0" / "summary.json").read_text()) == GOOD  # the good run's result stays


def test_a_multirun_of_completed_runs_ends_normally(tmp_path: Path, capsys) -> None:
    _end(_sweep(tmp_path, GOOD, {**GOOD, "seed": 1}))
    assert "2 completed, 0 running, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("tuner", [False, True])
def test_a_multirun_whose_runs_all_failed_exits_1(tmp_path: Path, capsys, tuner: bool) -> None:
    """Every run failed: exit 1, also for a tuner's sweep (Optuna writes no multirun.yaml: the jobs are the
    folders Hydra made, each with its ``.hydra``)."""
    failed = {**GOOD, "status": "failed", "error": "LayerCollapse: boom"}
    sweep = _sweep(tmp_path, failed, {**failed, "seed": 1})
    if tuner:
        for job in ("job0", "job1"):
            (sweep / job / ".hydra").mkdir()
    with pytest.raises(SystemExit) as exit_:
        _end(sweep)
    assert exit_.value.code == 1
    assert "0 completed, 0 running, 2 failed" in capsys.readouterr().out


def test_a_multirun_that_ends_with_a_run_not_computed_exits_1_naming_it(tmp_path: Path, capsys) -> None:
    """A job that ended without a summary (e.g. a full disk refused even its failure record) leaves its run
    ``incomplete``: at the sweep's end that is not done, exit 1, the run named with what to do."""
    sweep = _sweep(tmp_path, GOOD)
    (sweep / "job1").mkdir()
    (sweep / "job1" / "metrics.jsonl").write_text('{"epoch": 1}\n')  # started, no summary, nobody on it
    with pytest.raises(SystemExit) as exit_:
        _end(sweep)
    assert exit_.value.code == 1
    captured = capsys.readouterr()
    assert "1 completed, 0 running, 0 failed, 0 diverged, 1 incomplete" in captured.out
    assert f"sweep {sweep}: 1 incomplete" in captured.err
    assert "job1: not computed (its job ended without a summary); relaunch to resume" in captured.err
