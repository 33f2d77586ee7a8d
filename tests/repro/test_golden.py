"""Numbers change only with the compute version (``tests/golden.py`` says why and how to renew)."""

from __future__ import annotations

import platform
from pathlib import Path

import golden
import pytest

from ssa_experiments.repro import numerics, provenance
from ssa_experiments.repro.provenance import COMPUTE_VERSION

RENEW = 'python scripts/renew_golden.py --measured-on "<CPU>, torch <version>"'

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or numerics.capability() != numerics.PORTABLE_CAPABILITY,
    reason="the golden values are portable numerics: x86-64 with AVX2",
)


def test_every_vendor_pins_every_run_with_one_set_of_store_keys() -> None:
    pinned = golden.read()
    assert pinned["platforms"], "no golden values at all"
    keys = {v: {n: r["store_key"] for n, r in p["runs"].items()} for v, p in pinned["platforms"].items()}
    for vendor, runs in pinned["platforms"].items():
        assert set(runs["runs"]) == set(golden.RUNS), vendor
        assert runs["measured_on"], vendor
    assert len({tuple(sorted(k.items())) for k in keys.values()}) == 1, f"store keys differ by vendor: {keys}"


def test_golden_runs_give_the_pinned_numbers_or_the_compute_version_was_bumped(tmp_path: Path) -> None:
    pinned = golden.read()
    assert pinned["compute_version"] == COMPUTE_VERSION, (
        f"provenance.COMPUTE_VERSION is {COMPUTE_VERSION}, tests/golden.json pins version "
        f"{pinned['compute_version']}: renew the golden values ({RENEW}) in the same commit"
    )
    vendor = provenance.cpu_vendor()
    assert vendor in pinned["platforms"], (
        f"no golden values for CPU vendor {vendor!r}: compute them with the parent commit's code on this "
        f"machine ({RENEW}) and commit them"
    )
    runs = pinned["platforms"][vendor]["runs"]
    got = golden.compute(tmp_path)
    assert set(got["runs"]) == set(runs) == set(golden.RUNS)
    for name, values in runs.items():
        assert len(values) == len(golden.METRICS) + 4  # every metric, 2 weight digests, parent acc, store key
        assert all(v not in ("", "None", "nan") for k, v in values.items() if k != "val_loss"), (name, values)
        assert got["runs"][name] == values, (
            f"golden run {name!r} changed on {vendor}: if the change is meant to alter numbers (or store "
            f"keys), bump provenance.COMPUTE_VERSION and renew the golden values ({RENEW}) in the same commit"
        )
