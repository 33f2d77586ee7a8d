"""What every data set is: whole tensors in memory (``ImageData``), and the normalisation statistics of the
real data sets; ``datasets.py`` says why one in-memory representation serves them all."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageData:
    """A train/(val)/test split, labels int64, plus what a loader needs to normalise.

    Samples are uint8 images (N, C, H, W) in 0..255, or float32 signals (N, C, L) (MNIST-1D) kept as their
    published float values; the dtype says how a loader scales them to model inputs (``input_scale``), and
    ``mean``/``std`` (one value per channel) then normalise in those units. Crop and flip augmentation is
    defined for images only, so a signal data set with ``crop_padding`` or ``flip`` is refused here rather
    than augmented wrongly.

    ``val_x``/``val_y`` are samples carved out of the training set (``load_data`` with
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

    def __post_init__(self) -> None:
        if self.train_x.dtype not in INPUT_SCALES:
            raise ValueError(
                f"{self.name}: samples must be uint8 images or float32 signals, got {self.train_x.dtype}"
            )
        if (self.crop_padding or self.flip) and self.train_x.dim() != 4:
            raise ValueError(
                f"{self.name}: crop/flip augmentation needs (N, C, H, W) images, "
                f"got shape {tuple(self.train_x.shape)}"
            )

    @property
    def image_shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, H, W) for images, (C, L) for signals (``[-1]`` is the width or length)."""
        return tuple(self.train_x.shape[1:])

    @property
    def input_scale(self) -> float:
        """What a stored value is divided by before normalisation: 255 for uint8 images, 1 for signals."""
        return INPUT_SCALES[self.train_x.dtype]

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])


# uint8 images are stored in 0..255 and divided by 255; float signals are used as stored
INPUT_SCALES = {torch.uint8: 255.0, torch.float32: 1.0}

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
TINY_IMAGENET_STATS = ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821))


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std over samples and every trailing dim, in input units (uint8 images: [0, 1]), for
    data sets without published constants."""
    xf = x.float()  # a new tensor for uint8; float32 signals are only read below, never written
    if x.dtype == torch.uint8:
        xf = xf.div_(255)
    dims = (0, *range(2, x.dim()))
    mean = xf.mean(dim=dims)
    std = xf.std(dim=dims).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
