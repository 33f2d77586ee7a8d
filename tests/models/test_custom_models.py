"""A model, a data set and a method of the user's own, in a file outside the repository (``byo_user.py`` in
tmp_path, on sys.path): they train, prune, fine-tune and aggregate through ``model._target_``,
``data._target_`` and ``method._target_``, with the sparsity reported equal to the target; two custom models
are two runs in the store and two parents in the cache; a model that cannot be pruned or gives the wrong
shape is refused before the parent trains (docs/extending.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TRAIN, custom_cfg, user_module

from ssa_experiments.analysis.aggregate import collect, table
from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError
from ssa_experiments.store import runs as store
from ssa_experiments.training.run import run

# Net(width=10): 3 * 10 * 9 = 270 prunable weights (the head stays dense), so 90 % is 243 weights exactly
NET = ["model=custom", "model._target_=byo_user.Net", "+model.width=10"]
DATA = ["data=custom", "data._target_=byo_user.make_data", "+data.n=240"]


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return user_module(tmp_path, monkeypatch)


def test_own_model_and_data_train_prune_finetune_and_aggregate(tmp_path: Path, user: str) -> None:
    cfg = custom_cfg(tmp_path, *NET, *DATA, "method=temperature_annealing", "sparsity=0.9")
    summary = run(cfg)
    assert summary["status"] == "completed"
    assert summary["prunable_params"] == 270 and summary["sparsity"] == 0.9  # 243 of 270, exactly
    assert (summary["model"], summary["data"]) == ("byo_user.Net", "byo_user.make_data")
    weights = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert int((weights["conv.weight"] == 0).sum()) == 243  # the exported network is the pruned one
    rows = collect(tmp_path / "run")
    assert rows.loc[0, "model"] == "byo_user.Net" and rows.loc[0, "sparsity"] == 0.9
    assert table(rows).shape[0] == 1


def test_a_function_model_with_the_input_shape_and_dataset_splits(tmp_path: Path, user: str) -> None:
    """A function (not a class) taking ``input_shape``; data returned as torch Datasets with a val split
    of their own (used as given: nothing carved out of train)."""
    cfg = custom_cfg(
        tmp_path, "model=custom", "model._target_=byo_user.mlp", "+model.hidden=20", "data=custom",
        "data._target_=byo_user.make_datasets", "method=one_shot", "sparsity=0.9",
    )  # fmt: skip
    summary = run(cfg)
    assert summary["status"] == "completed" and summary["val_acc"] is not None
    assert summary["prunable_params"] == 3 * 8 * 8 * 20 and summary["sparsity"] == 0.9


def test_own_method_runs(tmp_path: Path, user: str) -> None:
    """A gradual method of the user's own (a subclass of Iterative with its own score) reaches its target at
    method.anneal_epochs; a one-shot one with a per-layer score prunes to the target at once."""
    gradual = run(
        custom_cfg(
            tmp_path, *NET, *DATA, "method=custom", "method._target_=byo_user.PowerMagnitude",
            "+method.power=2", "method.anneal_epochs=2", "sparsity=0.9", run_dir="gradual",
        )
    )  # fmt: skip
    assert gradual["status"] == "completed" and gradual["method"] == "byo_user.PowerMagnitude"
    assert gradual["sparsity"] == 0.9 and gradual["epochs_at_target"] == 1  # 3 epochs, target from epoch 2
    one_shot = run(
        custom_cfg(
            tmp_path, *NET, *DATA, "method=custom", "method._target_=byo_user.LayerNormalised",
            "sparsity=0.9", run_dir="one_shot",
        )
    )  # fmt: skip
    assert one_shot["sparsity"] == 0.9 and one_shot["epochs_at_target"] == 3


def test_two_custom_models_are_two_runs_and_two_parents(tmp_path: Path, user: str) -> None:
    """An in-process sweep over two custom models: the store holds two runs, the cache two parents."""
    root = tmp_path / "store"
    for target in ("byo_user.Net", "byo_user.mlp"):
        cfg = custom_cfg(tmp_path, "model=custom", f"model._target_={target}", *DATA, "method=one_shot")
        cfg.output_dir = str(store.run_dir(root, run_identity(cfg)))
        assert run(cfg)["status"] == "completed"
    assert len([p for p in (root / "runs").iterdir() if p.is_dir()]) == 2
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2
    rows = collect(root)
    assert (
        set(rows["model"]) == {"byo_user.Net", "byo_user.mlp"} and table(rows).shape[0] == 2
    )  # two settings


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("byo_user.NoWeights", "has no layer the masks can prune"),
        ("byo_user.wrong_shape", "expected (2, 3) logits"),
    ],
)
def test_a_model_that_cannot_be_pruned_or_gives_the_wrong_shape_is_refused_before_the_parent(
    tmp_path: Path, user: str, target: str, says: str
) -> None:
    cfg = custom_cfg(tmp_path, "model=custom", f"model._target_={target}", *DATA, "method=one_shot")
    with pytest.raises(ConfigError, match=r"^model._target_: ") as err:
        run(cfg)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()  # no parent was trained


def test_a_sweep_over_two_custom_models_on_the_command_line(tmp_path: Path, user: str) -> None:
    """``-m model._target_=A,B`` from a directory outside the repository, the user's module on PYTHONPATH."""
    proc = subprocess.run(
        [sys.executable, *TRAIN, "-m", "model=custom", "model._target_=byo_user.Net,byo_user.mlp", *DATA,
         "method=one_shot", "parent.epochs=1", "train.finetune_epochs=1", "device=cpu",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", f"store.root={tmp_path / 'store'}",
         f"parent.cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [p for p in (tmp_path / "store" / "runs").iterdir() if p.is_dir()]  # besides their lock files
    assert len(runs) == 2 and all((r / "summary.json").exists() for r in runs)
    assert set(collect(tmp_path / "store")["model"]) == {"byo_user.Net", "byo_user.mlp"}


def test_a_callable_taking_only_kwargs_gets_the_classes_from_the_user(tmp_path: Path, user: str) -> None:
    """torchvision's resnet18 takes num_classes through ``**kwargs`` only: nothing of the data set is passed
    to it, its 1000 logits are refused by name, and ``+model.num_classes`` sets it."""
    from ssa_experiments.models import build_model

    resnet = ["model=custom", "model._target_=torchvision.models.resnet18", "data=synthetic"]
    with pytest.raises(ConfigError, match=r"^model._target_: .* returns \(2, 1000\) .* expected \(2, 4\)"):
        build_model(custom_cfg(tmp_path, *resnet).model, 3, 8, 4, (3, 8, 8))
    model = build_model(custom_cfg(tmp_path, *resnet, "+model.num_classes=4").model, 3, 8, 4, (3, 8, 8))
    assert model.fc.out_features == 4
