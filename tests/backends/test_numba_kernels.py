"""The numba kernels of the NumPy backend (backends/numba/) against the portable reference.

``sorting`` (sorts), ``kappa_sigma`` (κ-σ on sorted rows), ``wsc_pixinsight`` (the
default winsorised sigma clip), ``wsc_zemosaic`` (ZeMosaic's WSC, unweighted and
weighted), ``band`` (whole bands from the frames), ``combine`` and the shared helpers
of ``common`` must give what the portable core gives on the same data: identical ranges, iteration counts, coverage and
rejection maps, images equal to float32 rounding. Each data row of ``_DATA`` names
the edge case it covers. Every test here runs with the kernels on, whatever
``ZEMOSAIC_XP_NUMBA`` says for the rest of the suite. The band kernels of the other
rejections have a test file each (``test_numba_<algorithm>.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.conftest import get_backend, host
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends.numba import NUMBA_ENV, numba_enabled, numba_kernels
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.backends.ops_torch import TorchCpuOps
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.ops import ArrayOps, portable_only
from zemosaic_xp.core.reject.kappa_sigma import kappa_sigma_fit
from zemosaic_xp.core.reject.winsorized_sigma_clip import wsc_pixinsight_fit
from zemosaic_xp.core.reject.winsorized_sigma_clip_zemosaic import _reject_wsc_zemosaic as reject_wsc_zemosaic
from zemosaic_xp.core.samples import Samples
from zemosaic_xp.synthetic import make_stack

# The kernels module imports numba at its top: without numba the whole file skips.
kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                              reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")
from zemosaic_xp.backends.numba import band as band_kernels  # noqa: E402 - numba is importable here
from zemosaic_xp.backends.numba import common  # noqa: E402

XP = get_backend("numpy").xp


@pytest.fixture(autouse=True)
def _kernels_on(monkeypatch):
    monkeypatch.delenv(NUMBA_ENV, raising=False)


def _astro(rng, rows, n):
    # Sky + Gaussian noise, cosmic rays of 300-3300 ADU and NaN holes (the benchmark data).
    x = rng.normal(1000, 10, (rows, n)).astype(np.float32)
    hits = rng.random(x.shape)
    x[hits < 0.01] += (300 + 3000 * hits[hits < 0.01] / 0.01).astype(np.float32)
    x[hits > 0.98] = np.nan
    return x


def _outliers(rng, rows, n):
    # Outliers at several levels: several clipping iterations per pixel.
    x = rng.normal(0, 1, (rows, n)).astype(np.float32)
    for level in (3, 6, 15, 50):
        x[rng.random(x.shape) < 0.04] += level
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


def _integers(rng, rows, n):
    # Ties everywhere (equal values, σ = 0, equal medians of the two middles).
    x = rng.integers(0, 5, (rows, n)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    return x


def _tiny(rng, rows, n):
    # 0, 1, 2 and 3 valid samples per pixel (guards, empty ranges, NaN medians).
    x = rng.normal(50, 3, (rows, n)).astype(np.float32)
    valid = rng.integers(0, 4, rows)
    x[np.arange(n)[None, :] >= valid[:, None]] = np.nan
    return rng.permuted(x, axis=1)


_DATA = {"astro": _astro, "outliers": _outliers, "integers": _integers, "tiny": _tiny}


def _rows(kind, n, rows=4000, seed=0):
    x = _DATA[kind](np.random.default_rng(seed), rows, n)
    x[:2] = np.nan  # pixels without any sample
    return x


def _sorted(x):
    s, n = ArrayOps(XP).sort_valid(x)
    return s, n


# ---------------------------------------------------------------------------- sorting
@pytest.mark.parametrize("n", [1, 2, 3, 8, 17, 32, 48, 49, 64])
def test_sort_valid_matches_portable(n):
    x = _rows("integers" if n % 2 else "outliers", n, rows=500)
    x[3, 0] = np.inf  # a genuine +inf is a valid (largest) value, sorted before the padding
    x[4, -1] = -np.inf
    got_s, got_n = NumpyOps(XP).sort_valid(x)
    want_s, want_n = ArrayOps(XP).sort_valid(x)
    np.testing.assert_array_equal(got_n, want_n)
    np.testing.assert_array_equal(got_s, want_s)


@pytest.mark.parametrize("n", range(1, 11))
def test_merge_network_sorts_every_binary_input(n):
    # The 0-1 principle: a comparator network that sorts every 0/1 input sorts anything.
    codes = np.arange(2**n)
    block = ((codes[None, :] >> np.arange(n)[:, None]) & 1).astype(np.float32)
    pairs = kernels.merge_network(n)
    for i, j in pairs:
        block[i], block[j] = np.minimum(block[i], block[j]), np.maximum(block[i], block[j])
    assert np.all(np.diff(block, axis=0) >= 0)


# ---------------------------------------------------------------------------- κ-σ
_KAPPA_CASES = [
    # kappa_low, kappa_high, ddof, max_iters, min_survivors
    (3.0, 3.0, 0, 5, 1),  # astropy's defaults
    (2.0, 2.5, 0, 8, 3),  # asymmetric κ, survivor guard
    (1.5, 3.0, 1, 1, 1),  # sample std, a single pass
    (1.0, 1.0, 1, 10, 5),  # aggressive: the guard stops many pixels
    (2.0, 2.0, 0, 0, 1),  # no iteration at all (kappa_sigma_fit accepts it)
]


@pytest.mark.parametrize("kind", sorted(_DATA))
@pytest.mark.parametrize("n", [3, 8, 32])
@pytest.mark.parametrize(("kl", "kh", "ddof", "max_iters", "need"), _KAPPA_CASES)
def test_kappa_sigma_kernel_equals_portable(kind, n, kl, kh, ddof, max_iters, need):
    s, count = _sorted(_rows(kind, n, seed=n))
    kwargs = dict(kappa_low=kl, kappa_high=kh, max_iters=max_iters, ddof=ddof, min_survivors=need, xp=XP)
    got = kappa_sigma_fit(s, count, ops=NumpyOps(XP), **kwargs)
    with portable_only():
        want = kappa_sigma_fit(s, count, **kwargs)
    for name in ("lo", "hi", "iterations", "centre"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.kept_sum, want.kept_sum, rtol=1e-12, atol=1e-9)
    if kind == "outliers" and n == 32 and max_iters >= 5:
        assert want.iterations.max() >= 4  # the data really needs several passes


def test_kappa_sigma_kernel_declines_float64():
    s, count = _sorted(_rows("astro", 8).astype(np.float64))
    assert NumpyOps(XP).kappa_sigma_fit(s, count[:, 0], kappa_low=3.0, kappa_high=3.0, max_iters=5,
                                        ddof=0, min_survivors=1) is None


# ---------------------------------------------------------------------------- WSC
_WSC_CASES = [
    # kappa_low, kappa_high, max_iters, min_survivors
    (3.0, 3.0, 10, 3),  # the defaults
    (2.0, 3.5, 10, 1),  # asymmetric κ, a guard of 1 (ranges down to one sample)
    (2.5, 2.5, 1, 5),  # a single pass, a guard that stops many pixels
    (1.5, 1.5, 3, 2),  # aggressive: several passes per pixel
]


def _compact_reference():
    ops = ArrayOps(XP)
    ops.compact = True
    return ops


@pytest.mark.parametrize("kind", sorted(_DATA))
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 32, 64])
@pytest.mark.parametrize(("kl", "kh", "max_iters", "need"), _WSC_CASES)
def test_pixinsight_wsc_kernel_equals_portable(kind, n, kl, kh, max_iters, need):
    # The kernel repeats the core's float64 operations in their order: everything,
    # the kept sums included, is identical to the bit, with both core strategies.
    s, count = _sorted(_rows(kind, n, rows=3000, seed=n + 3))
    kwargs = dict(kappa_low=kl, kappa_high=kh, max_iters=max_iters, min_survivors=need, xp=XP)
    got = wsc_pixinsight_fit(s, count, ops=NumpyOps(XP), **kwargs)
    for reference in (_compact_reference(), ArrayOps(XP)):
        want = wsc_pixinsight_fit(s, count, ops=reference, **kwargs)
        for name in ("lo", "hi", "iterations", "centre", "kept_sum"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    if kind == "outliers" and n >= 32 and max_iters > 1:
        assert got.iterations.max() >= 3  # the data really needs several passes


def test_pixinsight_wsc_kernel_declines_float64():
    s, count = _sorted(_rows("astro", 8).astype(np.float64))
    assert NumpyOps(XP).wsc_pixinsight_fit(s, count[:, 0], kappa_low=3.0, kappa_high=3.0,
                                           max_iters=10, min_survivors=3) is None


def test_kernel_constants_are_the_core_s():
    from zemosaic_xp.core.nanstats import MAD_TO_SIGMA
    from zemosaic_xp.core.reject import winsorized_sigma_clip as reject_pixinsight
    from zemosaic_xp.core.reject import winsorized_sigma_clip_zemosaic as reject_wsc

    for name in ("HUBER_C", "WINSOR_CORRECTION", "TOLERANCE", "INNER_MAX_ITERS"):
        assert getattr(common, name) == getattr(reject_pixinsight, name), name
    assert common.TOLERANCE == reject_wsc._WSC_TOLERANCE
    assert common.SIGMA_FLOOR == reject_wsc._WSC_SIGMA_FLOOR
    assert common.MAD_TO_SIGMA is MAD_TO_SIGMA


@pytest.mark.parametrize("kind", sorted(_DATA))
@pytest.mark.parametrize("n", [2, 5, 8, 32])
@pytest.mark.parametrize(("kl", "kh", "max_iters", "need"),
                         [(3.0, 3.0, None, 3), (2.0, 3.5, 10, 1), (2.5, 2.5, 1, 5), (1.5, 1.5, 3, 2)])
def test_zemosaic_wsc_kernel_equals_portable(kind, n, kl, kh, max_iters, need):
    x = _rows(kind, n, rows=3000, seed=n + 1)
    config = StackConfig.plain(reject="winsorized_sigma_clip", wsc_impl="zemosaic", kappa_low=kl,
                               kappa_high=kh, max_iters=max_iters, min_survivors=need)
    got = reject_wsc_zemosaic(Samples(x, None, xp=XP, ops=NumpyOps(XP)), config)
    want = reject_wsc_zemosaic(Samples(x, None, xp=XP, ops=ArrayOps(XP)), config)
    for name in ("lo", "hi", "iterations", "centre", "n_low", "n_high"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.kept_sum, want.kept_sum, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kind", sorted(_DATA))
@pytest.mark.parametrize("n", [2, 5, 8, 32, 150])
@pytest.mark.parametrize(("kl", "kh", "max_iters", "need"), [(3.0, 3.0, None, 3), (2.0, 3.5, 10, 1),
                                                             (1.5, 1.5, 3, 2)])
def test_zemosaic_weighted_wsc_kernel_equals_portable(kind, n, kl, kh, max_iters, need):
    # Noise-variance-like weights (not exact in float64 products): the kernel's
    # float64 sums must be NumPy's pairwise sums, 150 frames included (> 128: split).
    rng = np.random.default_rng(n)
    x = _rows(kind, n, rows=1500, seed=n + 2)
    weights = rng.uniform(1e-3, 2e-3, x.shape).astype(np.float32)
    weights[rng.random(x.shape) < 0.03] = 0.0  # zero weight = no data
    config = StackConfig.plain(reject="winsorized_sigma_clip", wsc_impl="zemosaic", kappa_low=kl,
                               kappa_high=kh, max_iters=max_iters, min_survivors=need)
    got = reject_wsc_zemosaic(Samples(x, weights, xp=XP, ops=NumpyOps(XP)), config)
    want = reject_wsc_zemosaic(Samples(x, weights, xp=XP, ops=ArrayOps(XP)), config)
    for name in ("keep", "n_low", "n_high", "iterations"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


# ---------------------------------------------------------------------------- whole stacks
_METHODS = [(r, c) for r in ("none", "kappa_sigma", "winsorized_sigma_clip")
            for c in ("mean", "median", "sum", "min", "max")]


def _compare(fast, ref):
    assert fast.stats["ops"] == "numpy+numba" and ref.stats["ops"] == "portable"
    for name in ("coverage", "rejected_low", "rejected_high", "weight_sum"):
        np.testing.assert_array_equal(host(getattr(fast, name)), host(getattr(ref, name)), err_msg=name)
    np.testing.assert_allclose(host(fast.image), host(ref.image), rtol=1e-6, equal_nan=True)
    assert fast.stats["iterations"] == ref.stats["iterations"]
    for name in ("valid_samples", "rejected_low_count", "rejected_high_count"):
        assert fast.stats[name] == ref.stats[name], name


def _both(frames, config, **kwargs):
    fast = stack(frames, config=config, **kwargs)
    with portable_only():
        ref = stack(frames, config=config, **kwargs)
    return fast, ref


@pytest.mark.parametrize(("reject", "combine"), _METHODS)
@pytest.mark.parametrize("normalize", ["none", "multiplicative"])
@pytest.mark.parametrize("n_frames", [5, 12, 60])
def test_stack_with_kernels_equals_portable(reject, combine, normalize, n_frames, band_calls):
    # 5 and 12 frames take the sorting network, 60 NumPy's sort; "multiplicative"
    # normalises each frame in the kernel (gain and offset in float32).
    s = make_stack(n_frames=n_frames, shape=(23, 37), seed=n_frames, cosmic_rays_per_frame=15)
    config = StackConfig(normalize=normalize, weighting="none", reject=reject, combine=combine,
                         kappa_low=2.5, kappa_high=2.5)
    _compare(*_both(s.frames, config))
    assert band_calls and all(band_calls)


@pytest.mark.parametrize("combine", ["mean", "median"])
@pytest.mark.parametrize("n_frames", [5, 60])
def test_zemosaic_wsc_stack_with_kernels_equals_portable(combine, n_frames, band_calls):
    # wsc_impl="zemosaic" takes the same band path with ZeMosaic's kernel.
    s = make_stack(n_frames=n_frames, shape=(23, 37), seed=n_frames, cosmic_rays_per_frame=15)
    config = StackConfig(normalize="multiplicative", weighting="none", reject="winsorized_sigma_clip",
                         wsc_impl="zemosaic", combine=combine)
    _compare(*_both(s.frames, config))
    assert band_calls and all(band_calls)


@pytest.mark.parametrize("layout", ["rgb", "uint16", "float64", "strided", "list", "infinities",
                                    "readonly"])
def test_stack_inputs_with_kernels_equal_portable(layout, band_calls):
    s = make_stack(n_frames=9, shape=(19, 26), seed=3, rgb=layout == "rgb")
    frames = s.frames
    if layout == "uint16":  # converted band by band
        frames = np.clip(np.nan_to_num(frames), 0, 65535).astype(np.uint16)
    elif layout == "float64":
        frames = frames.astype(np.float64)
    elif layout == "strided":  # not C-contiguous: a band copy feeds the kernels
        frames = np.asfortranarray(frames)
    elif layout == "list":
        frames = list(frames)
    elif layout == "readonly":  # e.g. a read-only memory map of FITS data
        frames = frames.copy()
        frames.flags.writeable = False
    elif layout == "infinities":  # ±inf are "no data", as NaN
        frames = frames.copy()
        frames[2, 3, 4], frames[5, 6, 7], frames[:, 8, 9] = np.inf, -np.inf, np.inf
    for reject in ("kappa_sigma", "winsorized_sigma_clip"):
        config = StackConfig(normalize="additive", weighting="none", reject=reject, combine="mean")
        _compare(*_both(frames, config))
    assert band_calls and all(band_calls)


def test_weighted_configurations_use_the_band_kernels(band_calls):
    # Per-pixel weights, quality weights and radial weights go through the band kernel
    # too (backends/numba/weighted.py; its own tests: test_numba_weighted.py).
    s = make_stack(n_frames=7, shape=(17, 21), seed=5)
    configs = [StackConfig(weighting="noise_variance", reject="kappa_sigma"),
               StackConfig.plain(reject="winsorized_sigma_clip", radial_weight=True)]
    for config in configs:
        _compare(*_both(s.frames, config))
    weights = np.random.default_rng(1).uniform(0.5, 1.0, s.frames.shape).astype(np.float32)
    _compare(*_both(s.frames, StackConfig.plain(reject="kappa_sigma"), weights=weights))
    assert band_calls and all(band_calls)


@pytest.mark.parametrize("reject", ["kappa_sigma", "winsorized_sigma_clip", "none"])
def test_band_size_and_threads_never_change_the_result(reject):
    s = make_stack(n_frames=11, shape=(29, 33), seed=8, rgb=True)
    config = StackConfig.plain(reject=reject, combine="mean")
    serial = NumpyOps(XP)
    serial.band_workers = 1
    results = [stack_frames(s.frames, config=config, band_rows=rows) for rows in (1, 4, 29)]
    results.append(stack_frames(s.frames, config=config, band_rows=3, ops=serial))
    for other in results[1:]:
        for name in ("image", "coverage", "rejected_low", "rejected_high"):
            np.testing.assert_array_equal(getattr(other, name), getattr(results[0], name), err_msg=name)


def test_torch_cpu_bands_use_the_kernels():
    # Bands of torch tensors given to the core directly: the kernels through NumPy
    # views, against the portable torch code on the same rows.
    torch_backend = get_backend("torch:cpu")
    torch = torch_backend.xp
    s, count = _sorted(_rows("outliers", 16))
    s_t, count_t = torch.from_numpy(s), torch.from_numpy(count[:, 0])
    kwargs = dict(kappa_low=2.0, kappa_high=2.0, max_iters=5, ddof=0, min_survivors=2)
    got = TorchCpuOps(torch).kappa_sigma_fit(s_t, count_t, **kwargs)
    assert got is not None and all(isinstance(a, torch.Tensor) for a in got)
    want = kappa_sigma_fit(s_t, count_t, ops=ArrayOps(torch), xp=torch, **kwargs)
    for a, name in zip(got[:4], ("lo", "hi", "iterations", "centre"), strict=True):
        np.testing.assert_array_equal(a.numpy(), getattr(want, name).numpy(), err_msg=name)
    np.testing.assert_allclose(got[4].numpy(), want.kept_sum.numpy(), rtol=1e-12, atol=1e-9)
    frames = torch.from_numpy(make_stack(n_frames=6, shape=(12, 14), seed=2).frames)
    fast, ref = _both(frames, StackConfig.plain(reject="winsorized_sigma_clip"))
    np.testing.assert_allclose(host(fast.image), host(ref.image), rtol=1e-6)


# ---------------------------------------------------------------------------- shared helpers, the combine
@pytest.mark.parametrize("n", [1, 5, 7, 8, 9, 31, 128, 129, 150, 300, 1000])
def test_pairwise_sum_is_numpy_sum(n):
    # Values spanning 16 decades (every order rounds differently), zeros and all −0.
    rng = np.random.default_rng(n)
    x = (rng.normal(0, 1, (6, n)) * 10.0 ** rng.integers(-8, 8, (6, n))).astype(np.float32)
    x[1, rng.random(n) < 0.5] = 0.0
    x[2] = -0.0
    frames, values = np.empty((64, 3), np.int64), np.empty(64)
    want = np.sum(x, axis=-1, dtype=np.float64)
    got = np.array([common.pairwise_sum(row.astype(np.float64), n, frames, values) for row in x])
    assert got.tobytes() == want.tobytes()
    if n <= 128:  # the base case without scratch arrays, for per-pixel loops
        short = np.array([common.pairwise_sum_short(row.astype(np.float64), n) for row in x])
        assert short.tobytes() == want.tobytes()


@pytest.mark.parametrize("shape, dtype", [((7,), np.float64), ((5, 9), np.float32), ((2, 3, 4), np.int32),
                                          ((0, 4), np.float32)])
def test_borrowed_is_the_same_memory(shape, dtype):
    # The per-pixel loops read their arrays through borrowed views (no reference
    # counts): the same data, shape and dtype, and writes reach the original.
    import numba

    @numba.njit
    def touch(a):
        b = common.borrowed(a)
        flat = b.reshape(-1)
        if flat.size:
            flat[-1] = 42
        return b.shape, b.sum()

    a = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    want_sum = a.sum() - (a.reshape(-1)[-1] if a.size else 0) + (42 if a.size else 0)
    got_shape, got_sum = touch(a)
    assert got_shape == shape
    assert got_sum == want_sum
    if a.size:
        assert a.reshape(-1)[-1] == 42


def test_borrowed_leaves_strided_arrays_as_they_are():
    # A C-ordered view of strided memory would read the wrong elements: only C
    # layouts are borrowed, others come back as they are.
    import numba

    @numba.njit
    def first_column_sum(a):
        b = common.borrowed(a)
        return b[:, 0].sum()

    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    strided = a[:, ::2]
    assert first_column_sum(strided) == strided[:, 0].sum()
    assert first_column_sum(a) == a[:, 0].sum()
    assert common.borrowed(strided) is strided  # outside numba: the array itself


def test_np_maximum_and_lower_bound():
    values = np.array([-np.inf, -1.0, -0.0, 0.0, 1.0, np.inf, np.nan])
    a, b = (v.ravel() for v in np.meshgrid(values, values, indexing="ij"))
    got = np.array([common.np_maximum(x, y) for x, y in zip(a, b)])
    assert got.tobytes() == np.maximum(a, b).tobytes()
    row = np.sort(np.random.default_rng(2).integers(0, 6, 40)).astype(np.float32)[None, :]
    for v in range(-1, 8):
        assert common.lower_bound(row, 0, np.float32(v), 0, 40) == np.searchsorted(row[0], v)


def _cancelling(rng, rows, n):
    # Small integers (ties) and ±1e20, ±1e25 that cancel: a float64 sum of these depends
    # on the order of the additions by whole units, not in its last bit.
    x = rng.integers(1, 5, (rows, n)).astype(np.float32)
    for value in (1e20, -1e20, 1e25, -1e25):
        x[rng.random(x.shape) < 0.15] = np.float32(value)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


@pytest.mark.parametrize("case", ["range", "split", "rewinsor"])
@pytest.mark.parametrize("n", [5, 12, 60, 150])
def test_frame_order_total_is_the_core_s_sum(case, n):
    # The combine's fallback sum against the core's own keep mask and float64 sum.
    from zemosaic_xp.backends.numba.combine import frame_order_total
    from zemosaic_xp.backends.numba.stored import NO_SCALING
    from zemosaic_xp.core.reject._common import exact_range_rejection, keep_from_sorted, range_rejection

    rng = np.random.default_rng(n)
    x = _cancelling(rng, 400, n)
    samples = Samples(x, None, xp=XP, ops=ArrayOps(XP))
    s, count = samples.sorted, samples.n_valid[:, 0]
    lo = (rng.random(400) * (count + 1)).astype(np.int64)
    hi = lo + (rng.random(400) * (count - lo + 1)).astype(np.int64)
    keep_sorted = (rng.random(s.shape) < 0.7) & (np.arange(n)[None, :] < count[:, None])
    q = np.sort(rng.normal(2, 1, (400, 2)).astype(np.float32), axis=1)
    values = x
    if case == "range":
        keep = exact_range_rejection(samples, lo, hi, np.zeros_like(lo)).keep
    elif case == "split":
        keep = keep_from_sorted(samples, keep_sorted)
    else:
        keep = samples.valid
        inside = range_rejection(samples, lo, hi, np.zeros_like(lo)).keep
        values = np.where(samples.valid & ~inside, np.clip(x, q[:, :1], q[:, 1:]), x)
    want = np.sum(np.where(keep, values, 0), axis=-1, dtype=np.float64)
    src = np.ascontiguousarray(np.where(np.isnan(x), np.inf, x).T.reshape(n, 1, 400))  # frames first
    empty = np.zeros((n, 0), np.float32)
    scratch = (np.empty(n), np.empty(n, np.int64), np.empty((64, 3), np.int64), np.empty(64))
    got = np.array([frame_order_total(s, p, lo[p], hi[p], count[p], case == "split", keep_sorted,
                                      case == "rewinsor", q[p, 0], q[p, 1], src, 0, empty, empty, False, NO_SCALING,
                                      *scratch)
                    for p in range(400)])
    assert got.tobytes() == want.tobytes()
    if case == "range" and n <= 60:  # (at 150 frames the ±1e25 dominate every range)
        sorted_sums = np.array([np.sum(s[p, lo[p]:hi[p]], dtype=np.float64) for p in range(400)])
        assert (sorted_sums != want).any()  # the data tells the orders apart


@pytest.mark.parametrize("reject", ["none", "minmax"])
@pytest.mark.parametrize("n_frames", [9, 60])
def test_mean_of_sums_that_are_not_exact_is_summed_in_frame_order(reject, n_frames, band_calls):
    # Such sums are added as the core adds them (pairwise, in frame order, zeros for the
    # rejected frames), not along the sorted row; minmax's ties across its bounds too.
    frames = _cancelling(np.random.default_rng(n_frames), 9 * 11, n_frames).T.reshape(n_frames, 9, 11)
    for combine in ("mean", "sum"):
        fast, ref = _both(np.ascontiguousarray(frames), StackConfig.plain(reject=reject, combine=combine))
        for name in ("image", "coverage", "rejected_low", "rejected_high"):
            assert getattr(fast, name).tobytes() == getattr(ref, name).tobytes(), name
    assert band_calls and all(band_calls)


# ---------------------------------------------------------------------------- switches
def test_environment_variable_disables_the_kernels(monkeypatch):
    s = make_stack(n_frames=6, shape=(15, 18), seed=4)
    config = StackConfig.plain(reject="kappa_sigma")
    fast = stack(s.frames, config=config)
    for value in ("0", "off", "False"):
        monkeypatch.setenv(NUMBA_ENV, value)
        assert numba_kernels() is None and not numba_enabled()
        sorted_rows, count = _sorted(_rows("astro", 8))
        assert NumpyOps(XP).kappa_sigma_fit(sorted_rows, count[:, 0], kappa_low=3.0, kappa_high=3.0,
                                            max_iters=5, ddof=0, min_survivors=1) is None
        off = stack(s.frames, config=config)
        assert off.stats["ops"] == "numpy"
        np.testing.assert_array_equal(off.coverage, fast.coverage)
        np.testing.assert_allclose(off.image, fast.image, rtol=1e-6)
    monkeypatch.setenv(NUMBA_ENV, "1")
    assert numba_kernels() is kernels and numba_enabled()


def test_kernels_compile_without_a_cache_directory_and_without_warnings(monkeypatch):
    # A function whose source file numba cannot locate has no cache directory, like
    # a read-only install without a writable home: jit() must fall back, silently.
    namespace: dict = {}
    exec(compile("def twice(x):\n    return 2 * x\n", "<no file>", "exec"), namespace)
    monkeypatch.setattr(common, "cache_enabled", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        twice = common.jit(namespace["twice"])
        assert twice(21) == 42
    assert common.cache_enabled is False


@pytest.mark.parametrize("reject", sorted(band_kernels.REJECT_CODES))
def test_band_kernel_equals_stack_band_with_gains_that_overflow(reject):
    # A normalised sample may overflow to ±inf: the core keeps it as a valid sample,
    # so the band kernel must count it (its slow path) and sort it like the core.
    from zemosaic_xp.core.pipeline import FramePlan, stack_band

    rng = np.random.default_rng(6)
    n, h, w, c = 9, 5, 7, 2
    frames = rng.normal(100, 5, (n, h, w, c)).astype(np.float32)
    frames[1, 2, 3, 0] = 3e38
    frames[4, 1, 1, 1] = -3e38
    frames[0, 0, 0, 0] = np.nan
    frames[2, 4, 6, 1] = np.inf
    gain = rng.uniform(0.9, 4.0, (n, c)).astype(np.float32)
    offset = rng.uniform(-5, 5, (n, c)).astype(np.float32)
    plan = FramePlan(gain, offset, None, {}, identity=False)
    config = StackConfig.plain(reject=reject, kappa_low=2.0, kappa_high=2.0)
    pairs = kernels.merge_network(n)
    shape = (4, w, c)
    out = (np.empty(shape, np.float32), np.empty(shape, np.float32),
           *(np.empty(shape, np.int32) for _ in range(3)))
    got = (*out, *band_kernels.stack_band(frames, 1, 5, pairs, config, plan, out))
    band = np.ascontiguousarray(np.moveaxis(frames[:, 1:5], 0, -1))
    band[~np.isfinite(band)] = np.nan
    # The reference is the core's CPU (compact) strategy: with valid infinities its
    # "whole row minus outside" WSC sums are NaN where the GPU strategy's are not.
    reference = ArrayOps(XP)
    reference.compact = True
    with np.errstate(over="ignore", invalid="ignore"):  # the core's overflow, on purpose
        want = stack_band(band, config=config, plan=plan, xp=XP, ops=reference)
    names = ("image", "weight_sum", "coverage", "rejected_low", "rejected_high")
    for name, value in zip(names, got[:5], strict=True):
        expected = getattr(want, name)
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(value, expected, rtol=1e-6, equal_nan=True, err_msg=name)
        if reject not in ("kappa_sigma", "winsorized_sigma_clip"):  # no float64 sums of their own order
            assert value.tobytes() == np.asarray(expected, value.dtype).tobytes(), name
    assert got[5:] == (want.iterations, want.n_valid, want.n_low, want.n_high)
    assert np.isinf(got[0]).any() or reject != "none"  # the overflow reached the mean
