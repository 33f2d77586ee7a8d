"""Bad input fails fast, naming the field, with no results written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GRADUAL, compose_config
from hydra.errors import ConfigCompositionException

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.validate import validate

BAD = [
    (["sparsity=1.0"], "sparsity"),
    (["sparsity=-0.1"], "sparsity"),
    (["method.name=bogus"], "method.name"),
    (["model.arch=bogus"], "model.arch"),
    (["data.name=bogus"], "data.name"),
    (["method=temperature_annealing", "method.initial_temperature=0"], "method.initial_temperature"),
    (["method=temperature_annealing", "method.initial_temperature=1.5"], "method.initial_temperature"),
    (["method=random_annealing", "method.max_initial_probability=0"], "method.max_initial_probability"),
    (["method=iterative", "method.anneal_epochs=11", "train.finetune_epochs=10"], "method.anneal_epochs"),
    (["method=iterative", "method.anneal_epochs=10", "train.finetune_epochs=10"], "method.anneal_epochs"),
    (["data.val_fraction=1.0"], "data.val_fraction"),
    (["eval.bn_recalibration_batches=-1"], "eval.bn_recalibration_batches"),
    (["method=temperature_annealing", "method.anneal_epochs=0"], "method.anneal_epochs"),
    (["method=temperature_annealing", "method.schedule=polynomial"], "method.schedule"),
    (["method=iterative", "method.schedule=cosine"], "method.schedule"),
    (["lr.lr=-0.1"], "lr.lr"),
    (["parent.lr.lr=0"], "parent.lr.lr"),
    (["lr=bogus_free"], None),  # composition error, see below
    (["data=cifar10", "data.root=/definitely/not/here"], "data.root"),
    (["parent.path=/no/such/parent.pt"], "parent.path"),
    (["pruning.scope=blockwise"], "pruning.scope"),
    (["optimizer.name=lion"], "optimizer.name"),
    (["train.label_smoothing=1.0"], "train.label_smoothing"),
    (["device=tpu"], "device"),
    # the mechanism controls (tests/test_controls.py)
    (["method=stochastic_constant", "method.initial_temperature=0"], "method.initial_temperature"),
    (["method=stochastic_constant", "method.initial_temperature=1.5"], "method.initial_temperature"),
    (["method=soft_annealing", "method.initial_temperature=0"], "method.initial_temperature"),
    (["method=soft_annealing", "method.initial_temperature=-0.5"], "method.initial_temperature"),
    (["method=dropconnect_target", "method.initial_drop_rate=0"], "method.initial_drop_rate"),
    (["method=dropconnect_target", "method.initial_drop_rate=1.0"], "method.initial_drop_rate"),
    (["method=dropconnect_target", "method.initial_drop_rate=-0.1"], "method.initial_drop_rate"),
    (["method=stochastic_constant", "method.anneal_epochs=0"], "method.anneal_epochs"),
    (
        ["method=dropconnect_target", "method.anneal_epochs=10", "train.finetune_epochs=10"],
        "method.anneal_epochs",
    ),
    (
        ["method=soft_annealing", "method.anneal_epochs=12", "train.finetune_epochs=10"],
        "method.anneal_epochs",
    ),
    (["method=soft_annealing", "method.schedule=polynomial"], "method.schedule"),
    (["method=dropconnect_target", "method.schedule=polynomial"], "method.schedule"),
    (["method=dropconnect_target", "method.granularity=batch"], "method.granularity"),
    (["method=stochastic_constant", "method.resample=never"], "method.resample"),
    (["method=soft_annealing", "method.decay_rate=0"], "method.decay_rate"),
    # typed Any in the schema so that these are refused here, in one line, not read as true or as a
    # multi-line composition error
    (["train.compile=maybe"], "train.compile"),
    (["train.compile=2"], "train.compile"),
    (["train.compile=1"], "train.compile"),
    (["train.runs_per_device=0"], "train.runs_per_device"),
]


@pytest.mark.parametrize(("overrides", "field"), [b for b in BAD if b[1] is not None])
def test_validate_names_the_field(overrides: list[str], field: str) -> None:
    cfg = compose_config(["output_dir=/tmp/unused", *overrides])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.field_name == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    "overrides", [["lr=bogus_free"], ["method=bogus"], ["train.finetune_epoch=3"], ["sparsity=abc"]]
)
def test_composition_rejects_typos_and_unknown_groups(overrides: list[str]) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_config(overrides)


def test_defaults_are_valid() -> None:
    cfg = compose_config(["output_dir=/tmp/unused"])
    validate(cfg)
    assert cfg.method.name == "temperature_annealing" and cfg.data.name == "digits"
    assert cfg.pruning.keep_first_layer is False and cfg.pruning.keep_last_layer is True  # the paper's


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sparsity=1.5"], "error: sparsity: must be in [0, 1), got 1.5"),
        (["data=cifar10", "data.root=/definitely/not/here"], "error: data.root: data directory"),
        (["method=iterative", "method.anneal_epochs=50"], "error: method.anneal_epochs: 50 must be <"),
    ],
)
def test_cli_bad_input_one_line_exit_code_no_results(tmp_path: Path, args: list[str], expected: str) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", *args, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    assert not (run_dir / "run").exists() and not (run_dir / "summary.json").exists()
    assert not (tmp_path / "outputs" / "store").exists()


@pytest.mark.parametrize("method", GRADUAL)
def test_anneal_epochs_equal_to_finetune_epochs_is_refused(method: str) -> None:
    cfg = compose_config([f"method={method}", "method.anneal_epochs=10", "train.finetune_epochs=10"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.field_name == "method.anneal_epochs"
    validate(compose_config([f"method={method}", "method.anneal_epochs=9", "train.finetune_epochs=10"]))
