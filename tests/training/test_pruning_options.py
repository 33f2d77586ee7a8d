"""One tiny in-process run per pruning option of issue 24 (criteria, ERK, controls, N:M, pruning at init),
checked on what it must change: the saved network's mask against the magnitude one-shot run's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import FAST, compose_config

from ssa_experiments.pruning.targets import erk_densities, n_to_prune
from ssa_experiments.training.run import run

PRUNED = ("0.weight", "4.weight")  # the small CNN's prunable layers (its classifier is kept dense)
ONE_EPOCH = ["method=one_shot", "sparsity=0.9", "train.finetune_epochs=1", "train.max_steps_per_epoch=3"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory):
    """run(overrides) -> (summary, saved weights); every run of this module shares one dense parent."""
    root = tmp_path_factory.mktemp("options")
    count = iter(range(1000))

    def go(*overrides: str) -> tuple[dict, dict[str, torch.Tensor]]:
        out = root / f"run{next(count)}"
        cfg = compose_config(
            [*FAST, *ONE_EPOCH, f"output_dir={out}", f"parent.cache_dir={root / 'cache'}", *overrides]
        )
        summary = run(cfg)
        assert summary["status"] == "completed"
        return summary, torch.load(Path(out) / "model.pt", weights_only=True)

    return go


def kept(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: weights[k] != 0 for k in PRUNED}


@pytest.fixture(scope="module")
def magnitude(runner) -> dict[str, torch.Tensor]:
    return kept(runner()[1])


@pytest.mark.parametrize("criterion", ["snip", "grasp", "synflow"])
def test_a_criterion_chooses_another_target_at_the_same_sparsity(runner, magnitude, criterion: str) -> None:
    summary, weights = runner(f"pruning.criterion={criterion}", "pruning.synflow_rounds=5")
    mask = kept(weights)
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert any(not torch.equal(mask[k], magnitude[k]) for k in PRUNED)
    assert summary["identity"]["pruning"]["criterion"] == criterion


@pytest.mark.parametrize(
    ("method", "criterion"),
    [("iterative", "synflow"), ("temperature_annealing", "snip"), ("random_annealing", "grasp")],
)
def test_a_criterion_is_the_target_of_a_gradual_method(runner, method: str, criterion: str) -> None:
    summary, _ = runner(
        f"method={method}", "method.anneal_epochs=1", "train.finetune_epochs=2",
        f"pruning.criterion={criterion}", "pruning.synflow_rounds=3",
    )  # fmt: skip
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert summary["epochs_at_target"] == 1


def test_erk_gives_each_layer_its_erk_sparsity(runner) -> None:
    summary, weights = runner("pruning.scope=erk")
    shapes = {k.removesuffix(".weight"): tuple(weights[k].shape) for k in PRUNED}
    sizes = {n: weights[f"{n}.weight"].numel() for n in shapes}
    expected = {n: n_to_prune(1 - d, sizes[n]) / sizes[n] for n, d in erk_densities(shapes, 0.1).items()}
    assert summary["layer_sparsity"] == pytest.approx(expected)
    assert expected["0"] < 0.8 < 0.9 < expected["4"]  # the small stem keeps more, as ERK means


def test_the_shuffle_control_keeps_each_layers_count_at_other_positions(runner, magnitude) -> None:
    _, weights = runner("pruning.control=shuffle_layerwise")
    mask = kept(weights)
    for k in PRUNED:
        assert int(mask[k].sum()) == int(magnitude[k].sum())
        assert not torch.equal(mask[k], magnitude[k])


def test_the_reinit_control_keeps_the_mask_and_draws_the_weights_again(runner, magnitude) -> None:
    _, plain = runner()
    _, weights = runner("pruning.control=reinit")
    mask = kept(weights)
    for k in PRUNED:  # the magnitude target, on weights that are no longer the parent's
        assert torch.equal(mask[k], magnitude[k])
        assert not torch.allclose(weights[k], plain[k], atol=1e-3)


def test_a_2_4_pattern_keeps_exactly_two_of_every_four_inputs(runner) -> None:
    summary, weights = runner("pruning.pattern=2:4", "sparsity=0.5", "pruning.keep_first_layer=true")
    w = weights["4.weight"]  # (out, in, k, k): groups of 4 input channels
    groups = (w != 0).permute(0, 2, 3, 1).reshape(-1, 4)
    assert bool((groups.sum(-1) == 2).all())
    assert summary["sparsity"] == 0.5


def test_pruning_at_initialisation_prunes_the_fresh_network_and_caches_nothing(runner, tmp_path) -> None:
    cache = tmp_path / "cache"
    cfg = compose_config(
        [*FAST, *ONE_EPOCH, "parent.epochs=0", f"output_dir={tmp_path / 'run'}", f"parent.cache_dir={cache}"]
    )
    summary = run(cfg)
    assert summary["parent"]["source"] == "initialisation"
    assert summary["parent"]["epochs"] == 0
    assert summary["parent"]["test_acc"] is not None  # the initialisation, measured
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert not cache.exists() or not any(cache.iterdir())
