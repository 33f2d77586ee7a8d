"""Corrupted test sets: deterministic per seed, worse with severity, shapes and dtypes kept, the clean data
untouched, images and 1-D signals, and the on-disk cache."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from ssa_experiments.config.schema import CORRUPTIONS, SEVERITIES
from ssa_experiments.data import corruptions as cc


def images(n: int = 64, c: int = 3, size: int = 16) -> torch.Tensor:
    """Smooth random uint8 images (upsampled noise), so blur has structure to remove but not only noise."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(n, c, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)
    x = x + 0.15 * torch.rand(n, c, size, size, generator=g)
    return (x / x.max() * 255).round().to(torch.uint8)


def signals(n: int = 64, length: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = torch.linspace(0, 6.28, length)
    return torch.sin(t * torch.rand(n, 1, 1, generator=g) * 4) + 0.2 * torch.randn(n, 1, length, generator=g)


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.float() - b.float()) ** 2).mean())


def test_every_corruption_the_config_offers_has_a_parameter_per_severity() -> None:
    """The choices live in the config (validated without torch), the parameters here: the two must agree."""
    assert tuple(cc.PARAMETERS) == CORRUPTIONS
    assert {len(values) for values in cc.PARAMETERS.values()} == {len(SEVERITIES)}


@pytest.mark.parametrize("make", [images, lambda: images(c=1, size=8), signals], ids=["rgb", "gray8", "1d"])
def test_severity_increases_distortion_and_keeps_shape_and_dtype(make) -> None:
    x = make()
    clean = x.clone()
    y = torch.arange(len(x)) % 10
    splits = cc.corrupted_splits(x, y, seed=3)
    assert list(splits) == [f"corrupt/{c}/{s}" for c in cc.CORRUPTIONS for s in cc.SEVERITIES]
    for corruption in cc.CORRUPTIONS:
        errors = []
        for s in cc.SEVERITIES:
            xc, yc = splits[cc.split_name(corruption, s)]
            assert xc.shape == x.shape and xc.dtype == x.dtype
            assert yc is y
            errors.append(mse(xc, x))
        assert all(a < b for a, b in pairwise(errors)), (corruption, errors)
        assert errors[0] > 0
    assert torch.equal(x, clean)  # the clean test set is untouched


def test_uint8_images_stay_in_range_and_float_signals_are_not_clipped() -> None:
    x = images()
    noisy = cc.corrupt(x, "gaussian_noise", 5, seed=0)
    assert noisy.dtype == torch.uint8
    s = signals()
    noisy_s = cc.corrupt(s, "gaussian_noise", 5, seed=0)
    span = float(s.max() - s.min())
    assert mse(noisy_s, s) == pytest.approx((0.10 * span) ** 2, rel=0.1)  # noise scaled by the data's range


def test_deterministic_per_seed() -> None:
    x = images()
    for corruption in ("gaussian_noise", "shot_noise"):
        a = cc.corrupt(x, corruption, 3, seed=7)
        torch.manual_seed(123)  # the global RNG plays no part
        assert torch.equal(a, cc.corrupt(x, corruption, 3, seed=7))
        assert not torch.equal(a, cc.corrupt(x, corruption, 3, seed=8))
    # deterministic corruptions do not depend on the seed
    assert torch.equal(cc.corrupt(x, "contrast", 2, seed=1), cc.corrupt(x, "contrast", 2, seed=2))


def test_blur_and_contrast_keep_a_constant_input() -> None:
    flat = torch.full((2, 1, 30), 0.7)
    assert torch.allclose(cc.corrupt(flat, "gaussian_blur", 5), flat)
    assert torch.allclose(cc.corrupt(flat, "contrast", 5), flat)
    k = cc.gaussian_kernel(1.0)
    assert len(k) == 9 and float(k.sum()) == pytest.approx(1.0)


def test_blur_of_a_signal_is_one_dimensional() -> None:
    x = torch.zeros(1, 1, 21)
    x[0, 0, 10] = 1.0
    blurred = cc.gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape
    assert torch.allclose(blurred[0, 0, 6:15], cc.gaussian_kernel(1.0))


def test_unknown_names_are_refused() -> None:
    x = images(n=2)
    with pytest.raises(ValueError, match="unknown corruption"):
        cc.corrupted_splits(x, torch.zeros(2), ["fog"], [1])
    with pytest.raises(ValueError, match="severity"):
        cc.corrupted_splits(x, torch.zeros(2), ["contrast"], [6])


def test_cache_keyed_by_data_corruption_severity_and_seed(tmp_path: Path, monkeypatch) -> None:
    x, y = images(n=8), torch.arange(8)
    first = cc.corrupted_splits(x, y, ["gaussian_noise", "contrast"], [1, 2], seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 4

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of read from the cache")

    monkeypatch.setattr(cc, "corrupt", fail)
    again = cc.corrupted_splits(x, y, ["gaussian_noise", "contrast"], [1, 2], seed=0, cache_dir=tmp_path)
    assert all(torch.equal(first[k][0], again[k][0]) for k in first)
    monkeypatch.undo()
    cc.corrupted_splits(x, y, ["gaussian_noise"], [1], seed=1, cache_dir=tmp_path)  # another seed
    cc.corrupted_splits(x[:4], y[:4], ["gaussian_noise"], [1], seed=0, cache_dir=tmp_path)  # other data
    assert len(list(tmp_path.glob("*.pt"))) == 6
