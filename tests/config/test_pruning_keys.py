"""The pruning keys of issue 24 (criterion, scope, control, pattern, score_batches, synflow_rounds,
parent.epochs=0): bad values refused in one line naming the field; at their defaults no store key moves."""

from __future__ import annotations

import pytest
from helpers import compose_config

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.validate import validate
from ssa_experiments.training.parent import parent_key

BASE = ["output_dir=/tmp/unused", "method=one_shot", "sparsity=0.9", "device=cpu"]

BAD = [
    (["pruning.criterion=saliency"], "pruning.criterion"),
    (["pruning.scope=erdos"], "pruning.scope"),
    (["pruning.control=shuffle"], "pruning.control"),
    (["pruning.pattern=4:2"], "pruning.pattern"),
    (["pruning.pattern=2:2"], "pruning.pattern"),
    (["pruning.pattern=0:4"], "pruning.pattern"),
    (["pruning.pattern=two"], "pruning.pattern"),
    (["pruning.pattern=2:4"], "pruning.pattern"),  # sparsity 0.9, the pattern fixes 0.5
    (["pruning.pattern=2:4", "sparsity=0.5", "pruning.scope=erk"], "pruning.scope"),
    (["pruning.pattern=2:4", "sparsity=0.5", "pruning.control=shuffle_layerwise"], "pruning.control"),
    # dynamic sparse training moves connections per layer: its masks would leave the 2:4 groups
    (["method=rigl", "pruning.pattern=2:4", "sparsity=0.5"], "pruning.pattern"),
    (["method=set", "pruning.pattern=2:4", "sparsity=0.5"], "pruning.pattern"),
    (["pruning.control=reinit", "model.pretrained=true"], "pruning.control"),
    (["pruning.score_batches=0"], "pruning.score_batches"),
    (["pruning.synflow_rounds=0"], "pruning.synflow_rounds"),
    (["parent.epochs=-1"], "parent.epochs"),
    (["parent.epochs=0", "parent.rewind_epoch=0"], "parent.rewind_epoch"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD)
def test_a_bad_pruning_value_is_refused_in_one_line_naming_the_field(
    overrides: list[str], field: str
) -> None:
    cfg = compose_config([*BASE, *overrides])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.field_name == field
    assert str(info.value).startswith(f"{field}: ")
    assert "\n" not in str(info.value)


GOOD = [
    ["pruning.criterion=snip", "pruning.score_batches=4"],
    ["pruning.criterion=grasp"],
    ["pruning.criterion=synflow", "pruning.synflow_rounds=10", "pruning.scope=erk"],
    ["pruning.control=reinit"],
    ["pruning.pattern=2:4", "sparsity=0.5"],
    ["pruning.pattern=1:8", "sparsity=0.875"],
    ["method=dense", "pruning.pattern=2:4"],  # the dense run prunes nothing: any sparsity
    ["parent.epochs=0"],
    ["parent.epochs=0", "method=temperature_annealing", "method.anneal_epochs=2"],
]


@pytest.mark.parametrize("overrides", GOOD)
def test_the_new_values_are_accepted(overrides: list[str]) -> None:
    validate(compose_config([*BASE, *overrides]))


def ident(*overrides: str) -> dict:
    cfg = compose_config([*BASE, *overrides])
    validate(cfg)
    return run_identity(cfg)


def test_the_new_keys_at_their_defaults_are_not_in_the_identity() -> None:
    pruning = ident()["pruning"]
    assert set(pruning) == {
        "criterion",
        "scope",
        "keep_first_layer",
        "keep_last_layer",
        "allow_layer_collapse",
    }
    assert ident() == ident("pruning.control=none", "pruning.pattern=unstructured", "pruning.score_batches=7")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("pruning.criterion=magnitude", "pruning.criterion=snip"),
        ("pruning.criterion=snip", "pruning.criterion=snip pruning.score_batches=2"),
        ("pruning.criterion=grasp", "pruning.criterion=grasp pruning.score_batches=2"),
        ("pruning.criterion=synflow", "pruning.criterion=synflow pruning.synflow_rounds=10"),
        ("pruning.scope=global", "pruning.scope=erk"),
        ("pruning.control=none", "pruning.control=reinit"),
        ("pruning.control=none", "pruning.control=shuffle_layerwise"),
        ("sparsity=0.5", "sparsity=0.5 pruning.pattern=2:4"),
        ("parent.epochs=20", "parent.epochs=0"),
    ],
)
def test_what_a_run_reads_is_in_its_identity(a: str, b: str) -> None:
    assert ident(*a.split()) != ident(*b.split())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("pruning.criterion=magnitude", "pruning.criterion=magnitude pruning.synflow_rounds=3"),
        ("pruning.criterion=snip", "pruning.criterion=snip pruning.synflow_rounds=3"),
        ("pruning.criterion=synflow", "pruning.criterion=synflow pruning.score_batches=3"),
        ("method=dense", "method=dense pruning.criterion=synflow pruning.control=reinit"),
    ],
)
def test_what_a_run_does_not_read_is_not(a: str, b: str) -> None:
    assert ident(*a.split()) == ident(*b.split())


def test_pruning_keys_never_reach_the_parent_key() -> None:
    a = parent_key(compose_config(BASE))
    b = parent_key(
        compose_config([*BASE, "pruning.criterion=snip", "pruning.scope=erk", "pruning.control=reinit"])
    )
    assert a == b
