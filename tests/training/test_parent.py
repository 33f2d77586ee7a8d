"""The dense parent (training/parent.py): trained once per key and cached, checked by its digest, brought by
path; the key holds exactly the fields that change the parent's weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose_config
from omegaconf import OmegaConf

from ssa_experiments.training.parent import (
    checkpoint_epochs,
    load_checkpoint_file,
    parent_key,
    parent_trainer,
    same_weights,
    snapshot,
)
from ssa_experiments.training.run import build, run


def test_parent_is_cached_and_reused(make_cfg, tmp_path: Path) -> None:
    first = run(make_cfg("method=one_shot", run_dir="a"))
    second = run(make_cfg("method=iterative", "method.anneal_epochs=2", "sparsity=0.5", run_dir="b"))
    other_seed = run(make_cfg("method=one_shot", "seed=1", run_dir="c"))
    assert first["parent"]["source"] == "trained"
    assert second["parent"]["source"] == "cache" and second["parent"]["hash"] == first["parent"]["hash"]
    assert second["parent"]["test_acc"] == first["parent"]["test_acc"]
    assert (
        other_seed["parent"]["source"] == "trained"
        and other_seed["parent"]["hash"] != first["parent"]["hash"]
    )


def test_corrupt_parent_cache_entry_is_rebuilt(make_cfg, tmp_path: Path) -> None:
    first = run(make_cfg("method=one_shot", run_dir="a"))
    weights = tmp_path / "cache" / first["parent"]["hash"] / "parent.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    again = run(make_cfg("method=one_shot", run_dir="b"))
    assert again["parent"]["source"] == "trained"
    assert run(make_cfg("method=one_shot", run_dir="c"))["parent"]["source"] == "cache"


def test_parent_path_brings_your_own_checkpoint(make_cfg, tmp_path: Path) -> None:
    first = run(make_cfg("method=dense", run_dir="a"))
    ckpt = tmp_path / "mine.pt"
    cached = tmp_path / "cache" / first["parent"]["hash"] / "parent.pt"
    torch.save({"state_dict": torch.load(cached)}, ckpt)
    summary = run(make_cfg("method=one_shot", f"parent.path={ckpt}", run_dir="b"))
    assert summary["parent"]["source"] == "path"
    assert summary["parent"]["test_acc"] == first["parent"]["test_acc"]


@pytest.mark.parametrize(
    # amp and channels-last change a parent on CUDA only (tests/test_identity.py checks both devices)
    "change",
    ["data.pipeline=torch", "train.cpu_threads=2", "train.cpu_numerics=native"],
)
def test_parent_key_covers_fields_that_change_the_weights(change: str) -> None:
    assert parent_key(compose_config([change])) != parent_key(compose_config([]))


@pytest.mark.parametrize(
    "change", ["method=one_shot", "sparsity=0.5", "data.root=/elsewhere", "data.num_workers=0", "device=cpu"]
)
def test_parent_key_ignores_fields_that_do_not(change: str) -> None:
    assert parent_key(compose_config([change])) == parent_key(compose_config([]))


def test_parent_key_ignores_save_and_rewind_epochs() -> None:
    base = parent_key(compose_config([]))
    assert parent_key(compose_config(["parent.save_epochs=[0,5,10]"])) == base
    assert parent_key(compose_config(["parent.rewind_epoch=3"])) == base


@pytest.mark.parametrize(
    ("save_epochs", "rewind_epoch", "expected"),
    [([], None, []), ([5, 0, 5], None, [0, 5]), ([5, 0], 3, [0, 3, 5]), ([2], 2, [2])],
)
def test_a_cache_entry_holds_the_saved_epochs_and_the_rewind_epoch_once_each(
    save_epochs: list[int], rewind_epoch: int | None, expected: list[int]
) -> None:
    parent = OmegaConf.create({"save_epochs": save_epochs, "rewind_epoch": rewind_epoch})
    assert checkpoint_epochs(parent) == expected


def test_same_weights_means_the_same_keys_and_bit_identical_tensors() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])}
    assert same_weights(a, {k: v.clone() for k, v in a.items()})
    assert not same_weights(a, {**a, "w": torch.tensor([1.0, 2.0 + 2**-20])})  # one ulp-scale change
    assert not same_weights(a, {"w": a["w"]})  # a key missing


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model"])
def test_a_users_checkpoint_is_read_plain_or_wrapped_and_without_dataparallels_prefix(
    tmp_path: Path, wrap: str
) -> None:
    state = {"module.0.weight": torch.ones(2, 2), "1.bias": torch.zeros(2)}
    torch.save(state if wrap == "plain" else {wrap: state, "epoch": 7}, tmp_path / "mine.pt")
    loaded = load_checkpoint_file(tmp_path / "mine.pt")
    assert sorted(loaded) == ["0.weight", "1.bias"]
    assert torch.equal(loaded["0.weight"], torch.ones(2, 2))


class _Recorder:
    """A ParentObserver that keeps what it is shown."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.steps = 0

    def start(self, epochs: int, steps_per_epoch: int, done: int = 0) -> None:
        self.total = epochs * steps_per_epoch

    def step(self, step: int) -> None:
        self.steps += 1

    def epoch(self, row: dict) -> None:
        self.rows.append(row)

    def finish(self, ok: bool) -> None:
        self.ok = ok


@pytest.mark.parametrize("pipeline", ["device", "torch"])
def test_watching_the_parent_changes_none_of_its_weights(make_cfg, pipeline: str) -> None:
    """Each parent epoch is evaluated for its progress and parent_metrics.jsonl (eval mode, under a forked
    RNG): the parent trained watched is bit-identical to the parent trained unwatched, weights and BatchNorm
    statistics, with either data pipeline."""
    cfg = make_cfg(f"data.pipeline={pipeline}", "data.num_workers=0", "parent.epochs=3")
    states, recorder = [], _Recorder()
    for observer in (None, recorder):
        setup = build(cfg)
        train = parent_trainer(cfg, setup.batches, setup.precision, setup.loss_fn, observer)
        metrics = train(setup.model)
        states.append(snapshot(setup.model))
    assert same_weights(*states)
    assert (
        [r["epoch"] for r in recorder.rows] == [1, 2, 3] and recorder.steps == recorder.total and recorder.ok
    )
    assert recorder.rows[-1]["test_acc"] == pytest.approx(metrics["test_acc"])
