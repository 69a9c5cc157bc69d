"""StackConfig validation and the method-name registries."""

from __future__ import annotations

import dataclasses

import pytest

from zemosaic_xp import StackConfig
from zemosaic_xp.core import combine, config, normalize, reject, weights


def test_defaults_are_zemosaics():
    c = StackConfig()
    assert (c.normalize, c.weighting, c.reject, c.combine) == (
        "linear_fit", "noise_variance", "winsorized_sigma_clip", "mean")
    assert (c.kappa_low, c.kappa_high, c.winsor_limits, c.min_survivors) == (3.0, 3.0, (0.05, 0.05), 3)
    assert c.effective_max_iters() == 10
    assert StackConfig(reject="kappa_sigma").effective_max_iters() == 5
    assert StackConfig(reject="kappa_sigma", max_iters=1).effective_max_iters() == 1


def test_plain_preset():
    c = StackConfig.plain()
    assert (c.normalize, c.weighting, c.reject, c.combine) == ("none", "none", "none", "mean")
    assert StackConfig.plain(reject="kappa_sigma").reject == "kappa_sigma"


def test_frozen_and_replace():
    c = StackConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.kappa_low = 2.0
    assert c.replace(kappa_low=2.0).kappa_low == 2.0
    with pytest.raises(ValueError, match="kappa_low"):
        c.replace(kappa_low=-1)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("reject", "sigma", r"`reject` must be one of .*'kappa_sigma'"),
    ("normalize", "linear", r"`normalize` must be one of .*'linear_fit'"),
    ("weighting", "snr", r"`weighting` must be one of .*'noise_variance'"),
    ("combine", "average", r"`combine` must be one of .*'median'"),
    ("kappa_low", 0, r"`kappa_low` must be finite and > 0"),
    ("kappa_high", float("nan"), r"`kappa_high` must be finite"),
    ("kappa_high", "x", r"`kappa_high` must be a number"),
    ("max_iters", 0, r"`max_iters` must be an integer >= 1"),
    ("winsor_limits", (0.5, 0.1), r"`winsor_limits` fractions must each be in \[0, 0.5\)"),
    ("winsor_limits", (0.1,), r"`winsor_limits` must be a pair"),
    ("winsor_limits", "0.05,0.05", r"`winsor_limits` must be a pair"),
    ("min_survivors", 0, r"`min_survivors` must be an integer >= 1"),
    ("sigma_ddof", -1, r"`sigma_ddof`"),
    ("radial_feather_fraction", 1.5, r"`radial_feather_fraction` must be in \(0, 1\]"),
    ("rgb_equalize", "yes", r"`rgb_equalize` must be True or False"),
])
def test_bad_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        StackConfig(**{field: value})


def test_registries_match_public_names():
    assert set(config.REJECT_METHODS) == set(reject.REJECTORS)
    assert set(config.COMBINE_METHODS) == set(combine.COMBINERS)
    assert set(config.NORMALIZE_METHODS) == set(normalize.NORMALIZERS)
    assert set(config.WEIGHTING_METHODS) == set(weights.WEIGHTERS)


def test_to_dict_is_json_able():
    import json

    d = StackConfig().to_dict()
    assert json.loads(json.dumps(d))["winsor_limits"] == [0.05, 0.05]
    assert set(d) == set(StackConfig.field_names())


@pytest.mark.parametrize(("field", "value", "match"), [
    ("percentile_low", 0, r"`percentile_low` must be finite and > 0"),
    ("percentile_high", "x", r"`percentile_high` must be a number"),
    ("minmax_low", -1, r"`minmax_low` must be an integer >= 0"),
    ("minmax_high", 1.5, r"`minmax_high` must be an integer >= 0"),
    ("gesd_outlier_fraction", 1.0, r"`gesd_outlier_fraction` must be in \(0, 1\)"),
    ("gesd_alpha", 0.5, r"`gesd_alpha` must be in \(0, 0.5\)"),
    ("gesd_alpha", 0, r"`gesd_alpha` must be finite and > 0"),
    ("radial_floor", 1.5, r"`radial_floor` must be in \[0, 1\]"),
    ("rgb_equalize_gain_clip", (1.1, 1.2), r"`rgb_equalize_gain_clip` must satisfy 0 < low <= 1 <= high"),
    ("rgb_equalize_gain_clip", "0.9,1.1", r"`rgb_equalize_gain_clip` must be a pair"),
    ("rgb_equalize_bg_percentile", (85, 5), r"`rgb_equalize_bg_percentile` must satisfy 0 <= low < high <= 100"),
    ("rgb_equalize_min_samples", -5, r"`rgb_equalize_min_samples` must be an integer >= 0"),
    ("rgb_equalize_min_coverage", 2.0, r"`rgb_equalize_min_coverage` must be in \[0, 1\]"),
    ("winsor_rewinsor", "yes", r"`winsor_rewinsor` must be True or False"),
])
def test_new_fields_are_validated(field, value, match):
    with pytest.raises(ValueError, match=match):
        StackConfig(**{field: value})


def test_new_defaults():
    c = StackConfig()
    assert (c.percentile_low, c.percentile_high, c.minmax_low, c.minmax_high) == (0.2, 0.1, 1, 1)
    assert (c.gesd_outlier_fraction, c.gesd_alpha, c.winsor_rewinsor, c.radial_floor) == (0.3, 0.05, False, 0.05)
    assert (c.rgb_equalize_gain_clip, c.rgb_equalize_bg_percentile) == ((0.95, 1.05), (5.0, 85.0))
    assert (c.rgb_equalize_min_samples, c.rgb_equalize_min_coverage) == (5000, 0.01)
    iters = {r: StackConfig(reject=r).effective_max_iters() for r in ("mad", "linear_fit_clip", "winsorized_quantile",
                                                                      "percentile", "minmax")}
    assert iters == {"mad": 5, "linear_fit_clip": 10, "winsorized_quantile": 5, "percentile": 1, "minmax": 1}
