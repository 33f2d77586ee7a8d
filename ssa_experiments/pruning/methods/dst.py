"""Dynamic sparse training: SET and RigL, a fixed-size mask whose connections move during training.

The start mask is the target the configured machinery chooses (``PruningMethod.target()``: criterion, scope,
an ensemble member's scorer), from the trained parent (sparse fine-tuning) or from a freshly initialised
network when the parent has no epochs (sparse training from scratch). Every ``method.update_every`` steps
until ``method.end_fraction`` of the run's steps, each layer drops its ``α(t)`` fraction of active
connections with the smallest |w| and grows as many among its inactive ones (``../regrowth.py``), so every
layer keeps its count of active weights (the allocation of the start mask, ERK included) and the sparsity is
exactly constant. Grown connections start at zero with zeroed optimizer state; dropped ones are zeroed with
their state and this step's gradient, so inactive weights stay exactly zero.

The update runs in ``before_optimizer_step`` (after backward, before the optimizer step) of an update step.
RigL grows by the dense gradient ∂L/∂(w ⊙ m) of that step's batch: the mask parametrization's gradient for
the stored weight is masked (zero at inactive connections), so at update steps a forward hook on each
``Mask`` captures the gradient of the masked weight itself, which is the dense gradient at every
connection. The captured gradient costs nothing more than the backward pass already computes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ssa_experiments.pruning.masking import Mask, attach_masks, dense_weight, set_mask
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.regrowth import (
    drop_and_grow,
    drop_fraction_at,
    end_step,
    is_update_step,
    last_update_step,
)


class DynamicSparse(PruningMethod):
    """Drop by magnitude, grow by ``grow_scores`` (the subclass's rule) every ΔT steps until the stop."""

    GROW_SEED_OFFSET = 15485863  # SET's growth draws: a CPU generator of its own, seeded by the run's seed

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.masks = attach_masks(self.modules)
        self.apply_final(self.target())
        self.generator = torch.Generator().manual_seed(self.seed + self.GROW_SEED_OFFSET)
        self.end: int | None = None  # set by ``plan``: the first step without updates
        self.next_step = 0
        self.step = 0
        self.pending = False
        self.updates = 0
        self.moved = 0

    def plan(self, epochs: int, steps_per_epoch: int) -> None:
        self.end = end_step(epochs * steps_per_epoch, self.cfg.end_fraction)

    def begin_epoch(self, epoch: int, steps_per_epoch: int) -> None:
        self.next_step = epoch * steps_per_epoch

    def resume_epoch(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        self.next_step = epoch * steps_per_epoch + step  # the masks moved so far are the model's buffers

    def before_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        self.step = epoch * steps_per_epoch + step
        self.next_step = self.step + 1
        if self.end is None:
            raise RuntimeError(f"{self.name}: plan() was not called before training")
        self.pending = is_update_step(self.step, self.cfg.update_every, self.end)
        if self.pending:
            self.prepare_update()

    def prepare_update(self) -> None:
        """Before the forward pass of an update step: what the growth rule needs from it (RigL: hooks)."""

    def before_optimizer_step(self, lr: float) -> None:
        if not self.pending:
            return
        self.pending = False
        assert self.end is not None
        self.update(drop_fraction_at(self.step, self.end, self.cfg.drop_fraction, self.cfg.drop_schedule))

    def grow_scores(self) -> dict[str, torch.Tensor]:
        """Per layer, the scores of growing each connection (the highest inactive ones are grown)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, fraction: float) -> None:
        """Drop and grow in every layer (``regrowth.drop_and_grow``), then zero what moved."""
        grow = self.grow_scores()
        for name, mask in self.masks.items():
            weight = dense_weight(self.modules[name])
            keep = mask.eval_mask
            new, dropped, grown = drop_and_grow(
                keep.flatten(), weight.detach().abs().flatten(), grow[name].flatten(), fraction
            )
            self.zero_moved(weight, (dropped | grown).view_as(keep))
            set_mask(mask, new.view_as(keep))
            self.moved += int(grown.sum())
        self.updates += 1

    def zero_moved(self, weight: torch.Tensor, moved: torch.Tensor) -> None:
        """Zero the weights that moved, their gradient of this step and their optimizer state: a grown weight
        starts at zero with no momentum, a dropped one stays zero until it is grown again."""
        weight.masked_fill_(moved, 0.0)
        if weight.grad is not None:
            weight.grad.masked_fill_(moved, 0.0)
        state = self.optimizer.state.get(weight, {}) if self.optimizer is not None else {}
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.shape == weight.shape:
                value.masked_fill_(moved, 0.0)

    @property
    def at_target(self) -> bool:
        """Whether the mask is final: no update step is left from the next step on."""
        if self.end is None:
            return False
        return self.next_step > last_update_step(self.cfg.update_every, self.end)

    def report(self) -> dict[str, Any]:
        fraction = 0.0
        if self.end is not None:
            fraction = drop_fraction_at(
                self.next_step, self.end, self.cfg.drop_fraction, self.cfg.drop_schedule
            )
        return {
            **super().report(),
            "drop_fraction": fraction,
            "mask_updates": self.updates,
            "connections_regrown": self.moved,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "grow_generator": self.generator.get_state(),
            "mask_updates": self.updates,
            "connections_regrown": self.moved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["grow_generator"].cpu())
        self.updates = int(state["mask_updates"])
        self.moved = int(state["connections_regrown"])


class SET(DynamicSparse):
    """Sparse Evolutionary Training: grow at random among the inactive connections (uniform scores drawn on
    the CPU, layer by layer in order, from the method's own generator: the same draws on every device)."""

    name = "set"

    def grow_scores(self) -> dict[str, torch.Tensor]:
        return {
            name: torch.rand(m.eval_mask.shape, generator=self.generator).to(m.eval_mask.device)
            for name, m in self.masks.items()
        }


class RigL(DynamicSparse):
    """Rigging the Lottery: grow the inactive connections with the largest dense-gradient magnitude."""

    name = "rigl"

    def start(self, model: nn.Module) -> None:
        super().start(model)
        self.handles: list[RemovableHandle] = []
        self.dense_grads: dict[str, torch.Tensor] = {}

    def prepare_update(self) -> None:
        self.dense_grads = {}
        for name, mask in self.masks.items():
            self.handles.append(mask.register_forward_hook(self._capture(name)))

    def _capture(self, name: str):
        """A forward hook on ``name``'s Mask: the gradient of its output (the masked weight) is the dense
        gradient; summed if the layer uses its weight more than once in a pass."""

        def store(grad: torch.Tensor) -> None:
            g = grad.detach()
            self.dense_grads[name] = g if name not in self.dense_grads else self.dense_grads[name] + g

        def hook(module: Mask, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if output.requires_grad:
                output.register_hook(store)

        return hook

    def before_optimizer_step(self, lr: float) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
        super().before_optimizer_step(lr)

    def grow_scores(self) -> dict[str, torch.Tensor]:
        scores = {}
        for name, mask in self.masks.items():
            g = self.dense_grads.get(name)
            scores[name] = torch.zeros_like(mask.eval_mask, dtype=torch.float32) if g is None else g.abs()
        self.dense_grads = {}
        return scores
