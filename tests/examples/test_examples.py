"""examples/custom_{model,data,method}/run.sh: each runs as one command, end to end, at tiny settings.

Each script is run as a user runs it (bash, a subprocess), with ``OUT`` pointing into tmp_path and the
working directory there too, so nothing is written into the repository; ``PARENT_EPOCHS``, ``EPOCHS``,
``ANNEAL_EPOCHS`` and ``PER_CLASS`` shrink it. A script passes when it exits 0, every run of its sweep
completed at the target sparsity (read back from the store), and the aggregate it prints at the end names
every method it compared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow


def run_example(name: str, tmp_path: Path, **env: str) -> tuple[Path, str]:
    """Run examples/<name>/run.sh from tmp_path; returns its output folder and its stdout."""
    out = tmp_path / "out"
    environ = {
        **os.environ,
        "OUT": str(out),
        "EXTRA": "device=cpu",
        "PARENT_EPOCHS": "1",
        "EPOCHS": "2",
        "ANNEAL_EPOCHS": "1",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "disabled",
        **env,
    }
    proc = subprocess.run(
        ["bash", str(REPO / "examples" / name / "run.sh")],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def completed_runs(sweep: Path) -> list[dict]:
    from ssa_experiments.store.read import stored_runs

    runs = list(stored_runs(sweep))
    assert runs, f"no runs under {sweep}"
    assert [r.status for r in runs] == ["completed"] * len(runs)
    return [r.summary for r in runs if r.summary is not None]


def methods_and_sparsities(summaries: list[dict]) -> list[tuple[str, float]]:
    return sorted((s["config"]["method"]["name"], s["config"]["sparsity"]) for s in summaries)


def test_custom_model(tmp_path: Path) -> None:
    out, stdout = run_example("custom_model", tmp_path)
    summaries = completed_runs(out / "sweep")
    assert methods_and_sparsities(summaries) == [("one_shot", 0.9), ("temperature_annealing", 0.9)]
    for s in summaries:
        assert s["config"]["model"]["_target_"] == "tiny_resnet.TinyResNet"
        assert s["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert "one_shot" in stdout and "temperature_annealing" in stdout


def test_custom_data(tmp_path: Path) -> None:
    out, stdout = run_example("custom_data", tmp_path, PER_CLASS="12")
    for split, count in (("train", 12), ("test", 50)):
        for shape in ("circle", "square", "triangle"):
            assert len(list((out / "shapes" / split / shape).glob("*.png"))) == count
    summaries = completed_runs(out / "sweep")
    assert methods_and_sparsities(summaries) == [("one_shot", 0.9), ("temperature_annealing", 0.9)]
    for s in summaries:
        assert s["config"]["data"]["root"] == str(out / "shapes")
        assert s["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert "one_shot" in stdout and "temperature_annealing" in stdout


def test_custom_method(tmp_path: Path) -> None:
    out, stdout = run_example("custom_method", tmp_path)
    summaries = completed_runs(out / "sweep")
    assert len(summaries) == 4  # two methods x two seeds
    targets = sorted(s["config"]["method"].get("_target_", "") for s in summaries)
    assert targets == ["", "", "my_method.UnitNormalisedMagnitude", "my_method.UnitNormalisedMagnitude"]
    for s in summaries:
        assert s["sparsity"] == pytest.approx(0.95, abs=1e-3)
    assert "my_method.UnitNormalisedMagnitude" in stdout and "vs one_shot" in stdout
