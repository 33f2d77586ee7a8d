"""Layer collapse (a target that removes every weight of a layer): a clear failure naming the layer unless
``pruning.allow_layer_collapse``, and recorded in the summary, also across a resume and through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import killed_run

from ssa_experiments.data.datasets import load_data
from ssa_experiments.models import build_model
from ssa_experiments.pruning.errors import LayerCollapse
from ssa_experiments.training.run import run


def _parent_with_a_tiny_first_layer(make_cfg, tmp_path: Path) -> Path:
    """A parent whose first conv has tiny weights: global magnitude pruning at 50% removes all of it."""
    cfg = make_cfg()
    data = load_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    state = model.state_dict()
    state["0.weight"] = state["0.weight"] * 1e-6
    torch.save(state, tmp_path / "tiny.pt")
    return tmp_path / "tiny.pt"


def test_layer_collapse_fails_unless_allowed(make_cfg, tmp_path) -> None:
    parent = _parent_with_a_tiny_first_layer(make_cfg, tmp_path)
    with pytest.raises(LayerCollapse, match="allow_layer_collapse") as info:
        run(make_cfg("method=one_shot", "sparsity=0.5", f"parent.path={parent}", run_dir="a"))
    assert info.value.layers == ["0"]  # the record keeps the module name; the message says what it is
    assert re.search(r'every weight of layer "0" \(Conv2d \d+→\d+, \d+×\d+\)', str(info.value))
    summary = run(
        make_cfg(
            "method=one_shot", "sparsity=0.5", f"parent.path={parent}", "pruning.allow_layer_collapse=true",
            run_dir="b",
        )
    )  # fmt: skip
    assert summary["status"] == "completed" and summary["collapsed_layers"] == ["0"]
    assert summary["layer_sparsity"]["0"] == 1.0


def test_collapse_seen_by_an_earlier_iterative_step_survives_a_resume(make_cfg, tmp_path) -> None:
    parent = _parent_with_a_tiny_first_layer(make_cfg, tmp_path)
    overrides = (
        "method=iterative",
        "method.anneal_epochs=1",
        "sparsity=0.5",
        f"parent.path={parent}",
        "pruning.allow_layer_collapse=true",
        "lr.lr=1e-6",
    )  # fmt: skip (the tiny layer stays tiny)
    killed_run(
        make_cfg(*overrides), 3
    )  # after the last pruning step (epoch 1): nothing prunes again after resume
    assert run(make_cfg(*overrides))["collapsed_layers"] == ["0"]


@pytest.mark.slow
def test_layer_collapse_cli_one_line_and_recorded(make_cfg, tmp_path) -> None:
    parent = _parent_with_a_tiny_first_layer(make_cfg, tmp_path)
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "data=synthetic", "model.width=8", "device=cpu",
         "method=one_shot", "sparsity=0.5", f"parent.path={parent}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the target removes every weight of layer")
    summary = json.loads((run_dir / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["collapsed_layers"] == ["0"]


def test_a_collapsed_layer_is_described_by_name_kind_and_shape() -> None:
    from torch import nn

    from ssa_experiments.pruning.methods.base import describe_layer

    described = [describe_layer("4", nn.Linear(64, 10)), describe_layer("head.norm", nn.LayerNorm(4))]
    assert described == ['"4" (Linear 64→10)', '"head.norm" (LayerNorm)']
    assert 'of layers "4" (Linear 64→10), "head.norm"' in str(LayerCollapse(["4", "head.norm"], described))
