"""Runs written before the LR schedule was renamed (``schedule`` -> ``lr``, issue 22) are read as today's:
their summaries, Hydra's records of them and the published runs CSVs (``config.schedule.*`` columns)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO, compose_config

from ssa_experiments.analysis.aggregate import collect, read_runs, table
from ssa_experiments.cli.figures import main as figures
from ssa_experiments.config.identity import run_identity
from ssa_experiments.store import runs as store
from ssa_experiments.store.files import atomic_write_json
from ssa_experiments.store.status import states

BASELINES = REPO / "results" / "baselines"


def summary(seed: int, lr_key: str) -> dict:
    config = {
        "method": {"name": "one_shot"}, "seed": seed, "sparsity": 0.9,
        lr_key: {"name": "one_cycle", "lr": 0.1},
        "parent": {"epochs": 20, lr_key: {"name": "parent_swa_style"}},
    }  # fmt: skip
    return {"status": "completed", "method": "one_shot", "target_sparsity": 0.9, "seed": seed,
            "test_acc": 90.0 + seed, "config": config}  # fmt: skip


def test_old_and_new_summaries_aggregate_as_one_setting(tmp_path: Path) -> None:
    """A store written before the rename: the directory today's config asks for holds the old summary."""
    cfg = compose_config(["output_dir=/tmp/unused", "method=one_shot", "sparsity=0.9", "device=cpu"])
    atomic_write_json(store.run_dir(tmp_path, run_identity(cfg)) / "summary.json", summary(0, "schedule"))
    atomic_write_json(tmp_path / "runs" / "new" / "summary.json", summary(1, "lr"))
    killed = tmp_path / "runs" / "killed"  # an incomplete run: its config is Hydra's record (old spelling)
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "config.yaml").write_text("method: {name: one_shot}\nseed: 2\nschedule: {name: x}\n")
    (killed / "metrics.jsonl").write_text("")
    df = collect(tmp_path)
    assert all("schedule" not in c and "schedule" not in c.get("parent", {}) for c in df["config"])
    assert sorted(c["lr"]["name"] for c in df["config"]) == ["one_cycle", "one_cycle", "x"]
    assert table(df).loc["one_shot", "0.9"] == "90.50 ± 0.71 (n=2)"  # one setting, not one per spelling
    assert sorted(states(tmp_path)["status"]) == ["completed", "completed", "incomplete"]


@pytest.mark.skipif(not BASELINES.is_dir(), reason="the published results are not in this checkout")
def test_the_published_baselines_are_read_and_redrawn_identically(tmp_path: Path) -> None:
    runs = read_runs(BASELINES / "runs.csv")
    assert all(c["lr"]["name"] and c["parent"]["lr"]["name"] == "parent_swa_style" for c in runs["config"])
    assert not any("schedule" in c for c in runs["config"])
    paths = figures(["baselines", "--runs", str(BASELINES / "runs.csv"), "--out", str(tmp_path)])
    assert len(paths) == 6  # per sparsity: csv, md, tex
    for path in paths:
        assert Path(path).read_bytes() == (BASELINES / Path(path).name).read_bytes(), Path(path).name
