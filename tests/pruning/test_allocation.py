"""Layer-wise allocation (ERK, uniform), the N:M pattern and the shuffle control, against closed forms and
counts (docs/methods-baselines.md)."""

from __future__ import annotations

import math

import pytest
import torch

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.pruning.sanity import shuffle_layerwise
from ssa_experiments.pruning.targets import (
    check_pattern,
    erk_densities,
    layer_densities,
    n_to_prune,
    nm_masks,
    target_masks,
)

SHAPES = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "fc": (10, 512)}


def test_erk_densities_are_the_closed_form_when_no_layer_is_dense() -> None:
    """d_l = eps (sum of dims) / (product of dims), eps so the layers keep 10% of their weights."""
    sizes = {n: math.prod(s) for n, s in SHAPES.items()}
    raw = {"conv1": (16 + 3 + 3 + 3) / 432, "conv2": (32 + 16 + 3 + 3) / 4608, "fc": (10 + 512) / 5120}
    eps = 0.1 * sum(sizes.values()) / sum(raw[n] * sizes[n] for n in SHAPES)
    got = erk_densities(SHAPES, 0.1)
    assert got == pytest.approx({n: eps * raw[n] for n in SHAPES})
    assert sum(got[n] * sizes[n] for n in SHAPES) == pytest.approx(0.1 * sum(sizes.values()))


def test_erk_keeps_a_layer_dense_where_the_formula_exceeds_one_and_rescales_the_rest() -> None:
    """Layers of 1, 100 and 10 000 weights at density 0.05 (computed by hand): raw factors 2, 0.2, 0.02;
    eps = 505.05 / 222 = 2.275 gives the 1-weight layer 4.55 > 1: dense; then eps = 504.05 / 220."""
    shapes = {"a": (1, 1), "b": (10, 10), "c": (100, 100)}
    got = erk_densities(shapes, 0.05)
    eps = 504.05 / 220
    assert got == pytest.approx({"a": 1.0, "b": 0.2 * eps, "c": 0.02 * eps})
    assert got["a"] * 1 + got["b"] * 100 + got["c"] * 10_000 == pytest.approx(505.05)


def test_erk_rescales_again_when_the_rescaled_layers_exceed_one() -> None:
    """Two passes: first the 1-weight layer, then the 4-weight one, as the reference iterates."""
    shapes = {"a": (1, 1), "b": (2, 2), "c": (40, 40)}
    got = erk_densities(shapes, 0.2)
    total = 1 + 4 + 1600
    eps = (0.2 * total - 5) / (0.05 * 1600)
    assert got == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.05 * eps})


def test_layer_densities_of_each_scope() -> None:
    assert layer_densities(SHAPES, 0.9, "global") is None
    assert layer_densities(SHAPES, 0.9, "layerwise") == pytest.approx(dict.fromkeys(SHAPES, 0.1))
    assert layer_densities(SHAPES, 0.9, "erk") == pytest.approx(erk_densities(SHAPES, 0.1))


def test_erk_target_masks_remove_each_layers_share_of_the_lowest_scores() -> None:
    g = torch.Generator().manual_seed(0)
    scores = {n: torch.rand(s, generator=g) for n, s in SHAPES.items()}
    keep = target_masks(scores, 0.9, "erk")
    densities = erk_densities(SHAPES, 0.1)
    for n, k in keep.items():
        removed = n_to_prune(1 - densities[n], k.numel())
        assert int((~k).sum()) == removed
        assert scores[n][~k].max() <= scores[n][k].min()  # the lowest ones


def test_nm_masks_keep_exactly_n_of_every_m_consecutive_inputs() -> None:
    g = torch.Generator().manual_seed(1)
    scores = {"lin": torch.randn(6, 8, generator=g), "conv": torch.randn(4, 8, 3, 3, generator=g)}
    keep = nm_masks(scores, 2, 4)
    rows = keep["lin"].view(6, 2, 4)
    assert bool((rows.sum(-1) == 2).all())
    groups = keep["conv"].permute(0, 2, 3, 1).reshape(-1, 4)  # along the input channels
    assert bool((groups.sum(-1) == 2).all())
    lin_groups = scores["lin"].view(6, 2, 4)  # the kept ones are each group's two highest
    assert bool((lin_groups.masked_fill(~rows, float("inf")).min(-1).values
                 >= lin_groups.masked_fill(rows, float("-inf")).max(-1).values).all())  # fmt: skip


def test_nm_target_below_its_sparsity_nests_and_ends_on_the_pattern() -> None:
    g = torch.Generator().manual_seed(2)
    scores = {"lin": torch.randn(8, 16, generator=g)}
    half = target_masks(scores, 0.25, pattern="2:4")
    final = target_masks({"lin": scores["lin"].masked_fill(~half["lin"], float("-inf"))}, 0.5, pattern="2:4")
    assert int((~half["lin"]).sum()) == 32
    assert bool((final["lin"] <= half["lin"]).all())  # nested
    assert torch.equal(final["lin"], nm_masks(scores, 2, 4)["lin"])
    with pytest.raises(ValueError, match="removes 64 of 128"):
        target_masks(scores, 0.75, pattern="2:4")


def test_a_layer_whose_inputs_are_not_whole_groups_is_refused_in_one_line() -> None:
    check_pattern({"a": (8, 16)}, "2:4")
    with pytest.raises(ConfigError, match=r"^pruning.pattern: 2:4 groups 4 .*'stem' has 3 inputs") as err:
        check_pattern({"stem": (8, 3, 3, 3), "a": (8, 16)}, "2:4")
    assert "\n" not in str(err.value)


def test_shuffle_keeps_every_layers_count_and_moves_its_positions() -> None:
    g = torch.Generator().manual_seed(3)
    scores = {n: torch.rand(s, generator=g) for n, s in SHAPES.items()}
    keep = target_masks(scores, 0.8)
    shuffled = shuffle_layerwise(keep, seed=0)
    for n in keep:
        assert int(shuffled[n].sum()) == int(keep[n].sum())
        assert not torch.equal(shuffled[n], keep[n])
    again = shuffle_layerwise(keep, seed=0)
    assert all(torch.equal(again[n], shuffled[n]) for n in keep)  # a function of the seed
    other = shuffle_layerwise(keep, seed=1)
    assert any(not torch.equal(other[n], shuffled[n]) for n in keep)


def test_shuffled_masks_nest_when_the_counts_shrink() -> None:
    """A gradual method's shrinking masks stay nested under the control (a fixed order per layer)."""
    g = torch.Generator().manual_seed(4)
    scores = {n: torch.rand(s, generator=g) for n, s in SHAPES.items()}
    a = shuffle_layerwise(target_masks(scores, 0.5), seed=7)
    b = shuffle_layerwise(target_masks(scores, 0.9), seed=7)
    assert all(bool((b[n] <= a[n]).all()) for n in SHAPES)


@pytest.mark.cuda
def test_a_2_4_linear_mask_runs_on_torchs_semi_structured_kernels() -> None:
    """The n:m layout of a linear layer (2 of every 4 consecutive inputs of a row) is the one
    ``torch.sparse.to_sparse_semi_structured`` takes: fp16, Ampere or newer, at least 32 x 64."""
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("semi-structured sparse kernels need compute capability 8.0+")
    from torch.sparse import to_sparse_semi_structured

    g = torch.Generator().manual_seed(5)
    w = torch.randn(128, 256, generator=g)
    keep = nm_masks({"w": w}, 2, 4)["w"]
    dense = (w * keep).half().cuda()
    x = torch.randn(256, 64, generator=g).half().cuda()
    sparse = to_sparse_semi_structured(dense)
    torch.testing.assert_close(sparse @ x, dense @ x, rtol=1e-2, atol=1e-2)
