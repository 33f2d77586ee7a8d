"""Data sets as whole uint8 tensors in memory.

Every data set we use (digits, synthetic, CIFAR-10/100, Tiny ImageNet) fits in memory as uint8, so one
representation serves them all: ``loaders.py`` batches, augments and normalises it, either
on the training device (fast) or through a torch ``DataLoader`` (the familiar path). ``load_data`` also carves
the validation split out of the training set (``data.val_fraction``), the same for every run of a sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ssa_experiments.config import DATA_SETS, ConfigError, DataConfig, resolve_root


@dataclass(frozen=True)
class ImageData:
    """A train/(val)/test split of images, uint8 NCHW, labels int64, plus what a loader needs to normalise.

    ``val_x``/``val_y`` are images carved out of the training set (``load_data`` with
    ``data.val_fraction > 0``), so model selection never looks at the test set; None when there is no split.
    They come last, with defaults, so constructors written before the split existed keep working.
    """

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
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None

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


def validation_size(fraction: float, n: int) -> int:
    """Images in the validation split: ``fraction * n`` rounded half up (``floor(fraction * n + 0.5)``),
    then clamped to [1, n - 1] so a positive fraction always yields a validation image and leaves at least one
    training image; 0 when ``fraction`` is 0. Digits (1437 training images) at 0.1: 144."""
    if fraction <= 0:
        return 0
    if n < 2:
        raise ConfigError("data.val_fraction", f"cannot split {n} training image(s) into train and val")
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def split_validation(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx), both sorted ascending, partitioning ``range(len(labels))``.

    Stratified: class c gets its proportional share ``n_val * n_c / n`` of the ``validation_size`` images,
    rounded down, and the leftover images go to the classes with the largest fractional shares (ties: lower
    class first), so every class is within 1 of proportional and the total is exact. Which images of a class
    go to val is decided by one permutation of all indices. When a class has fewer than 2 images (or the
    shares cannot leave every class a training image), it falls back to the first ``n_val`` of that
    permutation, unstratified.

    The permutation comes from numpy's legacy ``RandomState(seed)``, whose stream numpy guarantees never to
    change, so a split is identical across runs, processes and library versions; it depends on ``seed`` (the
    config's ``data.split_seed``) and the labels only, never on a run's seed or any global RNG state.
    """
    y = labels.cpu().numpy().astype(np.int64)
    n = len(y)
    n_val = validation_size(fraction, n)
    perm = np.random.RandomState(seed).permutation(n)
    is_val = np.zeros(n, dtype=bool)
    counts = np.bincount(y) if n else np.zeros(0, dtype=np.int64)
    present = counts > 0
    share = n_val * counts / max(n, 1)
    alloc = np.floor(share).astype(np.int64)
    leftover = n_val - int(alloc.sum())
    # classes that can take one more val image and still keep a training image, largest remainder first
    room = np.flatnonzero(present & (alloc < counts - 1))
    room = room[np.argsort(-(share - alloc)[room], kind="stable")]
    if n_val and counts[present].min() >= 2 and len(room) >= leftover:
        alloc[room[:leftover]] += 1
        grouped = perm[np.argsort(y[perm], kind="stable")]  # indices grouped by class, in perm order within
        start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.arange(n) - start[y[grouped]]  # rank of each image within its class
        is_val[grouped[rank < alloc[y[grouped]]]] = True
    else:
        is_val[perm[:n_val]] = True
    return torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))


def with_validation(data: ImageData, fraction: float, seed: int, restat: bool) -> ImageData:
    """``data`` with ``split_validation``'s val images moved out of the training set (test set untouched).

    ``restat``: recompute the normalisation mean/std from the remaining training images, for data sets whose
    statistics come from their own training set (digits, synthetic), so nothing of val leaks into training.
    Data sets with published constants (CIFAR, Tiny ImageNet) keep them.
    """
    if fraction <= 0:
        return data
    train_idx, val_idx = split_validation(data.train_y, fraction, seed)
    train_x = data.train_x[train_idx].contiguous()
    mean, std = channel_stats(train_x) if restat else (data.mean, data.std)
    return replace(
        data,
        train_x=train_x,
        train_y=data.train_y[train_idx],
        val_x=data.train_x[val_idx].contiguous(),
        val_y=data.train_y[val_idx],
        mean=mean,
        std=std,
    )


def load_data(cfg: DataConfig) -> ImageData:
    """Read the data set named by ``cfg.name`` into memory, with the validation split of ``cfg.val_fraction``
    (seeded by ``cfg.split_seed``) carved out of its training set."""
    if cfg.name in ("digits", "synthetic"):
        data = digits(cfg) if cfg.name == "digits" else synthetic(cfg)
        return with_validation(data, cfg.val_fraction, cfg.split_seed, restat=True)
    from ssa_experiments.data import disk

    readers = {
        "cifar10": disk.read_cifar10,
        "cifar100": disk.read_cifar100,
        "tiny_imagenet": disk.read_tiny_imagenet,
    }
    if cfg.name not in readers:
        raise ConfigError("data.name", f"unknown data set {cfg.name!r}; choose one of {sorted(DATA_SETS)}")
    data = readers[cfg.name](cfg, resolve_root(cfg))
    return with_validation(data, cfg.val_fraction, cfg.split_seed, restat=False)
