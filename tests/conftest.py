"""Shared fixtures: compose the real configs (conf/) and shrink them, as a user's overrides would."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ssa_experiments.config import register_configs

os.environ.setdefault("WANDB_MODE", "offline")
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_configs()

# A tiny, fast configuration: synthetic data, the small CNN, a few epochs.
FAST = [
    "data=synthetic",
    "model=small_cnn",
    "model.width=8",
    "parent.epochs=2",
    "train.finetune_epochs=3",
    "train.batch_size=64",
    "device=cpu",
]


def kill_in_epoch(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the n-th fine-tuning epoch die like a kill (no summary written); parent epochs do not count."""
    from ssa_experiments import run as run_module

    real = run_module.train_epoch
    calls = {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += args[8] is not None  # the method: None while the dense parent trains
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_epoch", dies)


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """make_cfg("method=one_shot", ...) -> a composed config writing under tmp_path."""

    def make(*overrides: str, run_dir: str = "run") -> DictConfig:
        return compose_config(
            [*FAST, f"output_dir={tmp_path / run_dir}", f"parent.cache_dir={tmp_path / 'cache'}", *overrides]
        )

    return make
