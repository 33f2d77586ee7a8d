"""``Pruner``, the library interface for one's own loop: it drives a method exactly as the method's own hooks
called by hand would (the loop the runner had before it used the Pruner), refuses a bad option in one line
naming it, counts the epochs itself, and exports the sparse network."""

from __future__ import annotations

import pytest
import torch
from helpers import fixed_batches, small
from torch import nn

from ssa_experiments import Pruner
from ssa_experiments.config.schema import ConfigError, MethodConfig, OptimizerConfig, PruningConfig
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.training.optim import make_optimizer

EPOCHS, STEPS, LR = 3, 4, 0.1


def by_hand(name: str, **options: object) -> dict[str, torch.Tensor]:
    """``small()`` trained with the method's hooks called by hand, in the runner's former order."""
    net, batches = small(), fixed_batches(STEPS, EPOCHS)
    m = make_method(MethodConfig(name=name, **options), PruningConfig(), 0.8, seed=0)
    m.start(net)
    opt = make_optimizer(net.parameters(), OptimizerConfig(weight_decay=0.05), LR, m.self_decayed_params())
    m.bind_optimizer(opt)
    for epoch in range(EPOCHS):
        m.begin_epoch(epoch, STEPS)
        for step, (x, y) in enumerate(batches[epoch]):
            m.before_step(epoch, step, STEPS)
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            m.before_optimizer_step(LR)
            opt.step()
    return net.state_dict()


def with_pruner(name: str, **options: object) -> tuple[dict[str, torch.Tensor], Pruner]:
    """The same training through the Pruner, on a plain SGD of the user's own (no masked-decay group)."""
    net, batches = small(), fixed_batches(STEPS, EPOCHS)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=0.05)
    pruner = Pruner(net, name, 0.8, epochs=EPOCHS, steps_per_epoch=STEPS, optimizer=opt, **options)
    for epoch in range(EPOCHS):
        for x, y in batches[epoch]:
            pruner.step()
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            opt.step()
    return net.state_dict(), pruner


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("temperature_annealing", {"anneal_epochs": 2}),
        ("random_annealing", {"anneal_epochs": 2, "decay_sampled_out": False}),  # the optimizer hook
        ("iterative", {"anneal_epochs": 2, "prune_every_steps": 3}),  # GMP: a grid of steps across epochs
        ("one_shot", {}),
    ],
)
def test_the_pruner_computes_what_the_hooks_called_by_hand_compute(name: str, options: dict) -> None:
    mine, pruner = with_pruner(name, **options)
    theirs = by_hand(name, **options)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert pruner.at_target and pruner.report()["sparsity"] == pytest.approx(0.8, abs=0.01)


def test_masked_decay_is_applied_by_the_hook_and_matters() -> None:
    """Without the hook's decay (decay_sampled_out=true: the optimizer's own) the weights differ: the
    equality above is not vacuous."""
    masked, _ = with_pruner("random_annealing", anneal_epochs=2, decay_sampled_out=False)
    plain, _ = with_pruner("random_annealing", anneal_epochs=2)
    assert not all(torch.equal(masked[k], plain[k]) for k in masked)


def test_export_is_the_sparse_network_under_plain_names() -> None:
    _, pruner = with_pruner("one_shot")
    state = pruner.export()
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    plain = small()
    plain.load_state_dict(state)  # loads into the unpruned architecture
    removed = ~pruner.method.masks["0"].eval_mask
    assert bool((state["0.weight"][removed] == 0).all()) and bool(removed.any())
    assert torch.equal(state["0.weight"], dense_weight(pruner.model[0]) * ~removed)
    assert set(pruner.report()["layer_sparsity"]) == {"0"}  # the classifier is kept (keep_last_layer)


@pytest.mark.parametrize(
    ("options", "field", "says"),
    [
        ({"anneal_epochs": 2, "tau": 0.5}, "tau", "unknown option of temperature_annealing"),
        ({"anneal_epochs": 2, "initial_drop_rate": 0.2}, "initial_drop_rate", "does not read it"),
        ({"anneal_epochs": 2, "initial_temperature": 1.5}, "initial_temperature", "must be in (0, 1]"),
        ({"anneal_epochs": 2, "schedule": "zigzag"}, "schedule", "unknown value 'zigzag'"),
        ({"anneal_epochs": "two"}, "anneal_epochs", "'two'"),
        ({}, "anneal_epochs", "temperature_annealing needs it"),
        ({"anneal_epochs": 3}, "anneal_epochs", "must be < epochs=3"),
        ({"anneal_epochs": 2, "scope": "per_row"}, "scope", "unknown value 'per_row'"),
    ],
)
def test_a_bad_option_is_refused_in_one_line_naming_it(options: dict, field: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        Pruner(small(), "temperature_annealing", 0.8, epochs=EPOCHS, steps_per_epoch=STEPS, **options)
    assert err.value.field_name == field and str(err.value).startswith(f"{field}: ")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_bad_method_sparsity_or_step_count_is_refused() -> None:
    for args, kwargs, field in [
        (("pruning_by_magic", 0.8), {}, "method"),
        (("one_shot", 1.0), {}, "sparsity"),
        (("one_shot", 0.8), {"steps_per_epoch": 0}, "steps_per_epoch"),
    ]:
        with pytest.raises(ConfigError) as err:
            Pruner(small(), *args, **{"epochs": EPOCHS, "steps_per_epoch": STEPS, **kwargs})
        assert err.value.field_name == field


def test_an_epoch_of_another_length_than_declared_is_refused() -> None:
    pruner = Pruner(
        small(), "temperature_annealing", 0.8, epochs=EPOCHS, steps_per_epoch=STEPS, anneal_epochs=2
    )
    for _ in range(STEPS - 1):
        pruner.step()
    with pytest.raises(ValueError, match="epoch 0 ran 3 steps, the Pruner was set up with steps_per_epoch=4"):
        pruner.begin_epoch(1)
    pruner.step()  # the fourth step: now epoch 1 begins by itself at the next step
    pruner.step()
    assert (pruner.epoch, pruner.step_in_epoch) == (1, 1)
    for _ in range(STEPS * 2 - 1):
        pruner.step()
    with pytest.raises(ValueError, match="outside the 3 epochs"):
        pruner.step()


def test_recalibrated_statistics_are_the_target_networks_own() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    pruner = Pruner(net, "temperature_annealing", 0.5, epochs=2, steps_per_epoch=1, anneal_epochs=1)
    pruner.step()  # a sampled training mask, denser than the target
    xs = [torch.randn(32, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    evaluated = pruner.recalibrated(iter(xs), num_batches=2)
    target = pruner.method.masks["0"].eval_mask
    pre_bn = [x @ (dense_weight(net[0]) * target).T + net[0].bias for x in xs[:2]]  # the target's, 2 batches
    bn = evaluated[1]
    assert torch.allclose(bn.running_mean, torch.stack([h.mean(0) for h in pre_bn]).mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, torch.stack([h.var(0) for h in pre_bn]).mean(0), atol=1e-5)
    assert not evaluated.training and bn.num_batches_tracked == 2
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the model is untouched
    assert set(pruner.export(evaluated)) == {
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "3.weight",
        "3.bias",
    }
    plain = small()
    assert Pruner(plain, "one_shot", 0.5, epochs=1, steps_per_epoch=1).recalibrated(xs) is plain  # no BN
