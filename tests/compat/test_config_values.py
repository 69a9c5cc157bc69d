"""Config values of the wrong type, typo'd keys, no silent clamping (issue 15, case 12).

Every value is read by type and range-checked with a message that names the key as
written and the config file; unknown keys are listed once in a ``[CONFIG]`` warning,
except ZeMosaic's settings we knowingly ignore.
"""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from zemosaic_xp import GridConfig, StackConfig
from zemosaic_xp.cli import main
from zemosaic_xp.compat.zemosaic import (
    IGNORED_KEYS,
    ConfigFile,
    load_config_file,
    parse_int,
    parse_number,
    unknown_keys,
)

CONFIG_LOGGER = "zemosaic_xp.compat.zemosaic"


@pytest.fixture
def config_file(tmp_path):
    def write(keys):
        path = tmp_path / "zemosaic_config.json"
        path.write_text(json.dumps(keys), encoding="utf-8")
        return path
    return write


@pytest.mark.parametrize(("keys", "match"), [
    ({"grid_workers": "two"}, r"`grid_workers` must be a whole number, got 'two'"),
    # 1.7 was silently truncated to 1 (the API refuses 2.5): now refused, never rounded
    ({"grid_workers": 1.7}, r"`grid_workers` must be a whole number, got 1.7 \(it is not rounded: write 1 or 2\)"),
    ({"grid_workers": -1}, r"`grid_workers` must be an integer >= 0"),
    ({"parallel_max_cpu_workers": 2.5}, r"`parallel_max_cpu_workers` must be a whole number, got 2.5"),
    ({"enable_resource_telemetry": "maybe"}, r"`enable_resource_telemetry` must be true or false, got 'maybe'"),
    ({"grid_size_factor": True}, r"`grid_size_factor` must be a number, got True"),
    ({"grid_size_factor": "nan"}, r"`grid_size_factor` must be a number, got 'nan'"),
    ({"grid_worker_kind": 2}, r"`grid_worker_kind` must be a string, got 2"),
    ({"grid_worker_kind": "fork"}, r"`grid_worker_kind` must be one of process, thread, got 'fork'"),
    ({"stacking_kappa_low": "x"}, r"`stacking_kappa_low` must be a number, got 'x'"),
    ({"stacking_kappa_high": 0}, r"`stacking_kappa_high` must be finite and > 0"),
    ({"poststack_rgb_equalize_min_samples": 10.5}, r"`poststack_rgb_equalize_min_samples` must be a whole number"),
    ({"max_iters": 2.5}, r"`max_iters` must be a whole number, got 2.5"),
], ids=["int-word", "int-fraction", "int-negative", "int-cap", "bool-word", "number-bool", "number-nan",
        "text-type", "text-choice", "float-word", "float-range", "stack-int", "field-int"])
def test_wrong_type_names_the_key_and_the_file(config_file, keys, match):
    path = config_file(keys)
    with pytest.raises(ValueError, match=rf"^config file '{path}': {match}"):
        GridConfig.from_dict(load_config_file(path))
    with pytest.raises(ValueError, match=rf"^{match}"):  # a plain dict: the key, no file
        GridConfig.from_dict(keys)


def test_a_bad_boolean_is_not_called_a_gpu_flag():
    with pytest.raises(ValueError, match="enable_resource_telemetry") as info:
        GridConfig.from_dict({"enable_resource_telemetry": "maybe"})
    assert "GPU" not in str(info.value)


def test_whole_numbers_are_read_without_rounding():
    assert parse_int(2.0, "k") == 2 and parse_int("3", "k") == 3 and parse_int(" 4 ", "k") == 4
    assert GridConfig.from_dict({"grid_workers": 2.0, "parallel_max_cpu_workers": "3"}).workers == 2
    assert parse_number("1.5", "k") == 1.5
    with pytest.raises(ValueError, match=r"`k` must be a whole number, got '2.5'"):
        parse_int("2.5", "k")


@pytest.mark.parametrize(("keys", "match"), [
    ({"batch_overlap_pct": 150}, r"`batch_overlap_pct` must be in \[0, 90\] \(percent of the tile side\), got 150"),
    ({"batch_overlap_pct": -5}, r"`batch_overlap_pct` must be in \[0, 90\]"),
    ({"grid_overlap_fraction": 0.95}, r"`grid_overlap_fraction` must be in \[0, 0.9\], got 0.95"),
    ({"grid_chunk_ram_mb": -5}, r"`grid_chunk_ram_mb` must be >= 0 \(0 = auto, the default budget\), got -5"),
    ({"grid_chunk_ram_gb": -1}, r"`grid_chunk_ram_gb` must be >= 0"),
    ({"parallel_target_ram_fraction": 1.0}, r"`parallel_target_ram_fraction` must be in \[0.1, 0.98\], got 1.0"),
], ids=["overlap-pct-high", "overlap-pct-negative", "overlap-fraction", "budget-mb", "budget-gb", "ram-fraction"])
def test_out_of_range_is_refused_not_clamped(keys, match):
    # These were clipped into range or replaced by the default, silently.
    with pytest.raises(ValueError, match=match):
        GridConfig.from_dict(keys)


def test_api_refuses_what_it_used_to_clip():
    with pytest.raises(ValueError, match=r"`target_ram_fraction` must be in \[0.1, 0.98\], got 0.05"):
        GridConfig(target_ram_fraction=0.05)
    with pytest.raises(ValueError, match=r"`max_cpu_workers` must be an integer >= 0"):
        GridConfig(max_cpu_workers=-1)


def test_a_zero_budget_is_zemosaics_auto():
    assert GridConfig.from_dict({"grid_chunk_ram_mb": 0}).stack_chunk_budget_mb == GridConfig().stack_chunk_budget_mb


def test_unknown_keys_are_listed_once_with_the_nearest_known_key(config_file, caplog):
    path = config_file({"grid_workerz": 2, "stacking_kappa_lo": 2.0, "grid_workers": 1,
                        # ZeMosaic settings on the documented allow-list: never warned
                        "quality_crop_enabled": True, "final_mosaic_dbe_strength": "normal",
                        "phase3_mem_orch_reserve_mb": 512, "use_gpu_phase5": True})
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        cfg = GridConfig.from_dict(load_config_file(path))
    assert cfg.workers == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"[CONFIG] config file '{path}': 2 unknown keys ignored: 'grid_workerz' (did you mean "
                        f"'grid_workers'?), 'stacking_kappa_lo' (did you mean 'stacking_kappa_low'?)"]


def test_many_unknown_keys_are_cut_short(caplog):
    keys = {f"gui_setting_{i}": i for i in range(12)}
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        StackConfig.from_dict(keys)
    (record,) = caplog.records
    assert record.getMessage().startswith("[CONFIG] 12 unknown keys ignored: 'gui_setting_0'")
    assert record.getMessage().endswith("and 4 more")


def test_known_and_ignored_keys_raise_no_warning(caplog):
    keys = dict.fromkeys(IGNORED_KEYS, None)
    keys.update({"stacking_rejection_algorithm": "mad", "kappa_low": 2.0, "winsor_impl": "pixinsight",
                 "use_gpu_grid": False, "grid_chunk_ram_gb": 1, "altaz_cleanup_enabled": True})
    assert unknown_keys(keys) == []
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        GridConfig.from_dict(keys)
        StackConfig.from_dict(keys)
    assert caplog.records == []


def test_config_file_is_a_dict_that_keeps_its_path(config_file):
    path = config_file({"grid_workers": 2})
    data = load_config_file(path)
    assert data == {"grid_workers": 2} and isinstance(data, dict) and data.path == path
    copy = pickle.loads(pickle.dumps(data))
    assert isinstance(copy, ConfigFile) and copy.path == path and copy == data


def test_cli_grid_names_key_and_file_in_one_line(config_file, tmp_path, capsys):
    path = config_file({"grid_workers": 1.7})
    (tmp_path / "in").mkdir()
    code = main(["--quiet", "grid", str(tmp_path / "in"), str(tmp_path / "out"), "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"zemosaic-xp: error: config file '{path}': `grid_workers` must be a whole number, got 1.7 "
                   f"(it is not rounded: write 1 or 2)")


def test_cli_stack_names_key_and_file(config_file, tmp_path, capsys):
    path = config_file({"stack_use_gpu": "maybe"})
    code = main(["stack", str(tmp_path / "a.fits"), "-o", str(tmp_path / "m.fits"), "--config", str(path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (f"zemosaic-xp: error: config file '{path}': `stack_use_gpu` must be "
                                               f"true, false or auto, got 'maybe'")
