"""The package as a user installs it: a wheel built from the source, installed into a fresh virtual
environment, its console scripts run from an empty directory.

Offline and fast: the wheel is built with the test interpreter's own setuptools (no build isolation, no
index), and the fresh environment reaches the dependencies (torch, Hydra, ...) through a ``.pth`` line
naming this interpreter's site-packages. A path line in a ``.pth`` file adds that directory without running
the ``.pth`` files inside it, so a checkout's editable install (its import hook lives in such a file) does
not follow, and nothing puts the checkout on the path: each test checks it runs the installed copy.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO

from ssa_experiments.repro import numerics

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="the fresh environment's layout (bin/) is POSIX's"),
]

# what a wheel is built from: the files pyproject.toml, setup.py and MANIFEST.in name
SOURCES = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "conf",
    "ssa_experiments",
    "hydra_plugins",
)
TIMEOUT = 300


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        """A console script (or ``python``) of the fresh environment, run in ``cwd``."""
        exe = self.venv / "bin" / args[0]
        return subprocess.run(
            [str(exe), *args[1:]], cwd=cwd, env={**self.env, **env}, capture_output=True, text=True,
            timeout=TIMEOUT,
        )  # fmt: skip


def build_wheel(out: Path) -> Path:
    """The wheel of a fresh copy of the source (a clean build directory: nothing stale from earlier)."""
    src = out / "src"
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", str(src), "-w", str(out / "dist")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (out / "dist").glob("ssa_experiments-*.whl")
    return wheel


def dependency_dirs() -> list[str]:
    """Where this interpreter finds the package's dependencies: its site-packages (not the checkout)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    return dirs


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("package")
    wheel = build_wheel(root)
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter this one's venv was made from
    done = subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "_dependencies.pth").write_text("\n".join(dependency_dirs()) + "\n")
    # a user's shell: none of this process's Python settings, data or cache directories, nor the CPU numerics
    # it runs in (conftest sets them: the console scripts must set them themselves)
    drop = ("PYTHON", "SSA_", "VIRTUAL_ENV", *numerics.PORTABLE_ENV)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", WANDB_MODE="offline")
    # --ignore-installed: the checkout's editable install is visible through the .pth; pip must neither take
    # it for this package nor try to remove it
    done = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "--ignore-installed",
         "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, env=env, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Installed(wheel, venv, env)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    cwd = tmp_path / "empty"
    cwd.mkdir()
    return cwd


def scripts(wheel: Path) -> dict[str, str]:
    """The console scripts the wheel declares (its entry_points.txt): name -> module:function."""
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(z.read(name).decode())
    return dict(parser["console_scripts"])


def test_the_wheel_carries_the_configs_as_package_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as z:
        names = set(z.namelist())
    source = REPO / "conf"
    conf = {
        f"ssa_experiments/conf/{p.relative_to(source).as_posix()}" for p in source.rglob("*") if p.is_file()
    }
    assert conf and conf == {n for n in names if n.startswith("ssa_experiments/conf/")}
    assert not [n for n in names if n.startswith("conf/")]  # nothing at the top level of site-packages
    # but the tuning presets' sweeper, in the namespace where Hydra looks for plugins (docs/tuning.md)
    assert "hydra_plugins/ssa_tuning/resumable_optuna.py" in names
    assert "hydra_plugins/__init__.py" not in names  # a namespace package: Hydra's other plugins stay visible


def test_the_installed_package_and_its_configs_are_the_wheels(installed: Installed, empty: Path) -> None:
    done = installed.run(
        "python", "-c",
        "import ssa_experiments; from ssa_experiments.config.paths import conf_dir; "
        "print(ssa_experiments.__file__); print(conf_dir())",
        cwd=empty,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    package, conf = done.stdout.split()
    assert Path(package).is_relative_to(installed.venv), package  # not the checkout
    assert Path(conf).is_relative_to(installed.venv) and Path(conf).name == "conf"


def test_no_console_script_starts_torch_before_the_cpu_numerics_are_set(
    installed: Installed, empty: Path
) -> None:
    """What a console script imports before it calls main (its module): torch either not at all (ssa-train
    sets the config's mode first) or only in portable numerics (ssa-ensemble sets them as it is imported)."""
    for name, target in scripts(installed.wheel).items():
        module = target.split(":")[0]
        done = installed.run(
            "python", "-c",
            f"import {module}; from ssa_experiments.repro import numerics; "
            "print(numerics.torch_started(), numerics.environment_mode())",
            cwd=empty,
        )  # fmt: skip
        assert done.returncode == 0, (name, done.stderr[-2000:])
        started, mode = done.stdout.split()
        assert started == "False" or mode == "portable", (name, started, mode)
        if name == "ssa-train":
            assert started == "False"


def test_every_console_script_answers_help_from_an_empty_directory(installed: Installed, empty: Path) -> None:
    declared = scripts(installed.wheel)
    assert {"ssa-train", "ssa-status", "ssa-aggregate", "ssa-figures", "ssa-ensemble", "ssa-noise"} <= set(
        declared
    )
    for name in declared:
        done = installed.run(name, "--help", cwd=empty)
        assert done.returncode == 0, (name, done.stderr[-2000:])
        assert "usage" in done.stdout.lower() or "powered by Hydra" in done.stdout, (name, done.stdout[:500])
    groups = installed.run("ssa-train", "--help", cwd=empty).stdout
    assert re.search(r"^method: .*\bdense\b", groups, re.M), groups[:2000]  # the config groups are found
    assert not list(empty.iterdir())  # --help writes nothing


def test_cfg_job_resolve_prints_the_resolved_config(installed: Installed, empty: Path) -> None:
    done = installed.run("ssa-train", "--cfg", "job", "--resolve", "method=one_shot", "seed=4", cwd=empty)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "${" not in done.stdout
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("output_dir:")]
    assert line.startswith("output_dir: outputs/runs/") and line.endswith("_one_shot_s0.9_seed4"), line


def test_shell_completion_offers_the_config_groups(installed: Installed, empty: Path) -> None:
    script = installed.run("ssa-train", "-sc", "install=bash", cwd=empty)
    assert script.returncode == 0, script.stderr
    assert "complete -o nospace -o default -F hydra_bash_completion ssa-train" in script.stdout
    query = installed.run("ssa-train", "-sc", "query=bash", cwd=empty, COMP_LINE="ssa-train method=")
    assert query.returncode == 0, query.stderr
    methods = {p.stem for p in (REPO / "conf" / "method").glob("*.yaml")}
    assert set(query.stdout.split()) == {f"method={m}" for m in methods}
    if shutil.which("bash") is None:
        return
    # bash itself: the installed function, asked as the shell asks it at <TAB>
    done = subprocess.run(
        ["bash", "-c", 'eval "$(ssa-train -sc install=bash)"; COMP_LINE="ssa-train experiment=quick"; '
         'COMP_POINT=${#COMP_LINE}; COMP_CWORD=1; hydra_bash_completion; printf "%s\\n" "${COMPREPLY[@]}"'],
        cwd=empty, env=installed.env, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.stdout.split() == ["experiment=quickstart", "experiment=quickstart_mnist1d"], done.stderr


def test_quickstart_runs_from_an_empty_directory_and_reads_back(installed: Installed, empty: Path) -> None:
    """``ssa-train experiment=quickstart`` (shortened): the run, its parent and Hydra's job directory land
    under the working directory, computed in portable numerics by the installed code; then ssa-status and
    ssa-aggregate read it back."""
    done = installed.run(
        "ssa-train", "experiment=quickstart", "parent.epochs=1", "train.finetune_epochs=2",
        "method.anneal_epochs=1", "device=cpu", "logger.progress=none", cwd=empty,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (summary_file,) = (empty / "outputs" / "store" / "runs").glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "completed"
    assert summary["method"] == "temperature_annealing" and summary["config"]["model"]["arch"] == "small_cnn"
    assert summary["provenance"]["code"] == {"package": "0.1.0"}  # the wheel's version, no checkout's commit
    assert summary["provenance"]["cpu_numerics"] == "portable"  # set by the console script (env cleared)
    if numerics.capability() == numerics.PORTABLE_CAPABILITY:  # this process runs portable (conftest)
        assert summary["provenance"]["cpu_capability"] == numerics.PORTABLE_CAPABILITY
    assert list((empty / ".cache" / "parents").glob("*/parent.pt"))
    assert list((empty / "outputs" / "runs").glob("*/.hydra/config.yaml"))
    status = installed.run("ssa-status", "outputs/store", cwd=empty)
    assert status.returncode == 0 and "1 completed" in status.stdout, status.stdout + status.stderr
    table = installed.run("ssa-aggregate", "outputs", "--csv", "runs.csv", cwd=empty)
    assert table.returncode == 0, table.stderr[-2000:]
    assert "temperature_annealing" in (empty / "runs.csv").read_text()
