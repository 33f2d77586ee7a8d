"""``make gpu-check`` is checked where CI runs, without a GPU: its dry run lists every item with its time
budget and finds the script sound, and an item's outcome (result lines, a timeout) is recorded."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_dry_run_lists_every_item_with_its_budget_and_finds_the_script_sound(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    names = [
        "cuda-tests",
        "masks-resnet18",
        "masks-wrn28_10",
        "pipeline",
        "loop",
        "compile",
        "runs-per-device",
    ]
    for name in [*names, *(f"preset-{p}" for p in ("fig1", "fig2", "table1", "table2", "baselines"))]:
        assert any(line.startswith(name) and " s  " in line for line in done.stdout.splitlines()), name
    assert "pytest -m cuda collects" in done.stdout and "the script is sound" in done.stdout
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_the_items_fit_the_eight_minutes(tmp_path: Path) -> None:
    module = gpu_check()
    plan = module.items(tmp_path / "out", tmp_path / "work")
    assert module.TOTAL_BUDGET_S <= 480 and sum(i.budget_s for i in plan) <= module.TOTAL_BUDGET_S
    assert len({i.name for i in plan}) == len(plan)


def test_an_item_records_its_result_lines_and_a_timeout(tmp_path: Path) -> None:
    module = gpu_check()
    prints = "print('RATIO a/b: 1.01'); print('noise')"
    with open(tmp_path / "log", "w") as log:
        ok = module.run_item(module.Item("ok", 30, (sys.executable, "-c", prints)), tmp_path, log, 30)
        slow = module.Item("slow", 1, (sys.executable, "-c", "import time; print('RATIO x', flush=True); "
                                       "time.sleep(30)"))  # fmt: skip
        late = module.run_item(slow, tmp_path, log, 1)
    assert (ok.status, ok.returncode, ok.results) == ("passed", 0, ["RATIO a/b: 1.01"])
    assert late.status == "timeout" and late.returncode is None and late.wall_s < 10
    assert "===== slow" in (tmp_path / "log").read_text()


def test_without_a_gpu_the_check_refuses_and_writes_nothing(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check().check(tmp_path / "out") == 2
    assert "--dry-run" in capsys.readouterr().out and not (tmp_path / "out").exists()
