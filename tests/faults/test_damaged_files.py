"""Damaged files are healed or refused by name, never read as valid (issue 26: 1, 3, 6, 8, 10, 11).

Each healing case asserts the numbers after recovery equal those of an uninterrupted run of the same
config (``reference``): a healed run is the same computation, not an approximation of it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import killed_run

from ssa_experiments.analysis.aggregate import collect, epochs
from ssa_experiments.cli.aggregate import main as aggregate_main
from ssa_experiments.cli.status import main as status_main
from ssa_experiments.store import runs as store
from ssa_experiments.store.files import CHECKPOINT, METRICS, SUMMARY, read_metrics, read_summary
from ssa_experiments.store.status import states
from ssa_experiments.training.run import run

RUN = ("method=one_shot", "sparsity=0.5")


def _numbers(summary: dict) -> dict:
    keep = ("status", "test_acc", "val_acc", "epochs", "epochs_at_target", "best_epoch", "steps",
            "lr_trace_sha256", "sparsity", "identity")  # fmt: skip
    return {k: summary[k] for k in keep}


def _on_disk(summary: dict) -> dict:
    return json.loads(json.dumps(summary, default=str))


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_metrics(run_dir)]


@pytest.fixture
def reference(make_cfg, tmp_path: Path) -> dict:
    """The uninterrupted run (3 epochs) in tmp_path/reference; its parent is cached for the others."""
    return run(make_cfg(*RUN, run_dir="reference"))


def _killed(make_cfg, tmp_path: Path) -> Path:
    """The run killed in its third epoch: a checkpoint at epoch 2 and two metrics rows."""
    killed_run(make_cfg(*RUN, run_dir="killed"), 3)
    killed = tmp_path / "killed"
    assert (killed / CHECKPOINT).exists() and len(read_metrics(killed)) == 2
    return killed


def _assert_same_as_reference(make_cfg, tmp_path: Path, reference: dict) -> None:
    healed = run(make_cfg(*RUN, run_dir="killed"))
    assert _numbers(healed) == _numbers(reference)
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "reference")
    assert not (tmp_path / "killed" / CHECKPOINT).exists()


# -- 3: resume trusts metrics.jsonl --------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "torn_line_mid_file"])
def test_checkpoint_ahead_of_its_metrics_restarts_cleanly(
    make_cfg, tmp_path: Path, reference: dict, caplog, damage: str
) -> None:
    killed = _killed(make_cfg, tmp_path)
    lines = (killed / METRICS).read_text().splitlines()
    if damage == "truncated":
        (killed / METRICS).write_text(lines[0] + "\n")
    else:
        (killed / METRICS).write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    with caplog.at_level(logging.WARNING):
        _assert_same_as_reference(make_cfg, tmp_path, reference)  # 3 epochs, not 1 (or 2) reported
    assert any("not resuming from it" in r.getMessage() and str(killed / METRICS) in r.getMessage()
               for r in caplog.records)  # fmt: skip


# -- 8: a truncated checkpoint -------------------------------------------------------------------------------


def test_truncated_checkpoint_is_set_aside_and_the_run_restarts(
    make_cfg, tmp_path: Path, reference: dict, caplog
) -> None:
    killed = _killed(make_cfg, tmp_path)
    data = (killed / CHECKPOINT).read_bytes()
    (killed / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        _assert_same_as_reference(make_cfg, tmp_path, reference)
    assert any(f"{killed / CHECKPOINT} is damaged" in r.getMessage() for r in caplog.records)
    assert (killed / "checkpoint.pt.damaged").exists()


# -- 6: a damaged summary.json -------------------------------------------------------------------------------

DAMAGED = {
    "truncated": lambda text: text[: len(text) // 2],
    "null": lambda text: "null",
    "list": lambda text: "[]",
    "status_only": lambda text: json.dumps({"status": "completed"}),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_damaged_summary_is_recomputed_not_trusted(
    make_cfg, tmp_path: Path, reference: dict, caplog, damage: str
) -> None:
    out = tmp_path / "reference"
    (out / SUMMARY).write_text(DAMAGED[damage]((out / SUMMARY).read_text()))
    with caplog.at_level(logging.WARNING):
        again = run(make_cfg(*RUN, run_dir="reference"))
    assert _numbers(again) == _numbers(reference)  # computed again: the same result, not a failed record
    assert read_summary(out)["status"] == "completed"
    assert (out / "summary.json.damaged").exists()
    assert any(f"{out / SUMMARY} is damaged" in r.getMessage() for r in caplog.records)


def _write(root: Path, name: str, summary: object) -> Path:
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / SUMMARY).write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return run_dir


GOOD = {"status": "completed", "method": "one_shot", "target_sparsity": 0.5, "seed": 0, "test_acc": 50.0}


@pytest.mark.parametrize("damage", ["{", "null", "[]", '{"status": "completed"}'])
def test_one_damaged_summary_is_one_damaged_row(tmp_path: Path, capsys, damage: str) -> None:
    _write(tmp_path, "good", GOOD)
    bad = _write(tmp_path, "bad", damage)
    assert sorted(states(tmp_path)["status"]) == ["completed", "damaged"]
    assert status_main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged   {bad}: {bad / SUMMARY} is damaged" in out
    assert out.strip().splitlines()[-1].endswith("0 missing, 1 damaged")
    with pytest.warns(UserWarning, match=f"{bad / SUMMARY} is damaged"):
        df = collect(tmp_path)
    assert sorted(df["status"]) == ["completed", "damaged"]
    with pytest.warns(UserWarning, match="damaged"):
        aggregate_main([str(tmp_path)])
    assert "not in the table: damaged" in capsys.readouterr().out


# -- 1: status with a failed run and a run without error text ------------------------------------------------


def test_status_with_a_failed_and_a_diverged_run(tmp_path: Path, capsys) -> None:
    _write(tmp_path, "failed", {**GOOD, "status": "failed", "error": "RuntimeError: boom\ntraceback"})
    _write(tmp_path, "diverged", {**GOOD, "status": "diverged"})  # no error text: NaN under pandas 3
    assert status_main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "RuntimeError: boom" in out and "traceback" not in out
    assert out.strip().splitlines()[-1].endswith("0 running, 1 failed, 1 diverged, 0 incomplete, 0 missing")


# -- 10: leftovers of interrupted writes, a stale checkpoint, orphan locks -----------------------------------


def test_temporaries_of_interrupted_writes_are_removed_when_the_run_starts(
    make_cfg, tmp_path: Path, reference: dict
) -> None:
    out = tmp_path / "reference"
    for name in (".summary.json.abc123.tmp", ".checkpoint.pt.def456.tmp"):
        (out / name).write_bytes(b"torn")
    assert run(make_cfg(*RUN, run_dir="reference")) == _on_disk(reference)  # completed: nothing computed
    assert not list(out.glob(".*.tmp"))


def test_a_stale_checkpoint_beside_a_completed_run_is_removed(make_cfg, tmp_path: Path, reference) -> None:
    out = tmp_path / "reference"
    (out / CHECKPOINT).write_bytes(b"left by a kill between the summary and its removal")
    assert run(make_cfg(*RUN, run_dir="reference")) == _on_disk(reference)
    assert not (out / CHECKPOINT).exists()


def test_a_lock_file_is_removed_only_by_its_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r"
    with store.claimed(run_dir) as claim:
        claim.remove = True  # what train.py does for a run refused before it wrote anything
    assert not store.lock_path(run_dir).exists()
    with store.claimed(run_dir):  # and the lock works again
        assert store.lock_path(run_dir).exists()


# -- 11: a torn metrics line in a completed run; killed before the first epoch; a lock that is a directory ---


def test_a_torn_metrics_line_in_a_completed_run_is_named(make_cfg, tmp_path: Path, reference: dict) -> None:
    out = tmp_path / "reference"
    lines = (out / METRICS).read_text().splitlines()
    (out / METRICS).write_text("\n".join([lines[0], lines[1][:15], lines[2]]) + "\n")
    df = collect(out)
    with pytest.warns(UserWarning, match=rf"{out / METRICS}: 1 of 3 epoch rows kept \(line 2 of 3 is torn"):
        rows = epochs(df)
    assert len(rows) == 1


def test_status_of_a_store_counts_a_run_killed_before_its_first_epoch(tmp_path: Path) -> None:
    _write(tmp_path, "done", GOOD)
    (tmp_path / "runs" / "killed-early").mkdir()  # linked and claimed, killed while the parent trained
    store.lock_path(tmp_path / "runs" / "killed-early").write_text("")
    assert sorted(states(tmp_path)["status"]) == ["completed", "incomplete"]


def test_a_lock_path_that_is_a_directory_is_named(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    store.lock_path(run_dir).mkdir()
    lock = store.lock_path(run_dir)
    is_a_dir = pytest.raises(store.StoreError, match=rf"^store.root: {lock} is a directory")
    with is_a_dir, store.claimed(run_dir):
        pass
    assert states(tmp_path)["status"].tolist() == ["damaged"]
    assert status_main([str(tmp_path)]) == 1
    assert "is a directory where the run's lock file belongs" in capsys.readouterr().out
