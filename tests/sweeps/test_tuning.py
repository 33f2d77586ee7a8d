"""Tuning with Optuna (``hparams_search=``, docs/tuning.md): the presets compose with one budget for every
method on the validation objective, the resumable sweeper's budget arithmetic, the tuned table choosing on
validation, and end to end a 2 methods × 3 trials study on digits that is killed after its first trial and
resumed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO, compose_hydra, sweep, without_keys

from hydra_plugins.ssa_tuning.resumable_optuna import finished_trials, remaining, sqlite_file
from ssa_experiments.analysis.tables import tuned_choices

PRESETS = sorted(p.stem for p in (REPO / "conf" / "hparams_search").glob("*.yaml"))
OWN_KNOBS = {
    "temperature_annealing": {"method.initial_temperature", "method.anneal_epochs", "method.schedule"},
    "random_annealing": {"method.max_initial_probability", "method.anneal_epochs", "method.schedule"},
    "iterative": {"method.anneal_epochs", "method.schedule"},
    "set": {"method.update_every", "method.drop_fraction"},
    "rigl": {"method.update_every", "method.drop_fraction"},
    "one_shot": set(),
}


def test_every_method_gets_the_same_budget_on_validation() -> None:
    assert set(PRESETS) == set(OWN_KNOBS)
    budgets = set()
    for name in PRESETS:
        cfg = compose_hydra(f"hparams_search={name}")
        sweeper = cfg.hydra.sweeper
        assert cfg.method.name == name
        assert sweeper._target_.endswith("ResumableOptunaSweeper")
        assert (sweeper.direction, cfg.objective) == ("maximize", "val_acc")
        assert set(sweeper.params) == {"lr.lr", *OWN_KNOBS[name]}  # the shared knob plus the method's own
        assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db"
        budgets.add(sweeper.n_trials)
    assert budgets == {20}


def test_the_anneal_range_stays_valid_for_the_fine_tuning_epochs() -> None:
    """The Optuna sweeper reads range(a, b) inclusively: b is the last anneal epoch a run accepts."""
    cfg = compose_hydra("hparams_search=iterative", "train.finetune_epochs=3")
    assert cfg.hydra.sweeper.params["method.anneal_epochs"] == "range(1, 2)"


def test_the_budget_counts_finished_trials_only(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path}/s.db"
    assert finished_trials(url, "x") == 0  # no study yet
    study = optuna.create_study(study_name="x", storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=2)
    study.ask()  # left RUNNING, as by a killed process
    assert finished_trials(url, "x") == 2
    assert (remaining(3, 2), remaining(3, 5)) == (1, 0)
    assert sqlite_file(url) == Path(f"{tmp_path}/s.db")
    assert sqlite_file("sqlite:///rel/o.db") == Path("rel/o.db")
    assert sqlite_file("postgresql://host/db") is None


def test_the_tuned_choice_is_made_on_validation_not_test() -> None:
    runs = pd.DataFrame({
        "method": ["iterative"] * 3, "target_sparsity": [0.9] * 3, "seed": [0] * 3,
        "val_acc": [80.0, 90.0, 85.0], "test_acc": [95.0, 70.0, 60.0], "setting": ["a", "b", "c"],
        "run_dir": ["ra", "rb", "rc"],
    })  # fmt: skip
    choice = tuned_choices(runs).iloc[0]
    assert (choice["setting"], choice["test_acc"], choice["trials"]) == ("b", 70.0, 3)
    with pytest.raises(ValueError, match="validation"):
        tuned_choices(runs, "test_acc")


# ---- end to end ----------------------------------------------------------------------------------------

TINY = [
    "model=mlp", "parent.epochs=1", "train.finetune_epochs=3", "train.batch_size=64", "device=cpu",
    "sparsity=0.9", "hydra.sweeper.n_trials=3",
]  # fmt: skip


def _study(root: Path, method: str) -> list[str]:
    return [
        f"hparams_search={method}", *TINY, f"hydra.sweep.dir={root / method}",
        f"store.root={root / 'store'}", f"parent.cache_dir={root / 'parents'}",
    ]  # fmt: skip


def _trials(root: Path, method: str):
    import optuna

    url = f"sqlite:///{root / method}/optuna.db"
    return optuna.load_study(study_name=f"{method}_s0.9_seed0", storage=url).get_trials(deepcopy=False)


def _completed_in(db: Path) -> int:
    """COMPLETE trials in an Optuna SQLite file, read-only: opening the study through optuna would create its
    tables while the sweeper creates them too (a race that fails the sweeper)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # not there yet, or its tables not yet made
        return 0


def _kill_after_first_trial(args: list[str], root: Path, method: str, timeout: float) -> None:
    log = (root / f"{method}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssa_experiments.cli.train", "-m", *args], cwd=REPO,
        env={**os.environ, "WANDB_MODE": "offline"}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if _completed_in(root / method / "optuna.db") >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, (root / f"{method}.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.mark.slow
def test_a_killed_study_resumes_and_reports_the_best_on_validation(tmp_path: Path) -> None:
    """2 methods × 3 trials on digits: iterative killed after its first trial and relaunched by the same
    command; the relaunch runs only the missing trials (the first is neither rerun nor recomputed), and the
    study's best configuration (chosen on val_acc) is the one ``figures tuned`` reports. (~2 min on 2 busy
    cores: three launches, each importing torch.)"""
    done = sweep(*_study(tmp_path, "temperature_annealing"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    _kill_after_first_trial(_study(tmp_path, "iterative"), tmp_path, "iterative", timeout=300)
    before = [t for t in _trials(tmp_path, "iterative") if t.state.name == "COMPLETE"]
    assert len(before) >= 1
    first = before[0]
    summaries = {p: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("summary.json")}

    resumed = sweep(*_study(tmp_path, "iterative"), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{len(before)} of 3 trials already finished" in resumed.stdout + resumed.stderr
    after = _trials(tmp_path, "iterative")
    assert sum(t.state.name == "COMPLETE" for t in after) == 3  # the budget, not 3 more
    assert after[first.number].params == first.params and after[first.number].value == first.value
    for path, mtime in summaries.items():  # no finished run was computed again
        assert path.stat().st_mtime_ns == mtime

    out = tmp_path / "tables"
    table = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.figures", "tuned", "--runs",
         str(tmp_path / "temperature_annealing"), str(tmp_path / "iterative"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    choices = pd.read_csv(out / "tuned_choices.csv").set_index("method")
    assert set(choices.index) == {"temperature_annealing", "iterative"}
    for method in choices.index:
        report = yaml.safe_load((tmp_path / method / "optimization_results.yaml").read_text())
        trials = [t for t in _trials(tmp_path, method) if t.state.name == "COMPLETE"]
        best = max(trials, key=lambda t: t.value)
        assert report["best_value"] == pytest.approx(best.value)
        assert report["best_params"] == best.params
        assert choices.loc[method, "val_acc"] == pytest.approx(best.value)  # the same choice, on validation
        for key, value in best.params.items():
            if len({str(t.params[key]) for t in trials}) > 1:  # what varied among the trials names the row
                assert f"{key}={value}" in choices.loc[method, "setting"]


# our joblib.yaml has the plugin's config name: Hydra says this schema matching is deprecated (tests/sweeps/
# test_launchers.py); harmless under Hydra < 1.4
SCHEMA_MATCHING = r"ignore:\s*'hydra/launcher/joblib' is validated against ConfigStore schema:UserWarning"


@pytest.mark.filterwarnings(SCHEMA_MATCHING)
@pytest.mark.parametrize("launcher", ["joblib", "slurm"])
def test_the_presets_compose_with_the_launchers(launcher: str) -> None:
    """The sweeper hands each batch of ``hydra.sweeper.n_jobs`` trials to the launcher: joblib runs a batch
    at once, SLURM submits it as one array."""
    cfg = compose_hydra("hparams_search=temperature_annealing", f"hydra/launcher={launcher}",
                        "hydra.sweeper.n_jobs=4")  # fmt: skip
    assert cfg.hydra.sweeper.n_jobs == 4
    assert cfg.hydra.sweeper._target_.endswith("ResumableOptunaSweeper")
    assert launcher in cfg.hydra.launcher._target_.lower() or "submitit" in cfg.hydra.launcher._target_


def test_a_shared_study_takes_any_sqlalchemy_url() -> None:
    url = "postgresql://user@db.cluster/optuna"
    cfg = compose_hydra("hparams_search=iterative", f"hydra.sweeper.storage={url}")
    assert cfg.hydra.sweeper.storage == url and sqlite_file(url) is None  # no local folder is made for it


@pytest.mark.slow
def test_a_study_whose_trials_all_failed_exits_1_in_one_line(tmp_path: Path) -> None:
    """Every trial's run collapses a layer (sparsity 0.9999 on the MLP): no best trial, exit 1, one line
    naming the study instead of optuna's "Record does not exist" traceback."""
    own = ["sparsity=0.9999", "hydra.sweeper.n_trials=2", "train.finetune_epochs=2"]
    args = [*without_keys(_study(tmp_path, "one_shot"), own), *own]
    done = sweep(*args, timeout=600)
    assert done.returncode == 1
    assert "error: study one_shot_s0.9999_seed0: no trial completed (every run failed)" in done.stderr
    assert "Record does not exist" not in done.stderr


def test_a_study_of_several_seeds_or_methods_is_refused() -> None:
    from hydra_plugins.ssa_tuning.resumable_optuna import searched_study_keys

    assert searched_study_keys(["seed=0,1", "lr.lr=interval(0.01, 0.1)", "method=one_shot"]) == ["seed"]
    assert searched_study_keys(["method=choice(one_shot, iterative)", "sparsity=0.9"]) == ["method"]
    assert searched_study_keys(["sparsity=0.5,0.9"]) == ["sparsity"]
    assert searched_study_keys(["seed=1", "method.schedule=choice(linear, cubic)"]) == []


@pytest.mark.slow
def test_tuning_without_a_validation_split_is_refused_before_the_study(tmp_path: Path) -> None:
    done = sweep(*_study(tmp_path, "one_shot"), "data.val_fraction=0", timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: data.val_fraction: is 0")
    assert not (tmp_path / "one_shot").exists()  # no study, no job folder
