"""Checkpoints inside an epoch (issue 26): ``train.checkpoint_every_steps`` and a scheduler's stop mid-epoch
save ``checkpoint.pt`` at a step boundary, and a run killed after it resumes there, bit for bit, for every
method: the method's start-of-epoch work (iterative pruning, re-scoring, the epoch's mask sample, DST's
schedule position) is restored from the checkpoint, not done again on weights that have moved since."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import Callback, RunContext

from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.methods.iterative import Iterative
from ssa_experiments.pruning.methods.oneshot import OneShot
from ssa_experiments.store.files import CHECKPOINT, read_metrics
from ssa_experiments.training.run import run

ANNEAL = ("method.anneal_epochs=2",)
# every method, and the settings whose start-of-epoch work differs (granularity, resample, rescore, GMP)
SETTINGS = {
    "dense": ("method=dense", "sparsity=0"),
    "one_shot": ("method=one_shot",),
    "iterative": ("method=iterative", *ANNEAL),
    "gmp": ("method=iterative", "method.schedule=polynomial", "method.prune_every_steps=2", *ANNEAL),
    "temperature_step": ("method=temperature_annealing", "method.granularity=step", *ANNEAL),
    "temperature_epoch_rescore": (
        "method=temperature_annealing", "method.rescore=true", "method.resample=epoch",
        "method.anneal_epochs=3", "train.finetune_epochs=4",
    ),
    "random_rescore": (
        "method=random_annealing", "method.rescore=true", "method.anneal_epochs=3", "train.finetune_epochs=4",
    ),
    "stochastic_constant": ("method=stochastic_constant", *ANNEAL),
    "dropconnect_epoch": ("method=dropconnect_target", "method.resample=epoch", *ANNEAL),
    "soft_step": ("method=soft_annealing", "method.granularity=step", *ANNEAL),
    "set": ("method=set", "method.update_every=2"),
    "rigl": ("method=rigl", "method.update_every=2"),
}  # fmt: skip


class KillAfterStep(Callback):
    """Dies like a kill (no summary written) after ``step`` steps of fine-tuning epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step(self, step: int, ctx: RunContext) -> None:
        if len(ctx.history) == self.epoch and step == self.step:
            raise KeyboardInterrupt


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_metrics(run_dir)]


def _same_weights(a: Path, b: Path) -> bool:
    x, y = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_a_run_killed_inside_an_epoch_resumes_there_to_the_same_numbers(
    make_cfg, tmp_path: Path, setting: str
) -> None:
    """Checkpoints every 2 steps; killed after step 3 of epoch 2 (inside the annealing for the gradual
    methods, after a DST update): the checkpoint is the one after step 2, the resumed run redoes one step."""
    overrides = (*SETTINGS[setting], "train.checkpoint_every_steps=2")
    reference = run(make_cfg(*overrides, run_dir="reference"))
    with pytest.raises(KeyboardInterrupt):
        run(make_cfg(*overrides, run_dir="killed"), callbacks=[KillAfterStep(1, 3)])
    out = tmp_path / "killed"
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["in_epoch"]["epoch"] == 1 and ckpt["in_epoch"]["step"] == 2
    assert len(read_metrics(out)) == 1
    resumed = run(make_cfg(*overrides, run_dir="killed"))
    assert resumed["status"] == "completed" and resumed["steps"] == reference["steps"]
    assert _rows(out) == _rows(tmp_path / "reference")  # losses, accuracies, sparsities, at_target, lr
    assert resumed["test_acc"] == reference["test_acc"] and _same_weights(out, tmp_path / "reference")


def test_the_interval_does_not_change_the_numbers(make_cfg, tmp_path: Path) -> None:
    """Saving inside epochs reads the state, never moves it: every step vs none."""
    base = ("method=temperature_annealing", "method.granularity=step", *ANNEAL)
    a = run(make_cfg(*base, "train.checkpoint_every_steps=1", run_dir="a"))
    b = run(make_cfg(*base, run_dir="b"))
    assert a["test_acc"] == b["test_acc"] and _rows(tmp_path / "a") == _rows(tmp_path / "b")
    assert _same_weights(tmp_path / "a", tmp_path / "b")


class OwnEpochStart(OneShot):
    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        self.seen = epoch


class OwnEpochStartAndResume(OwnEpochStart):
    def resume_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        self.seen = epoch


class OwnIterative(Iterative):
    pass


@pytest.mark.unit
def test_a_method_with_start_of_epoch_work_and_no_resume_epoch_is_resumed_from_epoch_boundaries() -> None:
    """Its state after ``begin_epoch`` is not known to be restorable: no checkpoint is written inside its
    epochs (the run's ``in_epoch_saver`` is not passed), so it never resumes from a wrong state."""
    assert PruningMethod.resumes_inside_epochs() and OneShot.resumes_inside_epochs()
    assert OwnIterative.resumes_inside_epochs() and OwnEpochStartAndResume.resumes_inside_epochs()
    assert not OwnEpochStart.resumes_inside_epochs()
