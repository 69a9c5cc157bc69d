"""Per-frame cosmic-ray masks (io/cosmic.py): hits found, stars untouched, NaN handled.

The dense star field (:func:`_star_field`) has one star per ~200 px², FWHM 2.5–3 px,
peaks log-uniform from 10 σ to far beyond the saturation level at which every frame
is clipped (flat-topped saturated stars), and single-pixel, 2-pixel (straight and
diagonal) and 3-pixel hits.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_on, host, on
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.io.cosmic import cosmic_mask, mask_cosmics, masked_sources

SKY, NOISE_RN, SATURATION = 1000.0, 5.0, 50000.0


def _star_field(shape=(256, 256), *, fwhm=3.0, n_stars=320, seed=0):
    """Noiseless sky with Gaussian stars, the star-core mask, and the star centres/peaks."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.arange(h)[:, None], np.arange(w)[None, :]
    sky = np.full(shape, SKY)
    sigma = fwhm / 2.3548
    ys, xs = rng.uniform(0, h, n_stars), rng.uniform(0, w, n_stars)
    peaks = np.exp(rng.uniform(np.log(320.0), np.log(500000.0), n_stars))
    core = np.zeros(shape, dtype=bool)
    r = int(np.ceil(5 * sigma)) + 1
    for y, x, p in zip(ys, xs, peaks):
        y0, y1, x0, x1 = max(0, int(y) - r), min(h, int(y) + r + 1), max(0, int(x) - r), min(w, int(x) + r + 1)
        d2 = (yy[y0:y1] - y) ** 2 + (xx[:, x0:x1] - x) ** 2
        sky[y0:y1, x0:x1] += p * np.exp(-d2 / (2 * sigma * sigma))
        core[y0:y1, x0:x1] |= d2 <= fwhm**2
    return sky, core, np.stack([ys, xs, peaks], axis=1)


_SHAPES = ([(0, 0)], [(0, 0), (0, 1)], [(0, 0), (1, 1)], [(0, 0), (1, 0), (2, 0)])


def _observe(sky, rng, *, hits=0):
    """One noisy, saturated frame of ``sky`` with ``hits`` cosmic rays (1 px, 2 px, diagonal, 3-px streak)."""
    clean = sky + np.sqrt(sky + NOISE_RN**2) * rng.standard_normal(sky.shape)
    frame = clean.copy()
    truth = np.zeros(sky.shape, dtype=bool)
    h, w = sky.shape
    for k in range(hits):
        y, x = int(rng.integers(1, h - 2)), int(rng.integers(1, w - 2))
        amp = float(np.exp(rng.uniform(np.log(600.0), np.log(30000.0))))
        for dy, dx in _SHAPES[k % len(_SHAPES)]:
            frame[y + dy, x + dx] += amp
            truth[y + dy, x + dx] = True
    return np.minimum(frame, SATURATION).astype(np.float32), truth, np.minimum(clean, SATURATION).astype(np.float32)


def test_known_hits_on_a_flat_sky_are_found_and_nothing_else():
    # 1-px, 2-px and 3-px streak hits of 300 ADU and more on a 1000 ± 32 ADU sky: all of
    # them, no other pixel. A 2×2 blob looks like a 2-px star to the line test: not a hit.
    rng = np.random.default_rng(1)
    frame = (SKY + 32.0 * rng.standard_normal((128, 128))).astype(np.float32)
    frame[20, 30] += 300.0
    frame[60, 60:62] += 2000.0
    frame[80:83, 40] += 1500.0
    expected = np.zeros(frame.shape, dtype=bool)
    expected[20, 30] = True
    expected[60, 60:62] = True
    expected[80:83, 40] = True
    np.testing.assert_array_equal(cosmic_mask(frame), expected)
    frame[100:102, 90:92] += 5000.0
    np.testing.assert_array_equal(cosmic_mask(frame), expected)


@pytest.mark.parametrize("fwhm", [2.5, 3.0, 4.0])
def test_dense_star_field_no_star_core_flagged_and_hits_found(fwhm):
    sky, core, _ = _star_field(fwhm=fwhm, seed=int(fwhm * 10))
    rng = np.random.default_rng(2)
    frame, truth, clean = _observe(sky, rng, hits=120)
    mask = cosmic_mask(frame)
    assert not (mask & core & ~truth).any()  # no star-core pixel, saturated stars included
    assert (mask & ~truth).sum() <= 10  # a few noise pixels beside a hit at most
    on_sky = truth & (sky < SKY + 50)
    assert (mask & on_sky).sum() >= 0.97 * on_sky.sum()
    assert not (cosmic_mask(clean) & core).any()


def test_star_photometry_unchanged_by_masking():
    # Three frames. Stars brighter than 50 σ without a hit near them: the peak of the stack
    # with cosmic="always" is the hit-free stack's exactly (no star pixel masked). Stars
    # with a hit in their 5×5 box: within 1 % for most (a faint hit on a bright star is
    # not sharp enough to be found, and stays for the rejection).
    sky, core, stars = _star_field(seed=7)
    rng = np.random.default_rng(3)
    observed = [_observe(sky, rng, hits=60) for _ in range(3)]
    frames = np.stack([o[0] for o in observed])
    clean = np.stack([o[2] for o in observed])
    hit_any = np.any([o[1] for o in observed], axis=0)
    config = StackConfig.plain()
    masked = np.asarray(stack(frames, config=config.replace(cosmic="always")).image)
    reference = np.asarray(stack(clean, config=config).image)
    h, w = sky.shape
    quiet = hit = hit_ok = 0
    for y, x, peak in stars:
        yi, xi = int(round(y)), int(round(x))
        if peak < 50 * 32 or not (2 <= yi < h - 2 and 2 <= xi < w - 2):
            continue
        box = (slice(yi - 2, yi + 3), slice(xi - 2, xi + 3))
        assert np.isfinite(masked[box]).all()
        ratio = np.nanmax(masked[box]) / np.nanmax(reference[box])
        if not hit_any[box].any():
            assert ratio == 1.0
            quiet += 1
        else:
            hit += 1
            hit_ok += abs(ratio - 1.0) <= 0.01
    assert quiet > 50 and hit > 3
    assert hit_ok >= 0.75 * hit


def test_nan_pixels_are_never_hits_and_an_all_nan_frame_has_none():
    rng = np.random.default_rng(4)
    frame = (SKY + 32.0 * rng.standard_normal((64, 64))).astype(np.float32)
    frame[10:20, 10:20] = np.nan
    frame[30, 30] += 5000.0
    frame[9, 15] += 5000.0  # a hit beside the missing area: its neighbours count as bright
    mask = cosmic_mask(frame)
    assert not mask[np.isnan(frame)].any()
    assert mask[30, 30]
    assert not cosmic_mask(np.full((32, 32), np.nan, dtype=np.float32)).any()
    assert not cosmic_mask(np.full((32, 32), 7.0, dtype=np.float32)).any()  # no noise: nothing stands out


def test_colour_frames_share_one_mask_of_the_channel_sum():
    rng = np.random.default_rng(5)
    mono = (SKY + 32.0 * rng.standard_normal((64, 64))).astype(np.float32)
    mono[40, 41] += 3000.0
    rgb = np.stack([mono, 0.9 * mono, 0.75 * mono], axis=-1)
    np.testing.assert_array_equal(cosmic_mask(rgb), cosmic_mask(mono))
    masked, info = mask_cosmics(rgb[None], mode="always")
    assert np.isnan(masked[0, 40, 41]).all() and info["cosmic_masked_px"] == 1


def test_mask_cosmics_auto_touches_only_shallow_pixels():
    # Six frames; frames 3-5 have no data on the left half, so depth is 3 there and 6 on the right.
    rng = np.random.default_rng(6)
    frames = (SKY + 32.0 * rng.standard_normal((6, 64, 64))).astype(np.float32)
    frames[3:, :, :32] = np.nan
    frames[0, 10, 10] += 4000.0   # shallow: masked
    frames[0, 10, 50] += 4000.0   # deep: left to the rejection
    masked, info = mask_cosmics(frames, mode="auto", min_depth=5)
    assert np.isnan(masked[0, 10, 10]) and masked[0, 10, 50] == frames[0, 10, 50]
    assert info["cosmic_masked_px"] == 1
    assert np.isnan(mask_cosmics(frames, mode="always")[0][0, 10, 50])
    same, info = mask_cosmics(frames, mode="off")
    assert same is frames and info["cosmic_masked_px"] == 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`cosmic` must be one of"):
        mask_cosmics(np.zeros((2, 4, 4)), mode="on")
    with pytest.raises(ValueError, match="`method` must be one of"):
        cosmic_mask(np.zeros((4, 4)), method="median")
    with pytest.raises(ValueError, match=r"`frame` has shape \(4,\)"):
        cosmic_mask(np.zeros(4))
    with pytest.raises(ValueError, match="`cosmic` must be one of"):
        StackConfig(cosmic="yes")
    with pytest.raises(ValueError, match="`cosmic_min_depth` must be an integer >= 1"):
        StackConfig(cosmic_min_depth=0)


def test_zemosaic_keys_set_the_fields():
    config = StackConfig.from_dict({"stacking_cosmic_mode": "auto", "stacking_cosmic_min_depth": 7,
                                    "stacking_cosmic_method": "lacosmic"})
    assert (config.cosmic, config.cosmic_min_depth, config.cosmic_method) == ("auto", 7, "lacosmic")
    assert StackConfig.from_dict(config.to_dict(zemosaic=True)) == config


def _three_frames_one_hit():
    rng = np.random.default_rng(8)
    frames = (SKY + 10.0 * rng.standard_normal((3, 48, 40))).astype(np.float32)
    frames[0, 20, 20] += 3000.0
    return frames


def test_stack_at_n3_removes_a_hit_no_rejection_can(backend):
    # N = 3: min_survivors keeps every sample, so without masks the hit adds 1000 ADU to the mean.
    frames = _three_frames_one_hit()
    config = StackConfig.plain()
    plain = host(stack(on(backend, frames), config=config).image)
    assert plain[20, 20] > SKY + 900
    result = stack(on(backend, frames), config=config.replace(cosmic="auto"))
    assert_on(result.image, backend)
    image = host(result.image)
    assert image[20, 20] == pytest.approx(float(np.mean(frames[1:, 20, 20])), rel=1e-6)
    assert int(host(result.coverage)[20, 20]) == 2 and result.stats["cosmic_masked_px"] == 1
    others = np.ones(image.shape, dtype=bool)
    others[20, 20] = False
    np.testing.assert_array_equal(image[others], plain[others])


def test_stack_with_masks_does_not_depend_on_the_band_size():
    frames = _three_frames_one_hit()
    config = StackConfig(cosmic="always")
    a = stack(frames, config=config, memory_budget_bytes=4096)
    b = stack(frames, config=config, memory_budget_bytes=1 << 26)
    for name in ("image", "coverage", "weight_sum", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))


def test_master_tile_masks_like_stack():
    from zemosaic_xp.classic import stack_master_tile

    frames = _three_frames_one_hit()
    config = StackConfig.plain(cosmic="auto")
    tile = stack_master_tile(list(frames), config)
    np.testing.assert_array_equal(np.asarray(tile.image), np.asarray(stack(frames, config=config).image))
    assert tile.stats["cosmic_masked_px"] == 1
    wrapped, info = masked_sources([object()] * 5, mode="auto", min_depth=5)
    assert info["cosmic_frames_searched"] == 0 and len(wrapped) == 5  # deep enough: untouched


def test_lacosmic_finds_lone_hits():
    pytest.importorskip("astroscrappy", reason="the [cosmic] extra (astroscrappy) is not installed")
    rng = np.random.default_rng(9)
    frame = (SKY + 32.0 * rng.standard_normal((96, 96))).astype(np.float32)
    frame[[10, 50, 80], [20, 60, 30]] += 3000.0
    mask = cosmic_mask(frame, method="lacosmic")
    assert mask[[10, 50, 80], [20, 60, 30]].all()
    assert mask.sum() <= 6  # astroscrappy grows its hits onto bright neighbours
