"""Reading runs back (store/read.py): what analysis and ensembles both build on. A sweep directory and the
store it links into, by hand: a completed run reached twice, a killed run known only by Hydra's record of its
job, a damaged summary, and a directory holding no run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ssa_experiments.store.read import DAMAGED, INCOMPLETE, StoredRun, hydra_config, stored_runs

OLD_SPELLING = {"method": {"name": "one_shot"}, "seed": 3, "schedule": {"name": "cosine"}}
TODAYS = {"method": {"name": "one_shot"}, "seed": 3, "lr": {"name": "cosine"}}


def _sweep_and_store(root: Path) -> tuple[Path, Path]:
    """sweep/0 -> store/runs/done (completed, its config in the spelling before ``schedule`` became ``lr``);
    sweep/1 -> store/runs/killed (a log, no summary; Hydra's record beside the link); store/runs/torn (a
    damaged summary); store/runs/empty (nothing a run writes)."""
    runs, sweep = root / "store" / "runs", root / "sweep"
    for name in ("done", "killed", "torn", "empty"):
        (runs / name).mkdir(parents=True)
    summary = {"status": "completed", "method": "one_shot", "test_acc": 51.0, "config": OLD_SPELLING}
    (runs / "done" / "summary.json").write_text(json.dumps(summary))
    (runs / "killed" / "metrics.jsonl").write_text('{"epoch": 0}\n')
    (runs / "torn" / "summary.json").write_text('{"status": "compl')
    (runs / "empty" / "notes.txt").write_text("")
    for job, target in (("0", "done"), ("1", "killed")):
        (sweep / job / ".hydra").mkdir(parents=True)
        os.symlink(os.path.relpath(runs / target, sweep / job), sweep / job / "run")
    (sweep / "1" / ".hydra" / "config.yaml").write_text("method:\n  name: iterative\nseed: 4\nschedule: {}\n")
    return sweep, root / "store"


def test_every_run_once_with_its_status_and_config_in_todays_spelling(tmp_path: Path) -> None:
    sweep, store = _sweep_and_store(tmp_path)
    with pytest.warns(UserWarning, match=rf"{store / 'runs' / 'torn' / 'summary.json'} is damaged"):
        found = list(stored_runs([sweep, store]))
    summary = {"status": "completed", "method": "one_shot", "test_acc": 51.0, "config": OLD_SPELLING}
    assert found == [
        StoredRun(sweep / "0" / "run", "completed", TODAYS, summary),  # the summary as written
        StoredRun(sweep / "1" / "run", INCOMPLETE, {"method": {"name": "iterative"}, "seed": 4, "lr": {}}),
        StoredRun(store / "runs" / "torn", DAMAGED),  # done and killed: already reached through the sweep
    ]


def test_a_run_reached_first_through_the_store_is_named_by_its_store_path(tmp_path: Path) -> None:
    _, store = _sweep_and_store(tmp_path)
    with pytest.warns(UserWarning):
        found = list(stored_runs(store))
    assert [(r.run_dir, r.status) for r in found] == [
        (store / "runs" / "done", "completed"),
        (store / "runs" / "killed", INCOMPLETE),
        (store / "runs" / "torn", DAMAGED),
    ]
    assert found[1].config == {}  # Hydra's record is beside the sweep's link, not in the store


def test_hydra_config_is_the_jobs_own_record_else_the_one_beside_the_link(tmp_path: Path) -> None:
    sweep, store = _sweep_and_store(tmp_path)
    assert hydra_config(sweep / "1" / "run")["method"] == {"name": "iterative"}  # beside the link
    (sweep / "1" / "run" / ".hydra").mkdir()
    (sweep / "1" / "run" / ".hydra" / "config.yaml").write_text("seed: 9\n")
    assert hydra_config(sweep / "1" / "run") == {"seed": 9}  # its own record first
    assert hydra_config(store / "runs" / "done") == {}
