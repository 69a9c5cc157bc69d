"""synthetic.make_stack: reproducible, with truth and outlier positions."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp.synthetic import make_stack


def test_reproducible_and_seed_dependent():
    a, b = make_stack(n_frames=4, shape=(32, 32), seed=5), make_stack(n_frames=4, shape=(32, 32), seed=5)
    np.testing.assert_array_equal(a.frames, b.frames)
    c = make_stack(n_frames=4, shape=(32, 32), seed=6)
    assert not np.array_equal(np.nan_to_num(a.frames), np.nan_to_num(c.frames))


def test_shapes_truth_and_outliers():
    s = make_stack(n_frames=6, shape=(40, 30), seed=1, rgb=True, trails=1, cosmic_rays_per_frame=5)
    assert s.frames.shape == (6, 40, 30, 3) and s.frames.dtype == np.float32
    assert s.truth.shape == (40, 30, 3)
    assert s.outliers.shape == (6, 40, 30) and s.outliers.sum() >= 6 * 4
    y0, y1, x0, x1 = s.nan_box
    assert np.all(np.isnan(s.frames[s.nan_frame, y0:y1, x0:x1]))
    assert np.isfinite(s.frames[0]).all()
    assert s.gains[0] == 1.0 and s.offsets[0] == 0.0


def test_frame_model_matches_truth_where_clean():
    s = make_stack(n_frames=64, shape=(32, 32), seed=2, cosmic_rays_per_frame=0, trails=0, nan_region=False)
    undone = (s.frames - s.offsets[:, None, None]) / s.gains[:, None, None]
    residual = undone.mean(axis=0) - s.truth
    assert abs(residual.mean()) < 1.0
    assert residual.std() < 3 * s.noise_sigma[0] / np.sqrt(64) * 3


def test_rejects_zero_frames():
    with pytest.raises(ValueError, match="n_frames"):
        make_stack(n_frames=0)
