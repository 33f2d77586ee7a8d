"""Training FLOPs: counted forward FLOPs against hand counts, the prunable/rest split, density scaling, and
the parent / child / dense-ensemble accounting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssa_experiments.ensembles import flops


def test_linear_model_forward_flops_by_hand() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    f = flops.forward_flops(model, (5, 12))  # default prunable layers: the head stays dense
    assert f.prunable == {"1": 2 * 12 * 7}  # 2 · in · out per sample
    assert f.rest == 2 * 7 * 3
    assert f.dense == 2 * 12 * 7 + 2 * 7 * 3


def test_conv_flops_and_explicit_prunable_layers() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )
    f = flops.forward_flops(model, (2, 3, 8, 8), prunable=["0", "5"])
    assert f.prunable == {"0": 2 * 4 * 3 * 9 * 8 * 8, "5": 2 * 4 * 10}
    assert f.rest == 0  # BatchNorm, ReLU, pooling: not counted
    with pytest.raises(ValueError, match="no module named"):
        flops.forward_flops(model, (2, 3, 8, 8), prunable=["7"])


def test_model_is_left_untouched() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    before = [p.clone() for p in model.parameters()]
    flops.forward_flops(model, (3, 4))
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_attention_in_projection_counted_as_prunable() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.attn(x, x, x, need_weights=False)[0].mean(1))

    f = flops.forward_flops(Net(), (2, 5, 16))  # 5 tokens per sample
    assert f.prunable["attn"] == 2 * 5 * 16 * 48  # q/k/v in-projection
    assert f.prunable["attn.out_proj"] == 2 * 5 * 16 * 16
    assert f.rest > 2 * 16 * 3  # the head plus the attention scores (activations × activations)


def test_density_scales_only_the_prunable_layers() -> None:
    f = flops.ForwardFlops(prunable={"a": 100.0, "b": 300.0}, rest=50.0)
    assert f.at_density(1.0) == f.dense == 450.0
    assert f.at_density(0.1) == pytest.approx(50.0 + 40.0)
    assert f.at_density({"a": 0.5, "b": 0.0}) == pytest.approx(50.0 + 50.0)
    assert f.at_density({"a": 0.5}) == pytest.approx(50.0 + 50.0 + 300.0)  # a missing layer is dense


def test_parent_child_and_dense_ensemble_accounting() -> None:
    f = flops.ForwardFlops(prunable={"a": 100.0}, rest=20.0)
    assert flops.training_flops(10.0, steps=4, batch_size=8) == 3 * 10 * 4 * 8
    parent = flops.parent_flops(f, epochs=10, steps_per_epoch=5, batch_size=8)
    assert parent == 3 * 120 * 50 * 8
    assert flops.dense_ensemble_flops(f, 6, 10, 5, 8) == 6 * parent
    child = flops.child_flops(f, steps=20, batch_size=8, density=0.5)
    assert child == 3 * (20 + 50) * 20 * 8


def test_mean_expected_density_is_step_weighted() -> None:
    rows = [
        {"epoch": 1, "step": 10, "expected_train_sparsity": 0.5},
        {"epoch": 2, "step": 20, "expected_train_sparsity": 0.7},
        {"epoch": 3, "step": 40, "expected_train_sparsity": 0.9},
    ]
    assert flops.mean_expected_density(rows) == pytest.approx((10 * 0.5 + 10 * 0.3 + 20 * 0.1) / 40)
    assert flops.mean_expected_density([{"epoch": 1, "test_acc": 1.0}]) is None


def test_child_density_from_summary_and_metrics() -> None:
    rows = [{"epoch": 1, "step": 5, "expected_train_sparsity": 0.4}, {"epoch": 2, "step": 10,
             "expected_train_sparsity": 0.8}]  # fmt: skip
    assert flops.child_density({"sparsity": 0.8}) == pytest.approx(0.2)  # no metrics: final density
    assert flops.child_density({"sparsity": 0.8}, rows) == pytest.approx(0.4)  # mean of 0.6 and 0.2
    # per layer: each layer keeps the same fraction q of its removed weights; q = (0.4 - 0.2) / 0.8
    layers = flops.child_density({"sparsity": 0.8, "layer_sparsity": {"a": 0.9, "b": 0.5}}, rows)
    assert layers == pytest.approx({"a": 0.1 + 0.9 * 0.25, "b": 0.5 + 0.5 * 0.25})
    final = flops.child_density({"sparsity": 0.8, "layer_sparsity": {"a": 0.9, "b": 0.5}})
    assert final == pytest.approx({"a": 0.1, "b": 0.5})


def test_run_child_flops_reads_steps_batch_and_density() -> None:
    f = flops.ForwardFlops(prunable={"a": 100.0}, rest=20.0)
    summary = {"steps": 30, "sparsity": 0.9, "config": {"train": {"batch_size": 4}}}
    assert flops.run_child_flops(f, summary) == pytest.approx(3 * (20 + 10) * 30 * 4)
