"""A run's identity (its store key) and the parent's cache key: everything that changes the numbers is in
them, nothing that does not (issue 21's two lists, case by case)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import compose_config

from ssa_experiments.config import identity as config_module
from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.validate import validate
from ssa_experiments.data.loaders import training_steps_per_epoch
from ssa_experiments.training.parent import parent_key

BASE = ["output_dir=/tmp/unused", "method=one_shot", "sparsity=0.9", "device=cpu"]


def ident(*overrides: str) -> dict:
    cfg = compose_config([*BASE, *overrides])
    validate(cfg)
    return run_identity(cfg)


def pkey(*overrides: str) -> dict:
    return parent_key(compose_config([*BASE, *overrides]))


CHANGES = [
    ("device=cpu", "device=cuda"),
    ("device=cuda", "device=cuda train.amp=false"),  # bf16 autocast vs fp32 on a GPU
    ("device=cuda", "device=cuda train.channels_last=false"),  # image data: the layout is applied
    ("train.cpu_numerics=portable", "train.cpu_numerics=native"),
    ("train.cpu_threads=1", "train.cpu_threads=2"),
]


@pytest.mark.parametrize(("a", "b"), CHANGES)
def test_what_changes_the_numbers_changes_the_identity_and_the_parent_key(a: str, b: str) -> None:
    assert ident(*a.split()) != ident(*b.split())
    assert pkey(*a.split()) != pkey(*b.split())


SAME = [
    ("method=dense", "method=dense eval.bn_recalibration_batches=0"),
    ("train.checkpoint_every=1", "train.checkpoint_every=0"),
    ("train.checkpoint_every_steps=0", "train.checkpoint_every_steps=50"),
    ("train.save_model=true", "train.save_model=false"),
    ("parent.cache=true", "parent.cache=false"),
    ("lr=one_cycle", "lr=one_cycle lr.gamma=0.5 lr.milestones=[0.3]"),
    ("lr=step", "lr=step lr.pct_start=0.3 lr.div_factor=3"),
    ("device=cpu", "device=cpu train.amp=false train.channels_last=false"),  # the CPU applies neither
    ("device=cuda", "device=cuda train.cpu_threads=4 train.cpu_numerics=native"),  # a GPU reads neither
    (
        "device=cuda data=mnist1d model=cnn1d",
        "device=cuda data=mnist1d model=cnn1d train.channels_last=false",
    ),
    ("method=dense sparsity=0.0", "method=dense sparsity=-0.0"),
    ("sparsity=0.0", "sparsity=-0.0"),
    ("objective=val_acc", "objective=best_val_acc"),
    ("ensemble.member=0", "ensemble.member=0 ensemble.corruptions=[contrast] ensemble.severities=[5]"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_one_computation_has_one_identity(a: str, b: str) -> None:
    assert ident(*a.split()) == ident(*b.split())
    assert pkey(*a.split()) == pkey(*b.split())


def test_unread_lr_fields_leave_the_parent_key_alone() -> None:
    assert pkey("parent.lr.gamma=0.5") == pkey()
    assert pkey("parent.lr.final_ratio=0.5") != pkey()  # parent_swa_style reads it


def test_gmp_every_epoch_is_per_epoch_pruning() -> None:
    cfg = compose_config([*BASE, "method=iterative"])
    steps = training_steps_per_epoch(cfg)
    assert steps == 1293 // 128  # digits: 1,437 training images less 144 held out, batch 128, last dropped
    per_epoch = ident("method=iterative")
    assert ident("method=iterative", f"method.prune_every_steps={steps}") == per_epoch
    assert ident("method=iterative", f"method.prune_every_steps={steps - 1}") != per_epoch


def test_the_compute_version_is_in_the_identity_and_the_parent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before, parent_before = ident(), pkey()
    assert before["compute"]["version"] == config_module.COMPUTE_VERSION
    monkeypatch.setattr(config_module, "COMPUTE_VERSION", config_module.COMPUTE_VERSION + 1)
    assert ident() != before
    assert pkey() != parent_before


def test_a_brought_parent_is_keyed_by_its_content_not_its_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights one")
    same_content = ident(f"parent.path={a}"), ident(f"parent.path={b}")
    assert same_content[0] == same_content[1]
    assert str(a) not in str(same_content[0])
    b.write_bytes(b"weights two")
    assert ident(f"parent.path={b}") != same_content[0]


def test_no_unread_precision_key_reaches_a_cpu_identity() -> None:
    train = ident()["train"]
    precision = ("amp", "channels_last", "cpu_threads", "cpu_numerics")
    for key in (*precision, "checkpoint_every", "checkpoint_every_steps", "save_model"):
        assert key not in train
    assert ident()["compute"] == {
        "version": config_module.COMPUTE_VERSION,
        "device": "cpu",
        "cpu_numerics": "portable",
        "cpu_threads": 1,
    }


def test_compile_is_in_the_compute_identity_only_when_on_and_runs_per_device_never() -> None:
    """Compiled numbers differ from eager in the last bits (training/compile.py): another run and another
    parent; off, the key is absent, so every eager identity is what it was before the key existed. How many
    runs share a GPU is where a run executes, not what it computes."""
    on = compose_config(["output_dir=/tmp/unused", "train.compile=true"])
    assert run_identity(on)["compute"] == {**ident()["compute"], "compile": True}
    assert parent_key(on) != parent_key(compose_config(["output_dir=/tmp/unused"]))
    assert ident("train.compile=false") == ident() == ident("train.runs_per_device=8")
    assert "compile" not in ident()["train"] and "runs_per_device" not in ident()["train"]


def test_a_store_written_before_the_compute_version_stays_readable_and_is_not_reused(
    make_cfg, tmp_path
) -> None:
    """A run stored by code before COMPUTE_VERSION 1 (its identity has no ``compute``, its summary no
    ``provenance``): `aggregate` and `status` still read it as completed, and the same config now maps to
    another store key, so it is computed anew rather than served as a result of this code."""
    import json

    from ssa_experiments.analysis.aggregate import collect
    from ssa_experiments.store import runs as store
    from ssa_experiments.store.status import states

    cfg = make_cfg("method=one_shot", "sparsity=0.5")
    old_identity = {k: v for k, v in run_identity(cfg).items() if k != "compute"}
    old_dir = store.run_dir(tmp_path / "store", old_identity)
    old_dir.mkdir(parents=True)
    summary = {"status": "completed", "method": "one_shot", "target_sparsity": 0.5, "seed": 0,
               "test_acc": 50.0, "identity": old_identity,
               "config": {"method": {"name": "one_shot"}, "seed": 0}}  # fmt: skip
    (old_dir / "summary.json").write_text(json.dumps(summary))
    store.link(tmp_path / "sweep" / "method=one_shot", old_dir)
    assert collect(tmp_path / "sweep")[["status", "test_acc"]].values.tolist() == [["completed", 50.0]]
    assert states(tmp_path / "store")["status"].tolist() == ["completed"]
    assert store.run_dir(tmp_path / "store", run_identity(cfg)) != old_dir
