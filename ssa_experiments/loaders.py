"""Batches for training and evaluation, from an in-memory ``ImageData``.

Two pipelines with the same augmentation distribution (random crop with zero padding, each offset uniform;
horizontal flip with probability 1/2; per-channel normalisation):

* ``device`` (default): the whole uint8 data set lives on the training device; shuffling, crop, flip and
  normalisation are batched tensor ops there (the airbench approach). No worker processes, no host->device
  copy per batch.
* ``torch``: a standard ``DataLoader`` with torchvision transforms applied per sample, for comparison and for
  data sets that would not fit.

Each epoch's order and augmentation are a function of (seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ssa_experiments.data import ImageData

Batch = tuple[torch.Tensor, torch.Tensor]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


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
    """Shuffle, augment and normalise on the device holding the data."""

    def __init__(
        self, data: ImageData, train: bool, batch_size: int, device: torch.device, seed: int
    ) -> None:
        x, y = (data.train_x, data.train_y) if train else (data.test_x, data.test_y)
        self.x = x.to(device)
        self.y = y.to(device)
        self.train, self.batch_size, self.seed = train, batch_size, seed
        self.padding = data.crop_padding if train else 0
        self.flip = data.flip and train
        self.mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(data.std, device=device).view(1, -1, 1, 1)
        self.drop_last = train and len(self.y) > batch_size

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        g = epoch_generator(self.seed, epoch)
        n = len(self.y)
        order = torch.randperm(n, generator=g).to(self.x.device) if self.train else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            xb = self.x[idx]
            if self.padding or self.flip:
                xb = random_crop_flip(xb, self.padding, self.flip, g)
            yield (xb.float().div_(255).sub_(self.mean).mul_(self.inv_std), self.y[idx])


class _TransformDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Batch:
        return self.transform(self.x[i]), self.y[i]


class TorchBatches:
    """The familiar path: torchvision transforms per sample in DataLoader workers."""

    def __init__(
        self,
        data: ImageData,
        train: bool,
        batch_size: int,
        device: torch.device,
        seed: int,
        num_workers: int = 2,
    ) -> None:
        from torchvision.transforms import v2

        x, y = (data.train_x, data.train_y) if train else (data.test_x, data.test_y)
        steps: list = []
        if train and data.crop_padding:
            steps.append(v2.RandomCrop(tuple(x.shape[2:]), padding=data.crop_padding))
        if train and data.flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data.mean), list(data.std))]
        self.dataset = _TransformDataset(x, y, v2.Compose(steps))
        self.train, self.batch_size, self.seed, self.device = train, batch_size, seed, device
        self.num_workers = num_workers
        self.drop_last = train and len(y) > batch_size

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        if self.num_workers == 0:
            # Without workers, torchvision's transforms draw from the global RNG: seed it per epoch so a
            # resumed run sees the same augmentations (workers are seeded from the loader's generator).
            torch.manual_seed(epoch_generator(self.seed, epoch).initial_seed() + 1)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.train,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            generator=epoch_generator(self.seed, epoch),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


Batches = DeviceBatches | TorchBatches


def make_batches(
    data: ImageData, pipeline: str, batch_size: int, device: torch.device, seed: int, num_workers: int = 2
) -> tuple[Batches, Batches]:
    """(train, test) batch sources for one run."""
    if pipeline == "torch":
        return (
            TorchBatches(data, True, batch_size, device, seed, num_workers),
            TorchBatches(data, False, batch_size, device, seed, num_workers),
        )
    # Evaluation uses bigger batches: no gradients, so memory allows it, and fewer launches.
    return (
        DeviceBatches(data, True, batch_size, device, seed),
        DeviceBatches(data, False, max(batch_size, 512), device, seed),
    )
