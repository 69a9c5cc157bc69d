"""Trail masks (io/trails.py): trails found in one frame, stars and hits left as they were."""

from __future__ import annotations

import numpy as np
import pytest

from tests.io.test_cosmic import SKY, _observe, _star_field
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.io.cosmic import _block_sky, cosmic_mask
from zemosaic_xp.io.trails import trail_mask


def _trail(shape, *, angle_deg, width=1.5, offset=0.0):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    t = np.deg2rad(angle_deg)
    dist = np.abs((xx - w / 2) * np.sin(t) - (yy - h / 2) * np.cos(t) - offset)
    return dist <= width


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 90.0, 133.0])
@pytest.mark.parametrize("amp", [300.0, 4000.0])
def test_trail_found_on_a_star_field_and_no_star_core_flagged(angle, amp):
    sky, core, _ = _star_field(seed=11)
    rng = np.random.default_rng(4)
    frame, _, clean = _observe(sky, rng)
    trail = _trail(frame.shape, angle_deg=angle)
    frame = np.minimum(frame + amp * trail, 50000.0).astype(np.float32)
    mask = trail_mask(frame, *_block_sky(frame))
    on_sky = trail & (sky < SKY + 50)
    assert (mask & on_sky).sum() >= 0.99 * on_sky.sum()  # 300 ADU ≈ 9 σ: every pixel on the sky
    # Off the trail (beyond its ±2.5 px band, one-pixel growth and a fraction of a degree) nothing.
    near = _trail(frame.shape, angle_deg=angle, width=5.0)
    assert not (mask & ~near).any()
    assert not trail_mask(clean, *_block_sky(clean)).any()
    assert not (cosmic_mask(clean) & core).any()


def test_short_or_faint_features_are_not_trails():
    rng = np.random.default_rng(5)
    frame = (SKY + 32.0 * rng.standard_normal((128, 128))).astype(np.float32)
    frame[40:43, 20:50] += 3000.0  # a 30-px streak: shorter than 40 px
    frame[80:83, 10:120] += 40.0  # 1.2 σ: below the 3 σ threshold
    frame[100:110, 60:70] += 2000.0  # a square blob, not thin
    assert not trail_mask(frame, *_block_sky(frame)).any()
    frame[80:83, 10:120] += 200.0
    mask = trail_mask(frame, *_block_sky(frame))
    assert mask[80:83, 10:120].all() and not mask[:70].any()


def test_nan_and_flat_frames():
    frame = np.full((96, 96), np.nan, np.float32)
    assert not trail_mask(frame, *_block_sky(frame)).any()
    frame = np.full((96, 96), SKY, np.float32)
    frame[50:52, :] += 500.0
    frame[:, 10] = np.nan
    mask = cosmic_mask(frame)
    assert not mask[:, 10].any()


def test_stack_of_four_with_a_trail_masked_by_cosmic_auto():
    # Depth 4: gesd rejects a lone hit but trail pixels where it crosses faint stars, its
    # rim and a hit of another frame on the trail need not be; the mask removes the trail.
    sky, _, _ = _star_field(shape=(128, 128), n_stars=60, seed=12)
    rng = np.random.default_rng(6)
    frames = np.stack([_observe(sky, rng)[0] for _ in range(4)])
    trail = _trail(sky.shape, angle_deg=31.0)
    frames[2] += 4000.0 * trail
    frames[1][trail & (np.arange(128)[None, :] % 9 == 0)] += 3000.0  # hits of frame 1 on the trail
    config = StackConfig.plain(reject="auto")
    plain = np.asarray(stack(frames, config=config).image)
    masked = np.asarray(stack(frames, config=config.replace(cosmic="auto")).image)
    truth_mean = sky
    limit = 5 * 32.0 / 2
    sky_px = sky < SKY + 20
    assert np.sum((np.abs(plain - truth_mean) > limit) & sky_px) > 0  # the test means something
    assert np.sum((np.abs(masked - truth_mean) > limit) & sky_px) == 0
