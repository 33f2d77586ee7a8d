"""Retraining baselines (issue 15): fine-tuning, LR rewinding and weight rewinding, composed with the methods.

LRs are checked against hand-computed values of the parent's schedule; weight rewinding against the tensors
the parent cache holds; the cache against a count of parent trainings over a whole sweep.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError, LrConfig, ParentConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.training import parent as parent_module
from ssa_experiments.training.callbacks import Callback, RunContext
from ssa_experiments.training.lr import lr_at, lr_replay_start, retraining_lr
from ssa_experiments.training.parent import epoch_file
from ssa_experiments.training.run import run
from ssa_experiments.training.summary import lr_trace_sha256

SWA = LrConfig(name="parent_swa_style", lr=0.1, decay_start=0.5, decay_end=0.9, final_ratio=0.01)
# parent_swa_style over 4 epochs x 3 steps = 12 steps: x = step / 12; flat 0.1 to x = 0.5, then
# 0.1 * (1 - 0.99 * (x - 0.5) / 0.4) down to x = 0.9, then 0.001. Steps 0..11:
PARENT_LRS = [0.1] * 7 + [0.079375, 0.05875, 0.038125, 0.0175, 0.001]  # step 6: x = 0.5, still flat
# A tiny parent with a checkpoint to rewind to; lr_rewind needs finetune_epochs <= parent.epochs (- k).
REWIND = ["parent.epochs=3", "train.finetune_epochs=2", "sparsity=0.8"]


def parent_cfg(**kw: Any) -> ParentConfig:
    return ParentConfig(epochs=4, lr=SWA, **kw)


# -- the LR of each retraining baseline: a pure function of the step -----------------------------------------


def test_parent_schedule_hand_values() -> None:
    """The reference the other tests read off: the parent's own 12-step schedule."""
    assert [lr_at(s, 12, SWA) for s in range(12)] == pytest.approx(PARENT_LRS, abs=1e-12)


def test_lr_rewind_replays_the_last_t_epochs_of_the_parent() -> None:
    """t = 2 of 4 parent epochs, 3 steps each: fine-tuning step i takes the parent's LR at step 6 + i."""
    lr = retraining_lr(LrConfig(name="lr_rewind"), parent_cfg(), steps_per_epoch=3, finetune_epochs=2)
    assert [lr(i) for i in range(6)] == pytest.approx(
        [0.1, 0.079375, 0.05875, 0.038125, 0.0175, 0.001], abs=1e-12
    )
    assert [lr(i) for i in range(6)] == [lr_at(6 + i, 12, SWA) for i in range(6)]  # exactly, every step
    assert lr_replay_start("lr_rewind", parent_cfg(), 2) == 2


def test_lr_rewind_with_weight_rewinding_replays_from_k() -> None:
    lr = retraining_lr(LrConfig(name="lr_rewind"), parent_cfg(rewind_epoch=1), 3, 3)
    assert [lr(i) for i in range(9)] == pytest.approx(PARENT_LRS[3:], abs=1e-12)
    assert lr_replay_start("lr_rewind", parent_cfg(rewind_epoch=1), 3) == 1
    # Fewer epochs than parent.epochs - k: the replay starts at k all the same and stops early.
    short = retraining_lr(LrConfig(name="lr_rewind"), parent_cfg(rewind_epoch=1), 3, 1)
    assert [short(i) for i in range(3)] == PARENT_LRS[3:6]


def test_finetune_is_the_parents_last_lr_at_every_step() -> None:
    lr = retraining_lr(LrConfig(name="finetune"), parent_cfg(), steps_per_epoch=3, finetune_epochs=2)
    assert [lr(i) for i in range(6)] == [lr_at(11, 12, SWA)] * 6
    assert lr(0) == pytest.approx(0.001)
    assert lr_replay_start("finetune", parent_cfg(), 2) is None


def test_other_schedules_run_over_the_fine_tuning_steps_as_before() -> None:
    one_cycle = LrConfig(name="one_cycle", lr=0.1)
    lr = retraining_lr(one_cycle, parent_cfg(), steps_per_epoch=3, finetune_epochs=5)
    assert [lr(s) for s in range(15)] == [lr_at(s, 15, one_cycle) for s in range(15)]
    with pytest.raises(ValueError, match="retraining_lr"):
        lr_at(0, 10, LrConfig(name="finetune"))


class FinetuneLrs(Callback):
    """The LR of every fine-tuning step the runs it is given to take, in order (the parent's steps are not
    fine-tuning steps)."""

    def __init__(self) -> None:
        self.trace: list[float] = []
        self.step = 0

    def on_start(self, history: list[dict[str, Any]], ctx: RunContext) -> None:
        self.step = ctx.global_step

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext) -> None:
        self.trace += [ctx.lr_fn(s) for s in range(self.step, row["step"])]
        self.step = row["step"]


def test_runs_take_and_record_the_parents_lrs(make_cfg) -> None:
    """Real runs, parent 4 epochs x 3 steps (parent_swa_style, the default), t = 2."""
    lrs = FinetuneLrs()
    trace = lrs.trace
    budget = ("method=one_shot", "parent.epochs=4", "train.finetune_epochs=2", "train.max_steps_per_epoch=3")
    summary = run(make_cfg(*budget, "lr=lr_rewind"), callbacks=[lrs])
    assert trace == [lr_at(6 + i, 12, SWA) for i in range(6)] == pytest.approx(PARENT_LRS[6:], abs=1e-12)
    assert summary["steps"] == 6 and summary["lr_replay_start_epoch"] == 2 and summary["rewind_epoch"] is None
    assert summary["lr_trace_sha256"] == lr_trace_sha256(6, lambda s: trace[s])  # the digest is honest
    finetune = run(make_cfg(*budget, "lr=finetune", run_dir="ft"), callbacks=[lrs])
    assert trace[6:] == [lr_at(11, 12, SWA)] * 6 and finetune["lr_replay_start_epoch"] is None
    assert finetune["lr_trace_sha256"] == lr_trace_sha256(6, lambda s: trace[6 + s])


# -- weight rewinding --------------------------------------------------------------------------------------


class StartStates(Callback):
    """The model state (weights, buffers, masks) as fine-tuning starts, of every run it is given to, in
    order."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        if epoch == 0:
            self.states.append({k: v.detach().clone() for k, v in ctx.model.state_dict().items()})


def stored_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A masked model's state under plain names: stored (unmasked) weights, buffers; no masks."""
    out = {}
    for key, value in state.items():
        if ".parametrizations." not in f".{key}":
            out[key] = value
        elif key.endswith(".original"):
            out[key.replace("parametrizations.", "").removesuffix(".original")] = value
    return out


def eval_masks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    suffix = ".parametrizations.weight.0.eval_mask"
    return {k.removesuffix(suffix) + ".weight": v for k, v in state.items() if k.endswith(suffix)}


def cached_entry(tmp_path: Path, summary: dict[str, Any]) -> Path:
    return tmp_path / "cache" / summary["parent"]["hash"]


@pytest.mark.parametrize("k", [0, 1])
def test_weight_rewinding_restores_epoch_k_weights_on_the_trained_parents_mask(
    make_cfg, tmp_path, k: int
) -> None:
    start = StartStates()
    states = start.states
    plain = run(make_cfg("method=one_shot", *REWIND, run_dir="one_shot"), callbacks=[start])  # the mask of
    rewound = run(  # the trained parent, then the rewound run's
        make_cfg("method=one_shot", *REWIND, f"parent.rewind_epoch={k}", "lr=lr_rewind", run_dir="rw"),
        callbacks=[start],
    )
    entry = cached_entry(tmp_path, rewound)
    epoch_k = torch.load(entry / epoch_file(k), weights_only=True)
    trained = torch.load(entry / "parent.pt", weights_only=True)
    masks = eval_masks(states[1])
    assert masks and all(torch.equal(masks[n], m) for n, m in eval_masks(states[0]).items())
    restored = stored_weights(states[1])
    assert restored.keys() == epoch_k.keys()
    for name, value in epoch_k.items():
        if name in masks:  # kept weights: epoch k's; removed ones: exactly zero
            keep = masks[name]
            assert torch.equal(restored[name][keep], value[keep]) and not restored[name][~keep].any()
        else:  # biases, BatchNorm weights and statistics: epoch k's too
            assert torch.equal(restored[name], value), name
    assert not all(torch.equal(epoch_k[n], trained[n]) for n in masks)  # a real rewind, not the parent
    assert rewound["rewind_epoch"] == k and rewound["lr_replay_start_epoch"] == k
    assert rewound["steps"] == plain["steps"]  # train.finetune_epochs: the same budget
    assert rewound["sparsity"] == pytest.approx(0.8, abs=1e-3)


def test_weight_rewinding_keeps_annealings_stochastic_masks_working(make_cfg, tmp_path) -> None:
    start = StartStates()
    states = start.states
    run(make_cfg("method=one_shot", *REWIND, run_dir="one_shot"), callbacks=[start])
    summary = run(
        make_cfg(
            "method=temperature_annealing",
            "method.anneal_epochs=1",
            *REWIND,
            "parent.rewind_epoch=1",
            "lr=lr_rewind",
            run_dir="ta",
        ),
        callbacks=[start],
    )
    epoch_1 = torch.load(cached_entry(tmp_path, summary) / epoch_file(1), weights_only=True)
    restored = stored_weights(states[1])
    assert all(torch.equal(restored[n], v) for n, v in epoch_1.items())  # nothing outside T is zeroed yet
    masks = eval_masks(states[1])
    assert all(torch.equal(masks[n], m) for n, m in eval_masks(states[0]).items())  # T: the trained parent's
    assert summary["status"] == "completed" and summary["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert summary["epochs_at_target"] == 1


# -- the parent cache: trained once for a whole sweep -------------------------------------------------------


def count_parent_trainings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of ``parent.fit``, the one function that trains a dense parent (a run's callbacks start after
    the parent: they cannot see it)."""
    real, calls = parent_module.fit, []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(parent_module, "fit", counting)
    return calls


RETRAINING = {
    "one_cycle": [],
    "finetune": ["lr=finetune"],
    "lr_rewind": ["lr=lr_rewind"],
    "weight_rewind": ["lr=lr_rewind", "parent.rewind_epoch=1"],
}
SWEEP_METHODS = {
    "one_shot": ["method=one_shot"],
    "temperature_annealing": ["method=temperature_annealing", "method.anneal_epochs=1"],
    "iterative": ["method=iterative", "method.anneal_epochs=1"],
}


def test_a_sweep_of_methods_and_retraining_baselines_trains_the_parent_once(make_cfg, monkeypatch) -> None:
    calls = count_parent_trainings(monkeypatch)
    summaries = {
        (m, r): run(make_cfg(*mo, *ro, *REWIND, "parent.save_epochs=[1]", run_dir=f"{m}-{r}"))
        for m, mo in SWEEP_METHODS.items()
        for r, ro in RETRAINING.items()
    }
    assert len(calls) == 1
    sources = [s["parent"]["source"] for s in summaries.values()]
    assert sources == ["trained"] + ["cache"] * (len(summaries) - 1)
    assert not any("retrained_for_epochs" in s["parent"] for s in summaries.values())
    assert {s["steps"] for s in summaries.values()} == {summaries["one_shot", "one_cycle"]["steps"]}
    for m in SWEEP_METHODS:  # within a retraining column, every method takes the same LRs
        for r in RETRAINING:
            assert summaries[m, r]["lr_trace_sha256"] == summaries["one_shot", r]["lr_trace_sha256"]
    lrs = {r: summaries["one_shot", r]["lr_trace_sha256"] for r in RETRAINING}
    assert len({lrs["one_cycle"], lrs["finetune"], lrs["lr_rewind"]}) == 3
    assert lrs["weight_rewind"] == lrs["lr_rewind"]  # t = parent.epochs - k: both replay from epoch 1


def test_a_missing_epoch_checkpoint_trains_the_parent_again_once(make_cfg, tmp_path, monkeypatch, caplog):
    calls = count_parent_trainings(monkeypatch)
    first = run(make_cfg("method=one_shot", *REWIND, run_dir="a"))  # no save_epochs: nothing kept
    entry = cached_entry(tmp_path, first)
    assert not (entry / epoch_file(1)).exists() and "epoch_sha256" not in json.loads(
        (entry / "meta.json").read_text()
    )
    parent_before = (entry / "parent.pt").read_bytes()
    with caplog.at_level(logging.WARNING):
        rewound = run(make_cfg("method=one_shot", *REWIND, "parent.rewind_epoch=1", run_dir="b"))
    assert len(calls) == 2 and rewound["parent"]["source"] == "cache"
    assert rewound["parent"]["retrained_for_epochs"] == [1]
    assert not [r for r in caplog.records if "differ" in r.getMessage()]  # deterministic on a CPU
    assert (entry / "parent.pt").read_bytes() == parent_before  # the cached parent stays the parent
    assert rewound["parent"]["test_acc"] == first["parent"]["test_acc"]
    again = run(make_cfg("method=iterative", "method.anneal_epochs=1", *REWIND, "parent.rewind_epoch=1",
                         run_dir="c"))  # fmt: skip
    assert len(calls) == 2 and "retrained_for_epochs" not in again["parent"]


def test_a_retrained_parent_that_differs_is_reported_and_the_cached_one_used(
    make_cfg, tmp_path, caplog
) -> None:
    """As on a nondeterministic device: the cached parent.pt no longer equals what training gives."""
    from ssa_experiments.repro.provenance import file_sha256

    start = StartStates()
    states = start.states
    first = run(make_cfg("method=dense", *REWIND, run_dir="a"), callbacks=[start])
    entry = cached_entry(tmp_path, first)
    weights = torch.load(entry / "parent.pt", weights_only=True)
    weights = {k: v.flip(0) if v.dim() > 1 else v for k, v in weights.items()}  # another mask, same norms
    torch.save(weights, entry / "parent.pt")
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "sha256": file_sha256(entry / "parent.pt")}))
    run(make_cfg("method=one_shot", *REWIND, run_dir="b"), callbacks=[start])  # one-shot's mask of the
    with caplog.at_level(logging.WARNING):  # cached parent
        rewound = run(
            make_cfg("method=one_shot", *REWIND, "parent.rewind_epoch=1", run_dir="c"), callbacks=[start]
        )
    assert [r for r in caplog.records if "differ from the cached" in r.getMessage()]
    assert rewound["parent"]["retrained_for_epochs"] == [1]
    # the rewound run's mask is one-shot's on the cached parent, not on the retrained one
    assert eval_masks(states[2]) and all(
        torch.equal(eval_masks(states[2])[n], m) for n, m in eval_masks(states[1]).items()
    )


# -- config: keys, identity, bad inputs ---------------------------------------------------------------------


def test_run_identity_has_what_changes_a_run(make_cfg) -> None:
    def ident(*overrides: str) -> dict[str, Any]:
        return run_identity(make_cfg("method=one_shot", *overrides))

    assert ident("parent.save_epochs=[1]") == ident()  # which files the cache keeps: not the run
    assert ident("parent.rewind_epoch=1") != ident()
    assert "rewind_epoch" not in ident()["parent"]  # the identities (store keys) of earlier runs hold
    assert ident("lr=finetune", "lr.lr=0.5") == ident("lr=finetune")  # lr is not read
    assert ident("lr=finetune") != ident("lr=lr_rewind", "train.finetune_epochs=2")
    assert ident("lr=finetune", "parent.lr.lr=0.2") != ident("lr=finetune")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["lr=lr_rewind", "train.finetune_epochs=5"], "train.finetune_epochs"),  # parent.epochs=2
        (["lr=lr_rewind", "parent.epochs=4", "parent.rewind_epoch=3", "train.finetune_epochs=2"],
         "train.finetune_epochs"),
        (["parent.rewind_epoch=2"], "parent.rewind_epoch"),  # must be < parent.epochs
        (["parent.rewind_epoch=-1"], "parent.rewind_epoch"),
        (["parent.save_epochs=[1,2]"], "parent.save_epochs"),
        (["parent.lr.name=finetune"], "parent.lr.name"),
        (["lr.name=nope"], "lr.name"),
    ],
)  # fmt: skip
def test_bad_retraining_inputs_name_the_field(make_cfg, overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=one_shot", *overrides))
    assert err.value.field_name == field


def test_rewinding_a_checkpoint_brought_by_path_is_refused(make_cfg, tmp_path: Path) -> None:
    ckpt = tmp_path / "mine.pt"
    torch.save({}, ckpt)
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=one_shot", f"parent.path={ckpt}", "parent.rewind_epoch=0"))
    assert err.value.field_name == "parent.rewind_epoch"
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=one_shot", f"parent.path={ckpt}", "parent.epochs=0", "lr=finetune"))
    assert err.value.field_name == "parent.epochs"
    validate(
        make_cfg("method=one_shot", f"parent.path={ckpt}", "lr=finetune")
    )  # the user states the parent's schedule


def test_defaults_validate(make_cfg: Callable[..., Any]) -> None:
    for schedule in ("finetune", "lr_rewind"):
        validate(make_cfg("method=one_shot", f"lr={schedule}", "train.finetune_epochs=2"))
