"""The default rejection fused into one CUDA kernel, for CuPy arrays and torch CUDA tensors.

The portable winsorised sigma clip runs a step of ~80 array operations per inner
iteration, up to 50 iterations a pass and 10 passes, on every pixel of a band until
the slowest converged: on a GPU each operation is a kernel launch of ~10 µs whatever
its size, so a 16 × 512² band took 1.8 s on an H200 (NumPy's numba kernel: 0.02 s).
``cuda_wsc.cu`` runs the whole fit of a pixel in one thread instead (the numba
kernel's arithmetic, in the same order, so the same bits), compiled once per process
by NVRTC through CuPy. torch CUDA tensors run it through DLPack, without a copy, when
CuPy is installed; without CuPy, or if the kernel does not compile, the portable path
runs (a warning says why, once).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from ..core.nanstats import MAD_TO_SIGMA
from ..core.reject.winsorized_sigma_clip import HUBER_C, INNER_MAX_ITERS, TOLERANCE, WINSOR_CORRECTION

__all__ = ["kernel_source", "wsc_pixinsight_rows", "THREADS_PER_BLOCK"]

logger = logging.getLogger(__name__)

#: CUDA threads per block (one row each).
THREADS_PER_BLOCK = 128
_SOURCE = Path(__file__).with_name("cuda_wsc.cu")
# A fused multiply-add rounds once where NumPy and numba round twice: never contract.
_NVRTC_OPTIONS = ("--fmad=false",)


def kernel_source(*, host: bool = False) -> str:
    """The kernel's CUDA C++ with its constants defined.

    Parameters
    ----------
    host : bool
        Define ``WSC_HOST`` for a host C++ compiler (the tests build the row function
        into a shared library to check it without a GPU); default False (NVRTC).

    Returns
    -------
    str
        Source text: the constants of :mod:`~zemosaic_xp.core.reject.winsorized_sigma_clip`
        as ``#define`` lines, then ``cuda_wsc.cu``.
    """
    lines = [f"#define WSC_MAD_TO_SIGMA {MAD_TO_SIGMA!r}", f"#define WSC_HUBER_C {HUBER_C!r}",
             f"#define WSC_WINSOR_CORRECTION {WINSOR_CORRECTION!r}", f"#define WSC_TOLERANCE {TOLERANCE!r}",
             f"#define WSC_INNER_MAX_ITERS {int(INNER_MAX_ITERS)}"]
    if host:
        lines += ["#define WSC_HOST 1", "#include <cmath>", "typedef long long wsc_int;",
                  "#define WSC_NAN_F NAN", "#define WSC_INF_F INFINITY"]
    else:
        lines += ["#define WSC_NAN_F __int_as_float(0x7fc00000)", "#define WSC_INF_F __int_as_float(0x7f800000)"]
    return "\n".join(lines) + "\n" + _SOURCE.read_text(encoding="utf-8")


@functools.cache
def _kernel() -> Any:
    """The compiled kernel, or None (no CuPy, or NVRTC refused it: logged once)."""
    try:
        import cupy as cp
    except ImportError:  # torch CUDA without CuPy: expected, the portable GPU path runs
        logger.info("[GPU] winsorized_sigma_clip: CuPy is not installed, the portable GPU path runs "
                    "(pip install cupy-cuda12x for its CUDA kernel)")
        return None
    if cp.cuda.runtime.is_hip:  # hiprtc's contraction flags differ: keep ROCm on the portable path
        logger.info("[GPU] winsorized_sigma_clip: ROCm, the portable GPU path runs")
        return None
    try:
        kernel = cp.RawKernel(kernel_source(), "wsc_pixinsight_rows", options=_NVRTC_OPTIONS)
        kernel.compile()
    except Exception as exc:  # a CompileException, a driver error: fall back, say why
        logger.warning("[GPU] winsorized_sigma_clip: the CUDA kernel is unavailable (%s: %s); "
                       "the portable path runs instead", type(exc).__name__, exc)
        return None
    return kernel


def _on_cuda(array: Any) -> str | None:
    """``"cupy"`` or ``"torch"`` for an array on a CUDA device, else None."""
    module = type(array).__module__
    if module.startswith("cupy"):
        return "cupy"
    if module.startswith("torch") and getattr(array, "is_cuda", False):
        return "torch"
    return None


def wsc_pixinsight_rows(s: Any, n_valid: Any, /, *, kappa_low: float, kappa_high: float, max_iters: int,
                        min_survivors: int) -> tuple[Any, ...] | None:
    """Winsorised sigma clip of sorted rows on the GPU, or None where it cannot run.

    Parameters
    ----------
    s, n_valid : cupy.ndarray or torch.Tensor on CUDA, shapes (R, N) float32 and (R,) int
        Sorted rows (invalid samples last as ``+inf``) and their valid counts.
    kappa_low, kappa_high, max_iters, min_survivors : float, float, int, int
        As :meth:`~zemosaic_xp.core.ops.ArrayOps.wsc_pixinsight_fit`.

    Returns
    -------
    tuple of arrays or None
        ``(lo, hi, iterations, centre, kept_sum)`` in the library and on the device of
        ``s`` (int64, int64, int64, float32, float64; shape (R,)), the same bits as the
        core's :func:`~zemosaic_xp.core.reject.winsorized_sigma_clip.wsc_pixinsight_fit`;
        None when ``s`` is not float32 on CUDA or the kernel is unavailable.
    """
    library = _on_cuda(s)
    if library is None or "float32" not in str(s.dtype):
        return None
    kernel = _kernel()
    if kernel is None:
        return None
    import cupy as cp
    import numpy as np

    if library == "torch":
        import torch

        # The kernel runs on CuPy's current stream (the legacy default one, as torch's
        # default): on another torch stream, wait for torch's work on the tensors first.
        s, n_valid = s.contiguous(), n_valid.contiguous()
        torch_stream = torch.cuda.current_stream(s.device)
        if torch_stream.cuda_stream != 0:
            torch_stream.synchronize()
        s_cp, n_cp = cp.from_dlpack(s), cp.from_dlpack(n_valid)
    else:
        s_cp, n_cp = s, n_valid
    with cp.cuda.Device(s_cp.device.id):
        s_cp = cp.ascontiguousarray(s_cp)
        n_cp = cp.ascontiguousarray(cp.reshape(n_cp, (-1,)), dtype=cp.int64)
        rows, cols = (int(v) for v in s_cp.shape)
        out = (cp.empty(rows, cp.int64), cp.empty(rows, cp.int64), cp.empty(rows, cp.int64),
               cp.empty(rows, cp.float32), cp.empty(rows, cp.float64))
        if rows:
            blocks = (rows + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
            kernel((blocks,), (THREADS_PER_BLOCK,),
                   (s_cp, n_cp, np.int64(rows), np.int64(cols), np.float64(kappa_low), np.float64(kappa_high),
                    np.int64(max_iters), np.int64(min_survivors), *out))
        if library == "torch" and torch_stream.cuda_stream != 0:
            cp.cuda.get_current_stream().synchronize()  # before torch frees or reuses the inputs
    if library == "torch":
        return tuple(torch.from_dlpack(v) for v in out)
    return out
