"""A scheduler's time limit (issue 26, defect 2): the run stops at a boundary on the signal, keeps a
checkpoint, and a requeued job resumes it to the uninterrupted run's numbers; the requeue is in ``status``;
requeues used up fail the run by name.

In process, with a real signal sent to this process (``os.kill``) under ``interrupt.deferred``, as a SLURM job
gets it from submitit's ``--signal=USR2@signal_delay_s``; the local cluster's end-to-end tests are in
``tests/sweeps/test_slurm.py`` (marked slurm, slow).
"""

from __future__ import annotations

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
