"""Renew this CPU vendor's entry of tests/golden.json (tests/golden.py says why): after a change that alters
numbers or store keys, in the commit that bumps provenance.COMPUTE_VERSION; or to add a vendor that has no
entry yet, with the parent commit's code. Portable CPU numerics, x86-64 with AVX2.

A version bump drops the other vendors' entries (their values are of the old code): renew on each vendor's
machine, or the golden test fails there and says so."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ssa_experiments.repro import numerics, provenance

numerics.enter("portable")  # before torch starts

import golden

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measured-on", required=True, help="the machine, e.g. 'Intel Xeon with AVX-512'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        values = golden.compute(Path(work))
    old = golden.read() if golden.GOLDEN_FILE.exists() else {}
    platforms = old.get("platforms", {}) if old.get("compute_version") == values["compute_version"] else {}
    vendor = provenance.cpu_vendor()
    before = platforms.get(vendor, {}).get("runs", {})
    platforms[vendor] = {"measured_on": args.measured_on, "runs": values["runs"]}
    out = {"compute_version": values["compute_version"], "platforms": platforms}
    golden.GOLDEN_FILE.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    changed = sorted(k for k, v in values["runs"].items() if before.get(k) != v)
    print(
        f"wrote {golden.GOLDEN_FILE} (compute version {values['compute_version']}, {vendor});",
        f"changed: {changed or 'none'}; vendors pinned: {sorted(platforms)}",
    )
