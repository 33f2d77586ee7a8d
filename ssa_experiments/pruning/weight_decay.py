"""Weight decay restricted to a mask (``method.decay_sampled_out=false``): a weight sampled out of a step is
not decayed in it.

The masked weights sit in a param group with no decay of its own, marked ``masked_weight_decay``
(``training/optim.make_optimizer``); the method adds the decay back here after backward, times the mask.
"""

from __future__ import annotations

import torch


def masked_weight_decay_rate(optimizer: torch.optim.Optimizer) -> float:
    """The decay the optimizer left to the method (0 when none: no group is marked, or its rate is 0)."""
    return next((g["masked_weight_decay"] for g in optimizer.param_groups if "masked_weight_decay" in g), 0)


@torch.no_grad()
def apply_masked_weight_decay(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    masks: list[torch.Tensor],
    lr: float,
    rate: float,
) -> None:
    """Weight decay at ``rate`` on ``params`` times ``masks``, in the optimizer's own form: decoupled
    shrinkage for AdamW, coupled L2 in the gradient otherwise (SGD). Call after backward, before the step."""
    if isinstance(optimizer, torch.optim.AdamW):
        torch._foreach_addcmul_(params, params, masks, value=-lr * rate)
    else:
        torch._foreach_addcmul_([p.grad for p in params], params, masks, value=rate)
