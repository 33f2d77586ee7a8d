"""Data sets from the user's code (``data=custom data._target_=...``) and files (``files.py``) as ImageData.

Every pipeline, split and loader of the framework reads an ``ImageData`` (``base.py``), so a data set of the
user's own is turned into one here, once, and from then on is no different from a built-in one.

What ``data._target_`` returns (called with the keys the user added, ``+data.<key>=...``): the splits
``(train, test)`` or ``(train, test, val)``, or a mapping with keys ``train``, ``test`` and optionally
``val``. Each split is either an ``(x, y)`` pair of tensors or numpy arrays, or a torch ``Dataset`` of
``(x, y)`` samples (read once into memory, as every data set here is). ``x``: channels-first samples,
(N, C, H, W) images or (N, C, L) signals, uint8 (0..255, divided by 255 on the way to the model) or
floating point (used as given, as float32); ``y``: integer class labels 0..K-1, K = the largest label + 1.
Without a ``val`` split, ``data.val_fraction`` of train is carved out (``data.split_seed``), as for the
built-in sets; normalisation is ``data.mean``/``data.std`` if given, else the training split's statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.targets import check_custom_data, one_line, user_arguments
from ssa_experiments.data.base import ImageData, channel_stats

SPLITS = ("train", "test", "val")


def as_samples(x: Any, field: str, split: str) -> torch.Tensor:
    """Channels-first samples as stored for a loader: uint8 kept, any float as float32."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if not isinstance(t, torch.Tensor):
        raise ConfigError(field, f"{split} samples are a {type(x).__name__}, not a tensor or numpy array")
    if t.dim() not in (3, 4):
        raise ConfigError(
            field,
            f"{split} samples have shape {tuple(t.shape)}: need (N, C, H, W) images or (N, C, L) signals",
        )
    if t.dtype == torch.uint8:
        return t.contiguous()
    if t.is_floating_point():
        return t.to(torch.float32).contiguous()
    raise ConfigError(field, f"{split} samples are {t.dtype}: need uint8 images (0..255) or floating point")


def as_labels(y: Any, n: int, field: str, split: str) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(y)) if not isinstance(y, torch.Tensor) else y
    if t.dim() != 1 or len(t) != n:
        raise ConfigError(field, f"{split} labels have shape {tuple(t.shape)}, need ({n},): one per sample")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ConfigError(field, f"{split} labels are {t.dtype}: need integer class indices")
    t = t.to(torch.int64)
    if n and int(t.min()) < 0:
        raise ConfigError(field, f"{split} labels include {int(t.min())}: need class indices 0..K-1")
    return t.contiguous()


def from_dataset(ds: Any, field: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A torch ``Dataset`` of (x, y) samples read into two stacked tensors (a PIL image as uint8 C, H, W)."""
    xs, ys = [], []
    for i in range(len(ds)):
        sample = ds[i]
        if not isinstance(sample, Sequence) or len(sample) != 2:
            raise ConfigError(field, f"{split}[{i}] is a {type(sample).__name__}, need an (x, y) pair")
        x, y = sample
        if not isinstance(x, torch.Tensor | np.ndarray):
            from torchvision.transforms.v2.functional import pil_to_tensor

            x = pil_to_tensor(x)  # a PIL image: uint8, channels first
        xs.append(torch.as_tensor(x))
        ys.append(int(y))
    if not xs:
        raise ConfigError(field, f"the {split} data set is empty")
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ConfigError(field, f"{split} samples differ in shape ({sorted(shapes)[:2]}): need one shape")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def as_split(obj: Any, field: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(obj, torch.utils.data.Dataset):
        x, y = from_dataset(obj, field, split)
    elif isinstance(obj, Sequence) and len(obj) == 2:
        x, y = obj
    else:
        raise ConfigError(
            field, f"the {split} split is a {type(obj).__name__}: need an (x, y) pair or a Dataset"
        )
    samples = as_samples(x, field, split)
    return samples, as_labels(y, len(samples), field, split)


def splits_of(result: Any, field: str) -> dict[str, Any]:
    """``(train, test[, val])`` or ``{"train": ..., "test": ...[, "val": ...]}`` as a dict of splits."""
    if isinstance(result, Mapping):
        unknown = sorted(set(result) - set(SPLITS))
        if unknown or not {"train", "test"} <= set(result):
            raise ConfigError(field, f"returned keys {sorted(result)}: need train, test and optionally val")
        return {k: v for k, v in result.items() if v is not None}
    if isinstance(result, Sequence) and not isinstance(result, str) and len(result) in (2, 3):
        return dict(zip(SPLITS, result, strict=False))
    raise ConfigError(
        field, f"returned a {type(result).__name__}: need (train, test), (train, test, val) or a dict of them"
    )


def to_image_data(name: str, splits: Mapping[str, Any], cfg: Any, field: str) -> ImageData:
    """The splits as an ``ImageData`` with the config's augmentation and normalisation (``data.mean`` and
    ``data.std``, else the training split's statistics); ``load_data`` carves the validation split."""
    tensors = {k: as_split(v, field, k) for k, v in splits.items()}
    train_x = tensors["train"][0]
    for split, (x, _) in tensors.items():
        if x.shape[1:] != train_x.shape[1:] or x.dtype != train_x.dtype:
            raise ConfigError(
                field, f"{split} samples are {x.dtype} {tuple(x.shape[1:])}, train's {train_x.dtype} "
                f"{tuple(train_x.shape[1:])}: every split needs the same"
            )  # fmt: skip
        if len(x) == 0:
            raise ConfigError(field, f"the {split} split is empty")
    num_classes = max(int(y.max()) for _, y in tensors.values()) + 1
    channels = train_x.shape[1]
    mean, std = normalisation(cfg, channels) or channel_stats(train_x)
    if (cfg.crop_padding or cfg.flip) and train_x.dim() != 4:
        key = "data.crop_padding" if cfg.crop_padding else "data.flip"
        raise ConfigError(key, f"crop and flip are for (N, C, H, W) images; {name}'s samples are signals")
    val_x, val_y = tensors.get("val", (None, None))
    return ImageData(
        name, train_x, tensors["train"][1], *tensors["test"], num_classes, mean, std, cfg.crop_padding,
        cfg.flip, val_x, val_y,
    )  # fmt: skip


def normalisation(cfg: Any, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``data.mean``/``data.std`` when set (one value per channel, std > 0), else None."""
    if cfg.mean is None and cfg.std is None:
        return None
    if cfg.mean is None or cfg.std is None:
        raise ConfigError(
            "data.mean" if cfg.mean is None else "data.std", "set both data.mean and data.std, or neither"
        )
    mean, std = tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
    for key, values in (("data.mean", mean), ("data.std", std)):
        if len(values) != channels:
            raise ConfigError(key, f"has {len(values)} values for {channels} channel(s)")
    if not all(s > 0 for s in std):
        raise ConfigError("data.std", f"must be > 0 per channel, got {list(std)}")
    return mean, std


def load_custom(cfg: Any) -> ImageData:
    """``data=custom``: ``data._target_`` called with the user's keys; its splits as an ``ImageData``."""
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    fn: Callable[..., Any] = check_custom_data(node)
    path = node["_target_"]
    try:
        result = fn(**user_arguments(node, "data"))
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError("data._target_", f"{path} raised: {one_line(err)}") from None
    return to_image_data("custom", splits_of(result, "data._target_"), cfg, "data._target_")
