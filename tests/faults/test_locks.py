"""A run's lock: bounded, logged waits that name the holder (issue 26: 7)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssa_experiments.config.identity import run_identity
from ssa_experiments.store import runs as store

REPO = Path(__file__).resolve().parents[2]


def test_a_held_lock_times_out_naming_its_holder(tmp_path: Path, caplog) -> None:
    run_dir = tmp_path / "runs" / "r"
    with store.claimed(run_dir):  # another open file description: the kernel treats it as another holder
        started = time.monotonic()
        with (
            caplog.at_level(logging.WARNING, logger="ssa_experiments.store"),
            pytest.raises(store.LockTimeout) as err,
            store.claimed(run_dir, timeout_s=0.5),
        ):
            pytest.fail("got a lock that is held")
        assert 0.5 <= time.monotonic() - started < 5
    who = f"pid {os.getpid()} on host {socket.gethostname()}"
    lock = store.lock_path(run_dir)
    assert f"store.lock_timeout_s=0.5) waiting for the run's lock {lock}" in str(err.value)
    assert who in str(err.value)
    waiting = [r.getMessage() for r in caplog.records if "waiting for the run's lock" in r.getMessage()]
    assert len(waiting) == 1 and who in waiting[0]  # said once when it started waiting (then every minute)
    with store.claimed(run_dir, timeout_s=0):  # released: free again at once
        pass


def test_a_stopped_holder_is_named_as_stopped(tmp_path: Path) -> None:
    """The issue's case: SIGSTOP the holder. The waiter says whom it waits for, that it is stopped, and gives
    up after store.lock_timeout_s instead of waiting for ever in silence."""
    run_dir = tmp_path / "runs" / "r"
    code = (
        "import sys, time; from pathlib import Path; from ssa_experiments.store import runs as store\n"
        "c = store.acquire(store.lock_path(Path(sys.argv[1])))\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        run_dir.parent.mkdir(parents=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)
        time.sleep(0.2)
        assert store.is_running(run_dir)
        stopped = pytest.raises(store.LockTimeout, match=rf"held by pid {holder.pid} on host .* \(stopped")
        with stopped, store.claimed(run_dir, timeout_s=0.3):
            pass
    finally:
        os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait(timeout=30)
    assert not store.is_running(run_dir)  # the kernel released the dead holder's lock


def test_a_waiter_does_not_take_a_lock_file_its_holder_removed(tmp_path: Path) -> None:
    """A holder that removes the lock file (a refused run) while another process already opened it: the
    other must not hold a lock on the removed file while a third takes the new one."""
    path = tmp_path / "r.lock"
    first = store.acquire(path)
    stale_fd = os.open(path, os.O_RDWR)  # what a waiter holds while it waits
    first.remove = True
    first.release()
    again = store.acquire(path, timeout_s=1)  # a new file at the path
    assert os.fstat(again.fd).st_ino == os.stat(path).st_ino != os.fstat(stale_fd).st_ino
    os.close(stale_fd)
    with pytest.raises(store.LockTimeout):
        store.acquire(path, timeout_s=0.3)
    again.release()


def test_the_lock_timeout_is_not_part_of_a_run(make_cfg) -> None:
    a = run_identity(make_cfg("method=one_shot"))
    b = run_identity(make_cfg("method=one_shot", "store.lock_timeout_s=5"))
    c = run_identity(make_cfg("method=one_shot", "store.lock_timeout_s=null"))
    assert a == b == c


@pytest.mark.slow
def test_cli_gives_up_on_a_held_run_in_one_line_exit_1(tmp_path: Path) -> None:
    from helpers import compose_config

    args = ["method=one_shot", "data=synthetic", "model.width=8", "parent.epochs=1",
            "train.finetune_epochs=2", "device=cpu"]  # fmt: skip
    root = tmp_path / "outputs" / "store"
    run_dir = store.run_dir(root, run_identity(compose_config([*args, "output_dir=/tmp/unused"])))
    with store.claimed(run_dir):
        proc = subprocess.run(
            [sys.executable, "-m", "ssa_experiments.cli.train", *args, "store.lock_timeout_s=1",
             f"hydra.run.dir={tmp_path / 'job'}", f"parent.cache_dir={tmp_path / 'cache'}"],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"},
        )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert lines[-1].startswith("error: gave up after 1 s (store.lock_timeout_s=1) waiting for the run's")
    assert f"held by pid {os.getpid()}" in lines[-1]
    assert "waiting for the run's lock" in proc.stdout + proc.stderr  # the log line (also in train.log)
    assert "waiting for the run's lock" in (tmp_path / "job" / "train.log").read_text()
    assert not (run_dir / "summary.json").exists() and not (tmp_path / "cache").exists()
