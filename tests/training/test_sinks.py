"""Where each epoch's row goes (training/sinks.py), seen from outside: the rows of ``metrics.jsonl`` and the
per-epoch log lines a run leaves, whatever object writes them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ssa_experiments.store.files import read_metrics
from ssa_experiments.training.run import run

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
