"""GridConfig: defaults, ZeMosaic keys, validation (the worker count: test_worker_count.py)."""

from __future__ import annotations

import pytest

from zemosaic_xp import GridConfig, StackConfig
from zemosaic_xp.grid.config import grid_stack_config


def test_defaults():
    cfg = GridConfig()
    assert cfg.workers is None and cfg.use_gpu is None and not cfg.telemetry_enabled
    assert cfg.stack == grid_stack_config()
    assert (cfg.stack.normalize, cfg.stack.weighting, cfg.stack.reject, cfg.stack.combine) == \
        ("linear_fit", "noise_variance", "gesd", "mean")
    assert cfg.stack_chunk_budget_mb == 192.0 and cfg.telemetry_log_to_csv


def test_from_zemosaic_keys():
    cfg = GridConfig.from_dict({
        "grid_size_factor": "3", "batch_overlap_pct": 40, "grid_workers": 0, "grid_chunk_ram_gb": 0.25,
        "stacking_normalize_method": "sky_mean", "stacking_weighting_method": "none",
        "stacking_rejection_algorithm": "winsorized_sigma_clip", "stacking_kappa_low": 2.5,
        "stacking_kappa_high": 3.5, "stacking_winsor_limits": "0.1,0.2",
        "stacking_final_combine_method": "median", "enable_resource_telemetry": "true",
        "resource_telemetry_interval_sec": 0.2, "resource_telemetry_log_to_csv": False,
        "parallel_max_cpu_workers": 3, "unknown_key": object()})
    assert cfg.grid_size_factor == 3.0 and cfg.overlap_fraction == pytest.approx(0.4)
    assert cfg.workers == 0 and cfg.stack_chunk_budget_mb == 256.0
    assert cfg.stack == StackConfig(normalize="sky_mean", weighting="none", reject="winsorized_sigma_clip",
                                    kappa_low=2.5, kappa_high=3.5, winsor_limits=(0.1, 0.2), combine="median")
    assert cfg.telemetry_enabled and not cfg.telemetry_log_to_csv and cfg.telemetry_interval_sec == 0.2
    assert cfg.max_cpu_workers == 3
    assert GridConfig.from_dict({"grid_chunk_ram_mb": 64, "grid_chunk_ram_gb": 9}).stack_chunk_budget_mb == 64.0
    assert GridConfig.from_dict({"batch_overlap_pct": 90}).overlap_fraction == 0.9


@pytest.mark.parametrize(("changes", "match"), [
    ({"grid_size_factor": 0}, "grid_size_factor"),
    ({"overlap_fraction": 0.95}, "overlap_fraction"),
    ({"stack_chunk_budget_mb": -1}, "stack_chunk_budget_mb"),
    ({"workers": -2}, "workers"),
    ({"feather_px": -1}, "feather_px"),
])
def test_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        GridConfig(**changes)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="reject"):
        GridConfig.from_dict({"stacking_rejection_algorithm": "nonsense"})
