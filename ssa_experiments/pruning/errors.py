"""Outcomes of pruning that the CLI reports in one line, importable without torch (the entry point
imports this before the CPU numerics are set, numerics.py)."""

from __future__ import annotations


class LayerCollapse(RuntimeError):
    """A target that removes every weight of a layer: the network is disconnected there."""

    def __init__(self, layers: list[str], described: list[str] | None = None) -> None:
        super().__init__(
            f"the target removes every weight of {layer_list(described or layers)} (layer collapse: the "
            "network is disconnected there); lower the sparsity, use pruning.scope=layerwise, or set "
            "pruning.allow_layer_collapse=true to run anyway"
        )
        self.layers = layers


def layer_list(described: list[str]) -> str:
    """``layer "fc"`` or ``layers "a", "b"``: quoted, so a Sequential's module name ``4`` reads as a name."""
    return ("layer " if len(described) == 1 else "layers ") + ", ".join(described)
