"""The config schema and every bad-input rule, in one place.

The dataclasses are registered in Hydra's ConfigStore and ``conf/config.yaml`` extends them, so a key that is
not in the schema (a typo) or a value of the wrong type fails at composition, before any compute.
``validate`` adds the rules a type cannot express (ranges, cross-field rules, paths that must exist).
Key names are frozen: renaming one breaks users' sweeps; deprecate instead.
"""

from __future__ import annotations

import hashlib

from omegaconf import DictConfig

from ssa_experiments.config.schema import Config


def derived_seed(seed: int, member: int, stream: str) -> int:
    """A seed in [0, 2**31) that is a pure function of (``seed``, ``member``, ``stream``): independent streams
    (a member's parent, its fine-tuning, its mask) never share draws, and any process re-derives them."""
    digest = hashlib.sha256(f"{stream}:{seed}:{member}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**31


def parent_seed(cfg: DictConfig | Config) -> int:
    """The seed the dense parent is initialised and trained from: ``seed``, or a member's own with
    ``ensemble.independent_parents`` (then the parent cache keys on it, and on nothing else of the member)."""
    e = cfg.ensemble
    if e.member is None or not e.independent_parents:
        return int(cfg.seed)
    return derived_seed(int(cfg.seed), int(e.member), "parent")


def finetune_seed(cfg: DictConfig | Config) -> int:
    """The seed of fine-tuning (batch order, augmentation, mask samples): ``seed`` for an ordinary run, one of
    a member's own otherwise, so members differ in their tuning noise as well as in their masks."""
    if cfg.ensemble.member is None:
        return int(cfg.seed)
    return derived_seed(int(cfg.seed), int(cfg.ensemble.member), "finetune")
