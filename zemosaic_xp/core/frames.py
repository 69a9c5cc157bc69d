"""In-memory frame stacks: validation, row bands in samples-last layout, sub-samples.

A stack arrives as one array ``(N, H, W)`` / ``(N, H, W, C)`` or as a sequence of
``(H, W)`` / ``(H, W, C)`` frames. :class:`FrameStack` checks it once and then hands
out what the pipeline needs:

- :meth:`FrameStack.band` — rows ``[r0, r1)`` of every frame as one float32 array of
  shape ``(h, W, C, N)``: the frame axis last and contiguous, because sorting along
  the contiguous last axis is several times faster than along axis 0 on CPUs
  (``reference/arrayapi.md`` §7) and costs nothing extra on GPUs;
- :meth:`FrameStack.band_source` — the frames-first array holding a band's rows, as
  stored, for native band stackers (``ArrayOps.band_stacker``) that read the frames
  themselves;
- :meth:`FrameStack.samples` — a regular sub-sample of each frame, ``(N, C, M)``,
  from which frame-global statistics (normalisation, noise weights) are estimated,
  so that results never depend on how rows are banded.

Non-finite values (NaN, ±inf) become NaN ("no data") on the way out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as _device

from .ops import ArrayOps, ops_for

__all__ = ["FrameStack", "finite_or_nan"]

Array = Any


def finite_or_nan(x: Array, xp: Any) -> Array:
    """Return ``x`` as float32 with every non-finite value replaced by NaN.

    Parameters
    ----------
    x : array, any shape, real
        Samples; integers and other float dtypes are converted.
    xp : namespace
        The array namespace of ``x``.

    Returns
    -------
    array, shape of ``x``, float32
        A new array on the device of ``x``: NaN ("no data") where ``x`` is NaN or ±inf.
    """
    if not (xp.isdtype(x.dtype, "real floating") and x.dtype == xp.float32):
        x = xp.astype(x, xp.float32)
    nan = xp.asarray(xp.nan, dtype=xp.float32, device=_device(x))
    return xp.where(xp.isfinite(x), x, nan)


def _check_dtype(x: Array, xp: Any, where: str) -> None:
    if not xp.isdtype(x.dtype, ("real floating", "integral")) or xp.isdtype(x.dtype, "bool"):
        msg = f"{where} has dtype {x.dtype}; expected real floating point or integer data (e.g. float32, uint16)"
        raise TypeError(msg)


class FrameStack:
    """A validated stack of aligned frames held in memory.

    Parameters
    ----------
    frames : array, shape (N, H, W) or (N, H, W, C); or sequence of (H, W[, C]) arrays
        All frames on one backend and device, same shape. C is 1 or 3 (any C >= 1 is
        accepted). Integer data is converted to float32 band by band.
    name : str
        Argument name used in error messages.

    Attributes
    ----------
    xp : namespace
        The frames' array namespace.
    device : object
        The frames' device.
    n_frames, height, width, channels : int
        ``N``, ``H``, ``W`` and ``C`` (1 for mono frames).
    mono : bool
        True when frames carry no channel axis (results are ``(H, W)``).

    Raises
    ------
    ValueError
        Empty stack, wrong number of dimensions, or frames of different shapes (the
        message names the first offending frame index).
    TypeError
        Non-numeric data, or frames from different array libraries.
    """

    def __init__(self, frames: Array | Sequence[Array], *, name: str = "frames") -> None:
        self.name = name
        if isinstance(frames, (list, tuple)):
            self._init_sequence(list(frames))
        else:
            self._init_array(frames)

    def _init_array(self, frames: Array) -> None:
        try:
            xp = array_namespace(frames)
        except TypeError as exc:
            msg = (f"`{self.name}` must be an array of shape (N, H, W[, C]) or a sequence of "
                   f"(H, W[, C]) frames, got {type(frames).__name__}")
            raise TypeError(msg) from exc
        _check_dtype(frames, xp, f"`{self.name}`")
        if frames.ndim not in (3, 4):
            msg = (f"`{self.name}` has shape {tuple(frames.shape)}; expected (N, H, W) or "
                   f"(N, H, W, C) with frames along axis 0")
            raise ValueError(msg)
        if frames.shape[0] == 0:
            msg = f"`{self.name}` is empty: stacking needs at least one frame"
            raise ValueError(msg)
        self.xp = xp
        self._array = frames
        self._list: list[Array] | None = None
        self.n_frames = int(frames.shape[0])
        self.height, self.width = int(frames.shape[1]), int(frames.shape[2])
        self.mono = frames.ndim == 3
        self.channels = 1 if self.mono else int(frames.shape[3])
        self.device = _device(frames)
        self._check_extent()

    def _init_sequence(self, frames: list[Array]) -> None:
        if not frames:
            msg = f"`{self.name}` is empty: stacking needs at least one frame"
            raise ValueError(msg)
        try:
            xp = array_namespace(*frames)
        except TypeError as exc:
            msg = (f"`{self.name}` must hold arrays of one library (NumPy, CuPy or torch) on one "
                   f"device: {exc}")
            raise TypeError(msg) from exc
        first = frames[0]
        for i, frame in enumerate(frames):
            _check_dtype(frame, xp, f"{self.name}[{i}]")
            if frame.ndim not in (2, 3):
                msg = f"{self.name}[{i}] has shape {tuple(frame.shape)}; expected (H, W) or (H, W, C)"
                raise ValueError(msg)
            if tuple(frame.shape) != tuple(first.shape):
                msg = (f"{self.name}[{i}] has shape {tuple(frame.shape)}; expected "
                       f"{tuple(first.shape)} like {self.name}[0]. Stack frames of one size and "
                       f"channel layout per call.")
                raise ValueError(msg)
        self.xp = xp
        self._array = None
        self._list = frames
        self.n_frames = len(frames)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])
        self.mono = first.ndim == 2
        self.channels = 1 if self.mono else int(first.shape[2])
        self.device = _device(first)
        self._check_extent()

    def _check_extent(self) -> None:
        if self.height == 0 or self.width == 0 or self.channels == 0:
            msg = f"`{self.name}` frames have an empty extent ({self.height}, {self.width}, {self.channels})"
            raise ValueError(msg)

    # ------------------------------------------------------------------ access
    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame, and of the result image.

        Returns
        -------
        tuple of int
            ``(H, W)`` for mono frames, else ``(H, W, C)``.
        """
        return (self.height, self.width) if self.mono else (self.height, self.width, self.channels)

    def frame(self, i: int) -> Array:
        """Return one frame as stored.

        Parameters
        ----------
        i : int
            Frame index, ``0 <= i < N``.

        Returns
        -------
        array, shape (H, W[, C])
            The frame itself (or a view of the stack), its dtype and non-finite values
            untouched, on the stack's device.
        """
        return self._list[i] if self._list is not None else self._array[i, ...]

    def _frame_hwc(self, i: int) -> Array:
        f = self.frame(i)
        return f[..., None] if self.mono else f

    def band_source(self, r0: int, r1: int) -> tuple[Array, int, int]:
        """Find the frames-first array that holds rows ``[r0, r1)``, and where in it.

        Parameters
        ----------
        r0, r1 : int
            The band's rows, ``0 <= r0 < r1 <= H``.

        Returns
        -------
        frames : array, shape (N, ·, W, C)
            The whole stack as stored (mono frames get a channel axis of 1) when it is
            one array, else a stacked copy of the band's rows; dtype and non-finite
            values untouched, on the stack's device.
        a : int
            First row of the band in ``frames``: ``r0``, or 0 for a copy.
        b : int
            End of the band's rows in ``frames``: ``r1``, or ``r1 − r0`` for a copy.
        """
        xp = self.xp
        if self._array is not None:
            src, a, b = self._array, r0, r1
        else:
            src = xp.stack([self.frame(i)[r0:r1, ...] for i in range(self.n_frames)], axis=0)
            a, b = 0, r1 - r0
        return (xp.expand_dims(src, axis=-1) if self.mono else src), a, b

    def band(self, r0: int, r1: int, *, ops: ArrayOps | None = None) -> Array:
        """Copy rows ``[r0, r1)`` of every frame into the samples-last layout.

        One transposing copy (``ops.band_copy``; NumPy writes it with ``copyto``),
        then non-finite values become NaN in that fresh buffer.

        Parameters
        ----------
        r0, r1 : int
            The band's rows, ``0 <= r0 < r1 <= H``.
        ops : ArrayOps, optional
            Fast paths for the copy (default: :func:`~.ops.ops_for` of the stack).

        Returns
        -------
        array, shape (r1 − r0, W, C, N), float32
            A new C-contiguous array on the stack's device; NaN = no data.
        """
        ops = ops_for(self.xp, self.device) if ops is None else ops
        src, a, b = self.band_source(r0, r1)
        return ops.nan_nonfinite(ops.band_copy(self.xp.permute_dims(src[:, a:b, ...], (1, 2, 3, 0))))

    def samples(self, max_samples: int, *, ops: ArrayOps | None = None) -> Array:
        """Take a regular sub-sample of every frame and channel.

        Parameters
        ----------
        max_samples : int
            Most pixels per frame and channel; 0 (or less) takes every pixel.
        ops : ArrayOps, optional
            Fast paths for the copies (default: :func:`~.ops.ops_for` of the stack).

        Returns
        -------
        array, shape (N, C, M), float32
            Every ``step``-th pixel in row-major order, ``step = ceil(H·W /
            max_samples)`` and ``M = ceil(H·W / step)``, on the stack's device;
            NaN = no data.
        """
        xp = self.xp
        ops = ops_for(xp, self.device) if ops is None else ops
        hw = self.height * self.width
        step = 1 if max_samples <= 0 else max(1, math.ceil(hw / max_samples))
        # Frame by frame: a reshape may copy, and a copy of one frame is affordable;
        # each strided sub-sample is made contiguous before stacking (torch stacks
        # strided views slowly).
        rows = [ops.band_copy(xp.permute_dims(xp.reshape(self._frame_hwc(i), (hw, self.channels))[::step, :],
                                              (1, 0)))
                for i in range(self.n_frames)]
        return ops.nan_nonfinite(xp.stack(rows, axis=0))
