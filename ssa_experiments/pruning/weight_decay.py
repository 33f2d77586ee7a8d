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


def leave_decay_to_method(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Arrange ``optimizer`` so that a method decays ``params`` itself: they move out of their param group
    into a group of their own with the same settings, no decay of its own, and the decay it had as
    ``masked_weight_decay`` (``masked_weight_decay_rate`` reads it back).

    Done before the first step (the optimizer holds no state yet); a no-op where ``params`` already sit in
    such a group (``training/optim.make_optimizer`` builds it so) or there are none. Moving a tensor to
    another group changes no number: each update is per tensor.
    """
    own = {id(p) for p in params}
    if not own or any("masked_weight_decay" in g for g in optimizer.param_groups):
        return
    holding = [g for g in optimizer.param_groups if any(id(p) in own for p in g["params"])]
    if len(holding) != 1 or len(own) != sum(id(p) in own for p in holding[0]["params"]):
        raise ValueError(
            "decay_sampled_out=false: the pruned weights must all be in one param group of the optimizer "
            f"(found in {len(holding)})"
        )
    if optimizer.state:
        raise ValueError("decay_sampled_out=false: bind the optimizer before its first step")
    (group,) = holding
    group["params"] = [p for p in group["params"] if id(p) not in own]
    settings = {k: v for k, v in group.items() if k != "params"}
    optimizer.add_param_group({
        **settings,
        "params": list(params),
        "weight_decay": 0.0,
        "masked_weight_decay": group["weight_decay"],
    })  # fmt: skip
