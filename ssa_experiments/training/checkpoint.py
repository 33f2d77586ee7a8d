"""Resumable checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint holds the model (masks included: they are buffers), the optimizer, the pruning method's own
state (its mask generator), the epoch and global step, and **every random stream** training draws from:
the global CPU generator (dropout, torchvision transforms), the CUDA generators, numpy's and Python's.
Without them a resumed run only matched by luck (a data loader that happened to reseed the global
generator each epoch).

Most are written between epochs (``epoch``: the last epoch done). One written inside an epoch
(``train.checkpoint_every_steps``, or a scheduler's stop mid-epoch) also holds ``in_epoch``: the epoch, the
steps of it done, its running metric sums and whether it began on the target mask. The method's state is
then the one *after* its start-of-epoch work (iterative pruning, re-scoring, the epoch's mask sample): the
masks are the model's buffers, so a resumed run positions the method there (``Pruner.resume_at``) instead
of doing that work again on weights that have moved since.

Devices: the file is always read to the CPU (``map_location="cpu"``); ``load_state_dict`` then copies each
tensor to where the model and optimizer live. RNG states stay CPU ByteTensors, the only thing
``Generator.set_state`` accepts. A CPU generator's state cannot seed a CUDA generator (different sizes and
streams), so a checkpoint records the device type it was written on and resuming on another is refused.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.store.files import DamagedFile, atomic_torch_save

FORMAT = 3  # 3: may hold ``in_epoch``; 2: between epochs only (read as 3); 1: no RNG states, refused
READABLE = (2, 3)


def rng_states(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"].cpu())
    if states.get("cuda") is not None:
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def _compact(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """0/1 masks as bool: 1 byte per weight instead of 4; ``load_state_dict`` casts back. A mask with other
    values (soft annealing's P(t), DropConnect's 1 / (1 - r)) is kept as it is: mid-epoch, no start of
    an epoch would rewrite it."""
    return {k: v.bool() if k.endswith(".train_mask") and _binary(v) else v for k, v in state.items()}


def _binary(mask: torch.Tensor) -> bool:
    return bool(((mask == 0) | (mask == 1)).all())


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: PruningMethod,
    epoch: int,
    global_step: int,
    identity: dict[str, Any],
    device: torch.device,
    in_epoch: dict[str, Any] | None = None,
) -> None:
    """``epoch``: the last epoch done (-1: none); ``in_epoch``: the position inside the next one, if the
    checkpoint is written there (module docstring)."""
    atomic_torch_save(
        path,
        {
            "format": FORMAT,
            "model": _compact(model.state_dict()),
            "optimizer": optimizer.state_dict(),
            "method": method.state_dict(),
            "rng": rng_states(device),
            "device_type": device.type,
            "epoch": epoch,
            "global_step": global_step,
            "identity": identity,
            "in_epoch": in_epoch,
        },
    )


def load_checkpoint(path: Path, identity: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Read a checkpoint to the CPU and refuse one that this run cannot continue exactly; one that cannot be
    read at all (torn by a kill or a full disk) is ``DamagedFile``, naming it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch's errors for a torn zip, EOF, a bad pickle: the file is no checkpoint
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise DamagedFile(path, f"unreadable ({type(err).__name__}: {reason})") from None
    if not isinstance(ckpt, dict):
        raise DamagedFile(path, f"holds a {type(ckpt).__name__}, not a checkpoint")
    if ckpt.get("identity") != identity:
        raise ConfigError("output_dir", f"{path} was written by a different config; not resuming from it")
    if ckpt.get("format") not in READABLE:
        raise ConfigError("output_dir", f"{path} was written by an older version; remove it to start over")
    if ckpt["device_type"] != device.type:
        raise ConfigError(
            "device",
            f"{path} was written on {ckpt['device_type']}, this run is on {device.type}: random streams do "
            f"not carry over between device types; resume with device={ckpt['device_type']} or use another "
            "output_dir",
        )
    return ckpt


def restore(
    ckpt: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, method: PruningMethod
) -> tuple[int, int]:
    """Load a checkpoint's states; returns (first epoch to run, global step)."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    method.load_state_dict(ckpt["method"])
    set_rng_states(ckpt["rng"])
    return ckpt["epoch"] + 1, ckpt["global_step"]
