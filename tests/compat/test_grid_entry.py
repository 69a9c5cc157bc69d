"""ZeMosaic's grid-mode call (compat.grid_entry.run_grid_mode): keywords, zconfig, defaults, warnings."""

from __future__ import annotations

import inspect
import logging
import types

import numpy as np
import pytest
from astropy.io import fits

from tests.grid.survey_cases import small_survey
from zemosaic_xp.compat import grid_entry
from zemosaic_xp.compat.zemosaic import run_grid_mode as lazy_run_grid_mode
from zemosaic_xp.grid import runner
from zemosaic_xp.io.fits import read_frame
from zemosaic_xp.io.viewer import to_uint16

#: The keywords of ZeMosaic's worker call (upstream_spec §3.1), in its order.
WORKER_KEYWORDS = ["input_folder", "output_folder", "progress_callback", "stack_norm_method",
                   "stack_weight_method", "stack_reject_algo", "stack_kappa_low", "stack_kappa_high",
                   "winsor_limits", "stack_final_combine", "apply_radial_weight", "radial_feather_fraction",
                   "radial_shape_power", "save_final_as_uint16", "legacy_rgb_cube", "grid_rgb_equalize", "zconfig"]


@pytest.fixture
def captured(monkeypatch):
    calls = []

    def fake(input_folder, output_folder, progress_callback=None, **kw):
        calls.append((input_folder, output_folder, progress_callback, kw))
        return "result"

    monkeypatch.setattr(runner, "run_grid_mode", fake)
    return calls


def _worker_call(**overrides):
    kw = dict(input_folder="in", output_folder="out", progress_callback=None, stack_norm_method="linear_fit",
              stack_weight_method="noise_variance", stack_reject_algo="kappa_sigma", stack_kappa_low=2.0,
              stack_kappa_high=2.5, winsor_limits=(0.1, 0.05), stack_final_combine="median",
              apply_radial_weight=True, radial_feather_fraction=0.7, radial_shape_power=1.5,
              save_final_as_uint16=False, legacy_rgb_cube=False, grid_rgb_equalize=False, zconfig=None)
    kw.update(overrides)
    return kw


def test_signature_is_the_workers():
    params = list(inspect.signature(grid_entry.run_grid_mode).parameters)
    assert params[:len(WORKER_KEYWORDS)] == WORKER_KEYWORDS
    assert inspect.signature(grid_entry.run_grid_mode).parameters[params[-1]].kind is inspect.Parameter.VAR_KEYWORD
    assert lazy_run_grid_mode is grid_entry.run_grid_mode  # zemosaic_xp.compat.zemosaic.run_grid_mode


def test_keywords_map_to_the_native_config(captured):
    assert grid_entry.run_grid_mode(**_worker_call()) == "result"
    (inp, out, cb, kw), = captured
    cfg = kw["config"]
    s = cfg.stack
    assert (inp, out, cb) == ("in", "out", None)
    assert (s.normalize, s.weighting, s.reject, s.combine) == ("linear_fit", "noise_variance", "kappa_sigma", "median")
    assert (s.kappa_low, s.kappa_high, s.winsor_limits) == (2.0, 2.5, (0.1, 0.05))
    assert (s.radial_weight, s.radial_feather_fraction, s.radial_shape_power) == (True, 0.7, 1.5)
    assert s.rgb_equalize is False


def test_absent_keys_take_zemosaics_defaults(captured):
    grid_entry.run_grid_mode("in", "out")
    cfg = captured[0][3]["config"]
    assert cfg.grid_size_factor == 4.0 and cfg.overlap_fraction == pytest.approx(0.40)
    assert (cfg.stack.reject, cfg.stack.wsc_impl, cfg.stack.combine) == ("winsorized_sigma_clip", "pixinsight", "mean")
    assert cfg.workers == 0 and cfg.use_gpu is True and cfg.telemetry_enabled is False
    assert cfg.stack.rgb_equalize is True  # grid_rgb_equalize: absent -> poststack_equalize_rgb -> True


@pytest.mark.parametrize("as_object", [True, False])
def test_zconfig_as_object_or_dict(captured, as_object):
    keys = {"grid_size_factor": 1.5, "batch_overlap_pct": 20, "use_gpu_phase5": False, "grid_workers": 2,
            "stacking_kappa_high": 4.0, "enable_resource_telemetry": True, "poststack_equalize_rgb": False,
            "language": "fr", "last_input_folder": "C:\\astro"}
    zconfig = types.SimpleNamespace(**keys) if as_object else keys
    grid_entry.run_grid_mode("in", "out", stack_kappa_high=None, zconfig=zconfig)
    cfg = captured[0][3]["config"]
    assert cfg.grid_size_factor == 1.5 and cfg.overlap_fraction == pytest.approx(0.2)
    assert cfg.use_gpu is False and cfg.workers == 2 and cfg.telemetry_enabled is True
    assert cfg.stack.kappa_high == 4.0 and cfg.stack.rgb_equalize is False


def test_explicit_keywords_win_over_zconfig(captured):
    zconfig = types.SimpleNamespace(stacking_rejection_algorithm="gesd", grid_rgb_equalize=False)
    grid_entry.run_grid_mode(**_worker_call(stack_reject_algo="mad", grid_rgb_equalize=True, zconfig=zconfig))
    cfg = captured[0][3]["config"]
    assert cfg.stack.reject == "mad" and cfg.stack.rgb_equalize is True


def test_unknown_keywords_are_one_warning_and_final_options_are_honoured(captured, caplog):
    events = []

    def cb(key, progress=None, level=None, **kw):
        events.append((key, level))

    with caplog.at_level(logging.WARNING, logger="zemosaic_xp"):
        grid_entry.run_grid_mode(**_worker_call(progress_callback=cb, legacy_rgb_cube=True, save_final_as_uint16=True,
                                                progress_reporter=object(), some_flag=1))
    warns = [k for k, level in events if level == "WARN"]
    assert len(warns) == 1
    assert "progress_reporter" in warns[0] and "some_flag" in warns[0] and warns[0].startswith("[CONFIG]")
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    cfg = captured[0][3]["config"]
    # ZeMosaic's defaults for the final mosaic: DBE on at "normal", no final RGB equalisation
    assert cfg.legacy_rgb_cube and cfg.save_uint16 and cfg.dbe and cfg.dbe_strength == "normal"
    assert not cfg.final_rgb_equalize and cfg.final_rgb_gain_clip == (0.80, 1.25)


def test_final_mosaic_keys_from_zconfig(captured):
    zconfig = types.SimpleNamespace(final_mosaic_dbe_enabled=False, final_mosaic_dbe_strength="High",
                                    final_mosaic_rgb_equalize_enabled=True,
                                    final_mosaic_rgb_equalize_gain_clip=[0.9, 1.1])
    grid_entry.run_grid_mode(**_worker_call(zconfig=zconfig))
    cfg = captured[0][3]["config"]
    assert not cfg.dbe and cfg.dbe_strength == "strong"
    assert cfg.final_rgb_equalize and cfg.final_rgb_gain_clip == (0.9, 1.1)
    grid_entry.run_grid_mode(**_worker_call(zconfig={"final_mosaic_rgb_equalize_clip_enabled": False}))
    assert captured[1][3]["config"].final_rgb_gain_clip is None
    with pytest.raises(ValueError, match="final_mosaic_dbe_strength"):
        grid_entry.run_grid_mode(**_worker_call(zconfig={"final_mosaic_dbe_strength": "extreme"}))


def test_default_dbe_without_photutils_is_one_warning(captured, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "photutils", None)  # import photutils -> ImportError
    events = []
    grid_entry.run_grid_mode(**_worker_call(progress_callback=lambda k, p=None, lv=None, **kw: events.append((k, lv))))
    warns = [k for k, level in events if level == "WARN"]
    assert len(warns) == 1 and "final_mosaic_dbe_enabled" in warns[0] and "photutils" in warns[0]
    assert captured[0][3]["config"].dbe is False
    # asked for explicitly: no silent skip (the native run raises, see tests/grid/test_final_mosaic.py)
    grid_entry.run_grid_mode(**_worker_call(zconfig={"final_mosaic_dbe_enabled": True}))
    assert captured[1][3]["config"].dbe is True


def test_native_keywords_pass_through(captured):
    cancel = object()
    grid_entry.run_grid_mode("in", "out", cancel=cancel, resume=False, use_gpu=False, grid_workers=1)
    kw = captured[0][3]
    assert kw["cancel"] is cancel and kw["resume"] is False and kw["grid_use_gpu"] is False and kw["grid_workers"] == 1


def test_bad_value_names_the_key(captured):
    with pytest.raises(ValueError, match="stacking_kappa_low"):
        grid_entry.run_grid_mode(**_worker_call(stack_kappa_low="three"))
    with pytest.raises(ValueError, match="legacy_rgb_cube"):
        grid_entry.run_grid_mode(**_worker_call(legacy_rgb_cube="maybe"))


def test_save_final_as_uint16_writes_the_viewer_copy(tmp_path):
    survey = small_survey(tmp_path / "survey", n_frames=6)
    zconfig = {"grid_size_factor": 2.0, "batch_overlap_pct": 10, "use_gpu_phase5": False, "grid_workers": 1,
               "final_mosaic_dbe_enabled": False}
    out = tmp_path / "out"
    result = grid_entry.run_grid_mode(survey.folder, out, save_final_as_uint16=True, zconfig=zconfig)
    viewer = out / "mosaic_grid_viewer.fits"
    assert viewer.is_file() and result.mosaic_path.is_file()
    mosaic = read_frame(result.mosaic_path).data
    with fits.open(viewer) as hdul:
        data = hdul[0].data
        assert data.dtype == np.uint16 and hdul[0].header["CTYPE1"].startswith("RA")
        np.testing.assert_array_equal(data, to_uint16(mosaic[..., 0]))
    off = grid_entry.run_grid_mode(survey.folder, tmp_path / "off", save_final_as_uint16=False, zconfig=zconfig)
    assert off.mosaic_path.is_file() and not (tmp_path / "off" / "mosaic_grid_viewer.fits").exists()


def test_grid_rgb_equalize_equalises_the_tiles(tmp_path):
    survey = small_survey(tmp_path / "survey", n_frames=6, frame_shape=(96, 96), rgb=True)
    zconfig = {"grid_size_factor": 1.5, "batch_overlap_pct": 10, "use_gpu_phase5": False, "grid_workers": 1,
               "final_mosaic_dbe_enabled": False}
    medians = {}
    for flag in (True, False):
        result = grid_entry.run_grid_mode(survey.folder, tmp_path / str(flag), grid_rgb_equalize=flag, zconfig=zconfig)
        medians[flag] = np.nanmedian(read_frame(result.mosaic_path).data, axis=(0, 1))
    spread = {flag: float(np.ptp(m)) for flag, m in medians.items()}
    # gains toward the median of the channel medians, each within [0.95, 1.05]
    assert spread[True] < spread[False]
    ratio = medians[True] / medians[False]
    assert np.all((ratio > 0.94) & (ratio < 1.06)) and not np.allclose(ratio, 1.0)
