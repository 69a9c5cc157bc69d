"""Stack throughput: our core on each backend against astropy, ccdproc and NumPy.

Every benchmark of one case stacks the same frames (``conftest.make_frames``) and
records in ``extra_info`` what ``benchmarks/report.py`` needs: the case shape, the
kind of benchmark (``ours`` / ``reference`` / ``memory_pass``), and for NumPy-based
code the peak of the Python-traced allocations during one untimed extra call
(``tracemalloc``; NumPy registers its buffers there), excluding the input frames.

GPU benchmarks synchronise the device inside the timed function. Without a GPU they
are skipped with the reason.

Run the full matrix (5 to 10 minutes on 2 cores)::

    ZEMOSAIC_BENCH_FULL=1 python -m pytest benchmarks --benchmark-only \\
        --benchmark-json=bench.json
    python benchmarks/report.py bench.json
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
import warnings

import numpy as np
import pytest

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends import BackendUnavailable, select_backend, synchronize, to_backend, to_host

from .conftest import BACKENDS, Case

CONFIGS = {
    "kappa_sigma": StackConfig.plain(reject="kappa_sigma", kappa_low=3.0, kappa_high=3.0, max_iters=5),
    "winsorized_sigma_clip": StackConfig.plain(reject="winsorized_sigma_clip"),
    "median": StackConfig.plain(reject="none", combine="median"),
}


def _peak_bytes(fn) -> int:
    """Peak of the traced allocations of one call of ``fn`` (inputs excluded)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def _run(benchmark, case: Case, fn, *, kind: str, name: str, peak: bool, **info) -> object:
    benchmark.group = case.name
    benchmark.extra_info.update(kind=kind, name=name, case=case.name, n_frames=case.n_frames,
                                height=case.height, width=case.width, channels=case.channels,
                                frame_pixels=case.frame_pixels, stack_bytes=case.stack_bytes, **info)
    # One warm-up call (thread pool, first-call imports) unless a call takes seconds.
    warmup = 1 if kind == "ours" or case.frame_pixels <= 20_000_000 else 0
    rounds = int(os.environ.get("ZEMOSAIC_BENCH_ROUNDS", "0")) or case.rounds
    result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup)
    if peak and not benchmark.disabled:
        benchmark.extra_info["peak_bytes"] = _peak_bytes(fn)
    return result


def _backend(name: str):
    try:
        return select_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("algorithm", sorted(CONFIGS))
def test_ours(benchmark, case, frames, algorithm, backend_name):
    if algorithm not in case.algorithms:
        pytest.skip(f"{algorithm} is not run on {case.name} (time budget)")
    if backend_name == "torch:cpu" and not case.torch_cpu:
        pytest.skip(f"torch:cpu is not run on {case.name} (time budget)")
    backend = _backend(backend_name)
    data = to_backend(frames, backend)
    config = CONFIGS[algorithm]

    def run():
        result = stack(data, config=config)
        synchronize(backend)
        return result

    result = _run(benchmark, case, run, kind="ours", name=algorithm, peak=backend_name == "numpy",
                  backend=backend_name, device_kind="gpu" if backend.is_gpu else "cpu")
    image = np.asarray(to_host(result.image))
    assert image.shape == frames.shape[1:]
    assert np.isfinite(image).mean() > 0.99
    benchmark.extra_info["ops"] = result.stats["ops"]
    benchmark.extra_info["iterations"] = result.stats["iterations"]
    benchmark.extra_info["band_rows"] = result.stats["band_rows"]


@pytest.mark.parametrize("algorithm", sorted(CONFIGS))
def test_ours_without_uncertainty(benchmark, case, frames, algorithm):
    # The same stack as test_ours on NumPy without the uncertainty map: report.py
    # prints the cost of the map as the ratio of the two (docs/performance.md).
    if algorithm not in case.algorithms:
        pytest.skip(f"{algorithm} is not run on {case.name} (time budget)")
    config = CONFIGS[algorithm]
    result = _run(benchmark, case, lambda: stack(frames, config=config, uncertainty=False),
                  kind="ours_no_uncertainty", name=algorithm, peak=True, backend="numpy", device_kind="cpu")
    assert result.uncertainty is None
    benchmark.extra_info["ops"] = result.stats["ops"]
    if not benchmark.disabled:
        benchmark.extra_info["interleaved"] = _interleaved_cost(frames, config, case)


def _interleaved_cost(frames: np.ndarray, config: StackConfig, case: Case) -> dict:
    """With / without the uncertainty map, alternated in one loop: best CPU and wall times.

    Two benchmarks run minutes apart on a shared machine differ by more than the map
    costs; alternating the two calls exposes both to the same load. CPU time is the
    process's (every thread), the steadier of the two where other jobs share the cores.
    """
    rounds = max(5, int(os.environ.get("ZEMOSAIC_BENCH_ROUNDS", "0")) or case.rounds)
    best = {"cpu_with": np.inf, "cpu_without": np.inf, "wall_with": np.inf, "wall_without": np.inf}
    for _ in range(rounds):
        for with_map in (True, False):
            key = "with" if with_map else "without"
            c0, w0 = time.process_time(), time.perf_counter()
            stack(frames, config=config, uncertainty=with_map)
            best[f"cpu_{key}"] = min(best[f"cpu_{key}"], time.process_time() - c0)
            best[f"wall_{key}"] = min(best[f"wall_{key}"], time.perf_counter() - w0)
    best["rounds"] = rounds
    return best


def _astropy_kappa_sigma(frames: np.ndarray) -> np.ndarray:
    from astropy.stats import sigma_clip

    clipped = sigma_clip(frames, sigma=3.0, maxiters=5, cenfunc="median", stdfunc="std", axis=0)
    return clipped.mean(axis=0).filled(np.nan)


@pytest.mark.filterwarnings("ignore:Input data contains invalid values")
def test_reference_astropy_sigma_clip(benchmark, case, frames):
    if "astropy" not in case.references:
        pytest.skip(f"astropy sigma_clip is not run on {case.name} (time and memory budget)")
    theirs = _run(benchmark, case, lambda: _astropy_kappa_sigma(frames), kind="reference",
                  name="astropy_sigma_clip", peak=True, compares="kappa_sigma")
    ours = np.asarray(stack(frames, config=CONFIGS["kappa_sigma"]).image)
    with np.errstate(invalid="ignore"):
        agree = np.isclose(ours, theirs, rtol=1e-4, atol=0) | (np.isnan(ours) & np.isnan(theirs))
    benchmark.extra_info["agreement"] = float(agree.mean())
    assert agree.mean() >= 0.9999


def _ccdproc_combine(frames: np.ndarray) -> np.ndarray:
    from astropy.nddata import CCDData
    from ccdproc import Combiner

    combiner = Combiner([CCDData(f, unit="adu", mask=np.isnan(f)) for f in frames])
    combiner.sigma_clipping(low_thresh=3.0, high_thresh=3.0, func="median", dev_func="std")
    return np.asarray(combiner.average_combine().data)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_reference_ccdproc_combiner(benchmark, case, frames):
    if "ccdproc" not in case.references:
        pytest.skip(f"ccdproc Combiner is not run on {case.name} (mono only; time and memory budget)")
    _run(benchmark, case, lambda: _ccdproc_combine(frames), kind="reference",
         name="ccdproc_combiner", peak=True, compares="kappa_sigma")


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered")
def test_reference_numpy_nanmedian(benchmark, case, frames):
    if "nanmedian" not in case.references:
        pytest.skip(f"np.nanmedian is not run on {case.name} (time budget)")
    theirs = _run(benchmark, case, lambda: np.nanmedian(frames, axis=0), kind="reference",
                  name="numpy_nanmedian", peak=True, compares="median")
    ours = np.asarray(stack(frames, config=CONFIGS["median"]).image)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_memory_pass(benchmark, case, frames, backend_name):
    # One read of the whole stack at memory bandwidth: the floor of any stacker.
    if backend_name == "torch:cpu":
        pytest.skip("the memory pass of the host is measured once, with NumPy")
    backend = _backend(backend_name)
    data = to_backend(frames, backend)
    xp = backend.xp

    def one_pass():
        out = xp.sum(data, axis=0)
        synchronize(backend)
        return out

    _run(benchmark, case, one_pass, kind="memory_pass", name="sum_axis0", peak=False,
         backend=backend_name, device_kind="gpu" if backend.is_gpu else "cpu")


def test_quick_matrix_runs_without_warnings(case, frames):
    # The quick matrix must exercise every path the full one does, warnings as errors.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for config in CONFIGS.values():
            stack(frames, config=config)
