"""Quality of a stacked image against the case's truth (``benchmarks/peers.py``).

Both tools' outputs are read with astropy. Siril 1.0 writes its stacks of 16-bit frames
as float32 scaled to [0, 1] (ADU / 65535); :func:`read_stack` detects that (a float
image whose maximum is ≤ 2, impossible for our ~1000 ADU sky in ADU) and multiplies by
65535, and says so in its return value.

Metrics (σ = the frames' noise, N = frame count):

- **outliers left**: pixels where at least one frame had an outlier and
  |result − clean mean| > 5·σ/√N;
- **noise**: RMS of (result − clean mean) over the pixels where no frame had an outlier,
  ADU; 0 for a rejection that keeps every clean sample and a mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["SIRIL_UNIT_SCALE", "read_stack", "quality"]

#: Siril stores a 16-bit stack as ADU / 65535 in float32.
SIRIL_UNIT_SCALE = 65535.0
_UNIT_MAX = 2.0


def read_stack(path: Path) -> tuple[np.ndarray, float, dict]:
    """The image of a stack in ADU, the factor applied to get there, and a few header cards.

    Parameters
    ----------
    path : Path
        A FITS file whose primary HDU holds a 2-D image (or a 1-plane cube).

    Returns
    -------
    image : ndarray, shape (H, W), float64
        In ADU.
    scale : float
        1, or :data:`SIRIL_UNIT_SCALE` when the file held values in [0, 1].
    cards : dict
        ``ZMT_REJP`` (our rejected %) and ``ZMT_BACK`` (our backend) when present.

    Raises
    ------
    ValueError
        The primary HDU is not a single image plane.
    """
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
        header = hdul[0].header
        cards = {key: header[key] for key in ("ZMT_REJP", "ZMT_BACK") if key in header}
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        msg = f"'{path}' holds an image of shape {data.shape}; expected one (H, W) plane"
        raise ValueError(msg)
    scale = SIRIL_UNIT_SCALE if np.nanmax(data) <= _UNIT_MAX else 1.0
    return data * scale, scale, cards


def quality(image: np.ndarray, clean_mean: np.ndarray, outlier_count: np.ndarray, *,
            sigma_adu: float, n_frames: int) -> dict:
    """Outliers left and noise of ``image`` against the clean mean.

    Parameters
    ----------
    image : ndarray, shape (H, W), float
        The stack, ADU.
    clean_mean : ndarray, shape (H, W), float64
        Mean of the frames before the outliers were added, ADU.
    outlier_count : ndarray, shape (H, W), integer
        Frames with an outlier at each pixel.
    sigma_adu : float
        Noise of one frame, ADU.
    n_frames : int
        Frames stacked.

    Returns
    -------
    dict
        ``outliers_left`` (int), ``outlier_pixels`` (int), ``threshold_adu``,
        ``noise_adu`` (RMS over clean pixels), ``bias_adu`` (mean difference there) and
        ``nonfinite`` (NaN or inf pixels, counted as outliers left where hit and
        excluded from the noise).
    """
    if image.shape != clean_mean.shape:
        msg = f"stack has shape {image.shape}; expected {clean_mean.shape} like the frames"
        raise ValueError(msg)
    threshold = 5.0 * sigma_adu / np.sqrt(n_frames)
    diff = image - clean_mean
    finite = np.isfinite(diff)
    hit = outlier_count > 0
    left = hit & (~finite | (np.abs(np.where(finite, diff, 0.0)) > threshold))
    clean = ~hit & finite
    residual = diff[clean]
    return {"outliers_left": int(np.count_nonzero(left)), "outlier_pixels": int(np.count_nonzero(hit)),
            "threshold_adu": float(threshold),
            "noise_adu": float(np.sqrt(np.mean(residual**2))) if residual.size else float("nan"),
            "bias_adu": float(np.mean(residual)) if residual.size else float("nan"),
            "nonfinite": int(np.count_nonzero(~finite))}
