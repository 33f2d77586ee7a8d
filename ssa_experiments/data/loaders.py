"""Batches for training and evaluation, from an in-memory ``ImageData``.

Two pipelines with the same augmentation distribution (random crop with zero padding, each offset uniform;
horizontal flip with probability 1/2; both for images only) and the same input scaling and per-channel
normalisation: uint8 images are divided by 255, float signals (MNIST-1D) are used as stored, then
(x - mean) / std with one constant per channel broadcast over every trailing dim, so (N, C, H, W) images and
(N, C, L) signals go through the same code:

* ``device`` (default): the whole data set (uint8 images or float32 signals) lives on the training device;
  shuffling, crop, flip and normalisation are batched tensor ops there (the airbench approach). No worker
  processes, no host->device copy per batch.
* ``torch``: a standard ``DataLoader`` with torchvision's functional transforms applied per sample (crop and
  flip parameters drawn explicitly, see ``sample_key``), for comparison and for data sets that would not fit.

Each epoch's order and augmentation are a function of (seed, epoch), so a resumed run sees the same batches.
Neither pipeline touches the global RNGs (torch CPU/CUDA, numpy, python): all randomness comes from explicit
generators or from a hash of (seed, epoch, sample index), so loading data never shifts the draws of the
training code around it (dropout, masks), and evaluation draws nothing from anything global.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from ssa_experiments.data.base import ImageData
from ssa_experiments.data.datasets import load_data

Batch = tuple[torch.Tensor, torch.Tensor]
Split = Literal["train", "val", "test"]


def per_channel(
    values: Sequence[float], sample_dims: int, device: torch.device | None = None
) -> torch.Tensor:
    """Per-channel constants as a float32 (C, 1, ..., 1) tensor that broadcasts over one sample of
    ``sample_dims`` dims, channel first: (C, 1, 1) for an image, (C, 1) for a signal."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).view(-1, *([1] * (sample_dims - 1)))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def split_tensors(data: ImageData, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """The (images, labels) of one split; asking for "val" of data without a validation split is an error."""
    if split == "train":
        return data.train_x, data.train_y
    if split == "test":
        return data.test_x, data.test_y
    if data.val_x is None or data.val_y is None:
        raise ValueError(f"{data.name} has no validation split (data.val_fraction=0)")
    return data.val_x, data.val_y


def batch_count(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


@functools.cache
def _train_size(data_yaml: str) -> int:
    return len(load_data(OmegaConf.create(data_yaml)).train_y)


def training_steps_per_epoch(cfg: Any) -> int:
    """The steps of one training epoch of ``cfg``'s run, without building it (the data set is read once per
    process): both pipelines drop the last partial training batch when there is more than one batch."""
    n, size = _train_size(OmegaConf.to_yaml(cfg.data, resolve=True)), cfg.train.batch_size
    steps = batch_count(n, size, n > size)
    return min(cfg.train.max_steps_per_epoch, steps) if cfg.train.max_steps_per_epoch else steps


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """SplitMix64's finaliser: a bijective 64-bit mix whose outputs pass BigCrush even for counter inputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_key(seed: int, epoch: int, index: int) -> int:
    """64 random-looking bits that are a pure function of (seed, epoch, sample index).

    Counter-based randomness (like Philox or JAX's keys): no generator state, so a sample's augmentation does
    not depend on which worker draws it, in which order, or on anything the caller did to a global RNG.
    About 2-3 us in Python, about 1% of the per-sample transform (CIFAR-sized, measured on 2 CPU cores).
    """
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) ^ (index & _MASK64))


def crop_flip_params(key: int, padding: int, flip: bool) -> tuple[int, int, bool]:
    """(dy, dx, flip) from disjoint bit fields of ``key``: offsets uniform in [0, 2*padding] (24-bit fields,
    so the modulo bias is below 1e-6 for 4-pixel padding), flip with probability 1/2 (the top bit); the same
    distribution as ``random_crop_flip``."""
    span = 2 * padding + 1
    return (key & 0xFFFFFF) % span, ((key >> 24) & 0xFFFFFF) % span, flip and bool(key >> 63)


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Batched random crop (zero padding, offsets uniform in [0, 2*padding]) and horizontal flip.

    Offsets are drawn on the CPU generator (a few bytes) and the gather runs on ``x``'s device.
    """
    n, _, h, w = x.shape
    if padding > 0:
        xp = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # n,h,1
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # n,1,w
        batch = torch.arange(n, device=x.device)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # n,h,w,c -> n,c,h,w
    if flip:
        do_flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(do_flip[:, None, None, None], x.flip(3), x)
    return x


class DeviceBatches:
    """Shuffle, augment and normalise on the device holding the data.

    Only the "train" split is shuffled and augmented; "val" and "test" come in data set order, unaugmented.
    Each batch is a fresh float32 tensor: the stored data (which a float data set would otherwise share with
    a sliced batch) is never written.
    """

    def __init__(
        self, data: ImageData, split: Split, batch_size: int, device: torch.device, seed: int
    ) -> None:
        train = split == "train"
        x, y = split_tensors(data, split)
        self.x = x.to(device)
        self.y = y.to(device)
        self.train, self.batch_size, self.seed = train, batch_size, seed
        self.padding = data.crop_padding if train else 0
        self.flip = data.flip and train
        self.scale = data.input_scale
        sample_dims = x.dim() - 1
        self.mean = per_channel(data.mean, sample_dims, device).unsqueeze(0)
        self.inv_std = 1.0 / per_channel(data.std, sample_dims, device).unsqueeze(0)
        self.drop_last = train and len(self.y) > batch_size

    def __len__(self) -> int:
        return batch_count(len(self.y), self.batch_size, self.drop_last)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        g = epoch_generator(self.seed, epoch)  # private: the global RNG is never drawn from
        n = len(self.y)
        order = torch.randperm(n, generator=g).to(self.x.device) if self.train else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            xb = self.x[idx]
            if self.padding or self.flip:
                xb = random_crop_flip(xb, self.padding, self.flip, g)
            yield self.inputs(xb), self.y[idx]

    def inputs(self, xb: torch.Tensor) -> torch.Tensor:
        """Model inputs from stored samples: a float32 copy, scaled to [0, 1] for images, normalised."""
        x = xb.to(torch.float32, copy=True)  # in-place ops below: never on a view of the stored data
        if self.scale != 1:
            x.div_(self.scale)
        return x.sub_(self.mean).mul_(self.inv_std)


class _SampleDataset(Dataset):
    """One epoch's view of a split: crop and flip one image with torchvision's functional ops, then scale
    and normalise any sample (image or signal) exactly as torchvision's ``to_dtype(scale=True)`` and
    ``normalize`` do for images (multiply by 1/255, subtract the mean, divide by the std), which torchvision
    itself refuses for fewer than 3 dims.

    The crop/flip parameters come from ``sample_key(seed, epoch, index)`` rather than torchvision's random
    transforms, which draw from the global torch RNG (reseeding it per epoch, as this module used to, changed
    the caller's RNG state and made the draws depend on the number of workers). Built per epoch, immutable,
    so worker processes get the right epoch without shared state.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        padding: int,
        flip: bool,
        mean: list[float],
        std: list[float],
        seed: int,
        epoch: int,
        scale: float = 255.0,
    ) -> None:
        self.x, self.y, self.padding, self.flip = x, y, padding, flip
        self.seed, self.epoch, self.scale = seed, epoch, scale
        self.mean, self.std = per_channel(mean, x.dim() - 1), per_channel(std, x.dim() - 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Batch:
        from torchvision.transforms.v2 import functional as TF

        img = self.x[i]
        if self.padding or self.flip:
            dy, dx, flip = crop_flip_params(sample_key(self.seed, self.epoch, i), self.padding, self.flip)
            if self.padding:
                h, w = img.shape[-2:]
                img = TF.crop(TF.pad(img, [self.padding]), dy, dx, h, w)
            if flip:
                img = TF.horizontal_flip(img)
        img = img.to(torch.float32)  # float32 data: the stored tensor itself, so only out-of-place ops follow
        if self.scale != 1:
            img = img.mul(1.0 / self.scale)
        return img.sub(self.mean).div_(self.std), self.y[i]


class TorchBatches:
    """The familiar path: per-sample torchvision ops in DataLoader workers.

    Order and augmentation of an epoch depend on (seed, epoch) only: the same for any ``num_workers``.
    Only the "train" split is shuffled and augmented; "val" and "test" come in data set order, unaugmented.
    """

    def __init__(
        self,
        data: ImageData,
        split: Split,
        batch_size: int,
        device: torch.device,
        seed: int,
        num_workers: int = 2,
    ) -> None:
        train = split == "train"
        self.x, self.y = split_tensors(data, split)
        self.padding = data.crop_padding if train else 0
        self.flip = data.flip and train
        self.mean, self.std, self.scale = list(data.mean), list(data.std), data.input_scale
        self.train, self.batch_size, self.seed, self.device = train, batch_size, seed, device
        self.num_workers = num_workers
        self.drop_last = train and len(self.y) > batch_size

    def __len__(self) -> int:
        return batch_count(len(self.y), self.batch_size, self.drop_last)

    def dataset(self, epoch: int) -> _SampleDataset:
        """The per-sample view of this split for ``epoch`` (what the DataLoader indexes)."""
        return _SampleDataset(
            self.x, self.y, self.padding, self.flip, self.mean, self.std, self.seed, epoch, self.scale
        )

    def epoch(self, epoch: int) -> Iterator[Batch]:
        loader = DataLoader(
            self.dataset(epoch),
            batch_size=self.batch_size,
            shuffle=self.train,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            # always explicit: without it, the DataLoader draws its workers' base seed (and the shuffle
            # order) from the global RNG, even when nothing is shuffled
            generator=epoch_generator(self.seed, epoch),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


Batches = DeviceBatches | TorchBatches


class RunBatches(NamedTuple):
    """The batch sources of one run. ``val`` is None when the data has no validation split."""

    train: Batches
    val: Batches | None
    test: Batches


def make_batches(
    data: ImageData, pipeline: str, batch_size: int, device: torch.device, seed: int, num_workers: int = 2
) -> RunBatches:
    """Train, val and test batch sources for one run.

    Val is built exactly like test (no augmentation, no shuffling, the evaluation batch size), so validation
    and test accuracy are measured the same way.
    """

    def build(split: Split, size: int) -> Batches:
        if pipeline == "torch":
            return TorchBatches(data, split, size, device, seed, num_workers)
        return DeviceBatches(data, split, size, device, seed)

    # The device pipeline evaluates in bigger batches: no gradients, so memory allows it, and fewer launches.
    eval_size = batch_size if pipeline == "torch" else max(batch_size, 512)
    return RunBatches(
        train=build("train", batch_size),
        val=build("val", eval_size) if data.val_x is not None else None,
        test=build("test", eval_size),
    )
