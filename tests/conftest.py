"""pytest's set-up for every test: portable CPU numerics before torch starts (the tests compute what a default
run computes), W&B offline, the schema registered with Hydra, and the ``make_cfg`` fixture. What tests share
beyond fixtures is in ``helpers.py``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ssa_experiments.repro import numerics

numerics.enter("portable")  # before torch starts

import pytest
from helpers import FAST, compose_config
from omegaconf import DictConfig

from ssa_experiments.config.schema import register_configs

os.environ.setdefault("WANDB_MODE", "offline")
register_configs()


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """make_cfg("method=one_shot", ...) -> a composed config writing under tmp_path."""

    def make(*overrides: str, run_dir: str = "run") -> DictConfig:
        return compose_config(
            [*FAST, f"output_dir={tmp_path / run_dir}", f"parent.cache_dir={tmp_path / 'cache'}", *overrides]
        )

    return make
