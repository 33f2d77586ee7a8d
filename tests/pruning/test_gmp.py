"""Gradual magnitude pruning (issue 15): ``method=iterative`` with ``method.prune_every_steps = k > 0`` prunes
every k training steps, at the iterative schedule's sparsity at fractional progress, and reaches the target at
the start of epoch n exactly, as every other method.

Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - t/n)^3 with s_i = 0, t counted in steps / steps_per_epoch.
With s_f = 0.9, n = 2 epochs of 4 steps (x = g / 8 at global step g), by hand:
g = 2: 0.9 (1 - 0.75^3) = 0.5203125; g = 4: 0.9 (1 - 0.5^3) = 0.7875; g = 6: 0.9 (1 - 0.25^3) = 0.8859375.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from helpers import assert_resumes_identically, compose_config
from torch import nn

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError, MethodConfig, PruningConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.sparsity_schedules import is_pruning_step, iterative_sparsity, step_epoch
from ssa_experiments.store.files import read_metrics
from ssa_experiments.training.run import run

SF, N, SPE = 0.9, 2, 4
WEIGHTS = 1000  # one prunable layer: the mask's sparsity is round(s * 1000) / 1000


def test_zhu_gupta_at_fractional_progress_hand_values() -> None:
    expected = {0: 0.0, 1: 0.2970703125, 2: 0.5203125, 4: 0.7875, 6: 0.8859375, 8: 0.9}  # g: s_g
    for g, s in expected.items():
        assert iterative_sparsity(step_epoch(g // SPE, g % SPE, SPE), N, SF, "polynomial") == pytest.approx(s)
    assert step_epoch(3, 0, 7) == 3  # exactly the epoch at step 0: per-epoch pruning is a special case


def test_pruning_steps_are_every_k_global_steps() -> None:
    grid = [(e, s) for e in range(3) for s in range(SPE) if is_pruning_step(e, s, SPE, 3)]
    assert grid == [(0, 0), (0, 3), (1, 2), (2, 1)]  # global steps 0, 3, 6, 9


def layer() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 50))


def method(sparsity: float = SF, **kw: object) -> PruningMethod:
    cfg = MethodConfig(name="iterative", anneal_epochs=N, **kw)
    return make_method(cfg, PruningConfig(keep_last_layer=False), sparsity, seed=0)


def drive(
    m: PruningMethod, epochs: int = 4, seed: int = 1
) -> list[tuple[int, int, float, torch.Tensor, bool]]:
    """Run the hooks as the training loop does, moving the weights between steps as training would; returns
    (epoch, step, sparsity, mask, at_target) at every step, after ``before_step``."""
    net = layer()
    m.start(net)
    noise = torch.Generator().manual_seed(seed)
    seen = []
    for epoch in range(epochs):
        m.begin_epoch(epoch, SPE)
        for step in range(SPE):
            m.before_step(epoch, step, SPE)
            mask = m.masks["0"].eval_mask.clone()
            seen.append((epoch, step, m.report()["sparsity"], mask, m.at_target))
            with torch.no_grad():
                w = dense_weight(m.modules["0"])
                w.add_(torch.randn(w.shape, generator=noise) * 0.05).mul_(m.masks["0"].eval_mask)
    return seen


@pytest.mark.parametrize("schedule", ["polynomial", "cubic"])
def test_gmp_sparsity_at_every_step_is_zhu_gupta(schedule: str) -> None:
    """k = 2: steps at g = 0 (dense), 2, 4, 6, then the target at the start of epoch 2; masks only shrink."""
    by_hand = [0.0, 0.0, 0.5203125, 0.5203125, 0.7875, 0.7875, 0.8859375, 0.8859375] + [0.9] * 8
    seen = drive(method(schedule=schedule, prune_every_steps=2))
    for (epoch, step, sparsity, _, at_target), s in zip(seen, by_hand, strict=True):
        assert abs(sparsity - s) <= 0.5 / WEIGHTS + 1e-12, (epoch, step)
        assert at_target == (epoch >= N)
    for (*_, before, _), (*_, after, _) in itertools.pairwise(seen):
        assert bool((after <= before).all())  # only ever removes


def test_gmp_reaches_the_target_at_epoch_n_off_the_grid() -> None:
    """k = 3 does not divide n * steps_per_epoch = 8: steps at g = 0, 3, 6; the target at g = 8 anyway."""
    seen = drive(method(schedule="polynomial", prune_every_steps=3))
    sparsities = [s for _, _, s, _, _ in seen]
    s3, s6 = SF * (1 - (1 - 3 / 8) ** 3), SF * (1 - (1 - 6 / 8) ** 3)  # 0.680273..., 0.8859375
    expected = [0.0] * 3 + [s3] * 3 + [s6] * 2 + [SF] * 8
    assert sparsities == pytest.approx(expected, abs=0.5 / WEIGHTS + 1e-12)
    assert [a for *_, a in seen] == [False] * 8 + [True] * 8


def test_gmp_geometric_per_step() -> None:
    """d_g = 0.1^(g/8): 1 - 0.1^0.25 = 0.437659 at g = 2 (k = 2), 1 - 0.1^0.5 = 0.683772 at g = 4."""
    seen = drive(method(schedule="geometric", prune_every_steps=2))
    assert seen[2][2] == pytest.approx(0.437659, abs=0.5 / WEIGHTS)
    assert seen[4][2] == pytest.approx(0.683772, abs=0.5 / WEIGHTS)
    assert seen[8][2] == pytest.approx(SF)


def test_k_equal_to_steps_per_epoch_is_per_epoch_pruning() -> None:
    """Pruning before step 0 of each epoch is pruning at the start of the epoch: identical masks at every
    step to ``prune_every_steps=0`` (the default)."""
    per_epoch, gmp = (
        drive(method(schedule="polynomial")),
        drive(method(schedule="polynomial", prune_every_steps=SPE)),
    )
    for a, b in zip(per_epoch, gmp, strict=True):
        assert a[2] == b[2] and torch.equal(a[3], b[3]) and a[4] == b[4]


# -- config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["method=iterative", "method.prune_every_steps=-1"],
        ["method=temperature_annealing", "method.prune_every_steps=10"],
        ["method=one_shot", "method.prune_every_steps=10"],
    ],
)
def test_bad_prune_every_steps_is_refused(overrides: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose_config(["output_dir=/tmp/unused", *overrides]))
    assert info.value.field_name == "method.prune_every_steps"


def test_identity_holds_prune_every_steps_and_one_name_for_cubic() -> None:
    def ident(*overrides: str) -> dict:
        cfg = compose_config(["output_dir=/tmp/unused", "method=iterative", *overrides])
        validate(cfg)
        return run_identity(cfg)

    base = ident()
    assert "prune_every_steps" not in base["method"]  # 0: the identity (and store key) of earlier runs
    assert ident("method.prune_every_steps=3")["method"]["prune_every_steps"] == 3
    assert ident("method.schedule=cubic") == ident("method.schedule=polynomial") != base
    assert ident("method.schedule=geometric") != base


# -- one real run ------------------------------------------------------------------------------------------


def test_gmp_end_to_end_killed_mid_pruning_resumes_identically(make_cfg, tmp_path: Path) -> None:
    overrides = (
        "method=iterative", "method.schedule=cubic", "method.prune_every_steps=2", "method.anneal_epochs=2",
        "sparsity=0.8", "train.max_steps_per_epoch=3", "parent.epochs=1", "data.num_train=256",
        "eval.bn_recalibration_batches=2",
    )  # fmt: skip
    reference = run(make_cfg(*overrides, run_dir="reference"))
    assert reference["status"] == "completed" and reference["epochs_at_target"] == 1
    rows = read_metrics(tmp_path / "reference")
    assert [r["at_target"] for r in rows] == [False, False, True]
    # the mask in force at the end of each epoch: the grid's last step (g = 2 in epoch 0; g = 4 in epoch 1,
    # x = 4/6), then the target from epoch 2
    total = reference["prunable_params"]
    for row, s in zip(rows, [0.8 * (1 - (1 - 2 / 6) ** 3), 0.8 * (1 - (1 - 4 / 6) ** 3), 0.8], strict=True):
        assert abs(row["sparsity"] - s) <= 0.5 / total + 1e-9
    assert_resumes_identically(make_cfg, tmp_path, overrides, reference, kill_epoch=2)
