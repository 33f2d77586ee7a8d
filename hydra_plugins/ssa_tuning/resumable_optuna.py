"""Hydra's Optuna sweeper, made resumable: the ``hparams_search=`` presets' sweeper (docs/tuning.md).

Hydra's Optuna sweeper (hydra-optuna-sweeper 1.3) loads an existing study (``load_if_exists``) but then
runs ``n_trials`` *more* trials, so relaunching a killed study overshoots its budget, and it opens an SQLite
file in the sweep directory before Hydra has made that directory. Here ``n_trials`` is the study's budget:
a relaunch runs only the trials still missing (trials that finished, failed included, count; a trial left
RUNNING by a killed process does not, and Optuna never picks it as the best), and the SQLite file's folder is
made first. With a shared study (one SQLAlchemy URL, several launches), each launch tops the study up to
``n_trials``. A study with no completed trial ends in one line and exit 1, not optuna's traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

log = logging.getLogger(__name__)
SQLITE = "sqlite:///"
# what has used up a trial of the budget: a trial still RUNNING was killed (or runs elsewhere right now)
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def sqlite_file(storage: str | None) -> Path | None:
    """The database file of an SQLite URL (``sqlite:///rel/path.db``, ``sqlite:////abs/path.db``), else
    None."""
    if not storage or not str(storage).startswith(SQLITE):
        return None
    return Path(str(storage)[len(SQLITE) :])


def finished_trials(storage: str | None, study_name: str | None) -> int:
    """How many trials of the study have finished (0 when there is no such study yet)."""
    if storage is None or study_name is None:
        return 0  # an in-memory study starts empty every time
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no study of that name in the storage yet
        return 0
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


def completed_trials(storage: str | None, study_name: str | None) -> int:
    """How many trials of the study completed (have a value Optuna can rank)."""
    if storage is None or study_name is None:
        return 0
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return 0
    return sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))


def remaining(budget: int, done: int) -> int:
    """Trials still to run for a budget of ``budget`` when ``done`` have finished."""
    return max(0, budget - done)


# what a study is *of*: one method at one sparsity and seed. Swept, they would become search dimensions: the
# tuner would pick a seed for its luck, or mix methods in one space (an experiment= preset's sweep, merged)
NOT_SEARCHED = ("method", "sparsity", "seed")


def searched_study_keys(overrides: list[str]) -> list[str]:
    """The keys of ``NOT_SEARCHED`` that ``overrides`` (``key=value`` strings) sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if o.key_or_group in NOT_SEARCHED and o.is_sweep_override()]


def refuse(message: str) -> None:
    """A bad tuning request: one line, exit 2, before the study or any run is made."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


class ResumableOptunaSweeper(OptunaSweeper):
    """``OptunaSweeper`` whose ``n_trials`` is the study's total budget (see the module docstring)."""

    def sweep(self, arguments: list[str]) -> Any:
        impl = self.sweeper
        params = [f"{k}={v}" for k, v in (impl.params or {}).items()]
        searched = searched_study_keys([*params, *arguments])
        if searched:  # before the study is made or anything runs
            refuse(f"{', '.join(searched)}: swept in a tuning study; a study tunes one method at one "
                   "sparsity and seed (launch one study per value, e.g. from a shell loop)")  # fmt: skip
        cfg = impl.config
        if not cfg.data.get("val_fraction"):  # main() refuses it too, but only once a trial has been asked
            refuse(
                f"data.val_fraction: is 0, so there is no validation split for the sweeper to optimise "
                f"({cfg.get('objective')}); tuning on the test set is refused: set data.val_fraction > 0"
            )
        db = sqlite_file(impl.storage)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        done = finished_trials(impl.storage, impl.study_name)
        if done:
            log.info(
                "study %s: %d of %d trials already finished, running %d",
                impl.study_name, done, impl.n_trials, remaining(impl.n_trials, done),
            )  # fmt: skip
        impl.n_trials = remaining(impl.n_trials, done)
        try:
            return super().sweep(arguments)
        except ValueError:  # optuna's best_trial of a study with no completed trial: "Record does not exist."
            if completed_trials(impl.storage, impl.study_name) or impl.storage is None:
                raise
            print(
                f"error: study {impl.study_name}: no trial completed (every run failed); see python -m "
                f"ssa_experiments.cli.status {impl.sweep_dir}",
                file=sys.stderr, flush=True,
            )  # fmt: skip
            raise SystemExit(1) from None
