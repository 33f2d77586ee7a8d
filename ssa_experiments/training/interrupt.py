"""Stopping a run cleanly when the scheduler asks (SLURM's time-limit signal), so it can be requeued.

submitit (``hydra/launcher=slurm``) asks SLURM to send USR2 ``signal_delay_s`` before a job's time limit,
and its own handler acts at once: mid-step, mid-write. ``deferred`` installs a handler that only notes the
request; the training loop calls ``check`` at every step boundary and ``pending`` at every epoch boundary,
and raises ``Interrupted`` there: never inside an optimizer step or an atomic write. The caller
(``cli/train.py``) then hands the request to the handler it replaced (submitit's: requeue, or give up when
``max_num_timeout`` is used up).

What a requeued run resumes from is its last ``checkpoint.pt`` (``run.py``): the run saves one at the
boundary where it stops, between epochs or inside one (``checkpoint.py``'s ``in_epoch``), so nothing is
redone and the resumed run's numbers are bit-identical to an uninterrupted run's. (A method of one's own that
cannot resume inside an epoch, ``PruningMethod.resumes_inside_epochs``, redoes the partial epoch instead.)
A parent being trained into the cache saves its training the same way (``parent.py``: ``training.pt`` in
its entry) and the requeued job continues it; an uncached parent (``parent.cache=false``) is trained again.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
_pending: list[int] = []  # signals received and not yet acted on (a list: safe to append in a handler)


class Interrupted(Exception):
    """The run stopped at a boundary because the scheduler asked (``signum``); its last checkpoint stands."""

    def __init__(self, signum: int, where: str) -> None:
        super().__init__(f"stopped {where} on {signal.Signals(signum).name}")
        self.signum = signum


def _note(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)


def pending() -> int | None:
    """The signal a stop was asked with, or None."""
    return _pending[0] if _pending else None


def check(where: str) -> None:
    """Raise ``Interrupted`` if a stop was asked (called at step and epoch boundaries)."""
    if _pending:
        raise Interrupted(_pending[0], where)


Handler = Callable[[int, FrameType | None], Any] | int | None


@contextmanager
def deferred(signum: int) -> Iterator[Handler]:
    """Within the block, ``signum`` only notes a stop request; yields the handler it replaced (to be called
    once the run has stopped), restored on exit. Requests left from before are cleared."""
    _pending.clear()
    previous = signal.signal(signum, _note)
    try:
        yield previous
    finally:
        signal.signal(signum, previous)
        _pending.clear()


def submitit_signal() -> int | None:
    """The signal submitit's job handler is installed on (its checkpoint-and-requeue), or None when this
    process is no submitit job (a local run, the joblib launcher)."""
    try:
        from submitit.core.job_environment import JobEnvironment
    except ImportError:
        return None
    try:
        signum = JobEnvironment._usr_sig()
    except RuntimeError:
        return None
    handler = signal.getsignal(signum)
    owner = getattr(handler, "__self__", None)
    return signum if type(owner).__name__ == "SignalHandler" else None
