"""Bad input fails fast: one line naming the field, before any compute, nothing in the store (issue 26: 4, 5).

In process where that proves it (``validate``, ``check_device``, ``run``, the store's own errors); a few
command lines for the exit code and the one-line message (slow: each starts Python, torch and Hydra).
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import compose_config, without_keys

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.validate import check_device, validate
from ssa_experiments.store import runs as store
from ssa_experiments.training.run import run

REPO = Path(__file__).resolve().parents[2]

# (overrides, the field the one line names): NaN compares false, so each of these passed validation before
NOT_FINITE_OR_NEGATIVE = [
    (["lr.lr=nan"], "lr.lr"),
    (["method=random_annealing", "method.anneal_epochs=1", "method.decay_rate=nan"], "method.decay_rate"),
    (["lr=step", "lr.gamma=-1"], "lr.gamma"),
    (["lr.milestones=[-1,5]"], "lr.milestones"),
    (["optimizer.weight_decay=nan"], "optimizer.weight_decay"),
    (["parent.lr.lr=inf"], "parent.lr.lr"),
]
# values torch or numpy refused deep inside a run (a traceback, exit 1, status: failed in the store)
REFUSED_LATE_BEFORE = [
    (["seed=-1"], "seed"),
    (["optimizer.momentum=-1"], "optimizer.momentum"),
    (["model.width=0"], "model.width"),
    (["model.depth=0"], "model.depth"),
    (["store.lock_timeout_s=-1"], "store.lock_timeout_s"),
]


@pytest.mark.parametrize(("overrides", "field"), NOT_FINITE_OR_NEGATIVE + REFUSED_LATE_BEFORE)
def test_bad_value_is_one_line_naming_the_field(make_cfg, overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=one_shot", *overrides))
    assert err.value.field_name == field
    assert str(err.value).startswith(f"{field}: ") and "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(make_cfg, tmp_path, device: str) -> None:
    cfg = make_cfg("method=one_shot", f"device={device}")
    validate(cfg)  # a config judged on any machine: valid
    with pytest.raises(ConfigError, match=r"^device: .*no GPU"):
        check_device(cfg)
    with pytest.raises(ConfigError, match=r"^device: "):
        run(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_no_prunable_layer_left_is_a_config_error_before_the_parent(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("method=one_shot", "model=mlp", "model.depth=1", "pruning.keep_first_layer=true")
    with pytest.raises(ConfigError, match=r"^pruning.keep_first_layer: .*no prunable"):
        run(cfg)
    assert not (tmp_path / "cache").exists()  # no parent was trained
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_store_path_too_long_is_a_store_error(tmp_path: Path) -> None:
    too_long = tmp_path / ("x" * 300) / "runs" / "r"
    too_long_error = pytest.raises(store.StoreError, match=r"^store.root: cannot use .*too long")
    with too_long_error, store.claimed(too_long):
        pass


def test_a_store_under_a_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    not_a_dir = pytest.raises(store.StoreError, match=r"^store.root: cannot use .*Not a directory")
    with not_a_dir, store.claimed(tmp_path / "file" / "runs" / "r"):
        pass


def test_a_read_only_store_is_a_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root here, a read-only mount cannot be made; the error it gives (EROFS) is raised instead."""

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    read_only_error = pytest.raises(store.StoreError, match=r"^store.root: cannot use .*Read-only file")
    with read_only_error, store.claimed(tmp_path / "ro" / "runs" / "r"):
        pass
    with pytest.raises(store.StoreError, match="Read-only"):
        store.link(tmp_path / "job", tmp_path / "ro" / "runs" / "r")


FAST_CLI = ["data=synthetic", "model.width=8", "parent.epochs=1", "train.finetune_epochs=2", "device=cpu"]
CLI_CASES = [
    (["lr.lr=nan"], "error: lr.lr: must be a finite number > 0, got nan"),
    (["seed=-1"], "error: seed: must be in [0, 2**32), got -1"),
    (["model=mlp", "model.depth=1", "pruning.keep_first_layer=true"], "error: pruning.keep_first_layer: "),
    (["store.root=" + "s" * 300], "error: store.root: cannot use "),
    (["train.compile=maybe"], "error: train.compile: must be true or false, got 'maybe'"),
    (["+train.finetune_epoch=3"], "error: train.finetune_epoch: is not a config key; did you mean finetune"),
]
if not torch.cuda.is_available():
    CLI_CASES.append((["device=cuda"], "error: device: cuda asked for, but torch sees no GPU"))


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), CLI_CASES)
def test_cli_refuses_in_one_line_exit_2_nothing_in_the_store(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    job = tmp_path / "job"
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train",
         *without_keys(["method=one_shot", *FAST_CLI], args), *args,
         f"hydra.run.dir={job}", f"parent.cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**_env(), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]
    runs = tmp_path / "outputs" / "store" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run, no summary, no orphan .lock
    assert not (job / "run").is_symlink()
    assert not (tmp_path / "cache").exists()


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "WANDB_MODE": "offline"}


def test_compose_of_the_cli_cases_is_valid_without_the_bad_value() -> None:
    """The command lines above differ from a valid run only by the value under test."""
    validate(compose_config(["method=one_shot", *FAST_CLI, "output_dir=/tmp/unused"]))


WHY = "(the learning-rate schedule; method.schedule is the annealing schedule)"
OLD_SPELLINGS = [
    (["schedule=step"], f"error: schedule: renamed to lr {WHY}: use lr=step"),
    (
        ["-m", "method=one_shot", "schedule.lr=0.05,0.1"],
        f"error: schedule.lr: renamed to lr.lr {WHY}: use lr.lr=0.05,0.1",
    ),
    (
        ["parent.schedule.lr=0.2"],
        f"error: parent.schedule.lr: renamed to parent.lr.lr {WHY}: use parent.lr.lr=0.2",
    ),
]


def refused_before_hydra(tmp_path: Path, args: list[str], expected: str) -> None:
    """The CLI run from an empty tmp_path: exit 2, ``expected`` as its one line, nothing written (no job
    directory, no store, no outputs/)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", *args, f"hydra.run.dir={tmp_path / 'job'}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**_env(), "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [expected], proc.stderr[-2000:]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "expected"), OLD_SPELLINGS)
def test_cli_refuses_an_old_spelling_in_one_line_naming_the_new_key(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    """Before Hydra composes (which would report a missing group in many lines and exit 1): exit 2, nothing
    written. Not slow: the process stops before torch starts."""
    refused_before_hydra(tmp_path, args, expected)


# -- issue 26, defect 9: a key added with "+" that nothing reads; a key given twice ----------------------

ADDED_TYPOS = [
    ("+train.finetune_epoch=3", "train.finetune_epoch", "train.finetune_epoch: is not a config key; did you "
     "mean finetune_epochs?"),
    ("+optimizer.momentun=0.5", "optimizer.momentun", "optimizer.momentun: is not a config key; did you mean "
     "momentum?"),
    ("+parent.lr.gama=0.5", "parent.lr.gama", "parent.lr.gama: is not a config key; did you mean gamma?"),
    ("+spasity=0.5", "spasity", "spasity: is not a config key; did you mean sparsity?"),
    ("+train.zzz=1", "train.zzz", "train.zzz: is not a config key"),
]  # fmt: skip


@pytest.mark.parametrize(("override", "field", "message"), ADDED_TYPOS)
def test_an_added_key_the_schema_does_not_declare_is_refused(
    make_cfg, override: str, field: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=one_shot", override))
    assert err.value.field_name == field and str(err.value) == message


def test_an_added_key_under_an_open_node_is_accepted(make_cfg) -> None:
    """``model.kwargs`` is a dict passed to timm: any key is its own; ``hydra.*`` is not in a run's config."""
    cfg = make_cfg("method=one_shot", "+model.kwargs.drop_path_rate=0.1")
    validate(cfg)
    assert cfg.model.kwargs.drop_path_rate == 0.1


def test_check_closed_walks_every_dataclass_node() -> None:
    """Unit: a closed node nested in an open one is still checked; an untyped node is open."""
    from omegaconf import OmegaConf

    from ssa_experiments.config.schema import LrConfig
    from ssa_experiments.config.validate import check_closed

    tree = OmegaConf.create({"free": {"anything": 1}, "sched": OmegaConf.structured(LrConfig(name="step"))})
    check_closed(tree)
    with pytest.raises(ConfigError, match=r"^sched.gama: is not a config key; did you mean gamma\?$"):
        OmegaConf.set_struct(tree.sched, False)
        tree.sched.gama = 0.5
        check_closed(tree)


REPEATED = [
    (["seed=1", "seed=2"], "error: seed: given twice ('seed=1' and 'seed=2'): keep one"),
    (["-m", "sparsity=0.5,0.9", "sparsity=0.8"], "error: sparsity: given twice ('sparsity=0.5,0.9' and "
     "'sparsity=0.8'): keep one"),
    (["lr.lr=0.1", "+lr.lr=0.2"], "error: lr.lr: given twice ('lr.lr=0.1' and '+lr.lr=0.2'): keep one"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), REPEATED)
def test_cli_refuses_a_key_given_twice(tmp_path: Path, args: list[str], expected: str) -> None:
    """Before Hydra composes (it would keep the last value silently): one line, exit 2, nothing written."""
    refused_before_hydra(tmp_path, args, expected)


def test_override_key_of_flags_and_overrides() -> None:
    from ssa_experiments.config.overrides import override_key

    assert [override_key(a) for a in ["-m", "--cfg", "job", "~seed", "++a.b@pkg=1", "x=1,2"]] == [
        None, None, None, "seed", "a.b", "x",
    ]  # fmt: skip
