"""SNIP, GraSP and SynFlow against independent computations on tiny networks with fixed weights and batches,
and the criteria as the target of a method (docs/methods-baselines.md)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ssa_experiments.config.schema import MethodConfig, PruningConfig
from ssa_experiments.pruning.criteria import (
    GRASP_TEMPERATURE,
    ScoreData,
    grasp_scores,
    snip_scores,
    synflow_scores,
)
from ssa_experiments.pruning.masking import attach_masks
from ssa_experiments.pruning.methods.oneshot import OneShot
from ssa_experiments.pruning.targets import prunable_modules, target_masks


def fixed_net(bias: bool = True, bn: bool = False) -> nn.Sequential:
    """4 -> 3 -> 2, weights set by hand (no RNG), a BatchNorm optionally (its statistics must not move)."""
    layers: list[nn.Module] = [nn.Linear(4, 3, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm1d(3))
    layers += [nn.ReLU(), nn.Linear(3, 2, bias=bias)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(12.0).view(3, 4).sub(5.5).div(7.0))
        net[-1].weight.copy_(torch.tensor([[0.5, -0.25, 0.75], [-0.6, 0.4, 0.1]]))
        if bias:
            net[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
            net[-1].bias.copy_(torch.tensor([0.05, -0.05]))
    return net


def fixed_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, -1.0, 2.0], [2.0, 0.5, 1.5, -1.0]])
    return [(x, torch.tensor([0, 1, 1])), (x.flip(0) * 0.5, torch.tensor([1, 0, 1]))]


def data(batches: list | None = None) -> ScoreData:
    return ScoreData(fixed_batches() if batches is None else batches, nn.CrossEntropyLoss(), (4,))


NAMES = ["0", "3"]  # both linear layers of fixed_net(): the classifier too (keep_last_layer=false)


def test_snip_is_abs_weight_times_the_gradient_of_the_loss_summed_over_the_batches() -> None:
    net = fixed_net()
    ref = copy.deepcopy(net)
    weights = [ref[0].weight, ref[2].weight]
    loss = sum(nn.functional.cross_entropy(ref(x), y) for x, y in fixed_batches())
    grads = torch.autograd.grad(loss, weights)
    scores = snip_scores(net, ["0", "2"], data())
    for name, w, g in zip(["0", "2"], weights, grads, strict=True):
        torch.testing.assert_close(scores[name], (w * g).abs().detach())


def test_snip_of_softmax_regression_matches_the_closed_form_gradient() -> None:
    """One linear layer, no bias: dL/dW = (softmax(W x) - onehot(y))ᵀ x / N for the mean cross-entropy."""
    net = nn.Sequential(nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(12.0).view(3, 4).sub(5.5).div(7.0))
    x, y = fixed_batches()[0]
    p = torch.softmax(x @ net[0].weight.T, dim=1)
    grad = (p - nn.functional.one_hot(y, 3).float()).T @ x / len(y)
    scores = snip_scores(net, ["0"], data([(x, y)]))
    torch.testing.assert_close(scores["0"], (net[0].weight * grad).abs().detach())


def test_criteria_leave_the_model_its_state_and_the_rng_untouched() -> None:
    net = fixed_net(bn=True)
    net.train()
    before = copy.deepcopy(net.state_dict())
    rng = torch.get_rng_state()
    snip_scores(net, ["0", "3"], data())
    grasp_scores(net, ["0", "3"], data())
    synflow_scores(net, ["0", "3"], (4,), 0.5, 3, lambda s, sp: target_masks(s, sp))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN statistics included
    assert torch.equal(torch.get_rng_state(), rng)
    assert net.training


def test_grasp_is_minus_the_grasp_score_from_an_explicit_hessian() -> None:
    """A 2-layer net: H from torch.autograd.functional.hessian of the summed loss over the flattened weights
    (no double backprop), g its gradient, S = -θ ⊙ (H g) (Wang et al.); the function returns -S, whose
    lowest (the highest S, removed by the reference's code) target_masks removes."""
    net = fixed_net(bias=False)
    w1, w2 = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    sizes = (w1.numel(), w2.numel())

    def loss_of(theta: torch.Tensor) -> torch.Tensor:
        a, b = theta[: sizes[0]].view_as(w1), theta[sizes[0] :].view_as(w2)
        total = torch.zeros(())
        for x, y in fixed_batches():
            logits = torch.relu(x @ a.T) @ b.T
            total = total + nn.functional.cross_entropy(logits / GRASP_TEMPERATURE, y)
        return total

    theta = torch.cat([w1.flatten(), w2.flatten()])
    g = torch.autograd.functional.jacobian(loss_of, theta)
    h = torch.autograd.functional.hessian(loss_of, theta)
    s = -theta * (h @ g)
    got = grasp_scores(net, ["0", "2"], data())
    torch.testing.assert_close(got["0"].flatten(), -s[: sizes[0]], rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(got["2"].flatten(), -s[sizes[0] :], rtol=1e-4, atol=1e-12)
    keep = target_masks(got, 3 / 18)  # removes the 3 highest S (distinct: no tie at the threshold)
    top = torch.topk(s, 4).values
    assert top[2] > top[3]
    removed = torch.cat([~keep["0"].flatten(), ~keep["2"].flatten()])
    assert set(torch.nonzero(removed).flatten().tolist()) == set(torch.topk(s, 3).indices.tolist())


def relu_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.ReLU(),
        nn.Linear(4, 3, bias=False),
    )  # fmt: skip


def layer_sums(scores: dict[str, torch.Tensor]) -> list[float]:
    return [float(s[torch.isfinite(s)].double().sum()) for s in scores.values()]


def test_synflow_conserves_the_synaptic_flow_layer_to_layer() -> None:
    """Tanaka et al.'s conservation: for a bias-free ReLU network, every layer's scores sum to R."""
    net = relu_mlp()
    scores = synflow_scores(net, ["0", "2", "4"], (6,), 0.5, 1, lambda s, sp: target_masks(s, sp))
    sums = layer_sums(scores)
    absnet = copy.deepcopy(net).double()
    with torch.no_grad():
        for p in absnet.parameters():
            p.abs_()
    with torch.no_grad():
        r = float(absnet(torch.ones(1, 6, dtype=torch.float64)).sum())
    assert sums == pytest.approx([r] * 3, rel=1e-6)


def test_synflow_rounds_follow_the_exponential_schedule_and_stay_conserved() -> None:
    net = relu_mlp()
    seen: list[float] = []

    def prune(scores: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
        seen.append(sparsity)
        return target_masks(scores, sparsity)

    scores = synflow_scores(net, ["0", "2", "4"], (6,), 0.8, 4, prune)
    assert seen == pytest.approx([1 - 0.2 ** (k / 4) for k in (1, 2, 3)])
    pruned = sum(int((~torch.isfinite(s)).sum()) for s in scores.values())
    assert pruned == round(seen[-1] * 62)  # the third round's removals, -inf in the fourth's scores
    sums = layer_sums(scores)  # the masked network still conserves its flow
    assert sums == pytest.approx([sums[0]] * 3, rel=1e-6)
    final = target_masks(scores, 0.8)
    assert sum(int(k.sum()) for k in final.values()) == 62 - round(0.8 * 62)


def test_synflow_absorbs_batchnorm_in_eval_and_runs_on_a_cnn() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )
    names = list(prunable_modules(net, keep_last_layer=False))
    scores = synflow_scores(net, names, (3, 8, 8), 0.9, 5, lambda s, sp: target_masks(s, sp))
    assert all(torch.isfinite(s).any() for s in scores.values())
    assert sum(int((~torch.isfinite(s)).sum()) for s in scores.values()) > 0


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow"])
def test_each_criterion_is_the_target_of_a_method(criterion: str) -> None:
    """One-shot with the criterion keeps exactly the mask ``target_masks`` gives the criterion's scores."""
    net = fixed_net()
    pruning = PruningConfig(criterion=criterion, keep_last_layer=False, synflow_rounds=3)
    method = OneShot(MethodConfig(name="one_shot"), pruning, 0.5, seed=0)
    method.score_data = data()
    expected_net = copy.deepcopy(net)
    method.start(net)
    if criterion == "snip":
        scores = snip_scores(expected_net, ["0", "2"], data())
    elif criterion == "grasp":
        scores = grasp_scores(expected_net, ["0", "2"], data())
    else:
        scores = synflow_scores(expected_net, ["0", "2"], (4,), 0.5, 3, lambda s, sp: target_masks(s, sp))
    expected = target_masks(scores, 0.5)
    for name, mask in method.masks.items():
        assert torch.equal(mask.eval_mask, expected[name]), name


def test_a_data_criterion_without_score_data_fails_clearly() -> None:
    net = fixed_net()
    method = OneShot(MethodConfig(name="one_shot"), PruningConfig(criterion="snip"), 0.5, seed=0)
    with pytest.raises(RuntimeError, match=r"pruning\.criterion=snip needs"):
        method.start(net)


def test_scores_of_a_masked_model_are_those_of_its_dense_weights() -> None:
    """Masks in force do not change what a criterion sees: it scores the stored (dense) weights."""
    net, masked = fixed_net(), fixed_net()
    masks = attach_masks({"0": masked[0]})
    masks["0"].eval_mask.zero_()
    masks["0"].train_mask.zero_()
    a, b = snip_scores(net, ["0"], data()), snip_scores(masked, ["0"], data())
    torch.testing.assert_close(a["0"], b["0"])
