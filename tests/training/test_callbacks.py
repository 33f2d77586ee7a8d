"""The epoch-callback protocol (training/callbacks.py): its hooks, the no-ops a subclass inherits, and a
callback without a hook refused when the run is set up, not when it reaches that hook many epochs later."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ssa_experiments.training.callbacks import HOOKS, Callback, Callbacks


def test_hooks_are_the_protocols_methods() -> None:
    declared = [n for n, v in vars(Callback).items() if inspect.isfunction(v) and not n.startswith("_")]
    assert declared == list(HOOKS)


class Counter(Callback):
    """Overrides one hook; the other six are the protocol's no-ops."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch_start(self, epoch: int, ctx: object) -> None:  # type: ignore[override]
        self.epochs.append(epoch)


def test_a_subclass_inherits_a_no_op_for_every_hook_it_leaves_alone() -> None:
    counter = Counter()  # a protocol's explicit subclass keeps its own __init__
    hooks = Callbacks([counter, Counter()])
    assert hooks.revisit(Path("."), {"status": "completed"}) is None
    with hooks.span("train_epoch"):
        hooks.on_epoch_start(3, None)  # type: ignore[arg-type]
    assert hooks.summary_fields(None) == {}  # type: ignore[arg-type]
    hooks.on_finish(None, False)
    assert counter.epochs == [3]


class Incomplete:
    def on_epoch_end(self, row: dict, ctx: object) -> None:
        pass

    revisit = None  # not callable: not a hook


def test_an_object_without_every_hook_is_refused_up_front() -> None:
    with pytest.raises(TypeError, match=r"^Incomplete is not a callback: it has no revisit, on_start, "):
        Callbacks([Counter(), Incomplete()])  # type: ignore[list-item]
