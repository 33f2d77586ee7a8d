"""Corrupted test sets asked of a completed ensemble member are evaluations, not training: the member in the
store gets them from its ``model.pt`` (``members.complete_evaluations``, through ``run``), bit for bit the
logits and accuracies of a member trained with them from the start, and it is never retrained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError
from ssa_experiments.ensembles.members import complete_evaluations, missing_evaluations
from ssa_experiments.store.files import LOGITS, METRICS, MODEL, SUMMARY, read_summary
from ssa_experiments.store.runs import run_dir
from ssa_experiments.training.run import run

REPO = Path(__file__).resolve().parents[2]
MEMBER = (
    "method=temperature_annealing",
    "method.anneal_epochs=1",
    "sparsity=0.5",
    "ensemble.size=2",
    "ensemble.member=1",
)
FEW = ("ensemble.corruptions=[gaussian_noise]", "ensemble.severities=[1]")
MORE = ("ensemble.corruptions=[gaussian_noise,contrast]", "ensemble.severities=[1,3]")
NEW_SETS = ["corrupt/contrast/1", "corrupt/contrast/3", "corrupt/gaussian_noise/3"]


def in_store(make_cfg, *overrides: str):
    """The config of ``overrides`` writing into its run-store directory (``store.run_dir``'s layout)."""
    return make_cfg(*overrides, run_dir=str(run_dir(Path("store"), run_identity(make_cfg(*overrides)))))


def logits(directory: Path) -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(directory / LOGITS, weights_only=True)["splits"]


def untouched(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_more_corruptions_are_evaluated_on_the_stored_member_without_retraining(make_cfg, tmp_path):
    few = in_store(make_cfg, *MEMBER, *FEW)
    first = run(few)
    out = Path(few.output_dir)
    before = {name: untouched(out / name) for name in (METRICS, MODEL)}
    saved = logits(out)
    assert list(saved) == ["test", "val", "corrupt/gaussian_noise/1"]

    more = in_store(make_cfg, *MEMBER, *MORE)
    assert Path(more.output_dir) == out  # the same run in the store: the corrupted sets are not its identity
    assert missing_evaluations(out, more) == [
        "corrupt/gaussian_noise/3",
        "corrupt/contrast/1",
        "corrupt/contrast/3",
    ]
    second = run(more)

    # not retrained: the training record and the network are the very files the first run wrote
    assert {name: untouched(out / name) for name in (METRICS, MODEL)} == before
    assert second["wall_time_s"] == first["wall_time_s"] and second["steps"] == first["steps"]
    assert second["test_acc"] == first["test_acc"] and second["identity"] == first["identity"]
    (added,) = second["evaluated_later"]
    assert added["splits"] == NEW_SETS
    assert read_summary(out) == second  # what run() returned is what is on disk
    now = logits(out)
    for name, split in saved.items():  # what was saved stays, bit for bit
        assert torch.equal(now[name]["logits"], split["logits"]), name
        assert torch.equal(now[name]["targets"], split["targets"]), name
    assert not list(out.glob(".*.tmp"))  # both files replaced atomically

    # a member trained from scratch with every set saves exactly these logits and accuracies
    scratch_summary = run(make_cfg(*MEMBER, *MORE, run_dir="scratch"))
    scratch = logits(tmp_path / "scratch")
    assert list(now) == list(scratch)
    model, scratch_model = (torch.load(d / MODEL, weights_only=True) for d in (out, tmp_path / "scratch"))
    assert all(torch.equal(model[k], scratch_model[k]) for k in model)  # the same member trained twice
    for name in scratch:
        assert torch.equal(now[name]["logits"], scratch[name]["logits"]), name
        assert torch.equal(now[name]["targets"], scratch[name]["targets"]), name
    for key in ("corrupt_acc", "corrupt_acc_by_corruption", "corrupt_acc_mean", "test_acc", "logits_file"):
        assert second[key] == scratch_summary[key], key

    # asked again, or for fewer sets: nothing to do, nothing rewritten, the extra sets kept
    files = {name: untouched(out / name) for name in (SUMMARY, LOGITS)}
    assert complete_evaluations(out, more) is None
    assert run(in_store(make_cfg, *MEMBER, *FEW)) == second
    assert {name: untouched(out / name) for name in (SUMMARY, LOGITS)} == files


def test_a_member_stored_without_its_model_says_how_to_retrain(make_cfg) -> None:
    few = in_store(make_cfg, *MEMBER, *FEW, "train.save_model=false")
    run(few)
    out = Path(few.output_dir)
    assert not (out / MODEL).exists()
    files = {name: untouched(out / name) for name in (SUMMARY, LOGITS, METRICS)}
    with pytest.raises(ConfigError) as err:
        run(in_store(make_cfg, *MEMBER, *MORE, "train.save_model=false"))
    assert err.value.field_name == "train.save_model"
    message = str(err.value)
    assert "\n" not in message and MODEL in message and "force=true" in message
    assert {name: untouched(out / name) for name in (SUMMARY, LOGITS, METRICS)} == files
    assert run(in_store(make_cfg, *MEMBER, *FEW, "train.save_model=false"))["status"] == "completed"


def test_a_lost_logits_file_is_written_again(make_cfg) -> None:
    cfg = in_store(make_cfg, *MEMBER, *FEW)
    run(cfg)
    out = Path(cfg.output_dir)
    saved = logits(out)
    (out / LOGITS).unlink()
    assert missing_evaluations(out, cfg) == ["test", "val", "corrupt/gaussian_noise/1"]
    summary = run(cfg)
    assert summary["evaluated_later"][0]["splits"] == ["corrupt/gaussian_noise/1", "test", "val"]
    again = logits(out)
    assert list(again) == list(saved)
    assert all(torch.equal(again[n]["logits"], saved[n]["logits"]) for n in saved)


@pytest.mark.slow
def test_relaunching_the_member_with_more_corruptions_through_the_cli(tmp_path: Path) -> None:
    """``python -m ssa_experiments.cli.train`` again with more corruptions: the same store directory, the
    member's training files untouched, the new sets in its summary."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    common = [
        sys.executable, "-m", "ssa_experiments.cli.train", "data=synthetic", "model.width=8",
        "parent.epochs=2",
        "train.finetune_epochs=2", "train.batch_size=64", "device=cpu", "method=one_shot", "sparsity=0.5",
        "ensemble.size=2", "ensemble.member=0", "ensemble.severities=[2]", "logger.progress=none",
        f"parent.cache_dir={tmp_path / 'parents'}", f"store.root={tmp_path / 'store'}",
    ]  # fmt: skip

    def launch(corruptions: str, job: str) -> None:
        proc = subprocess.run(
            [*common, f"ensemble.corruptions=[{corruptions}]", f"hydra.run.dir={tmp_path / job}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]

    def stored() -> list[Path]:
        return [p for p in (tmp_path / "store" / "runs").iterdir() if p.is_dir()]

    launch("gaussian_noise", "first")
    (out,) = stored()
    metrics = untouched(out / METRICS)
    launch("gaussian_noise,shot_noise", "second")
    assert stored() == [out]
    assert (tmp_path / "second" / "run").resolve() == out.resolve()
    assert untouched(out / METRICS) == metrics
    summary = json.loads((out / SUMMARY).read_text())
    assert set(summary["corrupt_acc"]) == {"gaussian_noise", "shot_noise"}
    assert list(logits(out)) == ["test", "val", "corrupt/gaussian_noise/2", "corrupt/shot_noise/2"]
