"""Target masks: hand-computed cases, and equality with torch.nn.utils.prune where the methods coincide."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ssa_experiments.pruning.targets import (
    magnitude_scores,
    n_to_prune,
    prunable_modules,
    random_scores,
    target_masks,
)


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def test_prunable_modules_default_keeps_classifier_only() -> None:
    names = list(prunable_modules(toy_model()))
    assert names == ["0", "3", "5"]  # convs and hidden linear; BN never; classifier (7) kept dense


def test_prunable_modules_flags() -> None:
    m = toy_model()
    assert list(prunable_modules(m, keep_first_layer=True, keep_last_layer=True)) == ["3", "5"]
    assert list(prunable_modules(m, keep_first_layer=False, keep_last_layer=False)) == ["0", "3", "5", "7"]


def test_hand_computed_layerwise_and_ties() -> None:
    scores = {"a": torch.tensor([3.0, 1.0, 2.0, 1.0])}
    keep = target_masks(scores, 0.5, "layerwise")["a"]
    assert keep.tolist() == [True, False, True, False]
    # All ties: the lower indices go first, deterministically.
    keep = target_masks({"a": torch.ones(5)}, 0.4, "global")["a"]
    assert keep.tolist() == [False, False, True, True, True]


def test_hand_computed_global_threshold_crosses_layers() -> None:
    scores = {"a": torch.tensor([0.1, 0.9, 0.5]), "b": torch.tensor([[0.2, 0.8], [0.3, 0.05]])}
    keep = target_masks(scores, 0.6, "global")  # round(0.6 * 7) = 4 go: 0.05, 0.1, 0.2, 0.3
    assert keep["a"].tolist() == [False, True, True]
    assert keep["b"].tolist() == [[False, True], [False, False]]


@pytest.mark.parametrize("amount", [0.3, 0.5, 0.9, 0.95, 0.99])
def test_global_masks_equal_torch_global_unstructured(amount: float) -> None:
    model = toy_model()
    modules = prunable_modules(model)
    ours = target_masks(magnitude_scores({n: m.weight for n, m in modules.items()}), amount, "global")

    ref = copy.deepcopy(model)
    ref_modules = prunable_modules(ref)
    prune.global_unstructured(
        [(m, "weight") for m in ref_modules.values()], pruning_method=prune.L1Unstructured, amount=amount
    )
    for name, m in ref_modules.items():
        assert torch.equal(ours[name], m.weight_mask.bool()), name


@pytest.mark.parametrize("amount", [0.2, 0.5, 0.9, 0.98])
def test_layerwise_masks_equal_torch_l1_unstructured(amount: float) -> None:
    model = toy_model()
    modules = prunable_modules(model)
    ours = target_masks(magnitude_scores({n: m.weight for n, m in modules.items()}), amount, "layerwise")
    for name, m in copy.deepcopy(modules).items():
        prune.l1_unstructured(m, "weight", amount=amount)
        assert torch.equal(ours[name], m.weight_mask.bool()), name


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.999])
def test_exact_sparsity(scope: str, sparsity: float) -> None:
    weights = {n: m.weight for n, m in prunable_modules(toy_model()).items()}
    keep = target_masks(magnitude_scores(weights), sparsity, scope)
    if scope == "global":
        total = sum(k.numel() for k in keep.values())
        assert sum(int((~k).sum()) for k in keep.values()) == n_to_prune(sparsity, total)
    else:
        for k in keep.values():
            assert int((~k).sum()) == n_to_prune(sparsity, k.numel())


def test_random_scores_depend_on_seed_only() -> None:
    weights = {n: m.weight for n, m in prunable_modules(toy_model()).items()}
    a = target_masks(random_scores(weights, seed=1), 0.9, "global")
    b = target_masks(random_scores(weights, seed=1), 0.9, "global")
    c = target_masks(random_scores(weights, seed=2), 0.9, "global")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)
    # Random global pruning removes about the same fraction from each layer (unlike magnitude).
    for k in a.values():
        assert abs(float((~k).float().mean()) - 0.9) < 0.1


def test_n_to_prune_rounds_like_torch() -> None:
    assert [n_to_prune(s, 10) for s in (0.05, 0.15, 0.25, 0.94, 0.96)] == [0, 2, 2, 9, 10]
