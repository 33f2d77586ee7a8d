"""How an ensemble member's target is chosen: scores that are a function of the parent's weights, the
member's index and the ensemble's seed alone, so members differ where ``ensemble.masks`` says they should.

``members.member_scorer`` hands these to the pruning method as its target scorer (``pruning.targets.Scorer``):
every method composes with every ``ensemble.masks``, since they only replace the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssa_experiments.config.seeds import derived_seed
from ssa_experiments.pruning.targets import magnitude_scores


@dataclass(frozen=True)
class MemberMasks:
    """How an ensemble member's target differs from its siblings' (``config.EnsembleConfig``): ``kind`` is
    ``ensemble.masks``, ``seed`` the ensemble's seed (the run's ``seed``, not the member's fine-tuning seed),
    ``noise`` the magnitude_random noise."""

    kind: str
    member: int
    seed: int
    noise: float = 0.0


def rank_scores(weights: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A random permutation of 0..N-1 over all N weights (layers in order) as float64 scores, from ``seed``
    on the CPU. Distinct scores (float64 holds every rank exactly) mean no ties, so ``target_masks`` keeps
    exactly the chosen fraction, and the reversed ranking removes exactly what this one keeps."""
    total = sum(w.numel() for w in weights.values())
    ranks = torch.randperm(total, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out, offset = {}, 0
    for name, w in weights.items():
        out[name] = ranks[offset : offset + w.numel()].view(w.shape).to(w.device)
        offset += w.numel()
    return out


def member_scores(weights: dict[str, torch.Tensor], spec: MemberMasks) -> dict[str, torch.Tensor]:
    """Scores choosing an ensemble member's target: a function of the parent's weights and ``spec`` alone.

    anti_random: members 2j and 2j+1 share the ranks of pair j, the odd member negated, so at 50% sparsity
    (an even number of prunable weights per threshold) one keeps exactly what the other removes; random: ranks
    of the member's own; magnitude_random: |w| * exp(noise * N(0, 1)), a relative perturbation the same at
    every weight scale (noise 0: every member gets the magnitude target).
    """
    if spec.kind == "anti_random":
        ranks = rank_scores(weights, derived_seed(spec.seed, spec.member // 2, "anti_random"))
        return ranks if spec.member % 2 == 0 else {n: r.neg() for n, r in ranks.items()}
    if spec.kind == "random":
        return rank_scores(weights, derived_seed(spec.seed, spec.member, "random"))
    if spec.kind == "magnitude_random":
        g = torch.Generator().manual_seed(derived_seed(spec.seed, spec.member, "magnitude_random"))
        return {
            n: s * torch.randn(s.shape, generator=g).mul_(spec.noise).exp_().to(s.device)
            for n, s in magnitude_scores(weights).items()
        }
    raise ValueError(f"ensemble.masks: unknown kind {spec.kind!r}")
