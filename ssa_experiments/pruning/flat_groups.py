"""The stochastic layers' masks as views of a few flat buffers, so a sampling step costs two kernels.

Every layer's P, U and train mask are consecutive views of one buffer each (per mask dtype/device), so one
``uniform_`` and one ``torch.lt`` sample every layer at once, allocating nothing. On the CPU generator the
draws are the very numbers one ``torch.rand`` per layer (in layer order) gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ssa_experiments.pruning.masking import Mask, dense_views, share_masks, shares_masks
from ssa_experiments.pruning.sampling import annealed_probabilities, sample_keep

# p(0) of the weights outside the flat bool target: one number for them all, or one per weight
InitialProbabilities = Callable[[torch.Tensor], torch.Tensor | float]


@dataclass
class FlatGroup:
    """The stochastic layers of one mask dtype/device, as consecutive views of flat buffers.

    ``mask`` is the storage of the layers' ``train_mask`` buffers and ``keep`` that of their bool
    ``eval_mask`` buffers (the target; see ``masking.share_masks``); ``prob``, ``u`` and ``p0`` have the
    same layout, so each step is one ``uniform_`` into ``u`` and one ``torch.lt(u, prob, out=mask)``: no
    per-layer kernels, no allocation. ``p0`` is one number (temperature annealing) or a flat tensor.
    Memory per prunable weight: train mask (weight dtype) + target (1 byte) + prob + u (+ p0 for random).
    """

    names: list[str]
    masks: list[Mask]
    mask_views: list[torch.Tensor]
    keep_views: list[torch.Tensor]
    keep: torch.Tensor
    p0: torch.Tensor | float
    prob: torch.Tensor
    u: torch.Tensor
    mask: torch.Tensor

    def layer_views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per layer, the view of ``flat`` (laid out as ``mask``) that holds that layer's elements."""
        return dict(zip(self.names, dense_views(flat, self.mask_views), strict=True))

    def fill(self, factor: float) -> None:
        """Write P(t) into ``prob``: 1 on the target, ``p0 * factor`` elsewhere (allocation-free)."""
        annealed_probabilities(self.keep, self.p0, factor, out=self.prob)

    def sample(self, generator: torch.Generator) -> None:
        """Draw M ~ Bernoulli(``prob``) into ``mask``; ``publish`` makes the layers see it."""
        sample_keep(self.prob, generator, u=self.u, out=self.mask)

    def publish(self) -> None:
        """Make the layers' ``train_mask`` buffers see ``mask``: they are its views unless the model was
        moved or cast after the group was built (then they have storage of their own, and get a copy)."""
        if not shares_masks(self.masks, self.mask_views):
            for m, v in zip(self.masks, self.mask_views, strict=True):
                m.train_mask.copy_(v)

    def out_of_support(self) -> torch.Tensor | None:
        """The weights whose P is 0 for good (off the target, p(0) = 0), flat; None when there are none."""
        if isinstance(self.p0, torch.Tensor):
            return ~self.keep & (self.p0 == 0)
        return ~self.keep if self.p0 == 0 else None

    def removed(self) -> int:
        """How many weights lie outside the target."""
        return int((~self.keep).sum())

    def p0_sum(self) -> float:
        """The sum of p(0) over the weights outside the target (0 on the target)."""
        if isinstance(self.p0, torch.Tensor):
            return float(self.p0.sum(dtype=torch.float64))
        return self.p0 * self.removed()


def flat_groups(masks: dict[str, Mask], initial_probabilities: InitialProbabilities) -> list[FlatGroup]:
    """One ``FlatGroup`` per mask dtype/device, the layers in the order of ``masks``; the layers' buffers
    become its views, keeping their values (the eval masks must hold the target already: p(0) reads it)."""
    by_kind: dict[tuple[torch.device, torch.dtype], list[str]] = {}
    for name, mask in masks.items():
        by_kind.setdefault((mask.train_mask.device, mask.train_mask.dtype), []).append(name)
    groups = []
    for (device, dtype), names in by_kind.items():
        members = [masks[n] for n in names]
        total = sum(m.train_mask.numel() for m in members)
        mask = torch.empty(total, dtype=dtype, device=device)
        keep = torch.empty(total, dtype=torch.bool, device=device)
        views = share_masks(members, mask, "train_mask")
        keep_views = share_masks(members, keep, "eval_mask")
        prob = torch.empty(total, dtype=torch.promote_types(dtype, torch.float32), device=device)
        p0 = initial_probabilities(keep)
        groups.append(
            FlatGroup(names, members, views, keep_views, keep, p0, prob, torch.empty_like(prob), mask)
        )
    return groups
