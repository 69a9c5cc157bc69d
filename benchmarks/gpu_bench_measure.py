"""Measuring one case of ``benchmarks/gpu_bench.py``: peak device memory, best time, parity."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


class PeakMemory:
    """The most device memory one call holds, read through the backend's own allocator.

    Parameters
    ----------
    backend : Backend
        The backend of the call; CPU backends report None.

    Notes
    -----
    CuPy: the default memory pool is emptied of its free blocks before the call; the pool
    only grows until ``free_all_blocks()`` (which the library calls only after a device
    out-of-memory error), so its size after the call is the most it held (in-use blocks
    rounded up, so an upper bound of the bytes in use). torch:
    ``max_memory_allocated()`` after ``reset_peak_memory_stats()``.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.what = {"cupy": "cupy default pool size (high-water)",
                     "torch:cuda": "torch.cuda.max_memory_allocated"}.get(backend.name)

    def start(self) -> None:
        """Reset the high-water mark (waits for the device first)."""
        from zemosaic_xp.backends import synchronize

        synchronize(self.backend)
        if self.backend.name == "cupy":
            import cupy

            cupy.get_default_memory_pool().free_all_blocks()
        elif self.backend.name == "torch:cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.backend.device)

    def peak(self) -> int | None:
        """Return the high-water mark since :meth:`start`.

        Returns
        -------
        int or None
            Bytes, or None on a CPU backend.
        """
        from zemosaic_xp.backends import synchronize

        synchronize(self.backend)
        if self.backend.name == "cupy":
            import cupy

            return int(cupy.get_default_memory_pool().total_bytes())
        if self.backend.name == "torch:cuda":
            import torch

            return int(torch.cuda.max_memory_allocated(self.backend.device))
        return None


# ------------------------------------------------------------------------------------------
# measuring
# ------------------------------------------------------------------------------------------

def host_result(result: Any) -> dict:
    """The arrays of a ``StackResult`` or ``MasterTileResult`` as NumPy, for the parity check.

    Parameters
    ----------
    result : StackResult or MasterTileResult
        A stack on any backend.

    Returns
    -------
    dict
        ``image``, ``coverage`` (or None), ``rejected_low`` / ``rejected_high`` (None for a
        master tile), ``used_gpu`` (None for ``stack``) and ``gpu_attempts``.
    """
    from zemosaic_xp.backends import to_host

    def on_host(name: str) -> np.ndarray | None:
        """Return the attribute ``name`` of the result on the host.

        Parameters
        ----------
        name : str
            An array attribute.

        Returns
        -------
        ndarray or None
            None when the result has no such array.
        """
        value = getattr(result, name, None)
        return None if value is None else np.asarray(to_host(value))

    return {"image": on_host("image"), "coverage": on_host("coverage"),
            "rejected_low": on_host("rejected_low"), "rejected_high": on_host("rejected_high"),
            "used_gpu": getattr(result, "used_gpu", None),
            "gpu_attempts": result.stats.get("gpu_attempts") if isinstance(result.stats, dict) else None}


def time_call(call: Callable[[], Any], backend: Any, repeat: int, budget_sec: float = float("inf")) -> dict:
    """One warm-up (peak memory read there), then up to ``repeat`` timed, synchronised calls.

    Parameters
    ----------
    call : callable
        Runs one stack and returns its result.
    backend : Backend
        Where it computes (synchronised before each clock stop).
    repeat : int
        Timed calls at most.
    budget_sec : float
        No further timed call once the timed calls took this long together (a slow case,
        such as a CPU path without a native kernel, is then timed fewer times).

    Returns
    -------
    dict
        ``times_sec``, ``best_sec``, ``peak_device_bytes`` and ``result`` (the last timed
        call's, on the host).
    """
    from zemosaic_xp.backends import synchronize

    memory = PeakMemory(backend)
    memory.start()
    result = call()
    synchronize(backend)
    peak = memory.peak()
    del result
    times = []
    while len(times) < repeat and (not times or sum(times) < budget_sec):
        t0 = time.perf_counter()
        result = call()
        synchronize(backend)
        times.append(time.perf_counter() - t0)
    return {"times_sec": times, "best_sec": min(times), "peak_device_bytes": peak,
            "peak_device_what": memory.what, "result": host_result(result)}


def parity(result: dict, reference: dict, sigma: float) -> dict:
    """Compare a result with the NumPy reference.

    Parameters
    ----------
    result, reference : dict
        From :func:`host_result`.
    sigma : float
        The frames' noise (ADU) that scales the image difference.

    Returns
    -------
    dict
        ``max_abs_diff_over_sigma`` (over pixels finite in both), ``nonfinite_mismatch_px``,
        ``coverage_diff_px`` and ``rejection_maps_diff_px`` (None where not available).
    """
    a, b = result["image"], reference["image"]
    finite_a, finite_b = np.isfinite(a), np.isfinite(b)
    both = finite_a & finite_b
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))[both]
    out = {"max_abs_diff_over_sigma": float(diff.max()) / sigma if diff.size else 0.0,
           "nonfinite_mismatch_px": int(np.count_nonzero(finite_a != finite_b)),
           "coverage_diff_px": None, "rejection_maps_diff_px": None}
    if result["coverage"] is not None and reference["coverage"] is not None:
        out["coverage_diff_px"] = int(np.count_nonzero(result["coverage"] != reference["coverage"]))
    if result["rejected_low"] is not None and reference["rejected_low"] is not None:
        differ = ((result["rejected_low"] != reference["rejected_low"])
                  | (result["rejected_high"] != reference["rejected_high"]))
        out["rejection_maps_diff_px"] = int(np.count_nonzero(differ))
    return out
