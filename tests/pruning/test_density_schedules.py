"""Annealing schedules defined in density space (issue 16): cubic, geometric, density_linear, and iterative's
geometric, against values written out by hand; the methods follow them per epoch and per step, log the
expected density they prescribe, and reduce to one-shot as tau0 -> 0 whatever the schedule.

The running example is the issue's: s = 0.99, tau0 = 0.5, n = 5, so d0 = 0.01 + 0.99 * 0.5 = 0.505 and
d_T = 0.01. Linear in p, the expected density goes 50.5, 40.6, 30.7, 20.8, 10.9, 1 % (the last step removes
~90 % of the weights in use); geometric, it falls by the same factor (0.01 / 0.505)^(1/5) = 0.456396 each
epoch: 50.5, 23.048, 10.519, 4.8008, 2.1911, 1 %.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import fixed_batches, lockstep, small
from torch import nn

from ssa_experiments.config.methods import ANNEAL_SCHEDULES, ITERATIVE_SCHEDULES
from ssa_experiments.config.schema import MethodConfig
from ssa_experiments.config.schema import PruningConfig as Pruning
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.sparsity_schedules import (
    ANNEAL_SHAPES,
    DENSITY_SCHEDULES,
    anneal_factor,
    density_at,
    density_factor,
    initial_density,
    iterative_sparsity,
    schedule_factor,
)

S, TAU0, N = 0.99, 0.5, 5
D0, DT = 0.505, 0.01
# geometric, by hand: d(k/5) = 0.505 * 0.456396^k; p = (d - 0.01) / 0.99
GEOMETRIC_D = [0.505, 0.230480, 0.105190, 0.0480083, 0.0219108, 0.01]
GEOMETRIC_P = [0.5, 0.222707, 0.0961516, 0.0383922, 0.0120311, 0.0]
# cubic, by hand: p = 0.5 (1 - k/5)^3 = 0.5 * (1, 0.512, 0.216, 0.064, 0.008, 0); d = 0.01 + 0.99 p
CUBIC_P = [0.5, 0.256, 0.108, 0.032, 0.004, 0.0]
CUBIC_D = [0.505, 0.26344, 0.11692, 0.04168, 0.01396, 0.01]
# linear in p, and so in d (the numbers)
LINEAR_D = [0.505, 0.406, 0.307, 0.208, 0.109, 0.01]


def test_schedule_lists_agree_with_the_config() -> None:
    assert (*ANNEAL_SHAPES, *DENSITY_SCHEDULES) == ANNEAL_SCHEDULES
    assert set(ITERATIVE_SCHEDULES) == {"linear", "polynomial", "cubic", "geometric"}


def test_initial_density_hand_value() -> None:
    assert initial_density(S, TAU0) == pytest.approx(D0)
    assert initial_density(0.9, 1.0) == pytest.approx(1.0)  # tau0 = 1: the dense network in expectation


def test_cubic_hand_values() -> None:
    p = [TAU0 * anneal_factor(k / N, "cubic") for k in range(N + 1)]
    assert p == pytest.approx(CUBIC_P)
    assert [(1 - S) + S * pk for pk in p] == pytest.approx(CUBIC_D)
    assert anneal_factor(0.5, "cubic") == 0.125


def test_geometric_hand_values_start_middle_end() -> None:
    d = [density_at(k / N, D0, DT, "geometric") for k in range(N + 1)]
    assert d == pytest.approx(GEOMETRIC_D, rel=1e-5)
    assert [d[k + 1] / d[k] for k in range(N)] == pytest.approx([0.456396] * N, rel=1e-5)  # equal ratios
    factors = [schedule_factor(k / N, "geometric", densities=(D0, DT)) for k in range(N + 1)]
    assert [TAU0 * f for f in factors] == pytest.approx(GEOMETRIC_P, rel=1e-5, abs=1e-12)
    assert factors[0] == 1.0 and factors[-1] == 0.0
    # per step: x = 1.5 / 5 = 0.3: d = 0.505^0.7 * 0.01^0.3 = 0.155706, p = 0.147177
    assert density_at(0.3, D0, DT, "geometric") == pytest.approx(0.155706, rel=1e-5)
    assert TAU0 * density_factor(0.3, "geometric", D0, DT) == pytest.approx(0.147177, rel=1e-5)


def test_density_linear_is_linear_in_p() -> None:
    """d is affine in p, so a straight line in d is a straight line in p: the issue's 50.5 -> 1 % numbers."""
    assert [density_at(k / N, D0, DT, "density_linear") for k in range(N + 1)] == pytest.approx(LINEAR_D)
    for d0, dt, x in itertools.product((0.505, 1.0, 0.3), (0.01, 0.2), (0.0, 0.13, 0.5, 0.97, 1.0)):
        assert density_factor(x, "density_linear", d0, dt) == pytest.approx(
            anneal_factor(x, "linear"), abs=1e-12
        )


@pytest.mark.parametrize("schedule", ANNEAL_SCHEDULES)
def test_every_schedule_goes_from_one_to_zero_monotonically(schedule: str) -> None:
    f = [schedule_factor(i / 40, schedule, 5.0, (D0, DT)) for i in range(41)]
    assert f[0] == pytest.approx(1.0) and f[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(f))
    assert all(0.0 <= v <= 1.0 for v in f)
    assert schedule_factor(1.4, schedule, 5.0, (D0, DT)) == schedule_factor(1.0, schedule, 5.0, (D0, DT))


def test_density_schedules_need_the_densities() -> None:
    with pytest.raises(ValueError, match="densities"):
        schedule_factor(0.5, "geometric")
    with pytest.raises(ValueError):
        density_at(0.5, D0, DT, "cosine")
    with pytest.raises(ValueError):
        anneal_factor(0.5, "geometric")  # a density curve is not a fixed shape
    assert density_factor(0.25, "geometric", 0.3, 0.3) == 0.75  # nothing to anneal: any factor will do


def test_iterative_geometric_hand_values() -> None:
    """d_e = 0.01^(e/5): 1, 0.398107, 0.158489, 0.0630957, 0.0251189, 0.01; each step keeps 39.81 % of what
    is left (a constant fraction removed), the target from epoch 5 on."""
    s = [iterative_sparsity(e, N, S, "geometric") for e in range(N + 2)]
    assert s == pytest.approx([0.0, 0.601893, 0.841511, 0.936904, 0.974881, 0.99, 0.99], rel=1e-5)
    assert [(1 - b) / (1 - a) for a, b in itertools.pairwise(s[: N + 1])] == pytest.approx(
        [0.398107] * N, rel=1e-5
    )


def test_iterative_cubic_is_polynomial() -> None:
    for t in (0, 0.5, 1, 2.25, 4, 5, 7):
        assert iterative_sparsity(t, 4, 0.8, "cubic") == iterative_sparsity(t, 4, 0.8, "polynomial")


@pytest.mark.parametrize(
    ("anneal", "iterative"), [("linear", "linear"), ("cubic", "cubic"), ("geometric", "geometric")]
)
def test_annealing_at_tau0_one_has_iterative_expected_density(anneal: str, iterative: str) -> None:
    """At tau0 = 1 (d0 = 1) annealing's expected sparsity is iterative's sparsity under the same name."""
    d0 = initial_density(S, 1.0)
    for x in (0.0, 0.2, 0.45, 0.8, 1.0):
        expected_sparsity = S * (1 - schedule_factor(x, anneal, densities=(d0, 1 - S)))
        assert expected_sparsity == pytest.approx(iterative_sparsity(x * N, N, S, iterative), abs=1e-12)


# -- the methods follow them ---------------------------------------------------------------------------------


def layer() -> nn.Sequential:
    """100 prunable weights with distinct magnitudes: at s = 0.99 the target keeps exactly one (removed
    fraction 0.99 exactly, so the logged density is d(t) to float precision)."""
    net = nn.Sequential(nn.Linear(10, 10))
    with torch.no_grad():
        net[0].weight.copy_(torch.linspace(0.01, 1.0, 100).view(10, 10) * torch.tensor([1.0, -1.0]).repeat(5))
    return net


def method(name: str, sparsity: float = S, **kw: object) -> PruningMethod:
    return make_method(MethodConfig(name=name, **kw), Pruning(keep_last_layer=False), sparsity, seed=0)


def removed_probs(m: PruningMethod) -> torch.Tensor:
    return torch.cat([m.prob[n][~m.keep[n]] for n in m.keep])


@pytest.mark.parametrize(
    ("schedule", "p", "d"), [("geometric", GEOMETRIC_P, GEOMETRIC_D), ("cubic", CUBIC_P, CUBIC_D)]
)
def test_temperature_annealing_follows_the_hand_values_and_logs_the_density(
    schedule: str, p: list[float], d: list[float]
) -> None:
    m = method("temperature_annealing", initial_temperature=TAU0, anneal_epochs=N, schedule=schedule)
    m.start(layer())
    assert m.densities == pytest.approx((D0, DT))
    for epoch in range(N):
        m.begin_epoch(epoch, 4)
        assert torch.allclose(removed_probs(m), torch.full((99,), p[epoch]), rtol=1e-5, atol=0)
        report = m.report()
        assert report["anneal_factor"] == pytest.approx(p[epoch] / TAU0, rel=1e-5)
        assert report["expected_train_sparsity"] == pytest.approx(1 - d[epoch], rel=1e-5)
        assert not m.at_target
    m.begin_epoch(N, 4)
    assert m.at_target and m.report()["expected_train_sparsity"] == pytest.approx(S)


def test_step_granularity_geometric_interpolates_within_the_epoch() -> None:
    m = method(
        "temperature_annealing",
        initial_temperature=TAU0,
        anneal_epochs=N,
        schedule="geometric",
        granularity="step",
    )
    m.start(layer())
    m.begin_epoch(1, 4)
    m.before_step(1, 2, 4)  # t = 1.5, x = 0.3
    assert torch.allclose(removed_probs(m), torch.full((99,), 0.147177), rtol=1e-5)
    assert m.report()["expected_train_sparsity"] == pytest.approx(1 - 0.155706, rel=1e-5)
    m.before_step(1, 3, 4)  # x = 0.35: between x = 0.3 and x = 0.4 (epoch 2, p = 0.0961516)
    assert 0.0961516 < float(removed_probs(m)[0]) < 0.147177


def test_random_annealing_geometric_scales_every_p_by_one_factor() -> None:
    """d0 from the actual mean p_i(0); mean p(t) follows (d(t) - d_T) / s, each p_i by the same factor."""
    m = method("random_annealing", anneal_epochs=N, schedule="geometric")
    m.start(layer())
    m.begin_epoch(0, 4)
    p0 = removed_probs(m).double()
    d0 = 0.01 + 0.99 * float(p0.mean())
    assert m.densities == pytest.approx((d0, DT))
    assert m.report()["expected_train_sparsity"] == pytest.approx(1 - d0, rel=1e-6)
    for epoch in (2, 4):
        m.begin_epoch(epoch, 4)
        d = d0 ** (1 - epoch / N) * DT ** (epoch / N)
        p = removed_probs(m).double()
        assert float(p.mean()) == pytest.approx((d - DT) / 0.99, rel=1e-5)
        ratio = p / p0
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)
        assert m.report()["expected_train_sparsity"] == pytest.approx(1 - d, rel=1e-5)


def test_dropconnect_geometric_density_rises_to_the_target() -> None:
    """r0 = 0.4, n = 4: d = d_T (1 - r) goes geometrically from 0.6 d_T to d_T, so r(t) = 1 - 0.6^(1 - x):
    0.4, 0.318268, 0.225403 (middle), 0.119888, then 0."""
    m = method(
        "dropconnect_target", sparsity=0.5, initial_drop_rate=0.4, anneal_epochs=4, schedule="geometric"
    )
    m.start(layer())
    for epoch, r in enumerate([0.4, 0.318268, 0.225403, 0.119888]):
        m.begin_epoch(epoch, 1)
        assert m.drop_rate == pytest.approx(r, rel=1e-5)
        assert m.expected_train_sparsity() == pytest.approx(1 - 0.5 * (1 - r), rel=1e-5)
    m.begin_epoch(4, 1)
    assert m.drop_rate == 0.0 and m.at_target


def test_soft_annealing_geometric_train_mask_is_p() -> None:
    m = method("soft_annealing", initial_temperature=TAU0, anneal_epochs=N, schedule="geometric")
    m.start(layer())
    m.begin_epoch(2, 3)
    mask = m.masks["0"].train_mask
    assert torch.allclose(mask[~m.keep["0"]], torch.full((99,), GEOMETRIC_P[2]), rtol=1e-5)
    assert bool((mask[m.keep["0"]] == 1).all())


@pytest.mark.parametrize("granularity", ["epoch", "step"])
@pytest.mark.parametrize("schedule", ANNEAL_SCHEDULES)
@pytest.mark.parametrize("name", ["temperature_annealing", "random_annealing"])
def test_tau0_to_zero_reduces_to_one_shot(name: str, schedule: str, granularity: str) -> None:
    """P(0) -> 0: the same train masks at every step and the same trajectory as one-shot (default SGD:
    Nesterov, weight decay), exactly (P <= 1e-9 and U < 1e-9 does not occur in float32), with the density
    schedules too (d0 -> d_T, whose factor stays in [0, 1])."""
    limit = (
        {"initial_temperature": 1e-9}
        if name == "temperature_annealing"
        else {"max_initial_probability": 1e-9}
    )
    nets = {"ssa": small(), "one": small()}
    methods = {
        "ssa": method(name, 0.5, anneal_epochs=2, schedule=schedule, granularity=granularity, **limit),
        "one": method("one_shot", 0.5),
    }
    for epoch, step in lockstep(nets, methods, fixed_batches(3, 3, seed=1), 0.1):
        for n in methods["one"].masks:
            assert torch.equal(methods["ssa"].masks[n].train_mask, methods["one"].masks[n].train_mask)
            assert torch.equal(methods["ssa"].modules[n].weight, methods["one"].modules[n].weight)
        if step == 2:  # the epoch's last
            assert methods["ssa"].at_target == (epoch >= 2)
    for a, b in zip(nets["ssa"].state_dict().values(), nets["one"].state_dict().values(), strict=True):
        assert torch.equal(a.float(), b.float())
