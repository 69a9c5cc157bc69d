"""16-bit FITS samples decoded inside the band kernels (``backends/numba/stored.py``).

The kernels must see, for every stored value and every (BSCALE, BZERO), the float32
that ``io.fits`` converts the file to; and a band stacked from the stored bytes must be
the band stacked from the converted frames, bit for bit, for every rejection and
combine, normalised or not, with the sorting network (N <= 48) and NumPy's sort.
"""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig
from zemosaic_xp.core.pipeline import FramePlan
from zemosaic_xp.io.fits import _to_float32

kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                              reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")
import numba  # noqa: E402 - importable when the kernels are

from zemosaic_xp.backends.numba import band as band_kernels  # noqa: E402
from zemosaic_xp.backends.numba.stored import frame_row, frame_rows, frame_value, valid_row  # noqa: E402

SCALINGS = [(1.0, 0.0), (1.0, 32768.0), (0.5, 1000.0), (3.0, 0.0), (-1.5, -7.25), (1e-3, 2.0**20)]


@numba.njit
def _values(src, scaling):
    out = np.empty(src.shape, np.float32)
    for k in range(src.shape[0]):
        for i in range(src.shape[1]):
            for j in range(src.shape[2]):
                out[k, i, j] = frame_value(src, k, i, j, scaling)
    return out


@numba.njit
def _rows(src, scaling, m):
    out = np.empty(src.shape, np.float32)
    scratch = np.empty(m, np.float32)
    for k in range(src.shape[0]):
        for i in range(src.shape[1]):
            for j0 in range(0, src.shape[2], m):
                row = frame_row(src, k, i, j0, min(m, src.shape[2] - j0), scaling, scratch)
                out[k, i, j0:j0 + row.shape[0]] = row
    return out


@numba.njit
def _valid(src, scaling, m):
    out = np.empty(src.shape, np.float32)
    for k in range(src.shape[0]):
        for i in range(src.shape[1]):
            for j0 in range(0, src.shape[2], m):
                valid_row(src, k, i, j0, min(m, src.shape[2] - j0), scaling, out[k, i, j0:])
    return out


def test_valid_rows_mark_no_data_as_plus_infinity():
    f = np.random.default_rng(1).normal(0, 1, (3, 2, 45)).astype(np.float32)
    f[0, 1, 2], f[1, 0, 40], f[2, 1, 0] = np.nan, np.inf, -np.inf
    want = np.where(np.isfinite(f), f, np.float32(np.inf))
    assert _valid(f, np.zeros((0, 2), np.float32), 32).tobytes() == want.tobytes()
    out = np.empty(45, np.float32)
    valid_row(f, 0, 1, 0, 45, None, out)  # the Python version
    assert out.tobytes() == want[0, 1].tobytes()
    ints = np.array([[[-32768, -1, 0, 1, 32767]]], np.int16)
    scaling = np.float32([[1.0, 32768.0]])
    want = _to_float32(ints.astype(">i2"), 1.0, 32768.0)
    assert _valid(_stored(ints), scaling, 3).tobytes() == want.tobytes()


@numba.njit
def _whole_rows(src, scaling):
    out = np.empty(src.shape, np.float32)
    rowbuf = np.empty((src.shape[0] if scaling.shape[0] else 0, 1, src.shape[2]), np.float32)
    for i in range(src.shape[1]):
        frames, row = frame_rows(src, i, scaling, rowbuf)
        for k in range(src.shape[0]):
            out[k, i, :] = frames[k, row, :]
    return out


def test_whole_rows_of_every_frame_decode_at_once():
    ints = np.random.default_rng(2).integers(-32768, 32768, (4, 3, 70)).astype(np.int16)
    scaling = np.array(SCALINGS[:4], np.float32)
    want = np.stack([_to_float32(ints[k].astype(">i2"), float(b), float(z)) for k, (b, z) in enumerate(scaling)])
    assert _whole_rows(_stored(ints), scaling).tobytes() == want.tobytes()
    f = want.copy()
    f[1, 2, 3] = np.nan
    assert _whole_rows(f, np.zeros((0, 2), np.float32)).tobytes() == f.tobytes()
    frames, row = frame_rows(_stored(ints), 2, scaling, np.empty((4, 1, 70), np.float32))  # the Python version
    assert row == 0 and frames[:, 0].tobytes() == want[:, 2].tobytes()


def _stored(values: np.ndarray) -> np.ndarray:
    """int16 values → the file's big-endian bytes held in native uint16 (as read)."""
    return np.ascontiguousarray(values.astype(">i2")).view(np.uint16)


def test_every_stored_value_decodes_as_io_fits_converts_it():
    values = np.arange(-32768, 32768, dtype=np.int16).reshape(1, 256, 256)
    frames = np.repeat(values, len(SCALINGS), axis=0)  # one frame per scaling
    scaling = np.array(SCALINGS, np.float32)
    want = np.stack([_to_float32(values[0].astype(">i2"), b, z) for b, z in SCALINGS])
    src = _stored(frames)
    for got in (_values(src, scaling), _rows(src, scaling, 32), _rows(src, scaling, 7)):
        assert got.tobytes() == want.tobytes()
    # float32 frames are read as they are
    f = np.random.default_rng(0).normal(0, 1, (2, 3, 40)).astype(np.float32)
    f[0, 1, 2] = np.nan
    no = np.zeros((0, 2), np.float32)
    assert _values(f, no).tobytes() == f.tobytes() == _rows(f, no, 32).tobytes()
    # the Python versions (outside numba) agree
    assert np.float32(frame_value(src, 3, 5, 7, scaling)) == want[3, 5, 7]
    scratch = np.empty(9, np.float32)
    np.testing.assert_array_equal(frame_row(src, 4, 2, 3, 9, scaling, scratch), want[4, 2, 3:12])


def _band(n: int, seed: int, scalings: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 6, 9, 2) stored frames (ties, saturation, outliers), their float32 and scalings."""
    rng = np.random.default_rng(seed)
    ints = rng.normal(300, 40, (n, 6, 9, 2)).round()
    ints[:, 0] = rng.integers(0, 3, (n, 9, 2))  # ties everywhere
    ints[rng.random(ints.shape) < 0.05] += 20000  # cosmic rays
    ints[:, 1, :4] = 32767  # saturation
    ints[:, 2, :2] = -32768
    ints = ints.clip(-32768, 32767).astype(np.int16)
    scaling = np.array([scalings[k % len(scalings)] for k in range(n)], np.float32)
    converted = np.stack([_to_float32(ints[k].astype(">i2"), float(b), float(z)) for k, (b, z) in enumerate(scaling)])
    return _stored(ints), converted, scaling


def _run(src, plan, config, n, scaling=None):
    pairs = kernels.merge_network(n) if n <= 48 else np.zeros((0, 2), np.int64)
    shape = (4, 9, 2)
    out = (np.empty(shape, np.float32), np.empty(shape, np.float32), *(np.empty(shape, np.int32) for _ in range(3)),
           np.empty(shape, np.float32))
    counts = band_kernels.stack_band(src, 1, 5, pairs, config, plan, out, scaling=scaling)
    return out, counts


@pytest.mark.parametrize("reject", sorted(band_kernels.REJECT_CODES))
@pytest.mark.parametrize("n", [7, 60])
@pytest.mark.parametrize("mode", ["plain", "normalised", "weighted"])
def test_a_band_of_stored_frames_is_the_band_of_converted_frames(reject, n, mode):
    src, converted, scaling = _band(n, n, [(1.0, 32768.0), (0.5, 1000.0), (1.0, 0.0)])
    rng = np.random.default_rng(1)
    gain, offset = np.ones((n, 2), np.float32), np.zeros((n, 2), np.float32)
    if mode != "plain":
        gain = rng.uniform(0.8, 1.3, (n, 2)).astype(np.float32)
        offset = rng.uniform(-50, 50, (n, 2)).astype(np.float32)
    weights = rng.uniform(0.2, 2.0, (n, 2)).astype(np.float32) if mode == "weighted" else None
    plan = FramePlan(gain, offset, weights, {}, identity=mode == "plain")
    for combine in ("mean", "median", "sum"):
        config = StackConfig.plain(reject=reject, combine=combine, kappa_low=2.5, kappa_high=2.5,
                                   radial_weight=mode == "weighted" and combine == "sum")
        if not band_kernels.supports(config, plan):
            continue
        got, got_counts = _run(src, plan, config, n, scaling)
        want, want_counts = _run(converted, plan, config, n)
        assert got_counts == want_counts
        for a, b in zip(got, want, strict=True):
            assert a.tobytes() == b.tobytes(), (reject, combine)


def test_stored_frames_need_their_scaling():
    src, _, scaling = _band(5, 0, [(1.0, 32768.0)])
    plan = FramePlan(np.ones((5, 2), np.float32), np.zeros((5, 2), np.float32), None, {}, identity=True)
    for wrong in (None, scaling[:4]):
        with pytest.raises(ValueError, match="scaling"):
            _run(src, plan, StackConfig.plain(), 5, wrong)
