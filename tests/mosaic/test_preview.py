"""The PNG preview (mosaic/preview.py): size, NaN handling, orientation, look, atomic write."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp.mosaic import write_preview_png
from zemosaic_xp.mosaic.preview import _stretch


def _png(path):
    from matplotlib.image import imread

    return np.round(imread(path)[..., :3] * 255.0).astype(np.int64)


def _reference_pixels(image: np.ndarray, factor: int) -> np.ndarray:
    """The preview written out by hand: NaN-aware block mean over ceil-sized blocks, then per
    channel (v − p0.5) / (p99.8 − p0.5) clipped to [0, 1], asinh(10·x) / asinh(10), NaN black."""
    h, w, c = image.shape
    out_h, out_w = -(-h // factor), -(-w // factor)
    small = np.full((out_h, out_w, c), np.nan)
    for i in range(out_h):
        for j in range(out_w):
            block = image[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor].reshape(-1, c)
            for k in range(c):
                vals = block[np.isfinite(block[:, k]), k]
                if vals.size:
                    small[i, j, k] = vals.mean(dtype=np.float64)
    out = np.zeros_like(small)
    for k in range(c):
        chan = small[..., k]
        lo, hi = np.percentile(chan[np.isfinite(chan)], [0.5, 99.8])
        x = np.clip((chan - lo) / (hi - lo), 0.0, 1.0)
        out[..., k] = np.where(np.isfinite(chan), np.arcsinh(10.0 * x) / np.arcsinh(10.0), 0.0)
    return np.round(out[::-1] * 255.0).astype(np.int64)


def test_preview_png(tmp_path):
    from matplotlib.image import imread

    image = np.full((50, 80, 3), np.nan, np.float32)
    image[10:40, 10:70] = np.random.default_rng(0).normal(100, 5, (30, 60, 3))
    path = write_preview_png(image, tmp_path / "p.png", max_size_px=40)
    pixels = imread(path)
    assert pixels.shape[:2] == (25, 40)
    assert (pixels[-1, 0, :3] == 0).all()  # NaN → black (row 0 is the bottom row)
    mono = write_preview_png(image[..., 0], tmp_path / "m.png")
    assert imread(mono).shape[:2] == (50, 80)


@pytest.mark.parametrize(("shape", "max_size_px", "expected"), [
    ((50, 80, 3), 40, (25, 40)),    # divisible: factor 2
    ((51, 83, 3), 40, (17, 28)),    # factor 3, partial last blocks are kept (ceil), not trimmed
    ((7, 5, 1), 2048, (7, 5)),      # small: as is
])
def test_size_is_the_ceiling_of_the_blocks(tmp_path, shape, max_size_px, expected):
    image = np.random.default_rng(1).normal(10, 1, shape).astype(np.float32)
    assert _png(write_preview_png(image, tmp_path / "p.png", max_size_px=max_size_px)).shape[:2] == expected


def test_look_matches_the_definition(tmp_path):
    # A star field with an uncovered band and a partly covered block row at the bottom edge.
    rng = np.random.default_rng(2)
    image = rng.normal(200.0, 4.0, (61, 90, 3)).astype(np.float32)
    image[20:25, 30:33] += 5000.0
    image[:, 40:47] = np.nan
    image[59:, 10:20] = np.nan
    got = _png(write_preview_png(image, tmp_path / "p.png", max_size_px=30))
    want = _reference_pixels(image, 3)
    assert got.shape == want.shape == (21, 30, 3)
    # astropy's percentile interval and float32 block means round a level differently at most
    assert np.abs(got - want).max() <= 1
    assert (got[:, 14:15] == 0).all()  # the uncovered band stays black


def _astropy_stretch(image: np.ndarray) -> np.ndarray:
    """The stretched (H, W, C) float32 through astropy.visualization itself (the reference)."""
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval

    interval, stretch = AsymmetricPercentileInterval(0.5, 99.8), AsinhStretch(a=0.1)
    out = np.zeros(image.shape, np.float32)
    for c in range(image.shape[2]):
        chan = image[..., c]
        if np.isfinite(chan).any():
            out[..., c] = np.where(np.isfinite(chan), stretch(interval(chan)), 0.0)
    return out


@pytest.mark.parametrize("case", ["stars-rgb", "mono", "float64", "flat-channel", "one-pixel"])
def test_stretch_is_astropys_to_the_bit(tmp_path, case):
    # The stretch is astropy's interval and asinh arithmetic written out in NumPy (no
    # matplotlib import): the PNG must hold exactly astropy's pixels, not one level off.
    rng = np.random.default_rng(3)
    image = rng.lognormal(5.0, 1.0, (37, 53, 3)).astype(np.float32)  # a long bright tail
    image[5:9, 40:50] = np.nan
    if case == "mono":
        image = image[..., :1]
    elif case == "float64":
        image = image.astype(np.float64)
    elif case == "flat-channel":
        image[..., 1] = 42.0  # vmax == vmin: no division, every finite pixel black
    elif case == "one-pixel":
        image[...] = np.nan
        image[3, 4] = 9.0
    want = _astropy_stretch(image)
    np.testing.assert_array_equal(_stretch(image), want)  # the floats, to the bit
    rgb = np.repeat(want, 3, axis=2) if want.shape[2] == 1 else want
    got = _png(write_preview_png(image, tmp_path / "p.png"))
    np.testing.assert_array_equal(got, np.round(rgb[::-1] * 255.0).astype(np.int64))


@pytest.mark.parametrize("fill", [np.nan, 7.0], ids=["all-nan", "constant"])
def test_empty_or_flat_image_is_black_without_warnings(tmp_path, fill):
    image = np.full((40, 40), fill, np.float32)
    assert (_png(write_preview_png(image, tmp_path / "p.png", max_size_px=16)) == 0).all()


def test_preview_write_is_atomic(tmp_path, monkeypatch):
    from pathlib import Path as _Path

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(_Path, "write_bytes", boom)
    with pytest.raises(OSError, match="disk full"):
        write_preview_png(np.ones((4, 4)), tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []
