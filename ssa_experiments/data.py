"""Data sets as whole uint8 tensors in memory.

Every data set we use (digits, synthetic, CIFAR-10/100, Tiny ImageNet) fits in memory as uint8, so one
representation serves them all: the loaders in ``loaders.py`` batch, augment and normalise from it, either
on the training device (fast) or through a torch ``DataLoader`` (the familiar path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssa_experiments.config import ConfigError, DataConfig


@dataclass(frozen=True)
class ImageData:
    """A train/test split of images, uint8 NCHW, labels int64, plus what a loader needs to normalise."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int  # random-crop padding in pixels for augmentation (0: no crop)
    flip: bool  # random horizontal flip (off for digits: a flipped digit is another glyph)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])


CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
TINY_IMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of uint8 images in [0, 1] units (for data sets without published constants)."""
    xf = x.float().div_(255)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def digits(cfg: DataConfig) -> ImageData:
    """scikit-learn's 8x8 digits (ships inside scikit-learn: no download), upsampled to ``cfg.image_size``.

    The split is fixed (stratified, seed 0, 20% test = 360 images) so every run of every sweep sees the same
    test set whatever its own seed.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8))  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels
    )
    x = images.unsqueeze(1)  # N,1,8,8
    if cfg.image_size != 8:
        x = F.interpolate(x.float(), size=cfg.image_size, mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255).to(torch.uint8)
    train_x, test_x = x[idx_train], x[idx_test]
    mean, std = channel_stats(train_x)
    return ImageData(
        name="digits",
        train_x=train_x.contiguous(),
        train_y=torch.from_numpy(labels[idx_train]),
        test_x=test_x.contiguous(),
        test_y=torch.from_numpy(labels[idx_test]),
        num_classes=10,
        mean=mean,
        std=std,
        crop_padding=cfg.crop_padding,
        flip=False,
    )


def synthetic(cfg: DataConfig) -> ImageData:
    """Class-dependent Gaussian blobs: learnable in a few steps, for fast end-to-end tests.

    Each class has a fixed random prototype image; samples are prototype + noise. Generated from a fixed seed
    (not the run's seed), so the data set is the same for every run.
    """
    g = torch.Generator().manual_seed(1234)
    c, s, k = cfg.channels, cfg.image_size, cfg.num_classes
    protos = torch.rand(k, c, s, s, generator=g) * 255

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, k, (n,), generator=g)
        x = protos[y] + torch.randn(n, c, s, s, generator=g) * 60
        return x.round().clamp(0, 255).to(torch.uint8), y

    train_x, train_y = draw(cfg.num_train)
    test_x, test_y = draw(cfg.num_test)
    mean, std = channel_stats(train_x)
    return ImageData("synthetic", train_x, train_y, test_x, test_y, k, mean, std, cfg.crop_padding, cfg.flip)


def resolve_root(cfg: DataConfig) -> Path:
    """Where a disk data set lives: ``data.root`` if set, else ``$SSA_DATA_DIR``, else ``./data``."""
    root = cfg.root or os.environ.get("SSA_DATA_DIR") or "data"
    return Path(root).expanduser()


def load_data(cfg: DataConfig) -> ImageData:
    """Read the data set named by ``cfg.name`` into memory."""
    if cfg.name == "digits":
        return digits(cfg)
    if cfg.name == "synthetic":
        return synthetic(cfg)
    from ssa_experiments import disk_datasets

    readers = {
        "cifar10": disk_datasets.read_cifar10,
        "cifar100": disk_datasets.read_cifar100,
        "tiny_imagenet": disk_datasets.read_tiny_imagenet,
    }
    if cfg.name not in readers:
        raise ConfigError("data.name", f"unknown data set {cfg.name!r}; choose one of {sorted(DATA_SETS)}")
    return readers[cfg.name](cfg, resolve_root(cfg))


DATA_SETS = ("digits", "synthetic", "cifar10", "cifar100", "tiny_imagenet")
