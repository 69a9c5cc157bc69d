"""Native ops (backends/ops_numpy.py, ops_torch.py, ops_gpu.py) against the portable reference.

Every method of the native ``ArrayOps`` must return what the portable method of
``core.ops.ArrayOps`` returns on the same data, and the whole pipeline must give the
same stack with or without the native ops, with the CPU (compact) and the GPU (dense,
sync-free) strategies. Each comparison is between two implementations: native
(NumPy's own calls, numba, torch delegated to NumPy) against portable array-API code.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import get_backend, host, on
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends.ops_gpu import GpuOps
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.core.in_memory import stack_frames
from zemosaic_xp.core.ops import ArrayOps, ops_for, portable_only
from zemosaic_xp.core.reject.kappa_sigma import kappa_sigma_fit
from zemosaic_xp.synthetic import make_stack

ALL_METHODS = [(r, c) for r in ("none", "kappa_sigma", "winsorized_sigma_clip") for c in ("mean", "median")]


def _native(name):
    """(fast ops, portable ops) for a CPU backend, or skip."""
    backend = get_backend(name)
    fast = ops_for(backend.xp, backend.device)
    return backend, fast, ArrayOps(backend.xp)


@pytest.fixture(params=["numpy", "torch:cpu"])
def native(request):
    return _native(request.param)


def _rows(seed=0, rows=300, n=24, nan_fraction=0.1):
    rng = np.random.default_rng(seed)
    x = rng.normal(100, 5, (rows, n)).astype(np.float32)
    x[rng.random(x.shape) < nan_fraction] = np.nan
    x[:3] = np.nan  # rows without any valid sample
    x[3, :] = 7.0  # ties everywhere
    x[4, 5] = np.inf  # a genuine +inf is a valid (largest) value, sorted before the padding
    x[5, 2] = -np.inf
    return x


def test_sort_valid_matches_portable(native):
    backend, fast, ref = native
    x = on(backend, _rows())
    s_fast, n_fast = fast.sort_valid(x)
    s_ref, n_ref = ref.sort_valid(x)
    np.testing.assert_array_equal(host(n_fast), host(n_ref))
    np.testing.assert_array_equal(host(s_fast), host(s_ref))
    assert host(n_ref)[0, 0] == 0 and host(n_ref)[3, 0] == 24


@pytest.mark.parametrize("n", [24, 1024, 1025, 65536])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_valid_matches_portable(native, n, dtype):
    """Long rows are selected (np.partition) on NumPy, sorted on the portable path: same medians."""
    backend, fast, ref = native
    rng = np.random.default_rng(n)
    x = _rows(seed=n, rows=12, n=n).astype(dtype)
    x[6] = np.round(x[6] / 5)  # heavy ties
    x[7, : n - 1] = np.nan  # one valid sample
    x[7, -1] = 42.0
    x[8, : n - 2] = np.nan  # two
    x[9] = np.sort(x[9])[::-1]
    x[10, rng.random(n) < 0.5] = np.nan  # odd or even counts, half the row missing
    got, want = host(fast.median_valid(on(backend, x))), host(ref.median_valid(on(backend, x)))
    assert got.dtype == want.dtype and got.shape == (12,)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(want[0]) and want[3] == 7.0 and want[7] == 42.0


def test_median_valid_known_answers(xp):
    """Odd and even counts, NaN excluded, a row without samples: NaN without a warning."""
    from zemosaic_xp.core.nanstats import median_valid

    nan = float("nan")
    rows = [[3.0, 1.0, 2.0, nan] + [nan] * 2000, [4.0, 1.0, 3.0, 2.0] + [nan] * 2000, [nan] * 2004]
    got = host(median_valid(xp.asarray(np.array(rows, np.float32)), xp=xp))
    np.testing.assert_array_equal(got, np.array([2.0, 2.5, nan], np.float32))


@pytest.mark.parametrize("whole", [True, False])
def test_centred_sums_match_portable(native, whole):
    backend, fast, ref = native
    xp = backend.xp
    x = _rows(seed=1)
    x[4:6] = 1.0  # no infinities here: they are not samples of a stack
    s, n = ref.sort_valid(on(backend, x))
    n = xp.reshape(n, (-1,))
    rng = np.random.default_rng(2)
    if whole:
        lo, hi = xp.zeros_like(n), n
    else:
        a = host(n)
        lo_h = (rng.random(a.shape) * (a + 1) * 0.4).astype(np.int64)
        hi_h = np.maximum(lo_h, a - (rng.random(a.shape) * (a + 1) * 0.4).astype(np.int64))
        lo, hi = on(backend, lo_h), on(backend, hi_h)
        lo, hi = xp.astype(lo, xp.int64), xp.astype(hi, xp.int64)
    centre = on(backend, rng.normal(100, 3, s.shape[0]))
    for got, want in zip(fast.centred_sums(s, centre, lo, hi, whole=whole),
                         ref.centred_sums(s, centre, lo, hi, whole=whole), strict=True):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("n", [1, 2, 7, 24])
def test_mad_matches_portable_and_a_sort(native, n):
    # Ties (integers), NaN holes and empty rows; the selection must equal sorting |x - m|.
    from zemosaic_xp.core.nanstats import median_sorted

    backend, fast, ref = native
    xp = backend.xp
    rng = np.random.default_rng(n)
    x = rng.integers(0, 5, (200, n)).astype(np.float32)
    x[100:] = rng.normal(0, 3, (100, n))
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:2] = np.nan
    s, count = ref.sort_valid(on(backend, x))
    count = xp.reshape(count, (-1,))
    centre = median_sorted(s, count[:, None], xp=xp)
    centre = xp.where(xp.isnan(centre), xp.zeros_like(centre), centre)
    got, want = fast.mad(s, count, centre), ref.mad(s, count, centre)
    np.testing.assert_array_equal(host(got), host(want))
    dev, dev_n = ref.sort_valid(xp.abs(on(backend, x) - centre[:, None]))
    np.testing.assert_array_equal(host(want), host(median_sorted(dev, dev_n, xp=xp)))


def test_band_copy_and_nonfinite_match_portable(native):
    backend, fast, ref = native
    xp = backend.xp
    data = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 3, 4, 2)
    data[1, 0, 1, 1] = np.inf
    data[0, 2, 3, 0] = -np.inf
    view = xp.permute_dims(on(backend, data), (1, 2, 3, 0))
    got = fast.nan_nonfinite(fast.band_copy(view))
    want = ref.nan_nonfinite(ref.band_copy(view))
    np.testing.assert_array_equal(host(got), host(want))
    assert np.isnan(host(got)[0, 1, 1, 1])
    ints = xp.permute_dims(xp.astype(on(backend, np.full((2, 3, 4, 1), 3.0)), xp.int32), (1, 2, 3, 0))
    assert host(fast.band_copy(ints)).dtype == np.float32


def test_expand_matches_portable(native):
    backend, fast, ref = native
    xp = backend.xp
    mask = on(backend, np.array([0, 1, 1, 0, 1], bool)) > 0
    values = xp.astype(on(backend, [7, 8, 9]), xp.int64)
    fill = xp.astype(on(backend, [1, 2, 3, 4, 5]), xp.int64)
    (got,), (want,) = fast.expand(mask, [(values, fill)]), ref.expand(mask, [(values, fill)])
    np.testing.assert_array_equal(host(got), [1, 7, 8, 4, 9])
    np.testing.assert_array_equal(host(got), host(want))


def _heavy_outliers(seed, shape=(40, 30, 20)):
    # Outliers at several levels force several clipping iterations.
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 10, shape).astype(np.float32)
    for level in (30, 60, 150, 500):
        data[rng.random(shape) < 0.04] += level
    data[rng.random(shape) < 0.05] = np.nan
    data[:, 0, 0] = np.nan
    data[1:, 0, 1] = np.nan
    data[:, 0, 2] = 5.0
    return data


@pytest.mark.parametrize("strategy", ["compact", "dense_sync_free", "dense_checked"])
def test_kappa_strategies_give_identical_ranges(strategy):
    xp = get_backend("numpy").xp
    data = _heavy_outliers(3)
    rows = np.moveaxis(data, 0, -1).reshape(-1, data.shape[0])
    reference = ArrayOps(xp)
    s, n = reference.sort_valid(rows)
    kwargs = dict(kappa_low=2.0, kappa_high=2.0, max_iters=8, min_survivors=3, xp=xp)
    ops = {"compact": NumpyOps(xp), "dense_sync_free": GpuOps(xp, "gpu-on-cpu"),
           "dense_checked": reference}[strategy]
    got = kappa_sigma_fit(s, n, ops=ops, **kwargs)
    compact_ref = ArrayOps(xp)
    compact_ref.compact = True
    want = kappa_sigma_fit(s, n, ops=compact_ref, **kwargs)
    for name in ("lo", "hi", "iterations", "centre"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.kept_sum, want.kept_sum, rtol=1e-9, atol=1e-6)
    assert want.iterations.max() >= 4  # the data really needs several passes


@pytest.mark.parametrize(("reject", "combine"), ALL_METHODS)
@pytest.mark.parametrize("backend_name", ["numpy", "torch:cpu"])
def test_pipeline_fast_equals_portable(backend_name, reject, combine):
    backend = get_backend(backend_name)
    s = make_stack(n_frames=15, shape=(33, 29), seed=9, rgb=True, cosmic_rays_per_frame=20)
    frames = on(backend, s.frames)
    config = StackConfig(reject=reject, combine=combine, kappa_low=2.5, kappa_high=2.5)
    fast = stack(frames, config=config)
    with portable_only():
        ref = stack(frames, config=config)
    assert ref.stats["ops"] == "portable" and fast.stats["ops"] != "portable"
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(fast, name)), host(getattr(ref, name)), err_msg=name)
    np.testing.assert_allclose(host(fast.image), host(ref.image), rtol=1e-6)
    np.testing.assert_array_equal(host(fast.weight_sum), host(ref.weight_sum))
    assert fast.stats["iterations"] == ref.stats["iterations"]


@pytest.mark.parametrize(("reject", "combine"), ALL_METHODS)
@pytest.mark.parametrize("backend_name", ["numpy", "torch:cpu", "array_api_strict"])
def test_gpu_strategy_on_cpu_equals_cpu_strategy(backend_name, reject, combine):
    # No GPU is needed to test the GPU code path: GpuOps on CPU arrays runs the same
    # sync-free, compaction-free logic that CuPy and torch CUDA get (torch tensors
    # exercise torch's own kernels, array_api_strict the standard alone).
    backend = get_backend(backend_name)
    data = _heavy_outliers(5, (25, 17, 13))
    config = StackConfig.plain(reject=reject, combine=combine)
    gpu = stack_frames(on(backend, data), config=config, ops=GpuOps(backend.xp, "gpu-on-cpu"))
    cpu = stack_frames(data, config=config)
    assert gpu.stats["band_workers"] == 1 and gpu.stats["ops"] == "gpu-on-cpu"
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(gpu, name)), getattr(cpu, name), err_msg=name)
    np.testing.assert_allclose(host(gpu.image), cpu.image, rtol=1e-6)
    assert gpu.stats["iterations"] == cpu.stats["iterations"]


def test_threaded_bands_equal_serial_bands():
    data = _heavy_outliers(7, (20, 64, 16))
    xp = get_backend("numpy").xp
    serial_ops = NumpyOps(xp)
    serial_ops.band_workers = 1
    config = StackConfig.plain(reject="kappa_sigma")
    threaded = stack_frames(data, config=config, band_rows=3)
    serial = stack_frames(data, config=config, band_rows=3, ops=serial_ops)
    assert threaded.stats["band_workers"] >= 1 and serial.stats["band_workers"] == 1
    for name in ("image", "coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(getattr(threaded, name), getattr(serial, name))
