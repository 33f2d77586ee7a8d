"""Where the configs are found (``config/paths.py``): the wheel's packaged copy first, a checkout's ``conf/``
beside the package otherwise, a clear error where neither is; and ``output_dir`` resolves where a config is
shown without a job (``--cfg job --resolve``). The installed wheel itself: tests/test_package.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, compose_hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ssa_experiments.config.paths import ConfigDirNotFound, candidates, conf_dir


def make_conf(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("seed: 0\n")
    return path


def test_a_checkout_reads_its_top_level_conf() -> None:
    assert conf_dir() == REPO / "conf"
    assert not (REPO / "ssa_experiments" / "conf").exists()  # the one copy in git is conf/


def test_the_packaged_copy_wins_over_a_conf_beside_the_package(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "ssa_experiments"
    beside = make_conf(tmp_path / "site-packages" / "conf")  # some other distribution's top-level conf/
    assert conf_dir(package) == beside  # a checkout: conf/ next to the package
    packaged = make_conf(package / "conf")
    assert conf_dir(package) == packaged
    assert candidates(package) == (packaged, beside)


def test_a_directory_without_config_yaml_is_not_the_configs(tmp_path: Path) -> None:
    package = tmp_path / "ssa_experiments"
    (package / "conf" / "model").mkdir(parents=True)  # a half-removed install
    beside = make_conf(tmp_path / "conf")
    assert conf_dir(package) == beside


def test_no_configs_anywhere_is_one_clear_error(tmp_path: Path) -> None:
    package = tmp_path / "ssa_experiments"
    package.mkdir()
    looked = r"config\.yaml in \S+/ssa_experiments/conf or \S+/conf\): reinstall"
    with pytest.raises(ConfigDirNotFound, match=looked):
        conf_dir(package)


@pytest.fixture
def hydra_config() -> Iterator[HydraConfig]:
    """Hydra's config singleton as a job sees it, restored afterwards."""
    instance = HydraConfig.instance()
    before = instance.cfg
    yield instance
    instance.cfg = before


def test_output_dir_is_the_job_directory_once_hydra_sets_it(hydra_config: HydraConfig) -> None:
    cfg = compose_hydra("seed=3", "method=one_shot")
    cfg.hydra.runtime.output_dir = "/jobs/0"
    hydra_config.set_config(cfg)
    assert cfg.output_dir == "/jobs/0"


def test_output_dir_shown_without_a_job_is_the_run_directory_it_would_get(hydra_config: HydraConfig) -> None:
    """``--cfg job --resolve``: Hydra has not set runtime.output_dir (``???``); before the resolver this was
    an InterpolationValidationError."""
    cfg = compose_hydra("seed=3", "method=one_shot", "hydra.run.dir=out/${method.name}_seed${seed}")
    assert OmegaConf.is_missing(cfg.hydra.runtime, "output_dir")
    hydra_config.set_config(cfg)
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.resolve(job)
    assert job.output_dir == "out/one_shot_seed3"
