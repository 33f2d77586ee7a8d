"""collect() reads every run back; table() shows mean ± std over seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssa_experiments.aggregate import budget, collect, main, table
from ssa_experiments.results import atomic_write_json


def write(root: Path, name: str, **summary: object) -> None:
    atomic_write_json(root / name / "summary.json", {"status": "completed", **summary})


def test_collect_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed, acc in enumerate([90.0, 92.0]):
        write(
            tmp_path,
            f"os{seed}",
            method="one_shot",
            target_sparsity=0.9,
            seed=seed,
            test_acc=acc,
            parent={"source": "cache", "test_acc": 99.0},
            steps=100,
            epochs_at_target=10,
            lr_trace_sha256="abc",
        )
    write(tmp_path, "d0", method="dense", target_sparsity=0.0, seed=0, test_acc=99.0)
    write(
        tmp_path / "nested", "ta0", method="temperature_annealing", target_sparsity=0.9, seed=0,
        test_acc=95.0, steps=100, epochs_at_target=5, lr_trace_sha256="abc",
    )  # fmt: skip
    write(tmp_path, "bad", method="iterative", target_sparsity=0.9, seed=0, status="failed")
    df = collect(tmp_path)
    assert len(df) == 5 and set(df["status"]) == {"completed", "failed"}
    assert df.loc[df["run_dir"].str.endswith("os0"), "parent_source"].item() == "cache"
    t = table(df)
    assert list(t.index) == ["dense", "one_shot", "temperature_annealing"]  # failed runs are not averaged
    assert t.loc["one_shot", "0.9"] == "91.00 ± 1.41 (n=2)"
    assert t.loc["dense", "0"] == "99.00 ± 0.00 (n=1)"
    b = budget(df)
    assert b.loc["one_shot", "steps"] == "100" and b.loc["temperature_annealing", "epochs_at_target"] == "5"
    main([str(tmp_path), "--csv", str(tmp_path / "runs.csv")])
    out = capsys.readouterr().out
    assert "5 runs" in out and "91.00 ± 1.41" in out and (tmp_path / "runs.csv").exists()
