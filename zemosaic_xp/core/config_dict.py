"""Plain dicts ↔ :class:`~.config.StackConfig`, including ZeMosaic's config keys.

``StackConfig.from_dict`` / ``StackConfig.to_dict`` delegate here. A dict may hold
field names, ZeMosaic keys, or both (a whole ``zemosaic_config.json``):

================================  ===========================  ==========================
ZeMosaic key                      field                        value format
================================  ===========================  ==========================
stacking_normalize_method         normalize                    method name or alias
stacking_weighting_method         weighting                    method name or alias
stacking_rejection_algorithm      reject                       method name or alias
wsc_impl (winsor_impl,            wsc_impl, or reject          "pixinsight" (default),
stack_winsor_impl)                                             "zemosaic" or
                                                               "legacy_quantile"
stacking_kappa_low / _high        kappa_low / kappa_high       number
stacking_winsor_limits            winsor_limits                "0.05,0.05" or [0.05, 0.05]
stacking_final_combine_method     combine                      method name or alias
apply_radial_weight               radial_weight                bool
radial_feather_fraction           radial_feather_fraction      number
radial_shape_power                radial_shape_power           number
poststack_equalize_rgb            rgb_equalize                 bool
poststack_rgb_equalize_gain_clip  rgb_equalize_gain_clip       [low, high]
poststack_rgb_equalize_*          rgb_equalize_* (bg_percentile, min_samples, min_coverage)
================================  ===========================  ==========================

Rules: keys that are neither a field nor in this table are ignored (a ZeMosaic config
carries hundreds of GUI and GPU settings); ``None`` values mean "not set"; a field name
wins over the ZeMosaic key for the same field; method names are matched case-
insensitively with ``-``, ``+`` and spaces read as ``_``; an unknown method name is a
``ValueError`` listing the valid names and aliases. ``wsc_impl`` is both a ZeMosaic key
and a field: ``"pixinsight"`` (ZeMosaic's default, which we read as PixInsight's own
algorithm) and ``"zemosaic"`` (ZeMosaic's Huber variant) set the field, while
``"legacy_quantile"`` turns ``winsorized_sigma_clip`` into ``winsorized_quantile``
(other algorithms ignore it); as in ZeMosaic, the first of ``wsc_impl``,
``winsor_impl``, ``stack_winsor_impl`` that is set decides. ZeMosaic's ``noise_fwhm`` weighting needs star detection, which the core does not
have: it falls back to ``noise_variance``, as ZeMosaic itself does without photutils.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .config import (COMBINE_METHODS, NORMALIZE_METHODS, REJECT_METHODS, WEIGHTING_METHODS,
                     WSC_IMPLEMENTATIONS, StackConfig)

__all__ = ["config_from_dict", "config_to_dict", "ZEMOSAIC_KEYS", "METHOD_ALIASES"]

logger = logging.getLogger(__name__)

#: ZeMosaic config key -> StackConfig field (first spelling is the one ``to_dict`` writes).
ZEMOSAIC_KEYS: dict[str, str] = {
    "stacking_normalize_method": "normalize",
    "stacking_weighting_method": "weighting",
    "stacking_rejection_algorithm": "reject",
    "stacking_kappa_low": "kappa_low",
    "stacking_kappa_high": "kappa_high",
    "stacking_winsor_limits": "winsor_limits",
    "stacking_final_combine_method": "combine",
    "apply_radial_weight": "radial_weight",
    "radial_feather_fraction": "radial_feather_fraction",
    "radial_shape_power": "radial_shape_power",
    "poststack_equalize_rgb": "rgb_equalize",
    "poststack_rgb_equalize_gain_clip": "rgb_equalize_gain_clip",
    "poststack_rgb_equalize_bg_percentile": "rgb_equalize_bg_percentile",
    "poststack_rgb_equalize_min_samples": "rgb_equalize_min_samples",
    "poststack_rgb_equalize_min_coverage": "rgb_equalize_min_coverage",
    # upstream_spec §7 also spells the RGB parameters this way
    "poststack_equalize_rgb_gain_clip": "rgb_equalize_gain_clip",
    "poststack_equalize_rgb_bg_percentile": "rgb_equalize_bg_percentile",
    "poststack_equalize_rgb_min_samples": "rgb_equalize_min_samples",
    "poststack_equalize_rgb_min_coverage": "rgb_equalize_min_coverage",
}

# ZeMosaic resolves the WSC implementation from these keys, first one set wins.
_WSC_IMPL_KEYS = ("wsc_impl", "winsor_impl", "stack_winsor_impl")
_LEGACY = "legacy_quantile"
_WSC_IMPLS = WSC_IMPLEMENTATIONS + (_LEGACY,)

#: Accepted spellings of each method, per field (after lower-casing and ``-+ `` → ``_``).
METHOD_ALIASES: dict[str, dict[str, str]] = {
    "normalize": {
        "no": "none", "off": "none", "linear": "linear_fit", "sky": "sky_mean",
        "median_ratio": "median", "additive_with_scaling": "additive_scaling",
        "multiplicative_with_scaling": "multiplicative_scaling",
    },
    "weighting": {
        "no": "none", "off": "none", "unit": "none", "unity": "none", "uniform": "none",
        "noise": "noise_variance", "variance": "noise_variance",
        # Star-based weights need a detector the core does not have; ZeMosaic falls
        # back to noise_variance without photutils, and so do we.
        "noise_fwhm": "noise_variance", "noise_plus_fwhm": "noise_variance",
    },
    "reject": {
        "no": "none", "off": "none",
        "kappa": "kappa_sigma", "kappa_sigma_clip": "kappa_sigma", "sigma_clip": "kappa_sigma",
        "sigma_clipping": "kappa_sigma",
        "winsor": "winsorized_sigma_clip", "winsorized": "winsorized_sigma_clip",
        "wsc": "winsorized_sigma_clip", "winsorized_sigma_clipping": "winsorized_sigma_clip",
        "legacy_quantile": "winsorized_quantile",
        "linear_fit": "linear_fit_clip", "linear_fit_clipping": "linear_fit_clip",
        "linear": "linear_fit_clip",
        "percentile_clip": "percentile", "percentile_clipping": "percentile",
        "mad_clip": "mad", "mad_clipping": "mad", "median_mad": "mad",
        "esd": "gesd", "gesdt": "gesd", "generalized_esd": "gesd",
        "min_max": "minmax", "minmax_clip": "minmax", "clip_extrema": "minmax",
    },
    "combine": {
        "average": "mean", "avg": "mean", "med": "median", "summation": "sum", "add": "sum",
        "minimum": "min", "maximum": "max",
    },
}
_VALID = {"normalize": NORMALIZE_METHODS, "weighting": WEIGHTING_METHODS,
          "reject": REJECT_METHODS, "combine": COMBINE_METHODS}
_BOOL_FIELDS = ("radial_weight", "rgb_equalize", "winsor_rewinsor")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _spelling(value: str) -> str:
    out = value.strip().lower()
    for ch in "-+ ":
        out = out.replace(ch, "_")
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")


def _method(field: str, value: Any, key: str) -> str:
    valid = _VALID[field]
    if isinstance(value, str):
        name = _spelling(value)
        name = METHOD_ALIASES[field].get(name, name)
        if name in valid:
            if name != _spelling(value):
                logger.debug("config `%s` = %r read as %r", key, value, name)
            return name
    aliases = ", ".join(sorted(METHOD_ALIASES[field]))
    msg = (f"`{key}` must be one of {{{', '.join(repr(v) for v in valid)}}} "
           f"(aliases: {aliases}), got {value!r}")
    raise ValueError(msg)


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    msg = f"`{key}` must be true or false, got {value!r}"
    raise ValueError(msg)


def _pair(value: Any, key: str) -> tuple[float, float]:
    """A pair of numbers from ``"0.05,0.05"`` (ZeMosaic's string form) or a sequence."""
    parts: Any = value
    if isinstance(value, str):
        parts = [p for p in value.replace(";", ",").split(",")]
    try:
        if isinstance(parts, (str, bytes)) or len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        msg = f"`{key}` must be two numbers like \"0.05,0.05\" or [0.05, 0.05], got {value!r}"
        raise ValueError(msg) from None


def _convert(field: str, value: Any, key: str) -> Any:
    if field in _VALID:
        return _method(field, value, key)
    if field in _BOOL_FIELDS:
        return _bool(value, key)
    if field in ("winsor_limits", "rgb_equalize_gain_clip", "rgb_equalize_bg_percentile"):
        return _pair(value, key)
    return value


def _wsc_impl(data: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(legacy, field)`` from the WSC keys: the first key set decides ``legacy``, as in
    ZeMosaic; ``field`` is the first ``"pixinsight"`` / ``"zemosaic"`` among them."""
    legacy: bool | None = None
    field = None
    for key in _WSC_IMPL_KEYS:
        value = data.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        impl = _spelling(value) if isinstance(value, str) else value
        if impl not in _WSC_IMPLS:
            msg = f"`{key}` must be one of {{{', '.join(repr(v) for v in _WSC_IMPLS)}}}, got {value!r}"
            raise ValueError(msg)
        legacy = impl == _LEGACY if legacy is None else legacy
        if field is None and impl != _LEGACY:
            field = impl
    return bool(legacy), field


def config_from_dict(cls: type[StackConfig], data: Any) -> StackConfig:
    """See :meth:`StackConfig.from_dict`."""
    if not isinstance(data, Mapping):
        msg = f"`data` must be a mapping of config keys, got {type(data).__name__}"
        raise TypeError(msg)
    names = set(cls.field_names())
    values: dict[str, Any] = {}
    for key, field in ZEMOSAIC_KEYS.items():
        if data.get(key) is not None and field not in values:
            values[field] = _convert(field, data[key], key)
    for key in names - {"wsc_impl"}:
        if data.get(key) is not None:
            values[key] = _convert(key, data[key], key)
    legacy, impl = _wsc_impl(data)
    if impl is not None:
        values["wsc_impl"] = impl
    if legacy and values.get("reject") == "winsorized_sigma_clip":
        values["reject"] = "winsorized_quantile"
    return cls(**values)


def config_to_dict(config: StackConfig, *, zemosaic: bool = False) -> dict[str, Any]:
    """See :meth:`StackConfig.to_dict`."""
    out = {name: getattr(config, name) for name in config.field_names()}
    for name, value in out.items():
        if isinstance(value, tuple):
            out[name] = list(value)
    if not zemosaic:
        return out
    written = {}
    for key, field in ZEMOSAIC_KEYS.items():
        if field in out and field not in written.values():
            written[key] = field
    result = {key: out.pop(field) for key, field in written.items()}
    legacy = config.reject == "winsorized_quantile"
    result["stacking_rejection_algorithm"] = "winsorized_sigma_clip" if legacy else config.reject
    impl = out.pop("wsc_impl")
    result["wsc_impl"] = _LEGACY if legacy else impl
    if legacy and impl != WSC_IMPLEMENTATIONS[0]:
        # ZeMosaic reads only the first key set (wsc_impl); ours keeps the field exact.
        result["winsor_impl"] = impl
    # ZeMosaic stores the limits as a string of fractions; repr keeps every digit.
    result["stacking_winsor_limits"] = ",".join(repr(v) for v in config.winsor_limits)
    result.update(out)
    return result
