"""Pruning methods: annealed probabilities, sampled masks, determinism after annealing, gradients."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import compose_config
from torch import nn

from ssa_experiments.config.methods import REGISTRY, MethodSpec
from ssa_experiments.config.schema import MethodConfig, OptimizerConfig, PruningConfig
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method, method_class
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.sampling import annealed_probabilities, sample_keep
from ssa_experiments.training.optim import make_optimizer


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(50, 400), nn.ReLU(), nn.Linear(400, 200), nn.ReLU(), nn.Linear(200, 10))


def method(name: str, sparsity: float = 0.9, **kw: object):
    # At 0.9 global magnitude sparsity this MLP's layer "2" collapses: allowed here, these tests are about
    # the masks (the refusal is tested in test_review_fixes.py).
    return make_method(
        MethodConfig(name=name, **kw), PruningConfig(allow_layer_collapse=True), sparsity, seed=0
    )


def removed_probs(m) -> torch.Tensor:
    return torch.cat([m.prob[n][~m.keep[n]] for n in m.keep])


def test_temperature_annealing_probabilities_hand_values() -> None:
    m = method("temperature_annealing", initial_temperature=0.6, anneal_epochs=4)
    net = model()
    m.start(net)
    for epoch, expected in [(0, 0.6), (1, 0.45), (2, 0.3), (3, 0.15)]:
        m.begin_epoch(epoch, steps_per_epoch=10)
        assert torch.allclose(removed_probs(m), torch.full_like(removed_probs(m), expected))
        assert all(bool((m.prob[n][m.keep[n]] == 1).all()) for n in m.keep)  # target weights always kept
        # expected sparsity = target sparsity * (1 - p): 0.9 * (1 - 0.6) = 0.36 at the start
        assert m.expected_train_sparsity() == pytest.approx(0.9 * (1 - expected), abs=1e-6)
    m.begin_epoch(4, 10)
    assert m.final and m.report()["expected_train_sparsity"] == pytest.approx(0.9, abs=1e-6)


def test_step_granularity_interpolates_within_epoch() -> None:
    m = method("temperature_annealing", initial_temperature=0.8, anneal_epochs=2, granularity="step")
    m.start(model())
    m.begin_epoch(1, 4)
    m.before_step(1, 2, 4)  # t = 1.5 of 2 -> factor 0.25
    assert torch.allclose(removed_probs(m), torch.full_like(removed_probs(m), 0.2))


def test_random_annealing_initial_probabilities() -> None:
    """p_i ~ U(0, 0.5): mean within 5 standard errors, and the whole distribution within the DKW bound.

    DKW: P(sup |F_n - F| > eps) <= 2 exp(-2 n eps^2); eps for a 1e-6 false-alarm rate over ~90k weights is
    ~0.009, so U(0, 0.48) (its CDF is 0.04 off at 0.48) or a wrong shape fails.
    """
    m = method("random_annealing", max_initial_probability=0.5, anneal_epochs=2)
    m.start(model())
    m.begin_epoch(0, 10)
    p = removed_probs(m).double()
    n = p.numel()
    assert float(p.min()) >= 0 and float(p.max()) < 0.5
    se = 0.5 / 12**0.5 / n**0.5  # std of U(0, 0.5) / sqrt(n)
    assert abs(float(p.mean()) - 0.25) < 5 * se
    eps = (math.log(2 / 1e-6) / (2 * n)) ** 0.5
    sorted_p = torch.sort(p).values
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert float((empirical - sorted_p / 0.5).abs().max()) < eps + 1 / n
    start = {n: t.clone() for n, t in m.prob.items()}
    m.begin_epoch(1, 10)  # halfway, linear: every p_i halves
    for name in m.keep:
        removed = ~m.keep[name]
        assert torch.allclose(m.prob[name][removed], start[name][removed] * 0.5)


def test_a_too_narrow_initial_distribution_would_fail_the_bound() -> None:
    """The bound above has power: U(0, 0.48) scaled as if it were U(0, 0.5) exceeds it."""
    n = 90_000
    p = torch.sort(
        torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.48
    ).values
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    eps = (math.log(2 / 1e-6) / (2 * n)) ** 0.5
    assert float((empirical - p / 0.5).abs().max()) > eps


def test_sampled_keep_rate_matches_probabilities() -> None:
    """Empirical Bernoulli rate over ~80k removed weights, within 4 standard errors (fixed seed)."""
    m = method("temperature_annealing", initial_temperature=0.3, anneal_epochs=3)
    m.start(model())
    m.begin_epoch(0, 10)
    m.before_step(0, 0, 10)
    kept = torch.cat([m.masks[n].train_mask[~m.keep[n]] for n in m.keep])
    se = (0.3 * 0.7 / kept.numel()) ** 0.5
    assert abs(float(kept.mean()) - 0.3) < 4 * se
    assert all(bool((m.masks[n].train_mask[m.keep[n]] == 1).all()) for n in m.keep)
    # A fresh sample every step.
    before = m.masks["0"].train_mask.clone()
    m.before_step(0, 1, 10)
    assert not torch.equal(before, m.masks["0"].train_mask)


def test_random_annealing_calibration_per_probability_bin() -> None:
    m = method("random_annealing", anneal_epochs=3)
    m.start(model())
    m.begin_epoch(0, 10)
    m.before_step(0, 0, 10)
    p = removed_probs(m)
    kept = torch.cat([m.masks[n].train_mask[~m.keep[n]] for n in m.keep])
    for lo in (0.0, 0.25, 0.5, 0.75):
        sel = (p >= lo) & (p < lo + 0.25)
        se = (0.25 / int(sel.sum())) ** 0.5
        assert abs(float(kept[sel].mean()) - float(p[sel].mean())) < 4 * se


def test_sample_keep_endpoints() -> None:
    g = torch.Generator().manual_seed(0)
    keep = torch.rand(1000, generator=g) < 0.3
    p0 = (~keep).float() * 0.7
    assert torch.equal(sample_keep(annealed_probabilities(keep, p0, 0.0), g), keep)  # p = 0: exactly T
    assert bool(sample_keep(annealed_probabilities(keep, torch.ones(1000) * (~keep), 1.0), g).all())


@pytest.mark.parametrize("name", ["temperature_annealing", "random_annealing"])
def test_after_annealing_equals_one_shot_and_is_deterministic(name: str) -> None:
    net_a, net_b = model(), model()
    ssa, one = method(name, anneal_epochs=2), method("one_shot")
    ssa.start(net_a)
    one.start(net_b)
    ssa.begin_epoch(2, 10)
    for step in range(3):
        ssa.before_step(2, step, 10)  # no sampling any more
    for n in ssa.masks:
        assert torch.equal(ssa.masks[n].train_mask, one.masks[n].train_mask)
        assert torch.equal(ssa.masks[n].eval_mask, one.masks[n].eval_mask)
        # ... and the stored weights match: the removed ones are zeroed in both.
        assert torch.equal(dense_weight(ssa.modules[n]), dense_weight(one.modules[n]))
    assert ssa.report()["sparsity"] == pytest.approx(
        round(0.9 * 100000) / 100000
    )  # 50*400 + 400*200 prunable
    x = torch.randn(8, 50)
    assert torch.equal(net_a.train()(x), net_b.train()(x))


def test_eval_mode_uses_target_during_annealing() -> None:
    """The reference is built by hand, independently of the masking code: the parent's weights with the
    lowest-magnitude 90% (one global threshold over the prunable layers, the classifier excluded) zeroed."""
    net = model()
    m = method("temperature_annealing", anneal_epochs=5)
    m.start(net)
    m.begin_epoch(0, 10)
    m.before_step(0, 0, 10)
    x = torch.randn(4, 50)
    reference = model()  # the same parent weights (same seed)
    with torch.no_grad():
        prunable = [reference[0].weight, reference[2].weight]
        flat = torch.cat([w.abs().flatten() for w in prunable])
        k = round(0.9 * flat.numel())
        threshold = torch.sort(flat).values[k - 1]  # ties are negligible for Gaussian-initialised weights
        for w in prunable:
            w.mul_(w.abs() > threshold)
    expected = reference(x)
    assert torch.allclose(net.eval()(x), expected, atol=1e-6)
    assert not torch.allclose(net.train()(x), expected)


def test_masked_out_weights_survive_a_step_during_annealing() -> None:
    net = model()
    m = method("temperature_annealing", anneal_epochs=5, initial_temperature=0.5)
    m.start(net)
    m.begin_epoch(0, 10)
    m.before_step(0, 0, 10)
    # The mask itself never writes into the stored weights (what the optimizer does to sampled-out weights
    # is tested in test_review_fixes.py): a plain SGD step, where grad 0 means no change.
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = {n: dense_weight(mod).detach().clone() for n, mod in m.modules.items()}
    net.train()(torch.randn(16, 50)).square().mean().backward()
    opt.step()
    for n, mod in m.modules.items():
        out = m.masks[n].train_mask == 0
        assert bool(out.any())
        assert torch.equal(dense_weight(mod)[out], before[n][out])  # values kept, not zeroed
        assert bool((before[n][out] != 0).any())
        assert not torch.equal(dense_weight(mod)[~out], before[n][~out])  # the sampled-in weights did learn


def test_no_gradient_reaches_pruned_weights_after_annealing() -> None:
    """With the default optimizer (SGD, Nesterov momentum 0.9, weight decay 5e-4), trained through
    annealing: after the mask is final, removed weights get no gradient and stay exactly zero."""
    net = model()
    m = method("temperature_annealing", sparsity=0.5, anneal_epochs=1)  # at 0.9 global, layer 2 collapses
    m.start(net)
    opt = make_optimizer(net.parameters(), OptimizerConfig(), 0.05, m.self_decayed_params())
    m.bind_optimizer(opt)
    x, y = torch.randn(16, 50), torch.randint(0, 10, (16,))
    for epoch in range(3):
        m.begin_epoch(epoch, 3)
        for step in range(3):
            m.before_step(epoch, step, 3)
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            for n, mod in m.modules.items():
                grad = mod.parametrizations.weight.original.grad
                if m.final:
                    assert bool((grad[~m.keep[n]] == 0).all())
                    assert bool((grad[m.keep[n]] != 0).any())
            m.before_optimizer_step(0.05)
            opt.step()
    for n, mod in m.modules.items():
        assert bool((dense_weight(mod)[~m.keep[n]] == 0).all())  # momentum and decay did not revive them
    # Perturbing the removed weights changes nothing downstream.
    y_out = net(x)
    with torch.no_grad():
        for n, mod in m.modules.items():
            dense_weight(mod)[~m.keep[n]] += 5.0
    assert torch.equal(net(x), y_out)


def test_iterative_masks_are_nested_and_follow_the_schedule() -> None:
    net = model()
    m = method("iterative", sparsity=0.8, anneal_epochs=4)
    m.start(net)
    previous = None
    for epoch, expected in enumerate([0.0, 0.2, 0.4, 0.6, 0.8, 0.8]):  # the target from epoch n = 4 on
        m.begin_epoch(epoch, 10)
        masks = {n: mk.eval_mask.clone() for n, mk in m.masks.items()}
        assert m.report()["sparsity"] == pytest.approx(expected, abs=1e-5)
        assert m.at_target == (epoch >= 4)
        if previous is not None:
            assert all(bool((masks[n] <= previous[n]).all()) for n in masks)  # only ever removes
        previous = masks
        with torch.no_grad():  # training moves weights: re-scoring must still keep earlier removals
            for mod in m.modules.values():
                dense_weight(mod).add_(torch.randn_like(dense_weight(mod)) * 0.05)


def test_dense_has_no_masks() -> None:
    net = model()
    m = method("dense")
    m.start(net)
    assert not m.masks and not hasattr(net[0], "parametrizations")
    assert m.report()["sparsity"] == 0.0 and m.report()["prunable_params"] == 100000


def test_generator_state_round_trip_reproduces_samples() -> None:
    a = method("temperature_annealing", anneal_epochs=3)
    a.start(model())
    a.begin_epoch(0, 10)
    a.before_step(0, 0, 10)
    state = copy.deepcopy(a.state_dict())
    a.before_step(0, 1, 10)
    expected = a.masks["2"].train_mask.clone()
    b = method("temperature_annealing", anneal_epochs=3)
    b.start(model())
    b.begin_epoch(0, 10)
    b.load_state_dict(state)
    b.before_step(0, 1, 10)
    assert torch.equal(b.masks["2"].train_mask, expected)


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"method\.name"):
        method("bogus")


def test_channels_last_model_samples_and_trains() -> None:
    """The CUDA path makes the model channels-last before masks attach: masks must follow that layout."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.Flatten(), nn.Linear(32 * 4 * 4, 10)
    )
    net = net.to(memory_format=torch.channels_last)
    m = method("temperature_annealing", sparsity=0.5, anneal_epochs=2, initial_temperature=0.3)
    m.start(net)
    m.begin_epoch(0, 1)
    m.before_step(0, 0, 1)
    for n in ("0", "2"):
        mask = m.masks[n].train_mask
        assert mask.is_contiguous(memory_format=torch.channels_last)
        assert bool((mask[m.keep[n]] == 1).all())
        assert abs(float(mask[~m.keep[n]].mean()) - 0.3) < 0.1
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    net.train()(x).sum().backward()


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_every_declared_target_is_a_method_of_that_name(spec: MethodSpec) -> None:
    """The factory runs the class a declaration names: a typo in ``target`` would fail only at run time."""
    cls = method_class(spec.name)
    assert issubclass(cls, PruningMethod) and cls.name == spec.name


def test_method_state_loads_whatever_device_the_tensors_were_mapped_to() -> None:
    """The old run loaded checkpoints with map_location=device, moving the generator state off the CPU."""
    a = make_method(MethodConfig(name="temperature_annealing", anneal_epochs=2), PruningConfig(), 0.5, 0)
    a.start(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)))
    state = a.state_dict()
    assert state["generator"].device.type == "cpu" and state["generator_device"] == "cpu"
    a.load_state_dict({**state, "generator": state["generator"].clone()})
    with pytest.raises(ValueError, match="generator ran on cuda"):
        a.load_state_dict({**state, "generator_device": "cuda"})


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("name", ["iterative", "temperature_annealing"])
def test_pruned_weights_stay_zero_under_the_default_optimizer(name: str, optimizer: str) -> None:
    cfg = compose_config([f"method={name}", "method.anneal_epochs=1", f"optimizer.name={optimizer}"])
    net = _mlp()
    m = make_method(cfg.method, cfg.pruning, 0.7, 0)
    m.start(net)
    opt = make_optimizer(net.parameters(), cfg.optimizer, 0.1, m.self_decayed_params())
    m.bind_optimizer(opt)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))

    def steps(epoch: int, n: int) -> None:
        for step in range(n):
            m.before_step(epoch, step, n)
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            m.before_optimizer_step(0.1)
            opt.step()

    m.begin_epoch(0, 5)
    steps(0, 5)  # momentum builds up on weights the final mask will remove
    m.begin_epoch(1, 5)  # the target becomes final
    steps(1, 5)
    for n, mod in m.modules.items():
        removed = ~m.masks[n].eval_mask
        assert bool(removed.any())
        assert bool((dense_weight(mod)[removed] == 0).all()), n
        for value in opt.state[dense_weight(mod)].values():
            if value.shape == removed.shape:
                assert bool((value[removed] == 0).all()), n


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_decay_of_sampled_out_weights_is_a_config_choice(optimizer: str) -> None:
    results = {}
    for decay in (True, False):
        cfg = compose_config([
            "method=temperature_annealing", "method.anneal_epochs=3", "method.initial_temperature=0.5",
            f"method.decay_sampled_out={decay}", f"optimizer.name={optimizer}", "optimizer.weight_decay=0.1",
        ])  # fmt: skip
        net = _mlp()
        m = make_method(cfg.method, cfg.pruning, 0.7, 0)
        m.start(net)
        opt = make_optimizer(net.parameters(), cfg.optimizer, 0.1, m.self_decayed_params())
        m.bind_optimizer(opt)
        m.begin_epoch(0, 1)
        m.before_step(0, 0, 1)
        before = {n: dense_weight(mod).detach().clone() for n, mod in m.modules.items()}
        opt.zero_grad()
        net.train()(torch.randn(8, 20)).sum().backward()
        m.before_optimizer_step(0.1)
        opt.step()  # the first step: no momentum yet, so only decay can move a sampled-out weight
        out = {n: m.masks[n].train_mask == 0 for n in m.masks}
        results[decay] = all(
            torch.equal(dense_weight(mod)[out[n]], before[n][out[n]]) for n, mod in m.modules.items()
        )
        sampled_in_moved = all(
            not torch.equal(dense_weight(mod)[~out[n]], before[n][~out[n]]) for n, mod in m.modules.items()
        )
        assert sampled_in_moved
    assert results == {True: False, False: True}  # decayed by default, untouched with the option off
