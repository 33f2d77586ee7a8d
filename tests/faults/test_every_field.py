"""Every config field's out-of-domain values are refused in one line naming the field (issue 26): a
property-style table test generated from the schema, not a hand-picked list.

``DOMAINS`` gives each leaf field of ``config/schema.py`` a domain kind (the rule ``validate.py`` enforces
for it) and, where the field is read only in some configs, the overrides that make a run read it; the bad
values are generated from the kind: below the minimum, NaN and infinities for floats, outside a unit
interval, an unknown choice, a value of the wrong type. ``test_every_field_has_a_domain`` fails when a field
is added to the schema without one, so the table cannot silently fall behind. Each value is judged in process
the way the CLI judges it (``overrides.refuse_bad_values`` before composition, then ``validate``); a sample
goes through the CLI: exit 2, one line, nothing written.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from helpers import FAST, REPO, compose_config, without_keys

from ssa_experiments.config.overrides import refuse_bad_values
from ssa_experiments.config.schema import Config, ConfigError, DataConfig, ModelConfig
from ssa_experiments.config.validate import validate

BASE = [*FAST, "method=one_shot", "output_dir=/tmp/unused-never-written"]
WRONG_TYPE = "abc"


def _min(k: int) -> list:
    """An int with minimum ``k``: below it, far below it, a fraction, a word."""
    return [*sorted({k - 1, -5}, reverse=True), 1.5, WRONG_TYPE]


POS = [0.0, -1.0, "nan", "inf", "-inf", WRONG_TYPE]  # a finite float > 0
NONNEG = [-1.0, "nan", "inf", WRONG_TYPE]  # a finite float >= 0
CO = [-0.1, 1.0, "nan", "inf", WRONG_TYPE]  # [0, 1)
OC = [0.0, 1.5, "nan", "-inf", WRONG_TYPE]  # (0, 1]
OO = [0.0, 1.0, "nan", WRONG_TYPE]  # (0, 1)
CC = [-0.1, 1.1, "nan", WRONG_TYPE]  # [0, 1]
CHOICE = ["nope", 3]  # an unknown choice (an int is read as the string "3")
BOOL = ["maybe", 1.5]  # (OmegaConf reads an int as a bool: 0 false, anything else true)
FREE: list = []  # any string (a name, a path read only where it matters, a W&B label): no value is out of it

GRADUAL = ["method=temperature_annealing", "method.anneal_epochs=1"]
LR_FIELDS = {
    "name": (CHOICE, []), "lr": (POS, []), "pct_start": (OO, []), "div_factor": (POS, []),
    "final_div_factor": (POS, []), "milestones": (["[-1]", "[1.5]", "[nan]", "[abc]", WRONG_TYPE], []),
    "gamma": (POS, []), "decay_start": ([*CC, 0.95], []), "decay_end": ([*CC, 0.4], []),
    "final_ratio": (NONNEG, []), "min_ratio": (NONNEG, []),
}  # fmt: skip
# field -> (out-of-domain values, the overrides under which a run reads the field)
DOMAINS: dict[str, tuple[list, list[str]]] = {
    "model.arch": (["nope", "cnn1d"], []),  # cnn1d: a 1-D model for images
    "model.name": (FREE, []), "model.width": (_min(1), []), "model.depth": (_min(1), []),
    "model.widen_factor": (_min(1), []), "model.patch_size": (_min(1), []), "model.heads": (_min(1), []),
    "model.dropout": (CO, []), "model.pretrained": (BOOL, []), "model.kwargs": ([WRONG_TYPE], []),
    "model.mimo_heads": (_min(1), []), "model.mimo_batch_repetitions": (_min(1), []),
    "data.name": (CHOICE, []),
    "data.root": (["/nonexistent/ssa-data"], ["data=cifar10", f"data.root={REPO}"]),
    "data.pipeline": (CHOICE, []), "data.image_size": (_min(1), []), "data.crop_padding": (_min(0), []),
    "data.flip": (BOOL, []), "data.num_workers": (_min(0), []), "data.val_fraction": (CO, []),
    "data.split_seed": ([-1, 2**32, WRONG_TYPE], []), "data.num_train": (_min(1), []),
    "data.num_test": (_min(1), []), "data.num_classes": (_min(2), []), "data.channels": (_min(1), []),
    "data.num_samples": ([0, 99, 105, -10, WRONG_TYPE], ["data=mnist1d", "model=cnn1d"]),
    "method.name": (CHOICE, []), "method.anneal_epochs": ([*_min(1), 3], GRADUAL),  # 3: not < epochs
    "method.schedule": (CHOICE, GRADUAL), "method.granularity": (CHOICE, []), "method.resample": (CHOICE, []),
    "method.initial_temperature": (OC, GRADUAL),
    "method.initial_drop_rate": (OO, ["method=dropconnect_target", "method.anneal_epochs=1"]),
    "method.max_initial_probability": (OC, ["method=random_annealing", "method.anneal_epochs=1"]),
    "method.decay_rate": (POS, GRADUAL), "method.decay_sampled_out": (BOOL, []),
    "method.rescore": ([*BOOL, True], []),  # true: one_shot does not re-score
    "method.prune_every_steps": ([*_min(0), 2], []),  # 2: read by iterative only
    "method.update_every": (_min(1), ["method=set"]), "method.drop_fraction": (OO, ["method=set"]),
    "method.drop_schedule": (CHOICE, ["method=set"]), "method.end_fraction": (OC, ["method=set"]),
    "pruning.criterion": (CHOICE, []), "pruning.scope": (CHOICE, []), "pruning.keep_first_layer": (BOOL, []),
    "pruning.keep_last_layer": (BOOL, []), "pruning.allow_layer_collapse": (BOOL, []),
    "pruning.control": (CHOICE, []), "pruning.pattern": (["abc", "0:4", "4:2"], []),
    "pruning.score_batches": (_min(1), []), "pruning.synflow_rounds": (_min(1), []),
    **{f"lr.{k}": v for k, v in LR_FIELDS.items()},
    **{f"parent.lr.{k}": v for k, v in LR_FIELDS.items()},
    "optimizer.name": (CHOICE, []), "optimizer.momentum": (CO, []), "optimizer.nesterov": (BOOL, []),
    "optimizer.weight_decay": (NONNEG, []), "optimizer.betas": (["[-0.1,0.9]", "[0.9,1.0]", "[nan]"], []),
    "train.finetune_epochs": (_min(1), []), "train.batch_size": (_min(1), []),
    "train.label_smoothing": (CO, []), "train.amp": (BOOL, []), "train.channels_last": (BOOL, []),
    "train.checkpoint_every": (_min(0), []), "train.checkpoint_every_steps": (_min(0), []),
    "train.max_steps_per_epoch": (_min(0), []),
    "train.save_model": (BOOL, []), "train.cpu_threads": (_min(1), []), "train.cpu_numerics": (CHOICE, []),
    "train.compile": (BOOL, []), "train.runs_per_device": (_min(1), []),
    "eval.bn_recalibration_batches": (_min(0), []),
    "parent.epochs": (_min(0), []),  # 0: pruning at initialisation
    "parent.path": (["/nonexistent/parent.pt"], []),
    "parent.cache_dir": (FREE, []), "parent.cache": (BOOL, []),
    "parent.rewind_epoch": ([-1, 2, WRONG_TYPE], []),
    "parent.save_epochs": (["[-1]", "[2]", "[abc]"], []),
    "ensemble.member": ([-1, 6, WRONG_TYPE], []), "ensemble.size": ([*_min(1), 3], []),  # 3: odd pairs
    "ensemble.masks": (CHOICE, []), "ensemble.noise": (NONNEG, []),
    "ensemble.independent_parents": (BOOL, []), "ensemble.corruptions": (["[nope]", WRONG_TYPE], []),
    "ensemble.severities": (["[0]", "[6]", "[abc]"], []),
    "logger.name": (CHOICE, []), "logger.progress": (CHOICE, []), "logger.project": (FREE, []),
    "logger.entity": (FREE, []), "logger.group": (FREE, []), "logger.job_type": (FREE, []),
    "logger.tags": ([WRONG_TYPE], []), "logger.mode": (CHOICE, []), "logger.init_timeout": (POS, []),
    "store.root": (FREE, []), "store.lock_timeout_s": (NONNEG, []),
    "sparsity": (CO, []), "seed": ([-1, 2**32, 1.5, WRONG_TYPE], []), "device": (["tpu", 3], []),
    "output_dir": (FREE, []), "force": (BOOL, []), "objective": (["test_acc", *CHOICE], []),
}  # fmt: skip


# ``model`` and ``data`` are untyped in Config (a ``=custom`` option is open for the user's arguments); the
# built-in options carry these schemas (conf/model/*.yaml, conf/data/*.yaml: ``/schema/.../builtin``)
BUILT_IN = {"model": ModelConfig, "data": DataConfig}


def leaves(node: type = Config, prefix: str = "") -> list[str]:
    """Every leaf field of the schema, dotted: nested dataclasses are walked, lists and dicts are leaves."""
    out = []
    for name, hint in typing.get_type_hints(node).items():
        hint = BUILT_IN.get(name, hint) if node is Config else hint
        if dataclasses.is_dataclass(hint):
            out += leaves(hint, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


# a rule between two fields names the one of the pair it finds wrong: either is one clear line
CROSS = {f"{p}.decay_start": f"{p}.decay_end" for p in ("lr", "parent.lr")}
CASES = [(field, value, context) for field, (values, context) in DOMAINS.items() for value in values]


def test_every_field_has_a_domain() -> None:
    assert sorted(leaves()) == sorted(DOMAINS), set(leaves()) ^ set(DOMAINS)
    assert len(CASES) > 250


def refusal(overrides: list[str]) -> ConfigError:
    """What the CLI does with the command line before any compute, in process."""
    with pytest.raises(ConfigError) as err:
        refuse_bad_values(overrides)
        validate(compose_config([*BASE, *overrides]))
    return err.value


@pytest.mark.slow  # ~400 config compositions: make test runs them, make test-fast leaves them out
@pytest.mark.parametrize(("field", "value", "context"), CASES, ids=[f"{f}={v}" for f, v, _ in CASES])
def test_out_of_domain_value_is_one_line_naming_the_field(
    field: str, value: object, context: list[str]
) -> None:
    validate(compose_config([*BASE, *context]))  # the context alone is valid: the value is what is refused
    err = refusal([*context, f"{field}={value}"])
    assert err.field_name in (field, CROSS.get(field)), str(err)
    assert str(err).startswith(f"{err.field_name}: ") and "\n" not in str(err)


SAMPLE = random.Random(26).sample([c for c in CASES if c[0] not in ("data.root", "parent.path")], 10)


@pytest.mark.slow
@pytest.mark.parametrize(("field", "value", "context"), SAMPLE, ids=[f"{f}={v}" for f, v, _ in SAMPLE])
def test_cli_refuses_a_sample_in_one_line_exit_2_nothing_written(
    tmp_path: Path, field: str, value: object, context: list[str]
) -> None:
    job = tmp_path / "job"
    args = [*context, f"{field}={value}"]
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", *without_keys([*FAST, "method=one_shot"], args),
         *args, f"hydra.run.dir={job}", f"parent.cache_dir={tmp_path / 'cache'}",
         f"store.root={tmp_path / 'store'}"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: {field}: "), lines
    store = tmp_path / "store" / "runs"
    assert not store.exists() or not any(store.iterdir())  # no run directory, no lock file
    assert not (job / "run").is_symlink() and not (tmp_path / "cache").exists()
