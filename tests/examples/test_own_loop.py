"""examples/own_training_loop.py: runs as one command, and reproduces the Hydra runner bit for bit.

The example trains its own dense parent (its own model, optimizer, LR function and loop, the library's
batches) and fine-tunes it through ``Pruner``; the runner's ``run(cfg)`` of the same setting
(``runner_overrides``) trains its parent from the same seed in its own loop and drives the method through
the same ``Pruner``. Every exported weight, the parent's and the pruned network's test accuracy, and the
sparsity must be equal, not close: a difference in any step (data order, initialisation, LR, the order of
the pruning hooks, the masked-decay hook) would show."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from helpers import REPO, compose_config

EXAMPLE = REPO / "examples" / "own_training_loop.py"
TINY = ["--parent-epochs", "2", "--epochs", "3", "--anneal-epochs", "2", "--width", "16"]


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("own_training_loop", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("temperature_annealing", []),
        # masked weight decay: the pruner's optimizer hook and the split of the user's own SGD
        ("random_annealing", []),
        ("iterative", []),
    ],
)
def test_the_example_reproduces_the_runner_bit_for_bit(tmp_path: Path, method: str, extra: list[str]) -> None:
    from ssa_experiments.store.files import read_metrics
    from ssa_experiments.training.run import run

    ex = example()
    settings = ex.parse([*TINY, "--method", method, *extra])
    if method == "random_annealing":
        settings.options = {"decay_sampled_out": False}
    mine = ex.main(settings)
    cfg = compose_config([
        *ex.runner_overrides(settings), f"output_dir={tmp_path / 'run'}", f"parent.cache_dir={tmp_path / 'c'}"
    ])  # fmt: skip
    summary = run(cfg)

    assert summary["status"] == "completed"
    assert summary["parent"]["test_acc"] == mine.parent_test_acc
    assert summary["test_acc"] == mine.test_acc
    assert read_metrics(tmp_path / "run")[-1]["sparsity"] == mine.report["sparsity"] == summary["sparsity"]
    theirs = torch.load(tmp_path / "run" / "model.pt")
    # the runner's MLP has Dropout(0) layers, so its layer indices differ: the tensors compare in order
    assert [v.shape for v in theirs.values()] == [v.shape for v in mine.state_dict.values()]
    assert all(torch.equal(a, b) for a, b in zip(theirs.values(), mine.state_dict.values(), strict=True))
    zeros = sum(int((v == 0).sum()) for v in mine.state_dict.values())
    assert zeros >= mine.report["prunable_params"] * settings.sparsity - 1  # truly sparse


def test_the_example_runs_as_one_command() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *TINY], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "temperature_annealing at sparsity 0.9: test accuracy" in done.stdout
    assert "sparsity 0.9000" in done.stdout
    assert "python -m ssa_experiments.cli.train data=digits model=mlp" in done.stdout
