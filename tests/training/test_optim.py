"""LR schedules: equal to PyTorch's OneCycleLR, and hand-computed values for the others."""

from __future__ import annotations

import pytest
import torch

from ssa_experiments.config.schema import LrConfig, OptimizerConfig
from ssa_experiments.training.lr import lr_at
from ssa_experiments.training.optim import make_optimizer


@pytest.mark.parametrize("total", [50, 97, 1000])
def test_one_cycle_equals_torch(total: int) -> None:
    cfg = LrConfig(name="one_cycle", lr=0.1, pct_start=0.1, div_factor=100, final_div_factor=1e4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=0.1,
        total_steps=total,
        pct_start=0.1,
        div_factor=100,
        final_div_factor=1e4,
        cycle_momentum=False,
    )
    for step in range(total):
        assert lr_at(step, total, cfg) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        opt.step()
        sched.step()
    assert lr_at(0, total, cfg) == pytest.approx(0.001)  # starts at max/100


def test_parent_swa_style_hand_values() -> None:
    cfg = LrConfig(name="parent_swa_style", lr=0.1, decay_start=0.5, decay_end=0.9, final_ratio=0.01)
    assert lr_at(0, 100, cfg) == 0.1
    assert lr_at(50, 100, cfg) == 0.1
    assert lr_at(70, 100, cfg) == pytest.approx(0.1 * (1 - 0.99 * 0.5))  # halfway down: 0.0505
    assert lr_at(90, 100, cfg) == pytest.approx(0.001)
    assert lr_at(99, 100, cfg) == pytest.approx(0.001)


def test_step_cosine_constant() -> None:
    step = LrConfig(name="step", lr=0.1, milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_at(s, 100, step) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    cos = LrConfig(name="cosine", lr=0.2)
    assert lr_at(0, 100, cos) == pytest.approx(0.2)
    assert lr_at(50, 100, cos) == pytest.approx(0.1)
    assert lr_at(0, 100, LrConfig(name="constant", lr=0.3)) == 0.3


def test_optimizers() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer(params, OptimizerConfig(), 0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["weight_decay"] == 5e-4
    adamw = make_optimizer(params, OptimizerConfig(name="adamw", weight_decay=0.05), 1e-3)
    assert isinstance(adamw, torch.optim.AdamW)
