"""Dynamic sparse training (SET, RigL): the update's pure rules, the method on a small MLP step by step, and
tiny end-to-end runs (sparsity constant in every row, a killed run resumed bit for bit)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import assert_resumes_identically, fixed_batches, small, start_with_optimizer
from torch import nn

from ssa_experiments.config.schema import ConfigError, MethodConfig, PruningConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.methods.dst import DynamicSparse
from ssa_experiments.pruning.regrowth import (
    drop_and_grow,
    drop_fraction_at,
    end_step,
    is_update_step,
    last_update_step,
    moved_count,
)
from ssa_experiments.training.run import run

# -- the pure rules ----------------------------------------------------------------------------------------


def test_cosine_drop_fraction_by_hand() -> None:
    assert drop_fraction_at(0, 100, 0.3, "cosine") == pytest.approx(0.3)
    assert drop_fraction_at(50, 100, 0.3, "cosine") == pytest.approx(0.15)
    assert drop_fraction_at(25, 100, 0.3, "cosine") == pytest.approx(0.15 * (1 + math.sqrt(0.5)))
    assert drop_fraction_at(100, 100, 0.3, "cosine") == 0.0
    assert drop_fraction_at(40, 100, 0.3, "constant") == 0.3
    assert drop_fraction_at(120, 100, 0.3, "constant") == 0.0


def test_update_steps_every_delta_t_until_the_stop_step() -> None:
    end = end_step(100, 0.75)
    assert end == 75
    steps = [t for t in range(100) if is_update_step(t, 10, end)]
    assert steps == [10, 20, 30, 40, 50, 60, 70]
    assert last_update_step(10, end) == 70
    assert last_update_step(10, 70) == 60  # step 70 = end: no update there
    assert last_update_step(100, 50) == 0  # none at all


def test_moved_count_floors_and_is_capped_by_the_inactive_count() -> None:
    assert moved_count(10, 90, 0.3) == 3
    assert moved_count(10, 90, 0.29) == 2
    assert moved_count(90, 10, 0.3) == 10  # 27 to drop, only 10 places to grow into


def test_drop_smallest_grow_largest_never_the_dropped_and_count_kept() -> None:
    keep = torch.tensor([True, True, True, True, False, False, False, False])
    w = torch.tensor([0.5, -0.1, 0.4, -0.2, 0.0, 0.0, 0.0, 0.0])
    # the dropped ones (|w| 0.1, 0.2) have the highest grow scores: still never grown back
    grow = torch.tensor([0.0, 9.0, 0.0, 8.0, 1.0, 3.0, 2.0, 0.5])
    new, dropped, grown = drop_and_grow(keep, w.abs(), grow, 0.5)
    assert dropped.tolist() == [False, True, False, True, False, False, False, False]
    assert grown.tolist() == [False, False, False, False, False, True, True, False]
    assert new.tolist() == [True, False, True, False, False, True, True, False]
    assert int(new.sum()) == int(keep.sum())


def test_nothing_moves_at_a_zero_fraction() -> None:
    keep = torch.tensor([True, False, True, False])
    new, dropped, grown = drop_and_grow(keep, torch.rand(4), torch.rand(4), 0.0)
    assert torch.equal(new, keep) and not dropped.any() and not grown.any()


# -- the method, step by step on a small MLP ----------------------------------------------------------------


def dst(name: str, sparsity: float = 0.8, **kw: object) -> DynamicSparse:
    cfg = MethodConfig(name=name, **{"update_every": 2, "drop_fraction": 0.3, "end_fraction": 1.0, **kw})
    return make_method(cfg, PruningConfig(keep_last_layer=False, scope="layerwise"), sparsity, seed=0)  # type: ignore[return-value]


def train(m: DynamicSparse, net: nn.Module, epochs: int = 2, steps: int = 5, check=None) -> None:
    opt = start_with_optimizer(m, net, 0.05)
    m.plan(epochs, steps)
    for epoch, batches in enumerate(fixed_batches(steps, epochs)):
        m.begin_epoch(epoch, steps)
        for step, (x, y) in enumerate(batches):
            m.before_step(epoch, step, steps)
            before = {n: mk.eval_mask.clone() for n, mk in m.masks.items()}
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            m.before_optimizer_step(0.05)
            opt.step()
            if check is not None:
                check(m, opt, before)


@pytest.mark.parametrize("name", ["set", "rigl"])
def test_sparsity_exactly_constant_per_layer_and_grown_weights_start_at_zero(name: str) -> None:
    net = small()
    m = dst(name)
    counts: dict[str, int] = {}
    moved_steps = []

    def check(m: DynamicSparse, opt: torch.optim.Optimizer, before: dict[str, torch.Tensor]) -> None:
        for n, mk in m.masks.items():
            keep = mk.eval_mask
            assert torch.equal(mk.train_mask.bool(), keep)
            assert int(keep.sum()) == counts.setdefault(n, int(before[n].sum()))  # every layer's count
            w = dense_weight(m.modules[n])
            assert not w[~keep].any()  # inactive weights exactly zero, also just after an update
            grown = keep & ~before[n]
            if grown.any():
                moved_steps.append(m.step)
                assert not w[grown].any()  # grown weights start at zero ...
                state = opt.state[w]["momentum_buffer"]
                assert not state[grown].any() and not state[~keep].any()  # ... with no momentum

    train(m, net, check=check)
    # updates at steps 2, 4, 6, 8 of 10; at step 8 α = 0.15 (1 + cos 0.8π) = 0.029 moves floor(0.029 x 26)
    # = 0 of the first layer's 26 active weights and none of the second's 13
    assert m.updates == 4 and sorted(set(moved_steps)) == [2, 4, 6]
    assert m.report()["sparsity"] == pytest.approx(0.8, abs=1e-2)


def test_rigl_grows_the_largest_dense_gradient_connections() -> None:
    """A hand-set dense gradient: the captured gradient of the masked weight is replaced before the update."""
    net = small()
    m = dst("rigl", drop_fraction=0.25)
    start_with_optimizer(m, net, 0.05)
    m.plan(1, 10)
    m.begin_epoch(0, 10)
    m.before_step(0, 2, 10)  # an update step: the hooks are in place
    x, y = fixed_batches(1, 1)[0][0]
    nn.functional.cross_entropy(net.train()(x), y).backward()
    assert set(m.dense_grads) == set(m.masks)
    hand = {n: torch.zeros_like(g) for n, g in m.dense_grads.items()}
    expected = {}
    for n, mk in m.masks.items():
        keep = mk.eval_mask.flatten()
        inactive = (~keep).nonzero().flatten()
        n_move = math.floor(drop_fraction_at(2, 10, 0.25, "cosine") * int(keep.sum()))
        chosen = inactive[torch.randperm(len(inactive), generator=torch.Generator().manual_seed(1))[:n_move]]
        flat = hand[n].view(-1)
        flat[chosen] = torch.linspace(5.0, 6.0, n_move)  # the largest gradients, at chosen inactive places
        flat[keep] = 100.0  # active connections are never growth candidates, whatever their gradient
        expected[n] = set(chosen.tolist())
    m.dense_grads = hand
    before = {n: mk.eval_mask.clone() for n, mk in m.masks.items()}
    m.before_optimizer_step(0.05)
    for n, mk in m.masks.items():
        grown = (mk.eval_mask & ~before[n]).flatten().nonzero().flatten().tolist()
        assert set(grown) == expected[n] and expected[n]


def test_rigl_captures_the_dense_gradient_of_the_masked_weight() -> None:
    """At inactive connections the stored weight's gradient is zero; the captured one is ∂L/∂(w ⊙ m)."""
    net = small()
    m = dst("rigl")
    start_with_optimizer(m, net, 0.05)
    m.plan(1, 10)
    m.begin_epoch(0, 10)
    m.before_step(0, 2, 10)
    x, y = fixed_batches(1, 1)[0][0]
    nn.functional.cross_entropy(net.train()(x), y).backward()
    captured = {n: g.clone() for n, g in m.dense_grads.items()}
    # the same loss through a plain copy whose weights are the masked ones: its gradient is the dense one
    plain = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for i in (0, 2):
            plain[i].weight.copy_(net[i].weight)  # original * mask
            plain[i].bias.copy_(net[i].bias)
    nn.functional.cross_entropy(plain(x), y).backward()
    for n, i in (("0", 0), ("2", 2)):
        assert torch.allclose(captured[n], plain[i].weight.grad)
        inactive = ~m.masks[n].eval_mask
        assert captured[n][inactive].abs().sum() > 0  # non-zero where the stored weight's gradient is 0
        assert not dense_weight(m.modules[n]).grad[inactive].any()
    m.before_optimizer_step(0.05)
    assert not m.handles  # hooks removed after the update step


def test_set_draws_are_reproducible_and_differ_by_seed() -> None:
    def masks(seed: int) -> list[torch.Tensor]:
        net = small()
        cfg = MethodConfig(name="set", update_every=2, drop_fraction=0.3, end_fraction=1.0)
        m = make_method(cfg, PruningConfig(keep_last_layer=False, scope="layerwise"), 0.8, seed=seed)
        train(m, net)
        return [mk.eval_mask.clone() for mk in m.masks.values()]

    a, b, c = masks(0), masks(0), masks(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_at_target_once_no_update_is_left() -> None:
    m = dst("set", end_fraction=0.5)
    start_with_optimizer(m, small(), 0.05)
    m.plan(4, 5)  # 20 steps, end 10: updates at 2, 4, 6, 8
    m.begin_epoch(1, 5)  # next step 5: 6 and 8 are left
    assert not m.at_target
    m.begin_epoch(2, 5)  # next step 10
    assert m.at_target


# -- validation and end-to-end runs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("method.update_every=0", "method.update_every"),
        ("method.drop_fraction=1.0", "method.drop_fraction"),
        ("method.drop_fraction=0", "method.drop_fraction"),
        ("method.drop_schedule=linear", "method.drop_schedule"),
        ("method.end_fraction=0", "method.end_fraction"),
        ("method.end_fraction=1.5", "method.end_fraction"),
    ],
)
def test_bad_dst_values_name_their_field(make_cfg, override: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=rigl", override))
    assert err.value.field_name == field


def test_dst_keys_are_not_part_of_other_methods_identity(make_cfg) -> None:
    from ssa_experiments.config.identity import run_identity

    a = run_identity(make_cfg("method=one_shot"))
    assert run_identity(make_cfg("method=one_shot", "method.update_every=7")) == a
    assert "update_every" not in a["method"]
    r = run_identity(make_cfg("method=rigl"))
    assert r["method"] == {
        "name": "rigl", "update_every": 100, "drop_fraction": 0.3, "drop_schedule": "cosine",
        "end_fraction": 0.75,
    }  # fmt: skip
    assert run_identity(make_cfg("method=set"))["method"]["name"] == "set"


RUN = ("method.update_every=3", "method.end_fraction=0.8", "sparsity=0.9", "train.finetune_epochs=4")


@pytest.mark.parametrize("name", ["set", "rigl"])
def test_tiny_run_keeps_the_sparsity_and_moves_connections(make_cfg, tmp_path: Path, name: str) -> None:
    summary = run(make_cfg(f"method={name}", *RUN))
    assert summary["status"] == "completed"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len({r["sparsity"] for r in rows}) == 1  # exactly the same in every epoch
    assert rows[0]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert rows[-1]["mask_updates"] > 0 and rows[-1]["connections_regrown"] > 0
    assert [r["at_target"] for r in rows][-1] and not rows[0]["at_target"]
    model = torch.load(tmp_path / "run" / "model.pt")
    zeros = sum(int((v == 0).sum()) for k, v in model.items() if k.endswith("weight") and v.dim() > 1)
    assert zeros > 0


@pytest.mark.parametrize("name", ["set", "rigl"])
def test_a_killed_dst_run_resumes_bit_identically(make_cfg, tmp_path: Path, name: str) -> None:
    overrides = (f"method={name}", *RUN)
    reference = run(make_cfg(*overrides, run_dir="reference"))
    assert_resumes_identically(make_cfg, tmp_path, overrides, reference, kill_epoch=3)
