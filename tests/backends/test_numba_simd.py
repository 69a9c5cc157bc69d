"""The vector window counts of ``backends/numba/simd.py`` against numba's scalar compares.

``count_below_8`` / ``count_at_most_8`` must count exactly what ``x < bound`` /
``x <= bound`` count for float32 samples and a float64 bound: bounds that fall between
two float32 values, bounds equal to a sample, NaN and infinite samples and bounds,
windows at any offset of a row.
"""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")
from zemosaic_xp.backends.numba.simd import count_at_most_8, count_below_8  # noqa: E402 - numba is importable here


@numba.njit
def _both(s, flat, bound):
    return count_below_8(s, flat, bound), count_at_most_8(s, flat, bound)


def _bounds(values):
    """Each sample as a bound, its float64 neighbours on both sides, and the specials."""
    v = values[np.isfinite(values)].astype(np.float64)
    out = [v, np.nextafter(v, -np.inf), np.nextafter(v, np.inf), v + 0.5]
    return np.concatenate(out + [np.array([np.nan, np.inf, -np.inf, 0.0, -0.0])])


def test_counts_equal_the_scalar_compares():
    rng = np.random.default_rng(7)
    s = np.round(rng.normal(0, 3, (6, 21)), 1).astype(np.float32)  # ties
    s[0, 3] = np.nan
    s[1, :5] = np.inf
    s[2, 7] = -np.inf
    s[3, 10:] = np.float32(1 / 3)  # not exact in float32: bounds between its neighbours
    bounds = _bounds(s.ravel())
    checked = 0
    for r in range(s.shape[0]):
        for start in range(s.shape[1] - 8 + 1):
            window = s[r, start:start + 8].astype(np.float64)
            for bound in bounds:
                want = (int(np.sum(window < bound)), int(np.sum(window <= bound)))
                assert _both(s, np.uint64(r * s.shape[1] + start), np.float64(bound)) == want, (r, start, bound)
                checked += 1
    assert checked == 6 * 14 * bounds.size


def test_index_types_and_float32_bounds():
    s = np.arange(16, dtype=np.float32).reshape(2, 8)
    assert _both(s, np.int64(8), 11.0) == (3, 4)
    assert _both(s, 0, np.float32(2.5)) == (3, 3)
    # A float64 bound just above a float32 sample: the sample is below it (no rounding of the bound).
    assert _both(s, 0, np.nextafter(3.0, 4.0)) == (4, 4)
    assert _both(s, 0, np.nextafter(3.0, 2.0)) == (3, 3)


def test_only_c_contiguous_float32_arrays_compile():
    with pytest.raises(numba.TypingError):
        _both(np.zeros((2, 16), np.float32)[:, ::2], 0, 1.0)
    with pytest.raises(numba.TypingError):
        _both(np.zeros((2, 8), np.float64), 0, 1.0)


def _network_block(rng, n):
    # Ties, signed zeros and infinities (the gather's invalid samples are +inf; no NaN).
    block = rng.choice(np.array([-2.5, -1.0, -0.0, 0.0, 1.0, 3.25, np.inf, -np.inf], np.float32), (n, 32))
    block[:, ::3] = rng.normal(0, 2, (n, block[:, ::3].shape[1])).astype(np.float32)
    return block


@pytest.mark.parametrize("n", [2, 3, 8, 17, 32, 48])
def test_the_vector_network_sorts_to_the_same_bits(n):
    from zemosaic_xp.backends.numba.sorting import merge_network, network, network_f32

    rng = np.random.default_rng(n)
    pairs = merge_network(n)
    for _ in range(5):
        block = _network_block(rng, n)
        scalar, vector = block.copy(), block.copy()
        network(scalar, pairs)
        network_f32(vector, pairs)
        np.testing.assert_array_equal(vector.view(np.uint32), scalar.view(np.uint32))
        np.testing.assert_array_equal(vector, np.sort(block, axis=0))


def test_compare_exchange_is_min_and_max_with_their_ties():
    from zemosaic_xp.backends.numba.simd import compare_exchange_32

    @numba.njit
    def exchange(block, a, b):
        compare_exchange_32(block, a, b)

    rng = np.random.default_rng(3)
    block = _network_block(rng, 4)
    block[2, :4] = [0.0, -0.0, 1.0, np.inf]
    block[3, :4] = [-0.0, 0.0, 1.0, np.inf]
    got = block.copy()
    exchange(got, 2, 3)
    u, v = block[2], block[3]
    np.testing.assert_array_equal(got[2].view(np.uint32), np.where(u < v, u, v).view(np.uint32))
    np.testing.assert_array_equal(got[3].view(np.uint32), np.where(u < v, v, u).view(np.uint32))
    np.testing.assert_array_equal(got[:2], block[:2])  # other rows untouched
    with pytest.raises(ValueError, match="NETWORK_LANES"):
        from zemosaic_xp.backends.numba.sorting import network_f32

        network_f32(np.zeros((4, 16), np.float32), np.zeros((1, 2), np.int64))


@pytest.mark.parametrize(("src_shape", "dst_shape", "src_at", "dst_at"),
                         [((16, 16), (16, 16), (0, 0), (0, 0)), ((48, 32), (40, 48), (16, 16), (3, 32)),
                          ((20, 35), (19, 33), (4, 19), (2, 17))])
def test_transpose_16_copies_one_tile_transposed(src_shape, dst_shape, src_at, dst_at):
    from zemosaic_xp.backends.numba.simd import transpose_16

    @numba.njit
    def tile(src, src_at, src_stride, dst, dst_at, dst_stride):
        transpose_16(src, src_at, src_stride, dst, dst_at, dst_stride)

    rng = np.random.default_rng(5)
    src = rng.normal(size=src_shape).astype(np.float32)
    src[0, :3] = [np.nan, np.inf, -0.0]
    dst = np.full(dst_shape, 7.0, np.float32)
    want = dst.copy()
    (i0, j0), (k0, l0) = src_at, dst_at
    want[k0:k0 + 16, l0:l0 + 16] = src[i0:i0 + 16, j0:j0 + 16].T
    tile(src, np.uint64(i0 * src_shape[1] + j0), src_shape[1], dst, k0 * dst_shape[1] + l0, np.int64(dst_shape[1]))
    np.testing.assert_array_equal(dst.view(np.uint32), want.view(np.uint32))
