"""A Hydra sweeper for the tests (Hydra instantiates sweepers from the ``hydra_plugins`` namespace only): the
basic sweeper, also writing what each job returned (what a tuner such as Optuna would optimise) to
``$RECORD_RETURNS``. Used as ``hydra.sweeper._target_=hydra_plugins.recording_sweeper.RecordingSweeper`` with
``tests/`` on PYTHONPATH."""

from __future__ import annotations

import json
import os
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class RecordingSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        returns = super().sweep(arguments)
        values = [r.return_value for batch in returns for r in batch]
        with open(os.environ["RECORD_RETURNS"], "w") as f:
            json.dump(values, f)
        return returns
