"""Renew tests/golden.json after a change that alters numbers or store keys, in the commit that bumps
provenance.COMPUTE_VERSION (tests/golden.py says why). Portable CPU numerics, x86-64 with AVX2."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ssa_experiments import numerics

numerics.enter("portable")  # before torch starts

import golden

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as work:
        values = golden.compute(Path(work))
    old = golden.read() if golden.GOLDEN_FILE.exists() else {}
    golden.GOLDEN_FILE.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    changed = sorted(k for k, v in values["runs"].items() if old.get("runs", {}).get(k) != v)
    print(
        f"wrote {golden.GOLDEN_FILE} (compute version {values['compute_version']});",
        f"changed: {changed or 'none'}",
    )
