"""Target masks: hand-computed cases, and equality with torch.nn.utils.prune where the methods coincide."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.pruning.targets import (
    classifier_heads,
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


class _TwoHeads(nn.Module):
    """timm's API on a toy: get_classifier() returns two heads, neither of them registered last."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 10)
        self.head_dist = nn.Linear(4, 10)
        self.extra = nn.Linear(4, 4)  # registered last, yet not a classifier

    def get_classifier(self) -> tuple[nn.Module, nn.Module]:
        return self.head, self.head_dist


def test_heads_come_from_get_classifier_and_all_are_kept() -> None:
    model = _TwoHeads()
    assert list(classifier_heads(model)) == ["head", "head_dist"]
    assert list(prunable_modules(model)) == ["stem", "extra"]
    assert list(prunable_modules(model, keep_last_layer=False)) == ["stem", "head", "head_dist", "extra"]


def test_timm_model_without_classifier_has_no_head() -> None:
    import timm

    model = timm.create_model("resnet10t", num_classes=0)  # get_classifier() is Identity
    assert classifier_heads(model) == {}
    assert list(prunable_modules(model)) == list(prunable_modules(model, keep_last_layer=False))


def test_torchvision_classifier_block_keeps_only_its_output_layer() -> None:
    """A Sequential classifier: its last Linear makes the logits and is kept; its hidden layers are pruned."""
    from torchvision.models import mobilenet_v3_small

    model = mobilenet_v3_small(num_classes=10)  # classifier = Linear, Hardswish, Dropout, Linear
    assert list(classifier_heads(model)) == ["classifier.3"]
    names = list(prunable_modules(model))
    assert "classifier.0" in names and "classifier.3" not in names
    assert list(classifier_heads(toy_model())) == ["7"]  # no classifier API: the last conv/linear


def test_multihead_attention_is_prunable_in_registration_order() -> None:
    model = nn.Sequential(nn.Linear(4, 16), nn.MultiheadAttention(16, 2), nn.Linear(16, 3))
    assert list(prunable_modules(model)) == ["0", "1", "1.out_proj"]


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
def test_layers_a_mask_cannot_reach_are_refused_only_when_pruned() -> None:
    from timm.layers import ScaledStdConv2d, StdConv2d

    for conv in (StdConv2d(3, 8, 3), ScaledStdConv2d(3, 8, 3)):
        model = nn.Sequential(conv, nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 2))
        with pytest.raises(ConfigError, match=rf"^model: layer '0' is a .*\.{type(conv).__name__}, which"):
            prunable_modules(model)
        assert list(prunable_modules(model, keep_first_layer=True)) == ["1"]  # kept dense: no mask, fine
    model = toy_model()
    nn.utils.weight_norm(model[3])  # old-style hook: recomputes weight from weight_g/weight_v every forward
    with pytest.raises(ConfigError, match=r"^model: layer '3' is a .*Conv2d, which recomputes its weight"):
        prunable_modules(model)


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
