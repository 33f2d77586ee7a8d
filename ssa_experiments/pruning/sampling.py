"""Where a stochastic mask is sampled: P(t) from the target and p(0), then M ~ Bernoulli(P).

The annealing methods (``methods/annealing.py``, ``methods/controls.py``) call these on the flat buffers of
``flat_groups.py`` before every training step (``before_step``, from ``training/loop.py``); the masks then
act on the weights through ``masking.py``. The schedule that says how fast P(t) falls is
``sparsity_schedules.py``.
"""

from __future__ import annotations

from typing import Any

import torch

MASK_SEED_OFFSET = 7919  # the mask generator's seed is the run's (or member's fine-tuning) seed + this


def annealed_probabilities(
    keep: torch.Tensor, p0: torch.Tensor | float, factor: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """P(t): 1 on the target subnetwork (``keep``, bool), ``p0 * s(t/n)`` elsewhere.

    ``p0`` is a tensor (0 on the target) or one number for every removed weight (temperature annealing:
    no per-weight buffer needed). ``out`` makes it allocation-free.
    """
    if isinstance(p0, torch.Tensor):
        return torch.add(keep, p0, alpha=factor, out=out)
    if out is None:
        out = torch.empty(keep.shape, device=keep.device)
    return out.fill_(p0 * factor).masked_fill_(keep, 1.0)


def sample_keep(
    prob: torch.Tensor,
    generator: torch.Generator,
    u: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """M ~ Bernoulli(P) as ``U < P`` with U ~ Uniform[0, 1): P = 1 always keeps, P = 0 never does.

    ``u`` (a buffer for U) and ``out`` (the mask, any dtype) let the per-step call allocate nothing.
    (``Tensor.bernoulli_`` would need no ``u``, but measured 4.5x slower on CPU.)
    """
    if u is None:
        u = torch.empty_like(prob)
    u.uniform_(generator=generator)  # the same numbers torch.rand(..., generator=) draws
    return torch.lt(u, prob, out=out)


def mask_generator(device: torch.device, seed: int) -> torch.Generator:
    """The one generator every mask sample of a run draws from, on the masks' device."""
    return torch.Generator(device=device).manual_seed(seed + MASK_SEED_OFFSET)


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """What a checkpoint keeps of the mask generator.

    ``Generator.get_state()`` is a CPU ByteTensor for CPU and CUDA generators alike; it must stay on the CPU
    (``set_state`` accepts nothing else), and a CPU state cannot seed a CUDA generator or vice versa.
    """
    return {"generator": generator.get_state(), "generator_device": generator.device.type}


def restore_generator(generator: torch.Generator, state: dict[str, Any]) -> None:
    """Continue the samples of ``generator_state``; refuses a state from another kind of device."""
    saved = state.get("generator_device", "cpu")
    if saved != generator.device.type:
        raise ValueError(
            f"the checkpoint's mask generator ran on {saved}, this run's on {generator.device.type}"
        )
    generator.set_state(state["generator"].cpu())
