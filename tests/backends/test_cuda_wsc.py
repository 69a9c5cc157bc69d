"""The CUDA kernel of the default rejection (``backends/cuda_wsc.cu``) against the core.

Its row function is built twice: by a host C++ compiler (``WSC_HOST``), so that every
machine with one (CI) checks the kernel's logic and arithmetic against the portable
core bit for bit; and by NVRTC through CuPy where a GPU exists.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import host, on
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends import cuda_wsc
from zemosaic_xp.core.ops import ArrayOps
from zemosaic_xp.core.reject.winsorized_sigma_clip import wsc_pixinsight_fit

_HOST_LOOP = """
extern "C" void wsc_rows_host(const float* s, const wsc_int* n, wsc_int rows, wsc_int cols,
                              double kl, double kh, wsc_int max_iters, wsc_int min_survivors,
                              wsc_int* lo, wsc_int* hi, wsc_int* it, float* c, double* sum) {
    for (wsc_int r = 0; r < rows; ++r)
        wsc_row(s + r * cols, cols, n[r], kl, kh, max_iters, min_survivors,
                lo + r, hi + r, it + r, c + r, sum + r);
}
extern "C" void wsc_mad_host(const float* s, const wsc_int* lo, const wsc_int* count, wsc_int rows,
                             wsc_int cols, float* med, float* mad) {
    for (wsc_int r = 0; r < rows; ++r) {
        med[r] = wsc_median(s + r * cols, lo[r], count[r]);
        mad[r] = wsc_mad(s + r * cols, lo[r], count[r], med[r]);
    }
}
"""
_FIELDS = ("lo", "hi", "iterations", "centre", "kept_sum")


def _rows(seed, rows=600, n=17):
    """Sorted rows as the core sorts them: outliers at several levels, ties, NaN, short rows."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(1000, 10, (rows, n))).astype(np.float32)
    for level in (30, 60, 150, 500, -200):
        x[rng.random(x.shape) < 0.04] += level
    x[rng.random(x.shape) < 0.08] = np.nan
    x[:2] = np.nan            # no sample
    x[2, 1:] = np.nan         # one sample
    x[3, 3:] = np.nan         # three samples
    x[4] = 7.0                # all equal
    x[5, :12] = 7.0           # mostly equal: sigma shrinks towards 0
    x[6, n // 2] = 1e30       # a huge value
    return ArrayOps(np).sort_valid(x)


def _portable(s, n, **params):
    fit = wsc_pixinsight_fit(s, n, xp=np, ops=ArrayOps(np), **params)
    return [np.asarray(getattr(fit, f)) for f in _FIELDS]


@pytest.fixture(scope="module")
def host_kernel(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no host C++ compiler (c++, g++ or clang++) to build the CUDA kernel's row function")
    folder = tmp_path_factory.mktemp("cuda_wsc")
    src = folder / "wsc_host.cpp"
    src.write_text(cuda_wsc.kernel_source(host=True) + _HOST_LOOP, encoding="utf-8")
    lib = folder / "wsc_host.so"
    # -ffp-contract=off: no fused multiply-add, as NVRTC's --fmad=false.
    subprocess.run([compiler, "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(lib), str(src)],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _run_host(kernel, s, n, *, kappa_low, kappa_high, max_iters, min_survivors):
    s = np.ascontiguousarray(s, np.float32)
    n = np.ascontiguousarray(n, np.int64).reshape(-1)
    rows, cols = s.shape
    out = [np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64),
           np.empty(rows, np.float32), np.empty(rows, np.float64)]
    ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (s, n, *out)]
    kernel.wsc_rows_host(ptr[0], ptr[1], ctypes.c_longlong(rows), ctypes.c_longlong(cols), ctypes.c_double(kappa_low),
           ctypes.c_double(kappa_high), ctypes.c_longlong(max_iters), ctypes.c_longlong(min_survivors), *ptr[2:])
    return out


@pytest.mark.parametrize(("kappa_low", "kappa_high", "max_iters", "min_survivors"),
                         [(3.0, 3.0, 10, 3), (2.0, 2.5, 10, 3), (1.0, 1.0, 10, 3), (3.0, 3.0, 1, 3),
                          (2.0, 2.0, 3, 8), (3.0, 3.0, 0, 3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_host_build_equals_the_core_bit_for_bit(host_kernel, seed, kappa_low, kappa_high, max_iters,
                                                min_survivors):
    s, n = _rows(seed)
    params = {"kappa_low": kappa_low, "kappa_high": kappa_high, "max_iters": max_iters,
              "min_survivors": min_survivors}
    got = _run_host(host_kernel, s, n, **params)
    want = _portable(s, n, **params)
    for name, g, w in zip(_FIELDS, got, want):
        assert g.tobytes() == w.astype(g.dtype).tobytes(), name
    if max_iters > 1:
        assert want[2].max() >= 3  # the data needs several passes


def test_host_build_on_wide_rows_and_single_frames(host_kernel):
    for rows_n in ((200, 64), (50, 1), (30, 2)):
        s, n = _rows(5, *rows_n)
        params = {"kappa_low": 2.5, "kappa_high": 2.5, "max_iters": 10, "min_survivors": 3}
        got = _run_host(host_kernel, s, n, **params)
        for name, g, w in zip(_FIELDS, got, _portable(s, n, **params)):
            assert g.tobytes() == w.astype(g.dtype).tobytes(), (rows_n, name)


@pytest.mark.parametrize("n", [4, 6, 8])
def test_host_build_on_small_integer_rows(host_kernel, n):
    # Few distinct values: ties, zero MADs and MADs set by either end of a window.
    rng = np.random.default_rng(n)
    x = rng.integers(0, 6, (4000, n)).astype(np.float32) * rng.choice([1, 1, 1, 40], (4000, n))
    x[rng.random(x.shape) < 0.1] = np.nan
    s, cnt = ArrayOps(np).sort_valid(x)
    for params in ({"kappa_low": 1.0, "kappa_high": 1.5, "max_iters": 10, "min_survivors": 2},
                   {"kappa_low": 0.5, "kappa_high": 0.5, "max_iters": 4, "min_survivors": 1}):
        got = _run_host(host_kernel, s, cnt, **params)
        for name, g, w in zip(_FIELDS, got, _portable(s, cnt, **params)):
            assert g.tobytes() == w.astype(g.dtype).tobytes(), (params, name)


def test_host_build_median_and_mad_of_ranges(host_kernel):
    # The pass starts (median, MAD of a sub-range) against the core's median_sorted and
    # mad_sorted: the fit itself converges to nearly the same (m, σ) from a wrong start.
    from zemosaic_xp.core.nanstats import median_sorted
    from zemosaic_xp.core.sorted_rows import mad_sorted

    rng = np.random.default_rng(8)
    x = rng.integers(0, 7, (3000, 9)).astype(np.float32) * rng.choice([1, 1, 30], (3000, 9))
    s = np.ascontiguousarray(ArrayOps(np).sort_valid(x)[0], np.float32)
    lo = rng.integers(0, 5, 3000).astype(np.int64)
    count = rng.integers(0, 10 - lo).astype(np.int64)
    med, mad = np.empty(3000, np.float32), np.empty(3000, np.float32)
    ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (s, lo, count)]
    host_kernel.wsc_mad_host(*ptr, ctypes.c_longlong(3000), ctypes.c_longlong(9),
                             med.ctypes.data_as(ctypes.c_void_p), mad.ctypes.data_as(ctypes.c_void_p))
    want_med = median_sorted(s, count[:, None], xp=np, lo=lo[:, None]).reshape(-1)
    want_mad = mad_sorted(s, count, want_med, xp=np, lo=lo)
    np.testing.assert_array_equal(med, want_med)
    np.testing.assert_array_equal(mad, want_mad)
    assert np.isnan(mad[count == 0]).all() and (mad[count > 3] > 0).any()


def test_arrays_off_cuda_are_left_to_the_portable_path():
    s, n = _rows(0, 10)
    assert cuda_wsc.wsc_pixinsight_rows(s, n, kappa_low=3.0, kappa_high=3.0, max_iters=10, min_survivors=3) is None


def test_without_cupy_the_kernel_is_none_and_says_so(monkeypatch, caplog):
    # torch CUDA without CuPy: no kernel, the portable GPU path; an info line, not a warning.
    import logging
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    cuda_wsc._kernel.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger=cuda_wsc.__name__):
            assert cuda_wsc._kernel() is None
    finally:
        cuda_wsc._kernel.cache_clear()
    (record,) = [r for r in caplog.records if r.name == cuda_wsc.__name__]
    assert record.levelno == logging.INFO and "CuPy is not installed" in record.getMessage()


def test_rocm_keeps_the_portable_path(monkeypatch):
    # hiprtc would not honour --fmad=false as NVRTC does: no kernel on ROCm.
    import sys
    from types import SimpleNamespace

    hip = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(is_hip=True)))
    monkeypatch.setitem(sys.modules, "cupy", hip)
    cuda_wsc._kernel.cache_clear()
    try:
        assert cuda_wsc._kernel() is None
    finally:
        cuda_wsc._kernel.cache_clear()


def test_the_source_carries_the_core_constants():
    text = cuda_wsc.kernel_source()
    assert "#define WSC_MAD_TO_SIGMA 1.482602218505602" in text and "#define WSC_INNER_MAX_ITERS 50" in text
    assert "--fmad=false" in cuda_wsc._NVRTC_OPTIONS


def test_gpu_kernel_equals_the_core_bit_for_bit(gpu_backend):
    s, n = _rows(3, rows=5000, n=24)
    params = {"kappa_low": 2.5, "kappa_high": 3.0, "max_iters": 10, "min_survivors": 3}
    xp = gpu_backend.xp
    got = cuda_wsc.wsc_pixinsight_rows(on(gpu_backend, s), xp.astype(on(gpu_backend, n), xp.int64), **params)
    assert got is not None, "the CUDA kernel did not run (see the [GPU] warning)"
    for name, g, w in zip(_FIELDS, got, _portable(s, n, **params)):
        g = host(g)
        assert g.tobytes() == w.astype(g.dtype).tobytes(), name


def test_gpu_stack_runs_the_kernel_and_matches_numpy(gpu_backend, monkeypatch):
    calls = []
    real = cuda_wsc.wsc_pixinsight_rows

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(cuda_wsc, "wsc_pixinsight_rows", counted)
    rng = np.random.default_rng(4)
    frames = rng.normal(1000, 10, (20, 40, 30)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.05] += 400
    config = StackConfig(reject="winsorized_sigma_clip")
    got = stack(on(gpu_backend, frames), config=config)
    want = stack(frames, config=config)
    assert calls and all(calls)
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(got, name)), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(host(got.image), want.image, rtol=1e-6)
