"""The user's own code on the command line: a ``_target_`` that cannot work is one line naming the field,
exit 2, nothing in the store (the checks themselves: tests/config/test_targets.py); ``+model._target_`` on a
built-in model is refused, not ignored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TRAIN, user_module

FAST = ["parent.epochs=1", "train.finetune_epochs=1", "device=cpu", "method=one_shot"]
CASES = [
    (
        ["+model._target_=torchvision.models.resnet18"],
        "error: model._target_: model=small_cnn is built in and reads no '_target_' (it would be ignored)",
    ),
    (["model=custom", "model._target_=byo_user.needs_depth"], "error: model._target_: byo_user.needs_depth("),
    # found once the data set is read: still before the parent, withdrawn from the store
    (["model=custom", "model._target_=byo_user.wrong_shape"], "error: model._target_: byo_user.wrong_shape"),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_a_bad_target_is_one_line_exit_2_nothing_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], expected: str
) -> None:
    user_module(tmp_path, monkeypatch)
    proc = subprocess.run(
        [sys.executable, *TRAIN, "data=synthetic", *FAST, *args, f"hydra.run.dir={tmp_path / 'job'}",
         f"store.root={tmp_path / 'store'}", f"parent.cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(expected) and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "cache").exists()
    assert not list((tmp_path / "store").rglob("summary.json"))
