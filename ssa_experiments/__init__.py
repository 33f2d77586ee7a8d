"""ssa-experiments: Stochastic Subnetwork Annealing and the field's pruning baselines.

``ssa_experiments.Pruner`` (``pruning/pruner.py``) is the library interface for one's own training loop
(docs/library.md). It is imported on first use (PEP 562), so ``import ssa_experiments`` and the CLI's imports
stay free of torch: the CLI sets the CPU numerics before torch starts (``repro/numerics.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssa_experiments.pruning.pruner import Pruner

__all__ = ["Pruner"]


def __getattr__(name: str) -> Any:
    if name == "Pruner":
        from ssa_experiments.pruning.pruner import Pruner

        return Pruner
    raise AttributeError(f"module 'ssa_experiments' has no attribute {name!r}")
