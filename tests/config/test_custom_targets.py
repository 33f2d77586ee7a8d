"""``model._target_``, ``data._target_``, ``method._target_`` (config/targets.py): each refused up front,
in one line naming the field, and each part of a run's identity and of its parent's key; a built-in option
takes no ``_target_`` (Hydra's ``+`` would add one that is silently ignored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import custom_cfg, user_module

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.validate import validate
from ssa_experiments.store.runs import run_key
from ssa_experiments.training.parent import parent_key

MODEL = ["model=custom", "model._target_=byo_user.Net", "data=synthetic"]
DATA = ["model=small_cnn", "model.width=8", "data=custom", "data._target_=byo_user.make_data"]


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return user_module(tmp_path, monkeypatch)


def refused(cfg, field: str) -> str:
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.field_name == field, str(err.value)
    assert str(err.value).startswith(f"{field}: ") and "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            ["model=small_cnn", "+model._target_=torchvision.models.resnet18", "data=synthetic"],
            "model._target_",
        ),
        (["model=mlp", "+model.foo=1", "data=synthetic"], "model.foo"),
        (["model=small_cnn", "data=synthetic", "+data._target_=byo_user.make_data"], "data._target_"),
        (["model=small_cnn", "data=synthetic", "method=one_shot", "+method._target_=x.Y"], "method._target_"),
    ],
)
def test_a_target_on_a_built_in_option_is_refused_not_ignored(tmp_path, user, overrides, field) -> None:
    message = refused(custom_cfg(tmp_path, *overrides), field)
    assert "=custom" in message


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        (["model=custom", "data=synthetic"], "model._target_", "missing"),
        (["model=custom", "model._target_=3", "data=synthetic"], "model._target_", "3 is not a dotted path"),
        (["model=custom", "model._target_=my-pkg.Net", "data=synthetic"], "model._target_", "not a dotted"),
        (
            ["model=custom", "model._target_=no_such_module.Net", "data=synthetic"],
            "model._target_",
            "no module",
        ),
        (
            ["model=custom", "model._target_=byo_user.Nett", "data=synthetic"],
            "model._target_",
            "no attribute",
        ),
        (
            ["model=custom", "model._target_=byo_user.NOT_CALLABLE", "data=synthetic"],
            "model._target_",
            "not a call",
        ),
        (
            ["model=custom", "model._target_=byo_user.needs_depth", "data=synthetic"],
            "model._target_",
            "'depth'",
        ),
        ([*MODEL, "+model.depth=3"], "model._target_", "unexpected keyword argument 'depth'"),
        ([*MODEL, "+model.num_classes=3"], "model.num_classes", "comes from the data set"),
        ([*DATA, "+data.bogus=1"], "data._target_", "unexpected keyword argument 'bogus'"),
        (
            [*MODEL, "method=custom", "method._target_=byo_user.NotAMethod"],
            "method._target_",
            "PruningMethod",
        ),
        ([*MODEL, "method=custom", "method._target_=byo_user.ReadsATypo"], "method._target_", "anneal_epoch"),
        (
            [*MODEL, "method=custom", "method._target_=byo_user.PowerMagnitude", "method.anneal_epochs=0"],
            "method.anneal_epochs",  # gradual: the declaration makes it read anneal_epochs, as iterative does
            "must be a finite number > 0",
        ),
        (["model=small_cnn", "data=npz", "data.path=/no/such.npz"], "data.path", "no .npz file"),
        (["model=small_cnn", "data=image_folder", "data.root=/no/such/dir"], "data.root", "no image folder"),
    ],
)
def test_a_bad_target_is_one_line_naming_the_field(tmp_path, user, overrides, field, says) -> None:
    assert says in refused(custom_cfg(tmp_path, *overrides), field)


def test_a_module_that_fails_to_import_is_named_with_its_error(tmp_path, user) -> None:
    (Path(user) / "broken_user.py").write_text("import no_such_dependency\n")
    message = refused(
        custom_cfg(tmp_path, "model=custom", "model._target_=broken_user.Net"), "model._target_"
    )
    assert "importing broken_user failed: ModuleNotFoundError" in message and "no_such_dependency" in message


def test_valid_custom_options_pass(tmp_path, user) -> None:
    validate(custom_cfg(tmp_path, *MODEL, "+model.width=4"))
    validate(custom_cfg(tmp_path, *DATA, "+data.n=120"))
    validate(custom_cfg(tmp_path, *MODEL, "method=custom", "method._target_=byo_user.LayerNormalised"))
    validate(
        custom_cfg(
            tmp_path, *MODEL, "method=custom", "method._target_=byo_user.PowerMagnitude", "+method.power=2"
        )
    )  # fmt: skip


def test_each_target_and_its_arguments_are_the_run_and_the_parent(tmp_path, user) -> None:
    """Two custom models (or one with other arguments) are two runs and two parents; a method's keys it does
    not declare stay out of its identity, the ones the user added are in it."""
    configs = {
        "net": custom_cfg(tmp_path, *MODEL),
        "net_w4": custom_cfg(tmp_path, *MODEL, "+model.width=4"),
        "mlp": custom_cfg(tmp_path, "model=custom", "model._target_=byo_user.mlp", "data=synthetic"),
        "data": custom_cfg(tmp_path, *DATA),
        "data_n": custom_cfg(tmp_path, *DATA, "+data.n=120"),
    }
    keys = {name: run_key(run_identity(c)) for name, c in configs.items()}
    parents = {name: str(parent_key(c)) for name, c in configs.items()}
    assert len(set(keys.values())) == len(keys) and len(set(parents.values())) == len(parents)
    assert run_identity(configs["net_w4"])["model"] == {
        "arch": "custom",
        "_target_": "byo_user.Net",
        "width": 4,
    }

    def method(*overrides: str) -> dict:
        return run_identity(
            custom_cfg(tmp_path, *MODEL, "method=custom", "method.anneal_epochs=1", *overrides)
        )["method"]

    gradual = ["method._target_=byo_user.PowerMagnitude", "+method.power=2"]
    assert method(*gradual) == {
        "name": "custom", "_target_": "byo_user.PowerMagnitude", "anneal_epochs": 1, "schedule": "linear",
        "power": 2,
    }  # fmt: skip
    assert method(*gradual) == method(*gradual, "method.initial_temperature=0.3")  # not declared: not read
    assert method(*gradual) != method("method._target_=byo_user.PowerMagnitude", "+method.power=3")
    assert method("method._target_=byo_user.LayerNormalised") == {
        "name": "custom", "_target_": "byo_user.LayerNormalised",
    }  # fmt: skip


def test_a_built_in_identity_has_no_target(tmp_path, user) -> None:
    ident = run_identity(custom_cfg(tmp_path, "model=small_cnn", "data=synthetic"))
    assert "_target_" not in ident["model"] and "_target_" not in ident["data"]


def test_an_npz_is_its_content_not_its_path(tmp_path, user) -> None:
    arrays = {"x_train": np.zeros((4, 1, 4, 4), np.uint8), "y_train": np.arange(4) % 2}
    arrays |= {"x_test": np.zeros((2, 1, 4, 4), np.uint8), "y_test": np.arange(2)}
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", **arrays)
    np.savez(tmp_path / "c.npz", **(arrays | {"y_test": np.array([1, 1])}))

    def key(name: str) -> str:
        return run_key(
            run_identity(custom_cfg(tmp_path, "model=small_cnn", "data=npz", f"data.path={tmp_path / name}"))
        )

    assert key("a.npz") == key("b.npz") != key("c.npz")
