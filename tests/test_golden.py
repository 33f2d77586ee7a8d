"""Numbers change only with the compute version (``tests/golden.py`` says why and how to renew)."""

from __future__ import annotations

import platform
from pathlib import Path

import golden
import pytest

from ssa_experiments import numerics
from ssa_experiments.provenance import COMPUTE_VERSION

RENEW = "python scripts/renew_golden.py"

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or numerics.capability() != numerics.PORTABLE_CAPABILITY,
    reason="the golden values are portable numerics: x86-64 with AVX2",
)


def test_golden_runs_give_the_pinned_numbers_or_the_compute_version_was_bumped(tmp_path: Path) -> None:
    pinned = golden.read()
    assert pinned["compute_version"] == COMPUTE_VERSION, (
        f"provenance.COMPUTE_VERSION is {COMPUTE_VERSION}, tests/golden.json pins version "
        f"{pinned['compute_version']}: renew the golden values ({RENEW}) in the same commit"
    )
    got = golden.compute(tmp_path)
    assert set(got["runs"]) == set(pinned["runs"]) == set(golden.RUNS)
    for name, values in pinned["runs"].items():
        assert len(values) == len(golden.METRICS) + 4  # every metric, 2 weight digests, parent acc, store key
        assert all(v not in ("", "None", "nan") for k, v in values.items() if k != "val_loss"), (name, values)
        assert got["runs"][name] == values, (
            f"golden run {name!r} changed: if the change is meant to alter numbers (or store keys), bump "
            f"provenance.COMPUTE_VERSION and renew the golden values ({RENEW}) in the same commit"
        )
