"""A scheduler's time limit (issue 26, defect 2): the run stops at a boundary on the signal, keeps a
checkpoint, and a requeued job resumes it to the uninterrupted run's numbers; the requeue is in ``status``;
requeues used up fail the run by name.

In process, with a real signal sent to this process (``os.kill``) under ``interrupt.deferred``, as a SLURM job
gets it from submitit's ``--signal=USR2@signal_delay_s``; the local cluster's end-to-end tests are in
``tests/sweeps/test_slurm.py`` (marked slurm, slow).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from ssa_experiments.store import runs as store
from ssa_experiments.store.files import CHECKPOINT, read_metrics, read_summary
from ssa_experiments.store.status import states, summary_line
from ssa_experiments.training import interrupt
from ssa_experiments.training.callbacks import Callback, RunContext
from ssa_experiments.training.run import run

SIG = signal.SIGUSR2
OVERRIDES = ("method=temperature_annealing", "method.anneal_epochs=2", "train.finetune_epochs=4")


class SignalAt(Callback):
    """Sends SIGUSR2 to this process at epoch ``n``'s end (1-based), or inside it after ``step`` steps
    (``step=0``: as its training starts, before its first step)."""

    def __init__(self, n: int, step: int | None = None) -> None:
        self.n, self.step = n, step

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        if self.step == 0 and epoch + 1 == self.n:
            os.kill(os.getpid(), SIG)

    def on_step(self, step: int, ctx: RunContext) -> None:
        if self.step and len(ctx.history) + 1 == self.n and step == self.step:
            os.kill(os.getpid(), SIG)

    def on_epoch_end(self, row: dict, ctx: RunContext) -> None:
        if self.step is None and row["epoch"] == self.n:
            os.kill(os.getpid(), SIG)


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_metrics(run_dir)]


def _interrupted(cfg: DictConfig, callback: Callback) -> interrupt.Interrupted:
    with interrupt.deferred(SIG), pytest.raises(interrupt.Interrupted) as stop:
        run(cfg, callbacks=[callback])
    assert signal.getsignal(SIG) is not interrupt._note  # the handler it replaced is back
    return stop.value


@pytest.mark.parametrize(("step", "every"), [(None, 0), (0, 1), (2, 0)])
def test_a_stopped_run_resumes_to_the_uninterrupted_numbers(
    make_cfg, tmp_path: Path, step: int | None, every: int
) -> None:
    """At an epoch boundary: a checkpoint is saved even with ``checkpoint_every=0``. Inside an epoch (as it
    starts, or after 2 steps): a checkpoint is saved at the next step boundary, with the epoch's position,
    whatever ``checkpoint_every_steps`` says. Either way the resumed run is bit-identical."""
    reference = run(make_cfg(*OVERRIDES, run_dir="reference"))
    cfg = make_cfg(*OVERRIDES, f"train.checkpoint_every={every}", run_dir="stopped")
    stop = _interrupted(cfg, SignalAt(2, step=step))
    where = "after epoch 2" if step is None else f"in epoch 2 before step {step + 1}"
    assert where in str(stop)
    out = tmp_path / "stopped"
    assert (out / CHECKPOINT).exists() and read_summary(out) is None  # no failure recorded: not a failure
    assert len(read_metrics(out)) == (2 if step is None else 1)
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert ckpt["epoch"] + 1 == len(read_metrics(out))
    assert ckpt["in_epoch"] == (None if step is None else {**ckpt["in_epoch"], "epoch": 1, "step": step})
    resumed = run(make_cfg(*OVERRIDES, f"train.checkpoint_every={every}", run_dir="stopped"))
    assert resumed["status"] == "completed" and resumed["test_acc"] == reference["test_acc"]
    assert _rows(out) == _rows(tmp_path / "reference")
    a, b = torch.load(out / "model.pt"), torch.load(tmp_path / "reference" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_signal_in_the_last_epoch_lets_the_run_complete(make_cfg, tmp_path: Path) -> None:
    """After the last epoch there is nothing left to requeue for: the run writes its summary."""
    with interrupt.deferred(SIG):
        summary = run(make_cfg(*OVERRIDES, run_dir="r"), callbacks=[SignalAt(4)])
    assert summary["status"] == "completed" and not (tmp_path / "r" / CHECKPOINT).exists()


def test_deferred_restores_the_handler_and_clears_requests() -> None:
    calls: list[int] = []
    previous = signal.signal(SIG, lambda s, f: calls.append(s))
    try:
        with interrupt.deferred(SIG) as handed:
            os.kill(os.getpid(), SIG)
            assert interrupt.pending() == SIG and not calls
            handed(SIG, None)
            assert calls == [SIG]
        assert interrupt.pending() is None
        os.kill(os.getpid(), SIG)
        assert calls == [SIG, SIG]  # the replaced handler is back
    finally:
        signal.signal(SIG, previous)


def test_submitit_signal_is_none_outside_a_submitit_job() -> None:
    assert interrupt.submitit_signal() is None


def test_a_requeue_is_noted_and_shown_by_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert store.note_requeue(run_dir, "stopped after epoch 2 on SIGUSR2") == 1
    assert store.note_requeue(run_dir, "stopped in epoch 5 before step 1 on SIGUSR2") == 2
    df = states(tmp_path)
    assert df["requeues"].tolist() == [2]
    assert summary_line(df, "x").endswith("; 1 requeued (2 time(s))")
    store.discard(run_dir)  # force=true starts the run over: its requeues too
    assert store.requeues(run_dir) == 0


def test_requeues_used_up_fail_the_run_naming_the_limit(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The CLI's hand-over: submitit's handler refuses to requeue (its UncompletedJobError): the run is
    recorded as failed with the limit named, so the multirun's status counts it and exits 1."""
    from ssa_experiments.cli import train

    class UncompletedJobError(RuntimeError):
        pass

    def used_up(signum: int, frame: object) -> None:
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    cfg = make_cfg(*OVERRIDES, run_dir="r")
    (tmp_path / "r").mkdir()
    with pytest.raises(TimeoutError, match=r"time limit reached 1 time\(s\), requeues used up"):
        train._hand_over(cfg, interrupt.Interrupted(SIG, "after epoch 2"), used_up)
    summary = read_summary(tmp_path / "r")
    assert summary["status"] == "failed" and "max_num_timeout" in summary["error"]
    assert store.requeues(tmp_path / "r") == 1
    requeued = []
    with pytest.raises(SystemExit):  # a handler that requeued exits the process (submitit: sys.exit(-1))
        train._hand_over(cfg, interrupt.Interrupted(SIG, "x"), lambda s, f: requeued.append(s) or exit(-1))
    assert requeued == [SIG] and store.requeues(tmp_path / "r") == 2


class SignalingParentSinks:
    """The parent's own observer (``sinks.ParentSinks``), sending SIGUSR2 at parent epoch ``n``'s end, or
    after ``step`` steps of it."""

    def __init__(self, cfg: DictConfig, n: int, step: int | None = None) -> None:
        from ssa_experiments.training.parent import parent_entry
        from ssa_experiments.training.sinks import parent_sinks

        self.sinks = parent_sinks(cfg, parent_entry(cfg))
        self.n, self.at_step, self.done = n, step, 0

    def start(self, epochs: int, steps_per_epoch: int, done: int = 0) -> None:
        self.done = done
        self.sinks.start(epochs, steps_per_epoch, done)

    def step(self, step: int) -> None:
        self.sinks.step(step)
        if self.at_step and self.done + 1 == self.n and step == self.at_step:
            os.kill(os.getpid(), SIG)

    def epoch(self, row: dict) -> None:
        self.sinks.epoch(row)
        self.done = row["epoch"]
        if self.at_step is None and row["epoch"] == self.n:
            os.kill(os.getpid(), SIG)

    def finish(self, ok: bool) -> None:
        self.sinks.finish(ok)


def parent(cfg: DictConfig, observer: SignalingParentSinks | None = None) -> dict:
    """The dense parent of ``cfg`` as a new process gets it (the initialisation built from the seed):
    cached, continued from a stopped training, or trained; its record for the summary."""
    from ssa_experiments.training.parent import load_parent, parent_trainer
    from ssa_experiments.training.run import build

    setup = build(cfg)
    trainer = parent_trainer(cfg, setup.batches, setup.precision, setup.loss_fn, observer)
    return load_parent(cfg, setup.model, trainer).info


@pytest.mark.parametrize("step", [None, 2])
def test_a_parent_stopped_while_it_trains_resumes_to_the_same_weights(
    make_cfg, tmp_path: Path, step: int | None
) -> None:
    """A stop at the end of parent epoch 2 (or after 2 steps of epoch 2) saves the parent's training in its
    cache entry; the requeued job continues it to the weights, epoch checkpoints and parent_metrics.jsonl
    rows of a parent trained without a stop."""
    from ssa_experiments.training.parent import PROGRESS, parent_entry
    from ssa_experiments.training.sinks import PARENT_METRICS

    overrides = ("parent.epochs=4", "parent.save_epochs=[1,3]")
    reference_cfg = make_cfg(*overrides, f"parent.cache_dir={tmp_path / 'reference'}")
    parent(reference_cfg, SignalingParentSinks(reference_cfg, 0))
    cfg = make_cfg(*overrides)
    entry = parent_entry(cfg)[0]
    with interrupt.deferred(SIG), pytest.raises(interrupt.Interrupted) as stop:
        parent(cfg, SignalingParentSinks(cfg, 2, step))
    assert ("after parent epoch 2" if step is None else "in epoch 2 before step 3") in str(stop.value)
    assert (entry / PROGRESS).exists() and not (entry / "parent.pt").exists()
    assert torch.load(entry / PROGRESS, weights_only=False)["epoch"] == (1 if step is None else 0)
    info = parent(cfg, SignalingParentSinks(cfg, 0))  # the requeued job
    assert info["source"] == "trained" and not (entry / PROGRESS).exists()
    ref_entry = parent_entry(reference_cfg)[0]
    a, b = torch.load(entry / "parent.pt"), torch.load(ref_entry / "parent.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta, ref_meta = (json.loads((e / "meta.json").read_text()) for e in (entry, ref_entry))
    assert meta["epoch_sha256"] == ref_meta["epoch_sha256"] and meta["test_acc"] == ref_meta["test_acc"]

    def rows(e: Path) -> list[dict]:
        lines = (e / PARENT_METRICS).read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "epoch_time_s"} for line in lines]

    assert [r["epoch"] for r in rows(entry)] == [1, 2, 3, 4]  # the rows before the stop kept, none twice
    assert rows(entry) == rows(ref_entry)  # losses of the resumed epoch included


def test_a_damaged_parent_training_state_is_set_aside_and_the_parent_trained_from_the_start(
    make_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ssa_experiments.training.parent import PROGRESS, parent_entry

    reference_cfg = make_cfg(f"parent.cache_dir={tmp_path / 'reference'}")
    parent(reference_cfg)
    cfg = make_cfg()
    entry = parent_entry(cfg)[0]
    entry.mkdir(parents=True)
    (entry / PROGRESS).write_bytes(b"PK\x03\x04 torn")
    parent(cfg)
    assert "unreadable" in caplog.text and (entry / f"{PROGRESS}.damaged").exists()
    a, b = torch.load(entry / "parent.pt"), torch.load(parent_entry(reference_cfg)[0] / "parent.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
