"""Resumable checkpoints (training/checkpoint.py): a killed run continues bit-identically, every random stream
included; a checkpoint that this run cannot continue exactly is refused with one line."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_resumes_identically, killed_run

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.store.files import DamagedFile, read_metrics
from ssa_experiments.training.checkpoint import FORMAT, load_checkpoint, rng_states, set_rng_states
from ssa_experiments.training.run import run


def test_killed_run_resumes_from_checkpoint(make_cfg, tmp_path: Path) -> None:
    overrides = ("method=temperature_annealing", "method.anneal_epochs=2", "train.finetune_epochs=4")
    reference = run(make_cfg(*overrides, run_dir="reference"))

    killed_run(make_cfg(*overrides, run_dir="killed"), 3)  # dies in fine-tuning epoch 3 of 4
    killed = tmp_path / "killed"
    assert (killed / "checkpoint.pt").exists() and not (killed / "summary.json").exists()
    assert len(read_metrics(killed)) == 2

    resumed = run(make_cfg(*overrides, run_dir="killed"))
    assert [r["epoch"] for r in read_metrics(killed)] == [1, 2, 3, 4]
    assert resumed["test_acc"] == reference["test_acc"]  # bit-identical continuation on CPU
    assert read_metrics(killed)[-1]["train_loss"] == read_metrics(tmp_path / "reference")[-1]["train_loss"]
    # A completed run is not recomputed.
    assert run(make_cfg(*overrides, run_dir="killed"))["wall_time_s"] == resumed["wall_time_s"]


def test_checkpoint_keeps_rng_states_on_cpu_and_records_the_device(make_cfg, tmp_path) -> None:
    overrides = ("method=temperature_annealing", "method.anneal_epochs=2", "train.finetune_epochs=3")
    killed_run(make_cfg(*overrides), 2)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["device_type"] == "cpu"
    states = [ckpt["method"]["generator"], ckpt["rng"]["torch"]]
    assert all(s.device.type == "cpu" and s.dtype == torch.uint8 for s in states)
    # What a CUDA run wrote cannot continue on the CPU (and vice versa): one clear error, no crash.
    ckpt["device_type"] = "cuda"
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ConfigError) as info:
        run(make_cfg(*overrides))
    assert info.value.field_name == "device" and "written on cuda" in str(info.value)


def test_dropout_model_killed_mid_annealing_resumes_bit_identically(make_cfg, tmp_path) -> None:
    overrides = (
        "method=random_annealing", "method.anneal_epochs=3", "train.finetune_epochs=4", "model.dropout=0.3",
    )  # fmt: skip
    reference = run(make_cfg(*overrides, run_dir="reference"))
    # dies in epoch 2 of 4: annealing is still stochastic then
    assert_resumes_identically(make_cfg, tmp_path, overrides, reference, kill_epoch=2)


def draws() -> tuple[list[float], float, float]:
    """One draw from each random stream a CPU run uses: torch's global generator, numpy's, Python's."""
    return torch.rand(3).tolist(), float(np.random.rand()), random.random()


def test_rng_states_restore_every_cpu_stream() -> None:
    states = rng_states(torch.device("cpu"))
    first = draws()
    assert draws() != first  # the streams moved on
    set_rng_states(states)
    assert draws() == first


CPU = torch.device("cpu")
IDENTITY = {"method": {"name": "one_shot"}, "seed": 0}


def write(path: Path, **changes) -> Path:
    """A checkpoint with the fields load_checkpoint checks (the states it does not read left out)."""
    torch.save({"format": FORMAT, "identity": IDENTITY, "device_type": "cpu", "epoch": 2, **changes}, path)
    return path


def test_a_checkpoint_of_this_config_format_and_device_is_read(tmp_path: Path) -> None:
    assert load_checkpoint(write(tmp_path / "c.pt"), IDENTITY, CPU)["epoch"] == 2


def test_a_format_2_checkpoint_is_read_as_one_between_epochs(tmp_path: Path) -> None:
    """Format 3 added ``in_epoch``; a checkpoint written before it is one between epochs."""
    ckpt = load_checkpoint(write(tmp_path / "c.pt", format=2), IDENTITY, CPU)
    assert ckpt["epoch"] == 2 and ckpt.get("in_epoch") is None


def test_masks_are_stored_as_bool_only_when_that_loses_nothing() -> None:
    """0/1 train masks as bool (a quarter of the bytes); soft annealing's P(t) or DropConnect's 1 / (1 - r)
    as they are: mid-epoch no start of an epoch rewrites them."""
    from ssa_experiments.training.checkpoint import _compact

    binary, scaled = torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0.0, 1.25, 1.25])
    out = _compact({"a.train_mask": binary, "b.train_mask": scaled, "a.weight": binary})
    assert out["a.train_mask"].dtype == torch.bool and torch.equal(out["a.train_mask"].float(), binary)
    assert torch.equal(out["b.train_mask"], scaled) and out["a.weight"].dtype == torch.float32


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"identity": {**IDENTITY, "seed": 1}}, "output_dir", "written by a different config"),
        ({"format": 1}, "output_dir", "written by an older version"),
        ({"device_type": "cuda"}, "device", "written on cuda, this run is on cpu"),
    ],
)
def test_a_checkpoint_this_run_cannot_continue_exactly_is_refused(
    tmp_path: Path, changes: dict, field: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_checkpoint(write(tmp_path / "c.pt", **changes), IDENTITY, CPU)
    assert info.value.field_name == field


def test_a_torn_or_foreign_checkpoint_is_a_damaged_file_naming_it(tmp_path: Path) -> None:
    torn = tmp_path / "torn.pt"
    torn.write_bytes(write(tmp_path / "whole.pt").read_bytes()[:100])
    with pytest.raises(DamagedFile, match=r"torn\.pt is damaged: unreadable"):
        load_checkpoint(torn, IDENTITY, CPU)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(DamagedFile, match="holds a list, not a checkpoint"):
        load_checkpoint(tmp_path / "list.pt", IDENTITY, CPU)


@pytest.mark.cuda
def test_a_cuda_run_keeps_its_rng_states_on_the_cpu_and_resumes(make_cfg, tmp_path: Path) -> None:
    overrides = (
        "method=temperature_annealing",
        "method.anneal_epochs=2",
        "train.finetune_epochs=3",
        "device=cuda",
    )
    killed_run(make_cfg(*overrides), 2)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["device_type"] == "cuda"
    states = [ckpt["method"]["generator"], ckpt["rng"]["torch"], *ckpt["rng"]["cuda"]]
    assert all(s.device.type == "cpu" and s.dtype == torch.uint8 for s in states)
    assert run(make_cfg(*overrides))["status"] == "completed"
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]
