"""How tensors meet the device a run chose: ``Precision`` decides bf16 autocast and the channels-last memory
format, each asked for by the config (``train.amp``, ``train.channels_last``) and used only on CUDA, where
they help; on the CPU a run's numbers stay those of float32 in the default memory format. The training loop,
the dense parent, and an ensemble member's saved logits all go through one ``Precision``, so a member's
outputs are computed as its evaluation was."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch


@dataclass
class Precision:
    """How tensors meet the device: bf16 autocast and channels-last, used only where they help (CUDA)."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False

    @classmethod
    def for_device(cls, device: torch.device, amp: bool, channels_last: bool) -> Precision:
        cuda = device.type == "cuda"
        return cls(device, amp and cuda, channels_last and cuda)

    def autocast(self) -> AbstractContextManager[object]:
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x
