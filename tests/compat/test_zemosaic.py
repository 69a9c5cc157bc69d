"""ZeMosaic compatibility: config files, StackConfig.from_dict / to_dict with ZeMosaic's keys,
GPU switches and grid keys."""

from __future__ import annotations

import json

import pytest

from zemosaic_xp import StackConfig
from zemosaic_xp.compat import zemosaic
from zemosaic_xp.compat.zemosaic import gpu_flag, grid_settings_from_dict, load_config_file

# A ZeMosaic config as zemosaic_config.json holds it (upstream_spec §7): the stacking keys
# among GPU, grid, telemetry and GUI settings that the core must ignore.
ZEMOSAIC_JSON = {
    "use_gpu_phase5": True, "stack_use_gpu": "auto", "use_gpu_grid": True, "gpu_id_phase5": 0,
    "stacking_normalize_method": "sky_mean",
    "stacking_weighting_method": "noise_variance",
    "stacking_rejection_algorithm": "kappa_sigma",
    "stacking_kappa_low": 2.5, "stacking_kappa_high": 3.5,
    "stacking_winsor_limits": "0.1,0.05",
    "wsc_impl": "pixinsight",
    "stacking_final_combine_method": "median",
    "poststack_equalize_rgb": True,
    "poststack_rgb_equalize_gain_clip": [0.9, 1.1],
    "poststack_rgb_equalize_bg_percentile": [10, 80],
    "poststack_rgb_equalize_min_samples": 2000,
    "poststack_rgb_equalize_min_coverage": 0.05,
    "apply_radial_weight": True, "radial_feather_fraction": 0.6, "radial_shape_power": 1.5,
    "winsor_worker_limit": 0, "winsor_max_frames_per_pass": 0, "winsor_memmap_fallback": "auto",
    "stack_stat_min_finite_frac": 0.02, "enable_resource_telemetry": False,
    "resource_telemetry_interval_sec": 1.5, "grid_workers": 0, "batch_overlap_pct": 40,
    "final_mosaic_dbe_enabled": True, "final_mosaic_dbe_strength": "normal",
    "save_final_as_uint16": False, "language": "fr", "last_input_folder": "C:\\astro\\M31",
    "quality_crop_enabled": None,
}


def test_a_whole_zemosaic_config_loads():
    c = StackConfig.from_dict(ZEMOSAIC_JSON)
    assert (c.normalize, c.weighting, c.reject, c.combine) == ("sky_mean", "noise_variance", "kappa_sigma", "median")
    assert (c.kappa_low, c.kappa_high, c.winsor_limits) == (2.5, 3.5, (0.1, 0.05))
    assert (c.radial_weight, c.radial_feather_fraction, c.radial_shape_power) == (True, 0.6, 1.5)
    assert (c.rgb_equalize, c.rgb_equalize_gain_clip, c.rgb_equalize_bg_percentile) == (True, (0.9, 1.1), (10.0, 80.0))
    assert (c.rgb_equalize_min_samples, c.rgb_equalize_min_coverage) == (2000, 0.05)
    # Everything not mapped keeps our defaults.
    assert c.min_survivors == 3 and c.gesd_alpha == 0.05


def test_empty_dict_gives_the_defaults():
    assert StackConfig.from_dict({}) == StackConfig()
    assert StackConfig.from_dict({"stacking_kappa_low": None}) == StackConfig()


@pytest.mark.parametrize(("value", "expected"), [
    ("0.05,0.05", (0.05, 0.05)), (" 0.1 , 0.2 ", (0.1, 0.2)), ("0.1;0.2", (0.1, 0.2)),
    ([0.1, 0.2], (0.1, 0.2)), ((0, 0.25), (0.0, 0.25)), (["0.1", "0.2"], (0.1, 0.2)),
])
def test_winsor_limits_forms(value, expected):
    assert StackConfig.from_dict({"stacking_winsor_limits": value}).winsor_limits == expected


@pytest.mark.parametrize(("value", "match"), [
    ("0.05", r"`stacking_winsor_limits` must be two numbers like \"0.05,0.05\""),
    ("a,b", "must be two numbers"), ([0.1, 0.2, 0.3], "must be two numbers"),
    ("0.6,0.1", r"`stacking_winsor_limits` fractions must each be in \[0, 0.5\)"),  # the key, not the field
])
def test_bad_winsor_limits(value, match):
    with pytest.raises(ValueError, match=match):
        StackConfig.from_dict({"stacking_winsor_limits": value})


@pytest.mark.parametrize(("impl_key", "impl", "algorithm", "expected"), [
    ("wsc_impl", "legacy_quantile", "winsorized_sigma_clip", "winsorized_quantile"),
    ("winsor_impl", "legacy_quantile", "winsorized_sigma_clip", "winsorized_quantile"),
    ("stack_winsor_impl", "Legacy-Quantile", "winsor", "winsorized_quantile"),
    ("wsc_impl", "pixinsight", "winsorized_sigma_clip", "winsorized_sigma_clip"),
    ("wsc_impl", "legacy_quantile", "kappa_sigma", "kappa_sigma"),  # only WSC has two impls
    ("wsc_impl", "", "winsorized_sigma_clip", "winsorized_sigma_clip"),
    ("wsc_impl", "zemosaic", "winsorized_sigma_clip", "winsorized_sigma_clip"),
])
def test_wsc_impl(impl_key, impl, algorithm, expected):
    data = {"stacking_rejection_algorithm": algorithm, impl_key: impl}
    assert StackConfig.from_dict(data).reject == expected


@pytest.mark.parametrize(("data", "impl", "reject"), [
    # ZeMosaic's "pixinsight" is read as PixInsight's algorithm, our default.
    ({"wsc_impl": "pixinsight"}, "pixinsight", "winsorized_sigma_clip"),
    ({"wsc_impl": "ZeMosaic"}, "zemosaic", "winsorized_sigma_clip"),
    ({"winsor_impl": "zemosaic", "reject": "kappa_sigma"}, "zemosaic", "kappa_sigma"),
    # The first key set decides legacy_quantile (ZeMosaic's order); the field is kept.
    ({"wsc_impl": "legacy_quantile", "winsor_impl": "zemosaic", "reject": "wsc"}, "zemosaic",
     "winsorized_quantile"),
    ({"wsc_impl": "pixinsight", "winsor_impl": "legacy_quantile"}, "pixinsight",
     "winsorized_sigma_clip"),
])
def test_wsc_impl_field(data, impl, reject):
    config = StackConfig.from_dict(data)
    assert (config.wsc_impl, config.reject) == (impl, reject)


def test_bad_wsc_impl_lists_the_valid_ones():
    with pytest.raises(ValueError,
                       match=r"`wsc_impl` must be one of \{'pixinsight', 'zemosaic', 'legacy_quantile'\}"):
        StackConfig.from_dict({"wsc_impl": "huber"})
    with pytest.raises(ValueError, match=r"`wsc_impl` must be one of \{'pixinsight', 'zemosaic'\}, got 'huber'"):
        StackConfig(wsc_impl="huber")


@pytest.mark.parametrize(("key", "value", "field", "expected"), [
    ("stacking_rejection_algorithm", "kappa", "reject", "kappa_sigma"),
    ("stacking_rejection_algorithm", "Winsor", "reject", "winsorized_sigma_clip"),
    ("stacking_rejection_algorithm", "linear_fit_clip", "reject", "linear_fit_clip"),
    ("stacking_rejection_algorithm", "Linear Fit", "reject", "linear_fit_clip"),
    ("stacking_rejection_algorithm", "GESDT", "reject", "gesd"),
    ("stacking_rejection_algorithm", "clip-extrema", "reject", "minmax"),
    ("stacking_normalize_method", "Additive + Scaling", "normalize", "additive_scaling"),
    ("stacking_normalize_method", "linear_fit", "normalize", "linear_fit"),
    ("stacking_weighting_method", "noise_fwhm", "weighting", "noise_variance"),  # documented fallback
    ("stacking_weighting_method", "unity", "weighting", "none"),
    ("stacking_final_combine_method", "average", "combine", "mean"),
    ("stacking_final_combine_method", "MAX", "combine", "max"),
    ("reject", "mad", "reject", "mad"),                                        # our own names
])
def test_method_aliases(key, value, field, expected):
    assert getattr(StackConfig.from_dict({key: value}), field) == expected


@pytest.mark.parametrize(("key", "value", "match"), [
    ("stacking_rejection_algorithm", "sigma_kappa_magic",
     r"`stacking_rejection_algorithm` must be one of \{'none', 'kappa_sigma', .*'auto'\} \(aliases: .*\), "
     r"got 'sigma_kappa_magic'"),
    ("stacking_normalize_method", "ikss", r"`stacking_normalize_method` must be one of .*'multiplicative_scaling'"),
    ("stacking_final_combine_method", 3, r"`stacking_final_combine_method` must be one of .*got 3"),
    ("combine", "weighted", r"`combine` must be one of"),
    ("apply_radial_weight", "maybe", r"`apply_radial_weight` must be true or false"),
    ("stacking_kappa_low", -1, r"`stacking_kappa_low` must be finite and > 0"),  # the key as written
    ("kappa_low", -1, r"`kappa_low` must be finite and > 0"),
])
def test_bad_values_of_known_keys(key, value, match):
    with pytest.raises(ValueError, match=match):
        StackConfig.from_dict({key: value})


def test_booleans_and_precedence():
    c = StackConfig.from_dict({"apply_radial_weight": "true", "poststack_equalize_rgb": 0,
                               "winsor_rewinsor": "on"})
    assert (c.radial_weight, c.rgb_equalize, c.winsor_rewinsor) == (True, False, True)
    # A field name wins over the ZeMosaic key for the same field.
    c = StackConfig.from_dict({"stacking_kappa_low": 2.0, "kappa_low": 4.0,
                               "stacking_rejection_algorithm": "winsorized_sigma_clip",
                               "wsc_impl": "legacy_quantile", "reject": "gesd"})
    assert (c.kappa_low, c.reject) == (4.0, "gesd")


def test_not_a_mapping():
    with pytest.raises(TypeError, match="`data` must be a mapping"):
        StackConfig.from_dict([("reject", "mad")])


CONFIGS = [
    StackConfig(),
    StackConfig.plain(),
    StackConfig(reject="winsorized_quantile", winsor_limits=(0.1, 0.123456789), winsor_rewinsor=True),
    StackConfig(normalize="multiplicative_scaling", reject="gesd", combine="sum", gesd_alpha=0.01,
                gesd_outlier_fraction=0.2, radial_weight=True, radial_floor=0.0, rgb_equalize=True,
                rgb_equalize_gain_clip=(0.9, 1.2), reference_frame=2, max_iters=7),
    StackConfig(reject="minmax", minmax_low=0, minmax_high=2, combine="max", percentile_low=0.5),
    StackConfig(wsc_impl="zemosaic"),
    StackConfig(reject="winsorized_quantile", wsc_impl="zemosaic"),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("zemosaic", [False, True])
def test_round_trip_through_json(config, zemosaic):
    data = json.loads(json.dumps(config.to_dict(zemosaic=zemosaic)))
    assert StackConfig.from_dict(data) == config


def test_zemosaic_form_uses_zemosaic_keys():
    d = StackConfig(reject="winsorized_quantile", radial_weight=True).to_dict(zemosaic=True)
    assert d["stacking_rejection_algorithm"] == "winsorized_sigma_clip"
    assert d["wsc_impl"] == "legacy_quantile"
    assert d["stacking_winsor_limits"] == "0.05,0.05"
    assert d["apply_radial_weight"] is True and "radial_weight" not in d and "reject" not in d
    assert d["poststack_equalize_rgb"] is False and d["poststack_rgb_equalize_gain_clip"] == [0.95, 1.05]
    assert d["min_survivors"] == 3  # fields ZeMosaic lacks keep their own names
    assert StackConfig().to_dict(zemosaic=True)["wsc_impl"] == "pixinsight"
    assert StackConfig(wsc_impl="zemosaic").to_dict(zemosaic=True)["wsc_impl"] == "zemosaic"
    plain = StackConfig().to_dict()
    assert set(plain) == set(StackConfig.field_names()) and plain["winsor_limits"] == [0.05, 0.05]


class TestLoadConfigFile:
    def test_a_zemosaic_config_file_loads_as_it_is(self, tmp_path):
        path = tmp_path / "zemosaic_config.json"
        path.write_text(json.dumps(ZEMOSAIC_JSON), encoding="utf-8")
        assert load_config_file(path) == ZEMOSAIC_JSON
        assert load_config_file(str(path)) == ZEMOSAIC_JSON

    def test_byte_order_mark_of_windows_editors_is_accepted(self, tmp_path):
        path = tmp_path / "bom.json"
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"grid_workers": 2}).encode())
        assert load_config_file(path) == {"grid_workers": 2}

    def test_missing_file_is_named(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"config file '.*missing\.json' does not exist"):
            load_config_file(tmp_path / "missing.json")

    @pytest.mark.parametrize("text", ["{not json", "", "{\"a\": 1,}"], ids=["broken", "empty", "trailing-comma"])
    def test_invalid_json_is_named_with_the_parser_message(self, tmp_path, text):
        path = tmp_path / "bad.json"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=r"config file '.*bad\.json' is not valid JSON \(.*line 1"):
            load_config_file(path)

    def test_binary_file_is_not_json(self, tmp_path):
        path = tmp_path / "image.json"
        path.write_bytes(b"\x89PNG\xff\xfe")
        with pytest.raises(ValueError, match=r"config file '.*image\.json' is not valid JSON \(not UTF-8"):
            load_config_file(path)

    @pytest.mark.parametrize(("value", "kind"), [([1, 2], "array"), ("x", "string"), (3, "number"),
                                                 (True, "boolean"), (None, "null")])
    def test_not_an_object_says_what_it_holds(self, tmp_path, value, kind):
        path = tmp_path / "list.json"
        path.write_text(json.dumps(value), encoding="utf-8")
        with pytest.raises(ValueError, match=rf"config file '.*list\.json' holds a JSON {kind}; expected an object"):
            load_config_file(path)

    def test_a_folder_is_not_readable(self, tmp_path):
        with pytest.raises(OSError, match=r"config file '.*' cannot be read"):
            load_config_file(tmp_path)


def test_blank_strings_are_unset():
    # ZeMosaic's GUI stores an empty entry as "".
    assert StackConfig.from_dict({"stacking_kappa_low": "", "stacking_rejection_algorithm": "  "}) == StackConfig()


def test_from_dict_applies_onto_a_base():
    base = StackConfig(reject="gesd", kappa_low=2.0)
    got = zemosaic.stack_config_from_dict({"stacking_kappa_high": 4.0}, base=base)
    assert got == base.replace(kappa_high=4.0)


@pytest.mark.parametrize(("keys", "expected"), [
    ({}, None),
    ({"use_gpu_phase5": False}, False),
    ({"use_gpu_phase5": "auto", "stack_use_gpu": "yes"}, True),   # "auto" passes the decision on
    ({"use_gpu_phase5": "", "use_gpu_stack": 0}, False),
    ({"use_gpu_phase5": True, "stack_use_gpu": False}, True),     # the first switch set wins
    ({"use_gpu_grid": False}, None),                              # not a stacking switch
], ids=["unset", "phase5", "auto-then-stack", "blank-then-alias", "first-wins", "grid-key-ignored"])
def test_stacking_gpu_switches(keys, expected):
    assert gpu_flag(keys) is expected


def test_gpu_switch_that_is_not_a_boolean_is_named():
    with pytest.raises(ValueError, match=r"`stack_use_gpu` must be true, false or auto, got 'maybe'"):
        gpu_flag({"stack_use_gpu": "maybe"})


def test_grid_settings_read_units_and_precedence():
    got = grid_settings_from_dict({"batch_overlap_pct": 40, "grid_chunk_ram_gb": 0.5, "grid_workers": "3",
                                   "enable_resource_telemetry": "on", "unrelated": object()},
                                  max_overlap_fraction=0.9)
    assert got == {"overlap_fraction": 40 / 100.0, "stack_chunk_budget_mb": 512.0, "workers": 3,
                   "telemetry_enabled": True, "use_gpu": None}
    # an explicit fraction wins over the percentage, and is not clipped (GridConfig validates it)
    assert grid_settings_from_dict({"grid_overlap_fraction": 0.95, "batch_overlap_pct": 20},
                                   max_overlap_fraction=0.9)["overlap_fraction"] == 0.95
    # a budget of 0 is ZeMosaic's "auto": the first budget key set decides, and leaves it unset
    assert "stack_chunk_budget_mb" not in grid_settings_from_dict(
        {"stack_chunk_budget_mb": 0, "grid_chunk_ram_mb": 64}, max_overlap_fraction=0.9)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("grid_size_factor", "large", r"`grid_size_factor` must be a number, got 'large'"),
    ("grid_workers", [2], r"`grid_workers` must be a whole number"),
    ("grid_match_photometry", "sometimes", r"`grid_match_photometry` must be true or false"),
])
def test_bad_grid_values_name_the_key(key, value, match):
    with pytest.raises(ValueError, match=match):
        grid_settings_from_dict({key: value}, max_overlap_fraction=0.9)
