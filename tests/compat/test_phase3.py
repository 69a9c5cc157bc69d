"""ZeMosaic's Phase 3 call (compat.phase3.stack_master_tile_auto) on the classic master tiles."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tests.classic.helpers import write_frames
from zemosaic_xp import StackConfig, stack, stack_master_tile
from zemosaic_xp.compat import phase3
from zemosaic_xp.compat.zemosaic import stack_master_tile_auto, start_phase3
from zemosaic_xp.gpu import GpuPolicy
from zemosaic_xp.gpu.testing import FaultInjector
from zemosaic_xp.synthetic import make_stack

#: ZeMosaic's stacking_params dict (upstream_spec §4.2), non-default values.
PARAMS = {"stack_norm_method": "sky_mean", "stack_weight_method": "noise_variance", "stack_reject_algo": "kappa_sigma",
          "stack_kappa_low": 2.5, "stack_kappa_high": 3.5, "parsed_winsor_limits": (0.1, 0.05),
          "stack_final_combine": "mean", "poststack_equalize_rgb": False, "apply_radial_weight": True,
          "radial_feather_fraction": 0.7, "radial_shape_power": 1.5, "winsor_max_frames_per_pass": 0}


@pytest.fixture(scope="module")
def rgb_frames():
    return make_stack(n_frames=7, shape=(24, 20), seed=8, rgb=True, cosmic_rays_per_frame=5).frames


def test_stacking_params_map_to_the_config():
    c = phase3.stacking_config(PARAMS)
    assert (c.normalize, c.weighting, c.reject, c.combine) == ("sky_mean", "noise_variance", "kappa_sigma", "mean")
    assert (c.kappa_low, c.kappa_high, c.winsor_limits) == (2.5, 3.5, (0.1, 0.05))
    assert (c.radial_weight, c.radial_feather_fraction, c.radial_shape_power) == (True, 0.7, 1.5)
    assert phase3.stacking_config({}) == StackConfig()  # absent keys: ZeMosaic's defaults
    with pytest.raises(ValueError, match="stacking_kappa_low"):
        phase3.stacking_config({"stack_kappa_low": "x"})


def test_result_is_the_classic_master_tile_and_stack(rgb_frames):
    image, meta, used_gpu = stack_master_tile_auto(list(rgb_frames), PARAMS, types.SimpleNamespace(use_gpu=False))
    config = phase3.stacking_config(PARAMS)
    ref = stack_master_tile(list(rgb_frames), config, gpu_policy=GpuPolicy("cpu"))
    np.testing.assert_array_equal(image, ref.image)
    np.testing.assert_array_equal(image, stack(rgb_frames, config=config).image)
    assert image.dtype == np.float32 and image.shape == rgb_frames.shape[1:] and used_gpu is False
    assert meta["phase3_used_gpu"] is False and meta["weight_method"] == "noise_variance"
    assert meta["weight_stats"]["frames"] == 7 and meta["weight_stats"]["max"] == 1.0
    assert meta["rejected_pct"] == ref.stats["rejected_pct"] and meta["alpha"].shape == image.shape[:2]
    assert meta["phase3_gpu_chunk_summary"]["n_frames"] == 7


def test_paths_descriptors_and_mono(tmp_path):
    mono = make_stack(n_frames=5, shape=(16, 18), seed=2, rgb=False).frames
    paths = write_frames(tmp_path, mono)
    descriptors = [{"path": p} if i % 2 else {"data": f} for i, (p, f) in enumerate(zip(paths, mono))]
    a, _, _ = stack_master_tile_auto(paths, {"stack_reject_algo": "none"}, {"use_gpu": False})
    b, _, _ = stack_master_tile_auto(descriptors, {"stack_reject_algo": "none"}, {"use_gpu": False})
    assert a.shape == (16, 18)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="descriptor 0"):
        stack_master_tile_auto([{"mask": 1}], {})


def test_plan_budget_does_not_change_the_result(rgb_frames):
    a, _, _ = stack_master_tile_auto(list(rgb_frames), PARAMS, {"use_gpu": False, "max_chunk_bytes": 20_000})
    b, meta, _ = stack_master_tile_auto(list(rgb_frames), PARAMS, {"use_gpu": False, "max_chunk_mb": 64})
    np.testing.assert_array_equal(a, b)
    assert meta["stats"]["memory_budget_bytes"] == 64 * 2**20


def test_gpu_retry_reaches_the_tile_callback_as_warn(rgb_frames, monkeypatch):
    injector = FaultInjector(["oom"], base="numpy")
    monkeypatch.setattr(phase3, "_policy", lambda use_gpu: injector.policy("auto"))
    events = []
    image, meta, used_gpu = stack_master_tile_auto(list(rgb_frames), PARAMS, None,
                                                   lambda k, p=None, lv=None, **kw: events.append((k, lv)))
    assert used_gpu is True and meta["phase3_used_gpu"] is True
    warns = [k for k, lv in events if lv == "WARN"]
    assert warns and all(k.startswith("[P3][GPU]") for k in warns) and "retry" in warns[0]


def test_a_run_shares_one_policy_and_counts_tiles(rgb_frames, tmp_path):
    events = []
    zconfig = types.SimpleNamespace(use_gpu_phase5=False, enable_resource_telemetry=True,
                                    resource_telemetry_interval_sec=0.5)
    run = start_phase3(2, lambda k, p=None, lv=None, **kw: events.append((k, p, lv, kw)), zconfig,
                       output_folder=tmp_path)
    try:
        assert run.policy.mode == "cpu"
        for t in range(2):
            stack_master_tile_auto(list(rgb_frames), PARAMS, run=run, tile_id=t)
        run.finish()
    finally:
        run.telemetry.close()
    keys = [e[0] for e in events]
    assert "MASTER_TILE_COUNT_UPDATE:2/2" in keys and keys.count("STATS_UPDATE") >= 2
    assert (tmp_path / "resource_telemetry.csv").is_file()
