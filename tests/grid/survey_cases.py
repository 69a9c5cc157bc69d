"""Shared small surveys for the grid run tests (``make_survey`` with tiny frames)."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from zemosaic_xp.synthetic import make_survey

#: Six tiles of ~64 px on a 12-frame survey of 64x64 frames: a full run takes about a second.
SMALL_CONFIG = {"grid_size_factor": 1.0, "batch_overlap_pct": 20}


def small_survey(folder, *, seed: int = 3, **kw):
    params = {"n_frames": 12, "frame_shape": (64, 64), "seed": seed}
    params.update(kw)
    return make_survey(folder, **params)


def mosaic_data(path) -> np.ndarray:
    with fits.open(path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32)


class Recorder:
    """A ``progress_callback`` that records every call."""

    def __init__(self, on_call=None):
        self.calls = []
        self.on_call = on_call

    def __call__(self, key, progress=None, level=None, **kw):
        self.calls.append((key, progress, level, kw))
        if self.on_call is not None:
            self.on_call(key, progress, level, kw)

    def keys(self):
        return [c[0] for c in self.calls]

    def stats(self):
        return [c[3] for c in self.calls if c[0] == "STATS_UPDATE"]

    def messages(self):
        return [c[0] for c in self.calls if isinstance(c[0], str) and c[0].startswith("[GRID]")]
