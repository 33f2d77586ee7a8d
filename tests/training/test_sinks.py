"""Where each epoch's row goes (training/sinks.py), seen from outside: the rows of ``metrics.jsonl`` and the
per-epoch log lines a run leaves, whatever object writes them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ssa_experiments.store.files import read_metrics
from ssa_experiments.training.run import run
from ssa_experiments.training.sinks import ProgressBar

ONE_SHOT = ("method=one_shot", "sparsity=0.75", "train.finetune_epochs=3")


def test_metrics_file_has_one_row_per_fine_tuning_epoch_and_the_summary_is_the_last(
    make_cfg, tmp_path: Path
) -> None:
    summary = run(make_cfg(*ONE_SHOT))
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # fine-tuning only: the parent's epochs are not rows
    assert all(r["at_target"] for r in rows)  # one-shot prunes before the first epoch
    assert {round(r["sparsity"], 2) for r in rows} == {0.75}
    assert rows[-1]["test_acc"] == summary["test_acc"] and rows[-1]["sparsity"] == summary["sparsity"]


def test_a_fresh_run_drops_rows_left_in_its_directory(make_cfg, tmp_path: Path) -> None:
    """Rows of an attempt killed before its first checkpoint are not this run's: the file starts over."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": -1.0}) + "\n")
    run(make_cfg(*ONE_SHOT))
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[0]["test_acc"] >= 0


@pytest.mark.parametrize(("progress", "lines"), [("lines", 3), ("none", 0), ("auto", 3)])
def test_progress_lines_log_one_line_per_epoch(make_cfg, caplog, progress: str, lines: int) -> None:
    """``auto`` outside a terminal and outside a multirun (as here) is one line per epoch."""
    with caplog.at_level(logging.INFO):
        run(make_cfg(*ONE_SHOT, f"logger.progress={progress}"))
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [e.split()[1] for e in epochs] == [f"{n}/3" for n in range(1, lines + 1)]
    assert all(" test_acc " in e and " sparsity 0.75" in e for e in epochs)


def test_lines_say_the_time_left_and_the_parent_has_its_own(make_cfg, caplog) -> None:
    """One line per epoch for the parent too (labelled ``parent``), each with the epoch's time and an ETA."""
    with caplog.at_level(logging.INFO):
        run(make_cfg(*ONE_SHOT, "logger.progress=lines"))
    parent = [m for m in caplog.messages if m.startswith("parent epoch ")]
    assert [m.split()[2] for m in parent] == ["1/2", "2/2"]
    assert all(" val_acc " in m and " test_acc " in m for m in parent)
    runs = [m for m in caplog.messages if m.startswith("epoch ")]
    assert [m.rsplit("ETA ", 1)[1] for m in runs][-1] == "0s)" and all(" s, ETA " in m for m in runs)


def test_the_bar_counts_steps_with_an_eta(make_cfg, tmp_path: Path, capsys, monkeypatch) -> None:
    """On a terminal: one bar for the parent, one for the run, each counting optimizer steps (its total: all
    the epochs' steps), with the epoch in its description and the last epoch's numbers after it."""
    monkeypatch.setattr(ProgressBar, "MININTERVAL_S", 0.0)  # every step drawn: a tiny run outruns 10 frames/s
    run(make_cfg(*ONE_SHOT, "logger.progress=bar"))
    steps = read_metrics(tmp_path / "run")[0]["step"]
    frames = capsys.readouterr().err.replace("\r", "\n").splitlines()
    finals = [f for f in frames if f"{3 * steps}/{3 * steps}" in f and "step" in f]
    assert finals and finals[-1].startswith("epoch 3/3") and "test=" in finals[-1]
    parent = [f for f in frames if f.startswith("parent epoch ")]
    assert any(f"{2 * steps}/{2 * steps}" in f and f.startswith("parent epoch 2/2") for f in parent)
    assert any(f"{steps + 1}/{3 * steps}" in f for f in frames)  # counted step by step within an epoch


def test_the_parent_writes_its_epochs_beside_itself(make_cfg, tmp_path: Path) -> None:
    """parent_metrics.jsonl in the parent's cache entry: one row per parent epoch, training, validation and
    test metrics; its last row is the parent the run starts from. A reused parent is not trained: the file
    stays as its training wrote it."""
    summary = run(make_cfg(*ONE_SHOT))
    entry = tmp_path / "cache" / summary["parent"]["hash"]
    rows = [json.loads(line) for line in (entry / "parent_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["step"] == 2 * rows[0]["step"]
    assert {"train_loss", "train_acc", "val_acc", "test_acc", "lr", "epoch_time_s"} <= set(rows[0])
    assert rows[-1]["test_acc"] == pytest.approx(summary["parent"]["test_acc"])
    before = (entry / "parent_metrics.jsonl").read_text()
    run(make_cfg(*ONE_SHOT, "seed=0", "sparsity=0.5", run_dir="other"))  # reuses the cached parent
    assert (entry / "parent_metrics.jsonl").read_text() == before
