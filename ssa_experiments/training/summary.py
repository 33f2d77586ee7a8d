"""What a run's summary says of its epochs, all read from the epoch rows (so a resumed run reports the same):
the final epoch's metrics, the best epoch by validation (never by test accuracy), the budget."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ssa_experiments.training.lr import LrFn


def best_by_validation(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The best epoch by validation accuracy among the epochs trained on the final mask (first on ties).

    Never by test accuracy, and never an epoch where the network was still denser than the target.
    """
    candidates = [r for r in history if r.get("at_target") and r.get("val_acc") is not None]
    if not candidates:
        return {"best_epoch": None, "best_val_acc": None, "test_acc_at_best_val": None}
    best = max(candidates, key=lambda r: (r["val_acc"], -r["epoch"]))
    return {
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "test_acc_at_best_val": best["test_acc"],
    }


def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's numbers, all read from the epoch rows (so a resumed run reports the same)."""
    last = history[-1] if history else {}
    return {
        "sparsity": last.get("sparsity"),
        "layer_sparsity": last.get("layer_sparsity"),
        "test_acc": last.get("test_acc"),
        "test_loss": last.get("test_loss"),
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        **best_by_validation(history),
        "bn_recalibration_batches": last.get("bn_recalibration_batches"),
        "epochs": len(history),
        "epochs_at_target": sum(bool(r["at_target"]) for r in history),
    }


def lr_trace_sha256(steps: int, lr_fn: LrFn) -> str:
    """A digest of the LR of every step taken: equal digests mean equal LR traces (budgets comparable)."""
    lrs = np.array([lr_fn(s) for s in range(steps)], dtype=np.float64)
    return hashlib.sha256(lrs.tobytes()).hexdigest()[:16]
