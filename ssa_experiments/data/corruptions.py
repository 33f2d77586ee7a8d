"""Corrupted copies of a test set (Hendrycks & Dietterich 2019, "CIFAR-10-C" style), made in memory.

The ensembles table reports accuracy and calibration under distribution shift, as the Prune-and-Tune paper
did. The published CIFAR-10-C files cover one data set only and cannot be downloaded here, and the
``imagecorruptions`` package does not import on this Python (it needs ``pkg_resources``) and draws from
numpy's global RNG; so the corruptions are written here in torch, on the in-memory test tensors of any data
set, with the parameters of Hendrycks' ``make_cifar_c.py`` (tuned for 32×32 images):

    gaussian_noise   x + N(0, c²)            c = 0.04, 0.06, 0.08, 0.09, 0.10   (fraction of the range)
    shot_noise       Poisson(x · c) / c      c = 500, 250, 100, 75, 50          (photons at full scale)
    gaussian_blur    Gaussian filter, σ = c  c = 0.4, 0.6, 0.7, 0.8, 1.0        (pixels)
    contrast         (x − m) · c + m         c = 0.75, 0.5, 0.4, 0.3, 0.15      (m: per image and channel)

Images (uint8 NCHW, any channel count and size) are worked on in [0, 1] and clipped to it, as Hendrycks
does, then rounded back to uint8. 1-D signals (float (N, 1, L), e.g. MNIST-1D) have no fixed range: the noise
scales are multiplied by the clean test set's range (max − min), shot noise acts on the signal mapped to
[0, 1] by that range, nothing is clipped, and the blur is a 1-D kernel along the signal. Blur uses a kernel
of radius ``round(4σ)`` (as ``skimage.filters.gaussian``) with edge replication (skimage's ``nearest``).

Determinism: every random draw comes from a ``torch.Generator`` seeded from (seed, corruption, severity,
chunk of 1024 samples): the same arguments give the same tensors in every process, whatever else has
consumed the global RNG, and memory stays bounded on large test sets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from ssa_experiments.config.schema import CORRUPTIONS, SEVERITIES
from ssa_experiments.store.files import atomic_torch_save

# Hendrycks' make_cifar_c.py parameters, severity 1..5, for every one of CORRUPTIONS (the config's choices).
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
}
CHUNK = 1024  # samples per generator seed: bounded memory, results independent of the test set's size
VERSION = 1  # bump when any corruption changes, so cached copies are not reused


def split_name(corruption: str, severity: int) -> str:
    """The split name in a run's ``logits.pt`` and the ensemble report: ``corrupt/<name>/<severity>``."""
    return f"corrupt/{corruption}/{severity}"


def parameter(corruption: str, severity: int) -> float:
    if corruption not in PARAMETERS:
        raise ValueError(f"unknown corruption {corruption!r}; choose from {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return PARAMETERS[corruption][severity - 1]


def _seed(seed: int, corruption: str, severity: int, chunk: int) -> int:
    """A 63-bit generator seed from the arguments (sha256: stable across processes, unlike ``hash``)."""
    text = json.dumps([seed, corruption, severity, chunk])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``round(4σ)`` (at least 1), as ``skimage.filters.gaussian``."""
    radius = max(1, int(4.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _blur_axis(x: torch.Tensor, kernel: torch.Tensor, axis: int) -> torch.Tensor:
    """Convolve every line of float ``x`` (N, C, *spatial) along ``axis``, edges replicated."""
    moved = x.movedim(axis, -1)
    shape = moved.shape
    lines = moved.reshape(-1, 1, shape[-1])
    r = (len(kernel) - 1) // 2
    out = F.conv1d(F.pad(lines, (r, r), mode="replicate"), kernel.view(1, 1, -1))
    return out.reshape(shape).movedim(-1, axis)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over every spatial axis of a float (N, C, *spatial) tensor (1-D or 2-D)."""
    kernel = gaussian_kernel(sigma)
    for axis in range(2, x.dim()):
        x = _blur_axis(x, kernel, axis)
    return x


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Pull every value toward its image's (and channel's) mean by ``factor``: Hendrycks' contrast."""
    mean = x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    return (x - mean) * factor + mean


def _apply(
    x: torch.Tensor, corruption: str, c: float, g: torch.Generator, lo: float, span: float
) -> torch.Tensor:
    """One corruption of a float chunk in data units (``lo``/``span``: the range that maps to [0, 1])."""
    if corruption == "gaussian_noise":
        return x + torch.randn(x.shape, generator=g) * (c * span)
    if corruption == "shot_noise":
        unit = ((x - lo) / span).clamp_min(0)
        return torch.poisson(unit * c, generator=g) / c * span + lo
    if corruption == "gaussian_blur":
        return gaussian_blur(x, c)
    if corruption == "contrast":
        return contrast(x, c)
    raise ValueError(f"unknown corruption {corruption!r}")


def corrupt(
    x: torch.Tensor, corruption: str, severity: int, seed: int = 0, is_uint8: bool | None = None
) -> torch.Tensor:
    """A corrupted copy of ``x`` (N, C, *spatial), same shape and dtype; ``x`` itself is never modified.

    ``is_uint8`` (default: ``x.dtype == torch.uint8``): pixel values in 0..255, worked on in [0, 1], clipped
    and rounded back. Otherwise float data in its own units, scaled by its range and not clipped.
    """
    c = parameter(corruption, severity)
    uint8 = x.dtype == torch.uint8 if is_uint8 is None else is_uint8
    if uint8:
        lo, span = 0.0, 1.0
    else:
        xf = x.float()
        lo, span = float(xf.min()), max(float(xf.max() - xf.min()), 1e-12)
    out = torch.empty_like(x)
    for i, start in enumerate(range(0, len(x), CHUNK)):
        chunk = x[start : start + CHUNK].float()
        if uint8:
            chunk = chunk / 255.0
        g = torch.Generator().manual_seed(_seed(seed, corruption, severity, i))
        y = _apply(chunk, corruption, c, g, lo, span)
        if uint8:
            y = (y.clamp(0.0, 1.0) * 255.0).round()
        out[start : start + CHUNK] = y.to(x.dtype)
    return out


def data_digest(x: torch.Tensor, y: torch.Tensor) -> str:
    """A content hash of a test set: the cache key's data identity when the caller gives none."""
    h = hashlib.sha256()
    for t in (x, y):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_path(cache_dir: Path, data_id: str, corruption: str, severity: int, seed: int) -> Path:
    """``<cache_dir>/<corruption>-<severity>-<hash of (data, corruption, severity, seed, VERSION)>.pt``."""
    key = json.dumps([data_id, corruption, severity, seed, VERSION])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{corruption}-{severity}-{digest}.pt"


def _cached(path: Path, like: torch.Tensor, make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Read ``path`` if it holds a tensor shaped like ``like``; otherwise make it and store it atomically."""
    if path.exists():
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(x, torch.Tensor) and x.shape == like.shape and x.dtype == like.dtype:
                return x
        except Exception:  # a torn or foreign file: computed again and replaced
            pass
    x = make()
    atomic_torch_save(path, x)
    return x


def corrupted_splits(
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    corruptions: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    is_uint8: bool | None = None,
    cache_dir: str | Path | None = None,
    data_id: str | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"corrupt/<corruption>/<severity>": (x, y)}`` for every corruption × severity, in that order.

    ``x`` has ``test_x``'s shape and dtype; ``y`` is ``test_y`` itself (labels are not corrupted). With
    ``cache_dir`` each copy is read from (or written to) a file keyed by a hash of (``data_id``, corruption,
    severity, seed); ``data_id`` defaults to a content hash of the test set, so two data sets never share a
    file. The seed is best kept fixed (not the run's seed), so every member and every method of a table is
    evaluated on the very same corrupted images.
    """
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    ident = None
    for corruption in corruptions:
        for severity in severities:
            parameter(corruption, severity)  # refuse a bad name before any work

            def make(c: str = corruption, s: int = severity) -> torch.Tensor:
                return corrupt(test_x, c, s, seed, is_uint8)

            if cache_dir is None:
                x = make()
            else:
                ident = ident or data_id or data_digest(test_x, test_y)
                x = _cached(cache_path(Path(cache_dir), ident, corruption, severity, seed), test_x, make)
            out[split_name(corruption, severity)] = (x, test_y)
    return out
