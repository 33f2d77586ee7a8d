"""The paper's data and models through the real entry point, on generated files in the real formats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_data import make_cifar10, make_tiny_imagenet

from ssa_experiments.training.run import run

ONE_STEP_PER_EPOCH = [
    "train.batch_size=8", "train.max_steps_per_epoch=1", "parent.epochs=1", "train.finetune_epochs=2",
    "method.anneal_epochs=1",
]  # fmt: skip


def test_cifar10_resnet18_temperature_annealing_one_step(make_cfg, tmp_path: Path) -> None:
    make_cifar10(tmp_path / "data")
    cfg = make_cfg("data=cifar10", f"data.root={tmp_path / 'data'}", "model=resnet18",
                   "method=temperature_annealing", "sparsity=0.95", *ONE_STEP_PER_EPOCH)  # fmt: skip
    summary = run(cfg)
    assert summary["status"] == "completed" and summary["steps"] == 2  # anneal 1 epoch, 1 on the target
    assert summary["params"] == 11_173_962 and summary["sparsity"] == pytest.approx(0.95, abs=1e-4)


@pytest.mark.parametrize("pipeline", ["device", "torch"])
def test_tiny_imagenet_small_cnn(make_cfg, tmp_path: Path, pipeline: str) -> None:
    make_tiny_imagenet(tmp_path / "data")
    cfg = make_cfg("data=tiny_imagenet", f"data.root={tmp_path / 'data'}", f"data.pipeline={pipeline}",
                   "data.num_workers=0", "method=one_shot", *ONE_STEP_PER_EPOCH)  # fmt: skip
    summary = run(cfg)
    assert summary["status"] == "completed" and summary["data"] == "tiny_imagenet"


@pytest.mark.slow
def test_cli_missing_cifar_names_the_path(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "data=cifar10", "model=resnet18",
         "method=temperature_annealing", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: data.root:") and "cifar-10-batches-py" in line
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / "run").exists()
