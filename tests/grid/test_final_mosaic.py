"""The final mosaic's optional steps in a grid run (issue 16): ZeMosaic's
``final_mosaic_rgb_equalize_enabled``, ``final_mosaic_dbe_*``, ``save_final_as_uint16`` and
``legacy_rgb_cube`` through ``GridConfig`` (fields and ZeMosaic keys), the run's outputs,
and the warnings of the dask cluster path reaching the callback as ``WARN``."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp import run_grid_mode
from zemosaic_xp.grid.cluster import executor_slots, release_worker_caches
from zemosaic_xp.grid.config import GridConfig
from zemosaic_xp.io.fits import read_frame
from zemosaic_xp.io.viewer import to_uint16

from .survey_cases import SMALL_CONFIG, Recorder, small_survey


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("survey"), seed=5)


@pytest.fixture(scope="module")
def rgb_survey(tmp_path_factory):
    return small_survey(tmp_path_factory.mktemp("rgb"), seed=6, rgb=True, frame_shape=(96, 96), n_frames=6)


def test_defaults_and_zemosaic_keys():
    cfg = GridConfig()
    assert (cfg.dbe, cfg.final_rgb_equalize, cfg.save_uint16, cfg.legacy_rgb_cube) == (False,) * 4
    assert cfg.dbe_strength == "normal" and cfg.final_rgb_gain_clip == (0.80, 1.25)
    cfg = GridConfig.from_dict({"final_mosaic_dbe_enabled": "true", "final_mosaic_dbe_strength": "LOW",
                                "final_mosaic_rgb_equalize_enabled": True,
                                "final_mosaic_rgb_equalize_gain_clip": "0.9,1.2", "save_final_as_uint16": 1,
                                "legacy_rgb_cube": True, "grid_rgb_equalize": True})
    assert cfg.dbe and cfg.dbe_strength == "weak" and cfg.final_rgb_equalize
    assert cfg.final_rgb_gain_clip == (0.9, 1.2) and cfg.save_uint16 and cfg.legacy_rgb_cube
    assert cfg.stack.rgb_equalize  # grid_rgb_equalize: the tiles' equalisation
    cfg = GridConfig.from_dict({"final_mosaic_rgb_equalize_clip_enabled": False, "grid_rgb_equalize": False,
                                "poststack_equalize_rgb": True})
    assert cfg.final_rgb_gain_clip is None and not cfg.stack.rgb_equalize


@pytest.mark.parametrize(("kw", "match"), [
    ({"dbe_strength": "extreme"}, "dbe_strength"),
    ({"final_rgb_gain_clip": (1.1, 1.2)}, "final_rgb_gain_clip"),
    ({"final_rgb_gain_clip": (0.9, "x")}, "final_rgb_gain_clip"),
])
def test_bad_fields_name_themselves(kw, match):
    with pytest.raises(ValueError, match=match):
        GridConfig(**kw)


def test_zemosaic_key_errors_name_the_key():
    with pytest.raises(ValueError, match="final_mosaic_dbe_strength"):
        GridConfig.from_dict({"final_mosaic_dbe_strength": "extreme"})
    with pytest.raises(ValueError, match="final_mosaic_dbe_enabled"):
        GridConfig.from_dict({"final_mosaic_dbe_enabled": "maybe"})


def test_no_unknown_key_warning_for_the_final_keys(caplog):
    GridConfig.from_dict({"final_mosaic_dbe_enabled": False, "final_mosaic_rgb_equalize_clip_enabled": True,
                          "legacy_rgb_cube": False, "save_final_as_uint16": False, "grid_rgb_equalize": True})
    assert "unknown" not in caplog.text


def test_dbe_run_subtracts_a_gradient_and_records_it(survey, tmp_path):
    plain = run_grid_mode(survey.folder, tmp_path / "plain", config=SMALL_CONFIG, grid_workers=1)
    cb = Recorder()
    # a 135 x 102 px mosaic: "aggressive" (48-px boxes) is the strength with more than one box
    cfg = dict(SMALL_CONFIG, final_mosaic_dbe_enabled=True, final_mosaic_dbe_strength="aggressive")
    dbe = run_grid_mode(survey.folder, tmp_path / "dbe", cb, config=cfg, grid_workers=1)
    before, after = read_frame(plain.mosaic_path).data[..., 0], read_frame(dbe.mosaic_path).data[..., 0]
    np.testing.assert_array_equal(np.isnan(after), np.isnan(before))  # no data stays no data, nothing added
    removed = before - after
    assert np.nanstd(removed) > 0 and dbe.assembly["dbe"]["applied"]
    with fits.open(dbe.mosaic_path) as hdul:
        assert hdul[0].header["DBE"] is True and hdul[0].header["DBESTR"] == "aggressive"
    assert any("[DBE]" in m and "applied=True" in m for m in cb.messages())
    # the weight and coverage maps are untouched
    np.testing.assert_array_equal(fits.getdata(dbe.coverage_path), fits.getdata(plain.coverage_path))


def test_final_rgb_equalisation(rgb_survey, tmp_path):
    base = dict(SMALL_CONFIG, grid_size_factor=1.5, grid_rgb_equalize=False)
    off = run_grid_mode(rgb_survey.folder, tmp_path / "off", config=base, grid_workers=1)
    on = run_grid_mode(rgb_survey.folder, tmp_path / "on", config=dict(base, final_mosaic_rgb_equalize_enabled=True),
                       grid_workers=1)
    info = on.assembly["rgb_equalization"]
    assert info["applied"] and off.assembly.get("rgb_equalization") is None
    a, b = read_frame(off.mosaic_path).data, read_frame(on.mosaic_path).data
    ratio = np.nanmedian(b / a, axis=(0, 1))
    np.testing.assert_allclose(ratio, [info["gain_r"], info["gain_g"], info["gain_b"]], rtol=1e-5)
    assert np.ptp(np.nanmedian(b, axis=(0, 1))) < np.ptp(np.nanmedian(a, axis=(0, 1)))
    with fits.open(on.mosaic_path) as hdul:
        assert hdul[0].header["RGBEQ"] is True and hdul[0].header["RGBGAINR"] == pytest.approx(info["gain_r"])


def test_legacy_cube_and_uint16_viewer_round_trip(survey, tmp_path):
    plain = run_grid_mode(survey.folder, tmp_path / "plain", config=SMALL_CONFIG, grid_workers=1)
    cfg = dict(SMALL_CONFIG, legacy_rgb_cube=True, save_final_as_uint16=True)
    legacy = run_grid_mode(survey.folder, tmp_path / "legacy", config=cfg, grid_workers=1)
    with fits.open(plain.mosaic_path) as p, fits.open(legacy.mosaic_path) as q:
        assert p[0].data.ndim == 2 and q[0].data.shape == (1, *p[0].data.shape)  # mono as a one-plane cube
        np.testing.assert_array_equal(q[0].data[0], p[0].data)
        assert q["WEIGHT"].data.shape == (1, *p["WEIGHT"].data.shape)
    again = read_frame(legacy.mosaic_path).data  # our reader takes the cube back as (H, W, 1)
    np.testing.assert_array_equal(again, read_frame(plain.mosaic_path).data)
    with fits.open(legacy.mosaic_path.parent / "mosaic_grid_viewer.fits") as hdul:
        hdr = hdul[0].header
        assert hdr["ZEMOLEG"] is True and hdr["ZEMO16"] is True and hdul[0].data.dtype == np.uint16
        np.testing.assert_array_equal(hdul[0].data, to_uint16(again[..., 0]))
    assert not (plain.mosaic_path.parent / "mosaic_grid_viewer.fits").exists()


def test_dbe_without_photutils_stops_before_any_tile(survey, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "photutils", None)
    with pytest.raises(ImportError, match="final_mosaic_dbe_enabled"):
        run_grid_mode(survey.folder, tmp_path / "out", config=dict(SMALL_CONFIG, final_mosaic_dbe_enabled=True),
                      grid_workers=1)
    assert not (tmp_path / "out" / "tiles").exists()


class _BrokenClient:
    """A dask client whose cluster cannot answer."""

    def nthreads(self):
        raise OSError("scheduler gone")

    def run(self, fn):
        raise OSError("scheduler gone")


class _FakeDaskExecutor(ThreadPoolExecutor):
    """Runs tiles on threads, but looks like ``distributed``'s ClientExecutor."""

    def __init__(self):
        super().__init__(max_workers=2)
        self._client = _BrokenClient()


_FakeDaskExecutor.__module__ = "distributed.fake"


def test_cluster_warnings_go_to_warn():
    seen = []
    with _FakeDaskExecutor() as ex:
        assert executor_slots(ex, 3, warn=lambda fmt, *a: seen.append(fmt % a)) == 3
        release_worker_caches(ex, warn=lambda fmt, *a: seen.append(fmt % a))
    assert len(seen) == 2 and all("scheduler gone" in s for s in seen)


def test_cluster_warnings_reach_the_callback_as_warn(survey, tmp_path):
    cb = Recorder()
    with _FakeDaskExecutor() as ex:
        result = run_grid_mode(survey.folder, tmp_path / "out", cb, config=SMALL_CONFIG, executor=ex)
    assert result.mosaic_path.is_file()
    warns = [key for key, _p, level, _kw in cb.calls if level == "WARN"]
    assert any("dask cluster its size" in w for w in warns)
    assert any("frame caches of the dask workers" in w for w in warns)
