"""Native fast paths of the stack core, one :class:`~zemosaic_xp.core.ops.ArrayOps` per backend.

``zemosaic_xp.backends`` registers :func:`native_ops` with the core at import, so the
core (which never imports NumPy, CuPy or torch) finds these through
``core.ops.ops_for(xp, device)``. Each method returns what the portable method of
:class:`ArrayOps` returns on the same data; ``tests/core/test_fastpaths.py`` checks
every one of them against the portable reference.

What each backend gains (measured on 2 CPU cores, 32 × 512² float32; see
``docs/performance.md``):

- NumPy: NumPy's SIMD quicksort in place on the NaN → +inf copy, NaN counted only in
  rows that end in +inf, ``einsum`` row sums (3-5x faster than ``sum`` along a short
  contiguous axis), the MAD by sorting the deviations, bands transposed with
  ``copyto`` into a fresh buffer, compaction of the still-active pixels, and one band
  thread per core (NumPy releases the GIL).
- NumPy with numba (optional, ``pip install zemosaic-xp[fast]``; off with
  ``ZEMOSAIC_XP_NUMBA=0``): unweighted stacks with κ-σ, the winsorised sigma clip or
  no rejection go band by band through compiled kernels, from the frames straight
  into the results (:meth:`NumpyOps.band_stacker`, :mod:`zemosaic_xp._numba_band`);
  elsewhere κ-σ and both WSC flavours still run as one compiled loop per pixel over
  the sorted rows (:mod:`zemosaic_xp._numba_kernels`, :mod:`~zemosaic_xp._numba_pixinsight`,
  :mod:`~zemosaic_xp._numba_wsc`) instead of ~40 vector passes per iteration, and short
  rows are sorted by a sorting network.
- torch CPU: ``stack_frames`` hands whole stacks to the NumPy ops on the same memory
  (zero-copy ``Tensor.numpy()``): torch's CPU sort, ``isnan`` and ``isinf`` are ~10x
  slower than NumPy's in the builds we measured.
- GPUs (CuPy, torch CUDA): the portable maths with a GPU strategy — no compaction
  (data-dependent shapes sync the host), no convergence test inside iteration
  loops, bands as large as the memory budget.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import numpy as np
from array_api_compat import is_cupy_namespace, is_numpy_namespace, is_torch_namespace

from .core.nanstats import median_sorted
from .core.ops import ArrayOps

__all__ = ["NumpyOps", "TorchCpuOps", "GpuOps", "native_ops", "cpu_workers", "numba_kernels",
           "NUMBA_ENV"]

Array = Any

# Bands of ~2 MiB of float32 stay in the L2/L3 caches through the dozen passes of a
# rejection; measured 1.5-2x faster per sample than 20 MB bands (docs/performance.md).
_CPU_BAND_BYTES = 2 * 1024**2
_MAX_BAND_WORKERS = 8


#: Environment variable that switches the numba kernels off ("0", "false", "no", "off").
NUMBA_ENV = "ZEMOSAIC_XP_NUMBA"
_OFF = ("0", "false", "no", "off")
_KERNELS: Any = None  # the kernels module once imported; False when numba cannot be imported
_MODULES: dict[str, Any] = {}


def numba_kernels() -> Any:
    """The numba kernels (:mod:`zemosaic_xp._numba_kernels`), or None.

    None when numba is not installed (the optional extra ``fast``) or when the
    environment variable ``ZEMOSAIC_XP_NUMBA`` is ``0`` / ``false`` / ``no`` / ``off``;
    the variable is read at every call, so it takes effect in a running process.
    The first call imports numba (~0.5 s); each kernel compiles on its first use
    (1-2 s, or ~0.1 s from numba's on-disk cache).
    """
    global _KERNELS
    if os.environ.get(NUMBA_ENV, "").strip().lower() in _OFF:
        return None
    if _KERNELS is None:
        try:
            from . import _numba_kernels as kernels
        except ImportError:
            kernels = False
        _KERNELS = kernels
    return _KERNELS or None


def _numba_module(name: str) -> Any:
    """``zemosaic_xp.<name>``, a module of numba kernels; only after numba_kernels() succeeded."""
    module = _MODULES.get(name)
    if module is None:
        module = _MODULES[name] = importlib.import_module(f"{__package__}.{name}")
    return module


def _band_kernels() -> Any:
    """:mod:`zemosaic_xp._numba_band`."""
    return _numba_module("_numba_band")


def _numba_available() -> bool:
    """Whether :func:`numba_kernels` would return the kernels, without importing numba."""
    if os.environ.get(NUMBA_ENV, "").strip().lower() in _OFF:
        return False
    if _KERNELS is not None:
        return bool(_KERNELS)
    return importlib.util.find_spec("numba") is not None


def _range_outputs(rows: int) -> tuple[np.ndarray, ...]:
    """Empty ``lo, hi, iterations, centre, kept_sum`` for a range kernel."""
    return (np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int64),
            np.empty(rows, np.float32), np.empty(rows, np.float64))


def _numba_kappa_sigma(s: np.ndarray, n_valid: np.ndarray, kappa_low: float, kappa_high: float,
                       max_iters: int, ddof: int, min_survivors: int) -> tuple[np.ndarray, ...] | None:
    kernels = numba_kernels()
    if kernels is None or s.dtype != np.float32:
        return None
    s = np.ascontiguousarray(s)
    out = _range_outputs(s.shape[0])
    # κ as float32: the core forms the bounds c ± κ·σ in float32 (NumPy's weak scalars).
    kernels.kappa_sigma_rows(s, np.ascontiguousarray(n_valid, dtype=np.int64).reshape(-1),
                             np.float32(kappa_low), np.float32(kappa_high), ddof, max_iters,
                             min_survivors, *out, kernels.NO_SUMS)
    return out


def _numba_float64_clip(module: str, kernel: str, s: np.ndarray, n_valid: np.ndarray, kappa_low: float,
                        kappa_high: float, max_iters: int, min_survivors: int) -> tuple[np.ndarray, ...] | None:
    """Run a winsorised-clip kernel (float64 κ) of ``module`` on float32 sorted rows; None if unavailable."""
    kernels = numba_kernels()
    if kernels is None or s.dtype != np.float32:
        return None
    s = np.ascontiguousarray(s)
    out = _range_outputs(s.shape[0])
    getattr(_numba_module(module), kernel)(
        s, np.ascontiguousarray(n_valid, dtype=np.int64).reshape(-1), float(kappa_low),
        float(kappa_high), max_iters, min_survivors, *out, kernels.NO_SUMS)
    return out


def _numba_wsc(s: np.ndarray, n_valid: np.ndarray, kappa_low: float, kappa_high: float,
               max_iters: int, min_survivors: int) -> tuple[np.ndarray, ...] | None:
    return _numba_float64_clip("_numba_wsc", "wsc_rows", s, n_valid, kappa_low, kappa_high, max_iters,
                               min_survivors)


def _numba_wsc_pixinsight(s: np.ndarray, n_valid: np.ndarray, kappa_low: float, kappa_high: float,
                          max_iters: int, min_survivors: int) -> tuple[np.ndarray, ...] | None:
    return _numba_float64_clip("_numba_pixinsight", "wsc_pixinsight_rows", s, n_valid, kappa_low, kappa_high,
                               max_iters, min_survivors)


def _numba_wsc_weighted(x: np.ndarray, w: np.ndarray, s: np.ndarray, n_valid: np.ndarray,
                        kappa_low: float, kappa_high: float, max_iters: int,
                        min_survivors: int) -> tuple[np.ndarray, ...] | None:
    if numba_kernels() is None or x.dtype != np.float32 or s.dtype != np.float32:
        return None
    x = np.ascontiguousarray(x)
    rows = x.shape[0]
    keep = np.empty(x.shape, dtype=bool)
    counts = [np.empty(rows, np.int64) for _ in range(3)]
    _numba_module("_numba_wsc").wsc_weighted_rows(
        x, np.ascontiguousarray(np.broadcast_to(w, x.shape), dtype=np.float32),
        np.ascontiguousarray(s), np.ascontiguousarray(n_valid, dtype=np.int64).reshape(-1),
        float(kappa_low), float(kappa_high), max_iters, min_survivors, keep, *counts)
    return (keep, *counts)


def _numba_stack_band(frames: Array, r0: int, r1: int, out: tuple, *, config: Any,
                      plan: Any) -> tuple[int, int, int, int]:
    """One band through the numba band kernels (NumpyOps.band_stacker)."""
    src = np.asarray(frames)
    if src.dtype != np.float32 or not src.flags.c_contiguous:
        # The kernels read C-ordered float32 (one compiled version): convert just
        # this band, as band_copy would.
        src = np.ascontiguousarray(src[:, r0:r1], dtype=np.float32)
        r0, r1 = 0, r1 - r0
    n = int(src.shape[0])
    pairs = _network_pairs(n) if n <= _NETWORK_MAX_N else _NO_PAIRS
    return _band_kernels().stack_band(src, r0, r1, pairs, config, plan, out)


def cpu_workers() -> int:
    """CPU cores this process may use (affinity-aware), capped at 8."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    return max(1, min(_MAX_BAND_WORKERS, count))


def _numpy_sort_valid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NumPy rows sorted with NaN last as +inf, and the valid counts."""
    n = x.shape[-1]
    kernels = numba_kernels() if x.dtype == np.float32 and n > 0 else None
    if kernels is not None:
        return _numba_sort_valid(kernels, x)
    nan = np.isnan(x)
    # The where() copy is the buffer we sort in place with NumPy's unstable SIMD sort.
    s = np.where(nan, np.float32(np.inf) if x.dtype == np.float32 else np.inf, x)
    s.sort(axis=-1)
    flat = s.reshape(-1, n)
    n_valid = np.full((flat.shape[0], 1), n, dtype=np.int64)
    # Only rows that end in +inf can hold NaN: count those rows alone.
    rows = np.flatnonzero(flat[:, -1] == np.inf)
    if rows.size:
        n_valid[rows, 0] = n - np.count_nonzero(nan.reshape(-1, n)[rows], axis=-1)
    return s, n_valid.reshape(x.shape[:-1] + (1,))


# Up to this many samples per pixel a sorting network (32 rows at a time, vector
# min/max) beats NumPy's sort, which costs ~40 ns per row whatever its length
# (measured 1.6 vs 5.6 ns per sample at N = 8, even at N = 32-48, slower at 64).
_NETWORK_MAX_N = 48


_NO_PAIRS = np.zeros((0, 2), dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _network_pairs(n: int) -> np.ndarray:
    pairs = numba_kernels().merge_network(n)
    pairs.flags.writeable = False
    return pairs


def _numba_sort_valid(kernels: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_numpy_sort_valid` with the NaN → +inf copy and the counts in one numba pass."""
    n = x.shape[-1]
    flat = np.ascontiguousarray(x).reshape(-1, n)
    s = np.empty_like(flat)
    n_valid = np.empty(flat.shape[0], dtype=np.int64)
    if n <= _NETWORK_MAX_N:
        kernels.sort_network_rows(flat, _network_pairs(n), s, n_valid)
    else:
        kernels.nan_to_inf_rows(flat, s, n_valid)
        s.sort(axis=-1)
    return s.reshape(x.shape), n_valid.reshape(x.shape[:-1] + (1,))


def _numpy_centred_sums(s: np.ndarray, centre: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        whole: bool) -> tuple[np.ndarray, np.ndarray]:
    n = s.shape[-1]
    d = s.astype(np.float64)
    d -= centre.astype(np.float64)[:, None]
    if whole:
        # The whole valid range: outside it there is only the +inf padding, and an
        # isinf pass on float32 is cheaper than comparing indices per row.
        if (hi != n).any():
            np.copyto(d, 0.0, where=np.isinf(s))
    elif lo.any() or (hi != n).any():
        j = np.arange(n)
        np.copyto(d, 0.0, where=(j < lo[:, None]) | (j >= hi[:, None]))
    # einsum reduces a short contiguous axis 3-5x faster than ndarray.sum.
    return np.einsum("ij->i", d), np.einsum("ij,ij->i", d, d)


class NumpyOps(ArrayOps):
    """NumPy: in-place SIMD sort, einsum row sums, compaction, cache-sized threaded bands.

    With numba installed (and ``ZEMOSAIC_XP_NUMBA`` not ``0``): whole bands through
    compiled kernels where the configuration allows (:meth:`band_stacker`), κ-σ and
    the winsorised sigma clips as compiled per-pixel loops elsewhere, and a sorting
    network for rows of up to 48 samples (:func:`numba_kernels`); ``name`` is then
    ``"numpy+numba"``.
    """

    compact = True
    check_every = 1
    band_bytes = _CPU_BAND_BYTES

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        self.band_workers = cpu_workers()

    @property
    def name(self) -> str:  # type: ignore[override]
        return "numpy+numba" if _numba_available() else "numpy"

    def band_stacker(self, config: Any, plan: Any) -> Any:
        if numba_kernels() is None or not _band_kernels().supports(config, plan):
            return None
        return functools.partial(_numba_stack_band, config=config, plan=plan)

    def kappa_sigma_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                        max_iters: int, ddof: int, min_survivors: int) -> tuple[Array, ...] | None:
        return _numba_kappa_sigma(s, n_valid, kappa_low, kappa_high, max_iters, ddof, min_survivors)

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float,
                           kappa_high: float, max_iters: int,
                           min_survivors: int) -> tuple[Array, ...] | None:
        return _numba_wsc_pixinsight(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors)

    def wsc_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                max_iters: int, min_survivors: int) -> tuple[Array, ...] | None:
        return _numba_wsc(s, n_valid, kappa_low, kappa_high, max_iters, min_survivors)

    def wsc_weighted_fit(self, x: Array, weights: Array, s: Array, n_valid: Array, /, *,
                         kappa_low: float, kappa_high: float, max_iters: int,
                         min_survivors: int) -> tuple[Array, ...] | None:
        return _numba_wsc_weighted(x, weights, s, n_valid, kappa_low, kappa_high, max_iters,
                                   min_survivors)

    def band_copy(self, view: Array) -> Array:
        out = np.empty(view.shape, dtype=np.float32)
        np.copyto(out, view, casting="unsafe")
        return out

    def nan_nonfinite(self, x: Array) -> Array:
        # Infinite values are rare: one isinf pass, and a write only when there are some.
        inf = np.isinf(x)
        if inf.any():
            x[inf] = np.nan
        return x

    def sort_valid(self, x: Array) -> tuple[Array, Array]:
        return _numpy_sort_valid(np.asarray(x))

    def centred_sums(self, s: Array, centre: Array, lo: Array, hi: Array, *,
                     whole: bool = False) -> tuple[Array, Array]:
        return _numpy_centred_sums(s, centre, lo, hi, whole)

    def prefix_sums(self, d: Array) -> Array:
        return np.cumsum(d, axis=-1)

    def mad(self, s: Array, n_valid: Array, centre: Array) -> Array:
        # NumPy's SIMD sort of the deviations beats a vectorised selection (~2x); the
        # +inf padding stays +inf, so the valid deviations come first, sorted.
        d = np.subtract(s, centre[:, None])
        np.abs(d, out=d)
        d.sort(axis=-1)
        return median_sorted(d, n_valid[:, None], xp=self.xp)

    def expand(self, mask: Array, pairs: list[tuple[Array, Array]]) -> list[Array]:
        out = []
        for values, fill in pairs:
            full = fill.copy()
            full[mask] = values
            out.append(full)
        return out


def _np(t: Array) -> np.ndarray:
    """A NumPy view of a CPU tensor (shared memory, strides kept)."""
    return t.detach().numpy()


class TorchCpuOps(ArrayOps):
    """torch on the CPU: the NumPy kernels on the same memory, compaction, threaded bands.

    CPU tensors and NumPy arrays share memory without a copy, and in the torch CPU
    builds we measured, ``sort`` (~10x), ``isnan``/``isinf`` (~10x), ``sqrt`` on
    float64 and per-call overheads are slower than NumPy's. So ``stack_frames``
    delegates a whole torch CPU stack to NumPy (:meth:`host_delegate`), and bands
    given to ``stack_band`` directly still run every heavy primitive as NumPy on the
    tensor's buffer.
    """

    name = "torch:cpu"
    compact = True
    check_every = 1
    band_bytes = _CPU_BAND_BYTES

    def __init__(self, xp: Any) -> None:
        super().__init__(xp)
        self.band_workers = cpu_workers()
        import array_api_compat.numpy as xp_numpy

        self._numpy = NumpyOps(xp_numpy)

    def host_delegate(self) -> tuple[ArrayOps, Any, Any]:
        import torch

        return self._numpy, _np, torch.from_numpy

    def band_copy(self, view: Array) -> Array:
        import torch

        return torch.from_numpy(self._numpy.band_copy(_np(view)))

    def nan_nonfinite(self, x: Array) -> Array:
        self._numpy.nan_nonfinite(_np(x))  # in place on the tensor's buffer
        return x

    def sort_valid(self, x: Array) -> tuple[Array, Array]:
        import torch

        s, n_valid = _numpy_sort_valid(_np(x.contiguous()))
        return torch.from_numpy(s), torch.from_numpy(n_valid)

    def centred_sums(self, s: Array, centre: Array, lo: Array, hi: Array, *,
                     whole: bool = False) -> tuple[Array, Array]:
        import torch

        s1, s2 = _numpy_centred_sums(_np(s.contiguous()), _np(centre), _np(lo), _np(hi), whole)
        return torch.from_numpy(s1), torch.from_numpy(s2)

    def prefix_sums(self, d: Array) -> Array:
        import torch

        return torch.from_numpy(np.cumsum(_np(d), axis=-1))

    def kappa_sigma_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                        max_iters: int, ddof: int, min_survivors: int) -> tuple[Array, ...] | None:
        if s.dtype != _torch_float32():
            return None
        out = _numba_kappa_sigma(_np(s.contiguous()), _np(n_valid), kappa_low, kappa_high, max_iters,
                                 ddof, min_survivors)
        return None if out is None else _tensors(out)

    def wsc_pixinsight_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float,
                           kappa_high: float, max_iters: int,
                           min_survivors: int) -> tuple[Array, ...] | None:
        if s.dtype != _torch_float32():
            return None
        out = _numba_wsc_pixinsight(_np(s.contiguous()), _np(n_valid), kappa_low, kappa_high,
                                    max_iters, min_survivors)
        return None if out is None else _tensors(out)

    def wsc_fit(self, s: Array, n_valid: Array, /, *, kappa_low: float, kappa_high: float,
                max_iters: int, min_survivors: int) -> tuple[Array, ...] | None:
        if s.dtype != _torch_float32():
            return None
        out = _numba_wsc(_np(s.contiguous()), _np(n_valid), kappa_low, kappa_high, max_iters,
                         min_survivors)
        return None if out is None else _tensors(out)

    def wsc_weighted_fit(self, x: Array, weights: Array, s: Array, n_valid: Array, /, *,
                         kappa_low: float, kappa_high: float, max_iters: int,
                         min_survivors: int) -> tuple[Array, ...] | None:
        if x.dtype != _torch_float32():
            return None
        out = _numba_wsc_weighted(_np(x.contiguous()), _np(weights.contiguous()), _np(s.contiguous()),
                                  _np(n_valid), kappa_low, kappa_high, max_iters, min_survivors)
        return None if out is None else _tensors(out)


def _torch_float32() -> Any:
    import torch

    return torch.float32


def _tensors(arrays: tuple[np.ndarray, ...]) -> tuple[Array, ...]:
    import torch

    return tuple(torch.from_numpy(a) for a in arrays)


class GpuOps(ArrayOps):
    """CuPy / torch CUDA: portable maths, sync-free strategy, budget-sized bands."""

    compact = False
    check_every = 0
    band_bytes = None

    def __init__(self, xp: Any, name: str) -> None:
        super().__init__(xp)
        self.name = name


def native_ops(xp: Any, device: Any) -> ArrayOps | None:
    """Factory registered with :func:`zemosaic_xp.core.ops.register_ops`."""
    if is_numpy_namespace(xp):
        return NumpyOps(xp)
    if is_torch_namespace(xp):
        kind = getattr(device, "type", None if device is None else str(device))
        if kind in (None, "cpu"):
            return TorchCpuOps(xp)
        return GpuOps(xp, f"torch:{kind}")
    if is_cupy_namespace(xp):
        return GpuOps(xp, "cupy")
    return None
