"""pytest's set-up for every test: portable CPU numerics before torch starts (the tests compute what a default
run computes), W&B offline, the schema registered with Hydra, the ``make_cfg`` fixture, and the tiers. What
tests share beyond fixtures is in ``helpers.py``.

Tiers (markers, registered in pyproject.toml) are derived here from what a test does, so that a new test
lands in the right one without anyone remembering to mark it. A test "refers to" a name where its code, or
the code of a helper or fixture of tests/ that it uses, does. ``slow`` is the package run in another process
(marked by hand on sweeps, derived for any test that refers to ``subprocess``: a process that imports torch
costs seconds); ``slurm`` is every test on the local cluster (the ``cluster`` fixture); of the rest,
``integration`` is a test that refers to ``run`` (a training run, in-process) and ``unit`` everything else.
``cuda`` is marked by hand, and skipped with a reason where torch sees no GPU."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType

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


TESTS = str(Path(__file__).resolve().parent)
PROCESSES = frozenset({"subprocess", "Popen"})
CLUSTER_FIXTURES = frozenset({"cluster"})  # tests/sweeps/test_slurm.py: the local SLURM cluster


def names(code: CodeType) -> Iterator[str]:
    """The global and attribute names a function's code refers to, its lambdas and inner functions
    included."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from names(const)


def refers(fn: object, wanted: frozenset[str], seen: set[int]) -> bool:
    """Whether ``fn``, or a function of tests/ it calls (helpers, module-level helpers), refers to one of
    ``wanted``."""
    code = getattr(fn, "__code__", None)
    if code is None or not code.co_filename.startswith(TESTS) or id(fn) in seen:
        return False
    seen.add(id(fn))
    refs = set(names(code))
    return bool(refs & wanted) or any(refers(fn.__globals__.get(n), wanted, seen) for n in refs)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = None
    for item in items:
        code = [item.obj, *(d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)]
        if CLUSTER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slurm)
        if not any(item.iter_markers("slow")) and any(refers(fn, PROCESSES, set()) for fn in code):
            item.add_marker(pytest.mark.slow)
        if not any(item.iter_markers("slow")) and not any(item.iter_markers("slurm")):
            ran = any(refers(fn, frozenset({"run"}), set()) for fn in code)
            item.add_marker(pytest.mark.integration if ran else pytest.mark.unit)
        if any(item.iter_markers("cuda")):
            if gpu is None:
                import torch

                gpu = torch.cuda.is_available()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs a GPU: torch sees none"))
