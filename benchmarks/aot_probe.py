"""Probe: the κ-σ band kernels compiled ahead of time with ``numba.pycc`` (issue 13).

Whole-process runs of ``zemosaic-xp stack`` spend more CPU importing numba and loading
its JIT cache (LLVM, numba's typing registries, scipy.linalg pulled in by numba) than
stacking a 32 × 1024² job. This script measures what an ahead-of-time build would
give, without changing the package:

1. runs the band path once (numba JIT, from its cache) to learn the kernels' exact
   signatures, then compiles ``gather_sorted``, ``kappa_sigma_rows`` and
   ``combine_ranges`` with ``numba.pycc`` into an extension module in a temporary
   folder (the CPython wrappers built with ``release_gil``, which pycc does not expose);
2. imports that module in a fresh interpreter: CPU time and peak RSS against NumPy
   alone, and whether numba/llvmlite got imported;
3. stacks the same band with the JIT and the AOT kernels: bit-identical or not, CPU
   per band;
4. checks that the AOT kernel releases the GIL (a Python thread keeps counting).

Usage::

    python benchmarks/aot_probe.py [--frames 32] [--width 1024]

Needs numba (with ``numba.pycc``, deprecated but still shipped by numba 0.68) and a C
compiler. Prints one line per measurement; installs nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zemosaic_xp import StackConfig  # noqa: E402
from zemosaic_xp.backends.numba import band, combine, kappa_sigma  # noqa: E402
from zemosaic_xp.backends.numba.sorting import merge_network  # noqa: E402
from zemosaic_xp.core.pipeline import FramePlan  # noqa: E402

_MODULE = "zx_aot_probe"


def _band(n: int, rows: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(13)
    frames = (rng.normal(1000, 10, (n, rows, width, 1))).astype(np.float32)
    frames[rng.random(frames.shape) < 1e-3] = 60000.0
    frames[rng.random(frames.shape) < 1e-4] = np.nan
    return frames


def _run(src: np.ndarray, pairs: np.ndarray, config: StackConfig, plan: FramePlan) -> tuple:
    shape = src.shape[1:]
    out = (np.empty(shape, np.float32), np.empty(shape, np.float32), *(np.empty(shape, np.int32) for _ in range(3)),
           np.empty(shape, np.float32))
    counts = band.stack_band(src, 0, src.shape[1], pairs, config, plan, out)
    return counts, out


def _cpu(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def _compile(folder: Path) -> float:
    import numba.pycc.compiler as pycc_compiler
    from numba.pycc import CC

    class _NoGilFlags(pycc_compiler.Flags):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    pycc_compiler.Flags = _NoGilFlags
    cc = CC(_MODULE)
    cc.output_dir = str(folder)
    cc.verbose = False
    for kernel in (band.gather_sorted, kappa_sigma.kappa_sigma_rows, combine.combine_ranges):
        cc.export(kernel.py_func.__name__, kernel.nopython_signatures[0])(kernel.py_func)
    t = time.perf_counter()
    cc.compile()
    return time.perf_counter() - t


_HWM = "[int(x.split()[1]) // 1024 for x in open('/proc/self/status') if x.startswith('VmHWM')][0]"


def _import_cost(folder: Path) -> str:
    # VmHWM, not ru_maxrss: on Linux the latter keeps the parent's peak across exec.
    code = (f"import sys, time; sys.path.insert(0, {str(folder)!r}); import numpy; "
            f"t = time.process_time(); import {_MODULE}; dt = time.process_time() - t; "
            f"print(round(dt * 1e3, 1), {_HWM}, 'numba' in sys.modules, 'llvmlite' in sys.modules)")
    base = f"import numpy; print({_HWM})"
    aot = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    numpy_rss = subprocess.run([sys.executable, "-c", base], capture_output=True, text=True, check=True).stdout.strip()
    return (f"import of the AOT module: {aot[0]} ms CPU, peak RSS {aot[1]} MiB (NumPy alone {numpy_rss} MiB); "
            f"numba imported: {aot[2]}, llvmlite imported: {aot[3]}")


def _gil_released(kernel_call) -> float:
    """Fraction of its idle rate a Python counting thread keeps while the kernel runs."""
    count, stop = [0], [False]

    def spin() -> None:
        while not stop[0]:
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.2)
    c0, t0 = count[0], time.perf_counter()
    time.sleep(0.2)
    idle = (count[0] - c0) / (time.perf_counter() - t0)
    c0, t0 = count[0], time.perf_counter()
    kernel_call()
    busy = (count[0] - c0) / (time.perf_counter() - t0)
    stop[0] = True
    thread.join()
    return busy / idle


def main(argv: list[str] | None = None) -> int:
    """Run the probe and print its measurements.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--width", type=int, default=1024)
    args = p.parse_args(argv)
    n = args.frames
    config = StackConfig.plain(reject="kappa_sigma", kappa_low=3.0, kappa_high=3.0)
    plan = FramePlan(np.ones((n, 1), np.float32), np.zeros((n, 1), np.float32), None, {}, identity=True)
    src = _band(n, 64, args.width)
    pairs = np.asarray(merge_network(n)) if n <= 48 else np.zeros((0, 2), np.int64)
    jit = _run(src, pairs, config, plan)  # compiles or loads from numba's cache: signatures known
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"pycc compile of 3 kernels: {_compile(folder):.1f} s")
        print(_import_cost(folder))
        sys.path.insert(0, str(folder))
        aot = __import__(_MODULE)
        t_jit = _cpu(lambda: _run(src, pairs, config, plan))
        saved = band.gather_sorted, band.combine_ranges, kappa_sigma.kappa_sigma_rows
        band.gather_sorted, band.combine_ranges = aot.gather_sorted, aot.combine_ranges
        kappa_sigma.kappa_sigma_rows = aot.kappa_sigma_rows
        try:
            got = _run(src, pairs, config, plan)
            t_aot = _cpu(lambda: _run(src, pairs, config, plan))
            kept = _gil_released(lambda: [_run(src, pairs, config, plan) for _ in range(5)])
        finally:
            band.gather_sorted, band.combine_ranges, kappa_sigma.kappa_sigma_rows = saved
    same = jit[0] == got[0] and all(np.array_equal(a.view(np.uint8), b.view(np.uint8)) for a, b in zip(jit[1], got[1]))
    print(f"band {n} x 64 x {args.width}: bit-identical {same}; CPU per band JIT {t_jit * 1e3:.1f} ms, "
          f"AOT {t_aot * 1e3:.1f} ms (best of 5)")
    print(f"GIL: a Python thread kept {kept:.0%} of its idle rate while the AOT kernels ran")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
