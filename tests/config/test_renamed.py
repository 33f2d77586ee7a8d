"""The LR schedule renamed from ``schedule`` to ``lr`` (issue 22): identities keep the old spelling (store
keys never move), configs written before are read in the new one, the old one on the command line is refused
in one line naming the new key."""

from __future__ import annotations

import pytest
from helpers import compose_config

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.renamed import current, historical, refuse_renamed
from ssa_experiments.config.schema import ConfigError
from ssa_experiments.training.parent import parent_key

NEW = {
    "method": {"name": "iterative", "schedule": "polynomial"},  # the annealing schedule: never renamed
    "lr": {"name": "one_cycle", "lr": 0.1},
    "parent": {"epochs": 20, "lr": {"name": "parent_swa_style"}, "rewind_epoch": None},
    "seed": 0,
}
OLD = {
    "method": {"name": "iterative", "schedule": "polynomial"},
    "schedule": {"name": "one_cycle", "lr": 0.1},
    "parent": {"epochs": 20, "schedule": {"name": "parent_swa_style"}, "rewind_epoch": None},
    "seed": 0,
}


def test_the_two_spellings_map_onto_each_other_in_key_order() -> None:
    assert historical(NEW) == OLD and list(historical(NEW)) == list(OLD)
    assert list(historical(NEW)["parent"]) == list(OLD["parent"])
    assert current(OLD) == NEW and list(current(OLD)) == list(NEW)
    assert current(NEW) == NEW and historical(OLD) == OLD  # each is idempotent: a config is read once
    assert current({}) == {} and current({"parent": None}) == {"parent": None}
    assert NEW["lr"] == {"name": "one_cycle", "lr": 0.1}  # the argument is not changed


def test_identities_and_parent_keys_keep_the_historical_spelling() -> None:
    cfg = compose_config(["output_dir=/tmp/unused", "method=one_shot", "device=cpu"])
    ident = run_identity(cfg)
    assert "lr" not in ident and ident["schedule"]["name"] == "one_cycle"
    assert "lr" not in ident["parent"] and ident["parent"]["schedule"]["name"] == "parent_swa_style"
    key = parent_key(cfg)
    assert "lr" not in key and key["schedule"] == ident["parent"]["schedule"]


@pytest.mark.parametrize(
    ("override", "field", "use"),
    [
        ("schedule=one_cycle", "schedule", "lr=one_cycle"),
        ("schedule=finetune,lr_rewind", "schedule", "lr=finetune,lr_rewind"),  # a multirun sweep
        ("schedule.lr=0.05", "schedule.lr", "lr.lr=0.05"),
        ("+schedule.extra=1", "schedule.extra", "+lr.extra=1"),
        ("~schedule", "schedule", "~lr"),
        ("parent.schedule.lr=0.2", "parent.schedule.lr", "parent.lr.lr=0.2"),
        ("parent.schedule={name:step}", "parent.schedule", "parent.lr={name:step}"),
    ],
)
def test_an_old_spelling_is_refused_naming_the_new_key(override: str, field: str, use: str) -> None:
    with pytest.raises(ConfigError) as info:
        refuse_renamed(["method=one_shot", override])
    assert info.value.field_name == field
    assert str(info.value) == (
        f"{field}: renamed to {use.lstrip('~+').partition('=')[0]} (the learning-rate schedule; "
        f"method.schedule is the annealing schedule): use {use}"
    )


def test_what_is_not_an_old_spelling_passes() -> None:
    refuse_renamed([
        "-m", "method.schedule=cubic", "lr=step", "lr.lr=0.05", "parent.lr.lr=0.2", "--cfg", "job",
        "hydra.run.dir=schedule", "-cn", "schedule", "experiment=fig2", "schedules=1",
    ])  # fmt: skip
