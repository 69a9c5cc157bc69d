"""Frame-global statistics estimated on a regular sub-sample of every frame.

Normalisation and noise weights need statistics of whole frames (percentiles, a
clipped noise σ). They are computed once per stack, before any band is processed,
from :meth:`FrameStack.samples` (shape ``(N, C, M)``), so every band sees the same
gains, offsets and weights and the result does not depend on the band size.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device

from .nanstats import median_sorted, quantile_sorted, sort_valid
from .pairfit import paired_fit
from .reject import kappa_sigma_ranges

__all__ = ["FrameSamples"]

Array = Any


class FrameSamples:
    """Sorted per-frame, per-channel samples with cached order statistics.

    Parameters
    ----------
    samples : array, shape (N, C, M), float32
        ``M`` samples of each of ``N`` frames and ``C`` channels
        (:meth:`~.frames.FrameStack.samples`); NaN = no data.
    xp : namespace
        The array namespace of ``samples``; every statistic is returned in it, on the
        device of ``samples``.
    """

    def __init__(self, samples: Array, *, xp: Any) -> None:
        self.xp = xp
        self.samples = samples
        self.n_frames, self.channels, self.size = (int(v) for v in samples.shape)
        self._sorted_rows: tuple[Array, Array] | None = None

    @property
    def _sorted(self) -> Array:
        return self._sort()[0]

    @property
    def _n_valid(self) -> Array:
        return self._sort()[1]

    def _sort(self) -> tuple[Array, Array]:
        # Sorted on first use: the identity normalisation and equal weights need none.
        if self._sorted_rows is None:
            flat = self.xp.reshape(self.samples, (self.n_frames * self.channels, self.size))
            self._sorted_rows = sort_valid(flat, xp=self.xp)
        return self._sorted_rows

    def quantile(self, q: float) -> Array:
        """Return the quantile ``q`` of each frame and channel.

        Parameters
        ----------
        q : float
            Probability in [0, 1]; linear interpolation between order statistics.

        Returns
        -------
        array, shape (N, C), float32
            NaN, without a warning, for a frame channel without valid samples.
        """
        value = quantile_sorted(self._sorted, self._n_valid, q, xp=self.xp)
        return self.xp.reshape(value, (self.n_frames, self.channels))

    def clipped_std(self, *, kappa: float = 3.0, max_iters: int = 5) -> Array:
        """Return the noise σ of each frame and channel after median-centred κ-σ clipping.

        The same clipping as ``astropy.stats.sigma_clipped_stats(sigma=kappa,
        maxiters=max_iters)``.

        Parameters
        ----------
        kappa : float
            Clip threshold below and above the median, in σ.
        max_iters : int
            Clipping iterations at most.

        Returns
        -------
        array, shape (N, C), float32
            Population std of the survivors, in the samples' units; NaN, without a
            warning, for a frame channel without valid samples.
        """
        xp = self.xp
        s, n = self._sorted, self._n_valid
        lo, hi, _ = kappa_sigma_ranges(s, n, kappa_low=kappa, kappa_high=kappa,
                                       max_iters=max_iters, xp=xp)
        count = hi - lo
        dev = _device(s)
        idx = xp.arange(s.shape[-1], device=dev)
        inside = (idx[None, :] >= lo) & (idx[None, :] < hi)
        zero = xp.zeros((), dtype=xp.float64, device=dev)
        vals = xp.where(inside, xp.astype(s, xp.float64), zero)
        cnt = xp.astype(xp.where(count > 0, count, xp.ones_like(count)), xp.float64)
        mean = xp.sum(vals, axis=-1, keepdims=True) / cnt
        resid = xp.where(inside, vals - mean, zero)
        var = xp.sum(resid * resid, axis=-1, keepdims=True) / cnt
        std = xp.where(count > 0, xp.sqrt(var), xp.asarray(xp.nan, dtype=xp.float64, device=dev))
        return xp.reshape(xp.astype(std, xp.float32), (self.n_frames, self.channels))

    def luminance_quantile(self, q: float) -> Array:
        """Return the quantile ``q`` of the luminance of each frame.

        Luminance is 0.299 R + 0.587 G + 0.114 B for 3 channels, the plane itself for
        one channel, and the channel mean otherwise.

        Parameters
        ----------
        q : float
            Probability in [0, 1]; linear interpolation between order statistics.

        Returns
        -------
        array, shape (N,), float32
            NaN, without a warning, for a frame without a pixel valid in every
            channel.
        """
        xp = self.xp
        x = self.samples
        if self.channels == 3:
            lum = 0.299 * x[:, 0, :] + 0.587 * x[:, 1, :] + 0.114 * x[:, 2, :]
        elif self.channels == 1:
            lum = x[:, 0, :]
        else:
            lum = xp.mean(x, axis=1)
        s, n = sort_valid(lum, xp=xp)
        return quantile_sorted(s, n, q, xp=xp)

    def paired_fit(self, reference: int, start_gain: Array, start_offset: Array) -> tuple[Array, Array, Array]:
        """Fit every frame onto frame ``reference``, sample by sample (:mod:`.pairfit`).

        Parameters
        ----------
        reference : int
            Index of the reference frame (the same positions in every frame).
        start_gain, start_offset : array, shape (N, C)
            Where each fit starts; kept for a frame channel the fit rejects.

        Returns
        -------
        gain, offset : array, shape (N, C), float64
            ``samples[reference] ≈ gain·samples[i] + offset``; the start where the
            paired fit was not used.
        ok : array, shape (N, C), bool
            The paired fit was used.
        """
        xp = self.xp
        shape = (self.n_frames, self.channels)
        rows = (self.n_frames * self.channels, self.size)
        x = xp.reshape(self.samples, rows)
        ref = xp.reshape(xp.broadcast_to(self.samples[reference:reference + 1, ...],
                                         (self.n_frames, self.channels, self.size)), rows)
        gain, offset, ok = paired_fit(x, ref, xp.reshape(start_gain, (rows[0],)),
                                      xp.reshape(start_offset, (rows[0],)), xp=xp)
        return xp.reshape(gain, shape), xp.reshape(offset, shape), xp.reshape(ok, shape)

    # --- robust location / scale (Siril-style normalisations) -------------------
    def median(self) -> Array:
        """Return the median of each frame and channel.

        Returns
        -------
        array, shape (N, C), float32
            NaN, without a warning, for a frame channel without valid samples.
        """
        return self.quantile(0.5)

    def mad(self) -> Array:
        """Return the median absolute deviation from the median, per frame and channel.

        Returns
        -------
        array, shape (N, C), float32
            Raw MAD (not scaled by 1.4826); NaN, without a warning, for a frame
            channel without valid samples.
        """
        xp = self.xp
        med = self.median()
        dev = xp.abs(self.samples - med[..., None])
        flat = xp.reshape(dev, (self.n_frames * self.channels, self.size))
        s, n = sort_valid(flat, xp=xp)
        return xp.reshape(median_sorted(s, n, xp=xp), (self.n_frames, self.channels))

    def pooled_median(self) -> Array:
        """Return the median of each frame over all its channels pooled.

        Returns
        -------
        array, shape (N,), float32
            NaN, without a warning, for a frame without valid samples.
        """
        xp = self.xp
        flat = xp.reshape(self.samples, (self.n_frames, self.channels * self.size))
        s, n = sort_valid(flat, xp=xp)
        return median_sorted(s, n, xp=xp)
