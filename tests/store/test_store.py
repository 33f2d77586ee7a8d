"""The run store (a run's directory is a function of what it computes), sweep status, progress output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssa_experiments.analysis.aggregate import collect
from ssa_experiments.cli.status import main as status_main
from ssa_experiments.config.identity import run_identity
from ssa_experiments.store import runs as store
from ssa_experiments.store.status import asked_for, states
from ssa_experiments.training.sinks import progress_kind

FAST_CLI = ["data=synthetic", "model.width=8", "parent.epochs=1", "train.finetune_epochs=2", "device=cpu"]


def _train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "-m", *FAST_CLI, *args,
         f"parent.cache_dir={cwd / 'cache'}"],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


def _stored(cwd: Path) -> dict[str, float]:
    """Each stored run's summary modification time: changes exactly when the run is computed (again)."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (cwd / "outputs/store/runs").glob("*/summary.json")}


def test_identity_ignores_what_cannot_change_a_run(make_cfg) -> None:
    a = run_identity(make_cfg("method=one_shot", "method.initial_temperature=0.25"))
    b = run_identity(make_cfg("method=one_shot", "method.initial_temperature=0.5", "logger.progress=none"))
    assert a == b and store.run_key(a) == store.run_key(b)
    t1 = run_identity(make_cfg("method=temperature_annealing", "method.initial_temperature=0.25"))
    t2 = run_identity(make_cfg("method=temperature_annealing", "method.initial_temperature=0.5"))
    assert store.run_key(t1) != store.run_key(t2)
    assert store.run_key(t1).startswith("temperature_annealing-s0.9-seed0-")
    # dense ignores the sparsity it was launched with and every pruning setting
    d1 = run_identity(make_cfg("method=dense", "sparsity=0.9"))
    d2 = run_identity(make_cfg("method=dense", "sparsity=0", "pruning.criterion=random"))
    assert d1 == d2 and d1["sparsity"] == 0.0


def test_link_is_relative_and_atomic(tmp_path: Path) -> None:
    target = tmp_path / "store" / "runs" / "x"
    target.mkdir(parents=True)
    store.link(tmp_path / "sweep" / "job", target)
    store.link(tmp_path / "sweep" / "job", target)  # idempotent
    link = tmp_path / "sweep" / "job" / "run"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path, moved, symlinks=True, ignore=shutil.ignore_patterns("moved"))
    assert (moved / "sweep" / "job" / "run").resolve() == (moved / "store" / "runs" / "x").resolve()


@pytest.mark.slow
def test_relaunch_computes_nothing_and_a_new_sparsity_only_its_runs(tmp_path: Path) -> None:
    sweep = ["method=one_shot,temperature_annealing", "method.anneal_epochs=1", "sparsity=0.5"]
    first = _train([*sweep, "hydra.sweep.dir=a"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip().splitlines()[-1] == (
        "sweep a: 2 runs: 2 completed, 0 running, 0 failed, 0 diverged, 0 incomplete, 0 missing"
    )
    computed = _stored(tmp_path)
    assert len(computed) == 2
    # the same sweep again, into another sweep directory: nothing is computed, both sweeps see the runs
    again = _train([*sweep, "hydra.sweep.dir=b"], tmp_path)
    assert again.returncode == 0 and _stored(tmp_path) == computed
    # one more sparsity: only its two runs are computed
    more = _train(["method=one_shot,temperature_annealing", "method.anneal_epochs=1", "sparsity=0.5,0.8",
                   "hydra.sweep.dir=c"], tmp_path)  # fmt: skip
    assert more.returncode == 0, more.stderr[-2000:]
    after = _stored(tmp_path)
    assert len(after) == 4 and {k: after[k] for k in computed} == computed
    # both sweeps aggregate to the same runs; read together, each run counts once
    assert len(collect(tmp_path / "a")) == len(collect(tmp_path / "b")) == 2
    assert len(collect([tmp_path / "a", tmp_path / "b", tmp_path / "c"])) == 4
    # force=true computes again
    forced = _train(["method=one_shot", "sparsity=0.5", "force=true", "hydra.sweep.dir=d"], tmp_path)
    assert forced.returncode == 0, forced.stderr[-2000:]
    changed = {k for k, v in _stored(tmp_path).items() if after[k] != v}
    assert len(changed) == 1 and next(iter(changed)).startswith("one_shot-s0.5-")


@pytest.mark.slow
def test_status_counts_failed_and_missing_runs_and_exits_nonzero(tmp_path: Path, capsys) -> None:
    # model.depth=9 fails at run time (pooling shrinks the input to nothing); depth 1 completes
    proc = _train(["method=one_shot", "model.depth=9,1", "hydra.sweep.dir=s"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]  # a multirun with a failed run exits 1 (docs/sweeps.md)
    assert "1 completed, 0 running, 1 failed" in proc.stdout.strip().splitlines()[-1]
    sweep = tmp_path / "s"
    jobs = asked_for(sweep)
    assert jobs is not None and len(jobs) == 2 and all(j.exists() for j in jobs)
    ok = next(j for j in jobs if "model.depth=1" in j.name)
    shutil.rmtree(ok)  # as if the sweep had been killed before this job started
    df = states(sweep)
    assert sorted(df["status"]) == ["failed", "missing"]
    assert status_main([str(sweep)]) == 1
    out = capsys.readouterr().out
    assert any(line.strip().startswith("failed") and "Error" in line for line in out.splitlines())
    assert out.strip().splitlines()[-1].endswith("1 failed, 0 diverged, 0 incomplete, 1 missing")


def test_status_of_a_killed_run_is_incomplete_and_of_a_held_lock_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "one_shot-s0.5-seed0-abc"
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"x")
    assert states(tmp_path)["status"].tolist() == ["incomplete"]
    with store.claimed(run_dir):
        assert states(tmp_path)["status"].tolist() == ["running"]
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "method": "one_shot"}))
    assert states(tmp_path)["status"].tolist() == ["completed"]


def test_asked_for_expands_preset_params_and_command_line_like_hydra(tmp_path: Path) -> None:
    """The command line wins over the preset's sweep parameter of the same key, as in Hydra's sweeper."""
    cfg = {
        "hydra": {
            "sweeper": {"params": {"method": "a,b", "seed": "0,1,2"}},
            "overrides": {"task": ["seed=5", "sparsity=0.5,0.9", "device=cpu"]},
            "job": {
                "config": {"override_dirname": {"exclude_keys": ["device"], "item_sep": ",", "kv_sep": "="}}
            },
        }
    }
    OmegaConf.save(OmegaConf.create(cfg), tmp_path / "multirun.yaml")
    names = sorted(p.name for p in asked_for(tmp_path) or [])
    assert names == [f"method={m},seed=5,sparsity={s}" for m in "ab" for s in ("0.5", "0.9")]


def test_progress_output_by_where_it_goes() -> None:
    assert progress_kind("auto", tty=True, multirun=False) == "bar"
    assert progress_kind("auto", tty=False, multirun=False) == "lines"  # SLURM and CI logs
    assert progress_kind("auto", tty=True, multirun=True) == "lines"  # no bars overwriting each other
    assert progress_kind("auto", tty=False, multirun=True) == "lines"  # SLURM workers: a line per epoch
    assert progress_kind("lines", tty=True, multirun=True) == "lines"  # asked for explicitly
