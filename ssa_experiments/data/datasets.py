"""Data sets as whole tensors in memory: uint8 images (N, C, H, W) or float32 signals (N, C, L).

Every data set we use fits in memory, so one representation serves them all: ``loaders.py`` batches, augments
and normalises it, either on the training device (fast) or through a torch ``DataLoader`` (the familiar
path). Images (digits, synthetic, CIFAR-10/100, Tiny ImageNet) are stored as uint8 and divided by 255 on the
way out; MNIST-1D's signals are stored as the generator's float values, never quantised, and only normalised.
``load_data`` also carves the validation split out of the training set (``data.val_fraction``), the same for
every run of a sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import tempfile
import zipfile
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssa_experiments.config.schema import DATA_SETS, LOADED_DATA_SETS, ConfigError, DataConfig, resolve_root
from ssa_experiments.config.validate import check_num_samples
from ssa_experiments.data.base import ImageData, channel_stats

log = logging.getLogger(__name__)


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


# MNIST-1D (Greydanus 2020): the generator's own seed, the published data set's; never the run's seed
MNIST1D_SEED = 42
MNIST1D_CACHE_FORMAT = 1  # bump when what the cache file holds changes
MNIST1D_LENGTH = 40  # get_dataset_args()["final_seq_length"]
MNIST1D_TRAIN_SPLIT = 0.8  # get_dataset_args()["train_split"]: 4000 / 1000 of the standard 5000


def mnist1d_args(num_samples: int) -> dict[str, object]:
    """The generator's arguments: ``mnist1d.data.get_dataset_args()`` (the published data set at 5000
    samples), with ``num_samples`` and the fixed seed set and the download URL dropped (never used here)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=num_samples, seed=MNIST1D_SEED)
    return args


def generate_mnist1d(num_samples: int) -> dict[str, np.ndarray]:
    """x (N, 40) float32, y (N,) int64, x_test, y_test from ``mnist1d.data.make_dataset``: train is the
    first 80 % of the generator's shuffled samples (4000 of the standard 5000), test the rest.

    ``make_dataset`` seeds the *global* numpy and python RNGs (``set_seed``); their states are restored
    afterwards, so generating data never shifts the draws of the run around it. Takes ~5 s for 5000
    samples on our 2-core VM (plus ~3 s to import the package, which pulls in matplotlib): hence the cache.
    """
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(mnist1d_args(num_samples)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = {
        "x": d["x"].astype(np.float32),
        "y": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32),
        "y_test": d["y_test"].astype(np.int64),
    }
    if not _mnist1d_shapes_ok(arrays, num_samples):  # a release with other defaults: fail, do not guess
        shapes = {k: v.shape for k, v in arrays.items()}
        raise RuntimeError(
            f"mnist1d {metadata.version('mnist1d')} generated {shapes} for {num_samples} samples"
        )
    return arrays


def _mnist1d_shapes_ok(arrays: dict[str, np.ndarray], num_samples: int) -> bool:
    """Whether ``arrays`` are a ``num_samples`` set: 80/20 split, 40 float32 values per signal."""
    n_train = int(num_samples * MNIST1D_TRAIN_SPLIT)
    return (
        arrays["x"].shape == (n_train, MNIST1D_LENGTH)
        and arrays["x_test"].shape == (num_samples - n_train, MNIST1D_LENGTH)
        and arrays["x"].dtype == arrays["x_test"].dtype == np.float32
        and arrays["y"].shape == (n_train,)
        and arrays["y_test"].shape == (num_samples - n_train,)
    )


def mnist1d_cache_dir(cfg: DataConfig) -> Path:
    """``<data.root or $SSA_DATA_DIR>/mnist1d`` when either is set, else ``.cache/mnist1d`` (git-ignored):
    the generated arrays are derived data, so by default they do not land in the repository's ``./data``."""
    if cfg.root or os.environ.get("SSA_DATA_DIR"):
        return resolve_root(cfg) / "mnist1d"
    return Path(".cache") / "mnist1d"


def mnist1d_cache_file(cache_dir: Path, num_samples: int) -> Path:
    """One file per (num_samples, generator seed, package version): a new ``mnist1d`` release, which might
    draw differently, never reads an old release's arrays. Needs no import of the package (a cache hit
    skips its ~3 s import)."""
    key = {
        "num_samples": num_samples,
        "seed": MNIST1D_SEED,
        "version": metadata.version("mnist1d"),
        "format": MNIST1D_CACHE_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / f"mnist1d-n{num_samples}-{digest}.npz"


def _read_mnist1d_cache(path: Path, num_samples: int) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when the file is absent or unreadable or has the wrong shapes (then the
    caller regenerates and overwrites it)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("mnist1d: ignoring unreadable cache %s (%s)", path, e)
        return None
    return arrays if _mnist1d_shapes_ok(arrays, num_samples) else None


def _write_mnist1d_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (a temporary file renamed into place: two runs generating at once both write the
    same content, and a reader never sees half a file). A directory that cannot be written costs only
    speed: the data is generated again next time."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("mnist1d: could not cache the generated data at %s (%s)", path, e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def mnist1d_arrays(num_samples: int, cache_dir: Path) -> dict[str, np.ndarray]:
    """Generated MNIST-1D arrays, from the cache when present (~10 ms instead of ~8 s)."""
    path = mnist1d_cache_file(cache_dir, num_samples)
    arrays = _read_mnist1d_cache(path, num_samples)
    if arrays is None:
        arrays = generate_mnist1d(num_samples)
        _write_mnist1d_cache(path, arrays)
    return arrays


def mnist1d(cfg: DataConfig) -> ImageData:
    """Greydanus's MNIST-1D, generated by the ``mnist1d`` package (never downloaded): (N, 1, 40) float32.

    ``data.num_samples`` = 5000 gives the standard 4000 train / 1000 test split. The generator's seed is
    fixed, so the data set is a pure function of ``num_samples`` (the same for every run of a sweep).
    The values are the generator's own floats (already centred and scaled to unit std over the whole set by
    ``make_dataset``), so the normalisation is the identity (mean 0, std 1) and a batch holds exactly the
    published values. No augmentation: a shifted or mirrored signal is not the same digit pattern.
    """
    check_num_samples(cfg.num_samples)
    if cfg.crop_padding or cfg.flip:
        field = "data.crop_padding" if cfg.crop_padding else "data.flip"
        raise ConfigError(
            field, "mnist1d has no augmentation (crop and flip are for images); leave it 0/false"
        )
    a = mnist1d_arrays(cfg.num_samples, mnist1d_cache_dir(cfg))

    def signals(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1).contiguous()  # N,40 -> N,1,40

    return ImageData(
        name="mnist1d",
        train_x=signals(a["x"]),
        train_y=torch.from_numpy(a["y"]),
        test_x=signals(a["x_test"]),
        test_y=torch.from_numpy(a["y_test"]),
        num_classes=10,
        mean=(0.0,),
        std=(1.0,),
        crop_padding=0,
        flip=False,
    )


def validation_size(fraction: float, n: int) -> int:
    """Samples in the validation split: ``fraction * n`` rounded half up (``floor(fraction * n + 0.5)``),
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
    if cfg.name == "mnist1d":  # normalised by its generator: the constants stay (mean 0, std 1)
        return with_validation(mnist1d(cfg), cfg.val_fraction, cfg.split_seed, restat=False)
    if cfg.name in LOADED_DATA_SETS:  # the user's code or files (data/custom.py, data/files.py)
        from ssa_experiments.data import custom, files

        readers = {
            "custom": custom.load_custom,
            "image_folder": files.read_image_folder,
            "npz": files.read_npz,
        }
        loaded = readers[cfg.name](cfg)
        if loaded.val_x is not None:  # the data's own validation split: nothing is carved out of train
            return loaded
        restat = cfg.mean is None  # the training images' statistics, unless data.mean/std are given
        return with_validation(loaded, cfg.val_fraction, cfg.split_seed, restat=restat)
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
