"""The final mosaic's optional steps (mosaic/finish.py): RGB equalisation, then DBE."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp.mosaic.assemble import MosaicResult
from zemosaic_xp.mosaic.finish import FINAL_RGB_GAIN_CLIP, finish_cards, finish_mosaic


def _mosaic(channels=3, shape=(120, 150), medians=(1000.0, 900.0, 1150.0), seed=0):
    rng = np.random.default_rng(seed)
    image = np.stack([m + rng.normal(0, 5, shape) for m in medians[:channels]], axis=-1).astype(np.float32)
    image[:10, :20] = np.nan
    weight = np.where(np.isfinite(image), 1.0, 0.0).astype(np.float32)
    coverage = np.isfinite(image).any(axis=2).astype(np.float32)
    return MosaicResult(image, weight, coverage, {}, {}, {})


def test_nothing_asked_nothing_done():
    m = _mosaic()
    before = m.image.copy()
    done = finish_mosaic(m)
    assert done == {"rgb_equalization": None, "dbe": None} and finish_cards(done) == []
    np.testing.assert_array_equal(m.image, before)


def test_rgb_gains_known_answer_and_clip():
    m = _mosaic()
    done = finish_mosaic(m, rgb_equalize=True)
    info = done["rgb_equalization"]
    # target = median of the channel medians (1000); raw gains 1, 1000/900, 1000/1150
    assert info["applied"] and info["target_median"] == pytest.approx(1000.0, rel=2e-3)
    np.testing.assert_allclose(info["raw_gains"], [1.0, 1000 / 900, 1000 / 1150], rtol=3e-3)
    np.testing.assert_allclose(info["clipped_gains"], info["raw_gains"], rtol=1e-12)  # inside [0.80, 1.25]
    assert np.all(np.isnan(m.image[:10, :20])) and m.info["rgb_equalization"] is info
    tight = _mosaic()
    clipped = finish_mosaic(tight, rgb_equalize=True, rgb_gain_clip=(0.95, 1.05))["rgb_equalization"]
    assert clipped["gain_g"] == 1.05 and clipped["gain_b"] == 0.95
    free = finish_mosaic(_mosaic(medians=(1000.0, 500.0, 1000.0)), rgb_equalize=True, rgb_gain_clip=None)
    assert free["rgb_equalization"]["gain_g"] == pytest.approx(2.0, rel=3e-3)  # not clipped
    assert FINAL_RGB_GAIN_CLIP == (0.80, 1.25)
    cards = dict((k, v) for k, v, _ in finish_cards(done))
    assert cards["RGBEQ"] is True and cards["RGBGAING"] == pytest.approx(info["gain_g"])


def test_mono_is_recorded_not_equalised():
    m = _mosaic(channels=1)
    before = m.image.copy()
    info = finish_mosaic(m, rgb_equalize=True)["rgb_equalization"]
    assert info["decision"] == "non_rgb" and not info["applied"]
    np.testing.assert_array_equal(m.image, before)


def test_dbe_after_rgb_keeps_no_data_and_maps():
    pytest.importorskip("photutils")
    m = _mosaic()
    yy, xx = np.mgrid[0:120, 0:150]
    m.image += (0.5 * xx + 0.2 * yy)[..., None].astype(np.float32)
    weight, coverage = m.weight.copy(), m.coverage.copy()
    lines = []
    done = finish_mosaic(m, rgb_equalize=True, dbe=True, dbe_strength="high",
                         emit=lambda fmt, *a: lines.append(fmt % a))
    assert done["dbe"]["applied"] and done["dbe"]["strength"] == "strong"
    assert np.all(np.isnan(m.image[:10, :20])) and np.all(np.isfinite(m.image[10:]))
    np.testing.assert_array_equal(m.weight, weight)
    np.testing.assert_array_equal(m.coverage, coverage)
    # the 0.5 px⁻¹ ramp (75 ADU over the width) is gone to well under the noise (5 ADU)
    assert np.nanstd(np.nanmedian(m.image[10:], axis=0), axis=0).max() < 2.0
    assert [line.split(" final")[0] for line in lines] == ["[GRID][RGB-EQ]", "[GRID][DBE]"]  # this order
    cards = dict((k, v) for k, v, _ in finish_cards(done))
    assert cards["DBE"] is True and cards["DBESTR"] == "strong"
