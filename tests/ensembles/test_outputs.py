"""A member's outputs callback is a callback by its shape alone (ensembles sit below training and never import
it): it has every hook of the protocol with the protocol's parameters, and what it reads of the run's context
(``MemberContext``) is there in ``RunContext`` with the same types. No type checker runs in the tests, so this
is the check that the two sides have not drifted apart."""

from __future__ import annotations

import inspect
from typing import get_type_hints

from ssa_experiments.ensembles.outputs import MemberContext, MemberOutputs, member_callbacks
from ssa_experiments.training.callbacks import HOOKS, Callback, Callbacks, RunContext


def test_member_outputs_has_every_hook_with_the_protocols_parameters() -> None:
    for hook in HOOKS:
        ours = inspect.signature(getattr(MemberOutputs, hook))
        theirs = inspect.signature(getattr(Callback, hook))
        assert list(ours.parameters) == list(theirs.parameters), hook


def test_what_a_member_reads_of_the_run_is_in_the_runs_context_with_its_type() -> None:
    run_context = get_type_hints(RunContext)
    read = {name for name, value in vars(MemberContext).items() if isinstance(value, property)}
    assert read >= {"out", "evaluated", "history", "precision"}
    for name in read:
        assert name in run_context, name
        assert get_type_hints(getattr(MemberContext, name).fget)["return"] == run_context[name], name


def test_a_member_gets_the_callback_and_the_run_accepts_it(make_cfg) -> None:
    assert member_callbacks(make_cfg()) == []
    (outputs,) = member_callbacks(make_cfg("ensemble.member=0"))
    hooks = Callbacks([outputs])
    with hooks.span("evaluate"):  # the no-op hooks do nothing
        hooks.on_epoch_start(0, None)  # type: ignore[arg-type]
    assert hooks.callbacks == [outputs]
