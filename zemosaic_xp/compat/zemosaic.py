"""ZeMosaic's configuration: its keys, how their values are spelled, and its config files.

A ``zemosaic_config.json`` drives every adapter unchanged: :func:`load_config_file`
reads it, ``StackConfig.from_dict`` (through :func:`stack_config_from_dict`) takes the
stacking keys, ``GridConfig.from_dict`` (through :func:`grid_settings_from_dict`) the
grid keys, and :func:`gpu_flag` resolves ZeMosaic's GPU switches. This module is the
only place that spells a ZeMosaic key.

Stacking keys (a dict may hold field names, ZeMosaic keys, or both):

================================  ===========================  ==========================
ZeMosaic key                      StackConfig field            value format
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
carries hundreds of GUI and GPU settings); ``None`` and blank strings mean "not set"
(ZeMosaic's GUI stores an empty entry as ``""``); a field name wins over the ZeMosaic key
for the same field; method names are matched case-insensitively with ``-``, ``+`` and
spaces read as ``_``; an unknown method name is a ``ValueError`` listing the valid names
and aliases. ``wsc_impl`` is both a ZeMosaic key and a field: ``"pixinsight"``
(ZeMosaic's default, which we read as PixInsight's own algorithm) and ``"zemosaic"``
(ZeMosaic's Huber variant) set the field, while ``"legacy_quantile"`` turns
``winsorized_sigma_clip`` into ``winsorized_quantile`` (other algorithms ignore it); as
in ZeMosaic, the first of ``wsc_impl``, ``winsor_impl``, ``stack_winsor_impl`` that is
set decides. ZeMosaic's ``noise_fwhm`` weighting needs star detection, which the core
does not have: it falls back to ``noise_variance``, as ZeMosaic itself does without
photutils.

Grid keys and GPU switches are listed in :data:`GRID_KEYS`, :data:`STACK_GPU_KEYS` and
:data:`GRID_GPU_KEYS`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core.config import (
    COMBINE_METHODS,
    NORMALIZE_METHODS,
    REJECT_METHODS,
    WEIGHTING_METHODS,
    WSC_IMPLEMENTATIONS,
    StackConfig,
)

__all__ = [
    "STACK_KEYS",
    "METHOD_ALIASES",
    "GRID_KEYS",
    "STACK_GPU_KEYS",
    "GRID_GPU_KEYS",
    "load_config_file",
    "is_set",
    "parse_bool",
    "parse_optional_bool",
    "parse_pair",
    "parse_method",
    "gpu_flag",
    "stack_config_from_dict",
    "stack_config_to_zemosaic",
    "grid_settings_from_dict",
]

logger = logging.getLogger(__name__)

#: ZeMosaic config key -> StackConfig field (first spelling is the one written back).
STACK_KEYS: dict[str, str] = {
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

#: ZeMosaic's GPU switches of the stacking phases, in the order ZeMosaic reads them.
STACK_GPU_KEYS = ("use_gpu_phase5", "stack_use_gpu", "use_gpu_stack")
#: Grid mode's GPU switch, then the stacking ones it inherits when unset or "auto".
GRID_GPU_KEYS = ("use_gpu_grid",) + STACK_GPU_KEYS

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
_PAIR_FIELDS = ("winsor_limits", "rgb_equalize_gain_clip", "rgb_equalize_bg_percentile")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_UNSET_FLAGS = ("auto", "none", "null")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ZeMosaic config file (``zemosaic_config.json``) into a dict.

    Parameters
    ----------
    path : str or path-like
        A JSON file holding one object of ZeMosaic keys (or StackConfig field names).
        UTF-8, with or without the byte-order mark that Windows editors write.

    Returns
    -------
    dict
        The JSON object as it is; the adapters pick the keys they know and ignore the rest.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    OSError
        ``path`` exists but cannot be read (a folder, no permission).
    ValueError
        The file is not valid JSON, or holds something other than a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        msg = f"config file '{path}' does not exist; check the path"
        raise FileNotFoundError(msg) from None
    except UnicodeDecodeError as exc:
        msg = f"config file '{path}' is not valid JSON (not UTF-8 text: {exc.reason} at byte {exc.start})"
        raise ValueError(msg) from exc
    except OSError as exc:
        msg = f"config file '{path}' cannot be read ({exc.strerror or exc})"
        raise OSError(msg) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        msg = f"config file '{path}' is not valid JSON ({exc}); fix it or pass another file"
        raise ValueError(msg) from exc
    if not isinstance(data, dict):
        msg = (f"config file '{path}' holds a JSON {_json_kind(data)}; expected an object of ZeMosaic "
               f"keys such as {{\"stacking_rejection_algorithm\": \"kappa_sigma\"}}")
        raise ValueError(msg)
    return data


def _json_kind(value: Any) -> str:
    kinds = ((list, "array"), (str, "string"), (bool, "boolean"), ((int, float), "number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def is_set(value: Any) -> bool:
    """Tell whether a config value counts as set: not None and not a blank string.

    Parameters
    ----------
    value : object
        A value of a config dict.

    Returns
    -------
    bool
        False for None, ``""`` and whitespace-only strings (ZeMosaic's empty entries).
    """
    return value is not None and not (isinstance(value, str) and not value.strip())


def parse_bool(value: Any, key: str) -> bool:
    """Read a boolean: True/False, 1/0, or "true"/"yes"/"on"/"1" and their opposites (any case).

    Parameters
    ----------
    value : object
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    bool
        The flag.

    Raises
    ------
    ValueError
        Anything else; the message names ``key``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    msg = f"`{key}` must be true or false, got {value!r}"
    raise ValueError(msg)


def parse_optional_bool(value: Any, key: str) -> bool | None:
    """Read a switch that may be left unset: None for None, blank, "auto", "none" or "null".

    Parameters
    ----------
    value : object
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    bool or None
        None when unset or "auto" (the caller's default applies).

    Raises
    ------
    ValueError
        Not a boolean nor one of the unset spellings; the message names ``key``.
    """
    if not is_set(value) or (isinstance(value, str) and value.strip().lower() in _UNSET_FLAGS):
        return None
    try:
        return parse_bool(value, key)
    except ValueError:
        msg = f"`{key}` must be true, false or auto, got {value!r}"
        raise ValueError(msg) from None


def parse_pair(value: Any, key: str) -> tuple[float, float]:
    """Read two numbers from ``"0.05,0.05"`` (ZeMosaic's string form, ``;`` also accepted) or a sequence.

    Parameters
    ----------
    value : str or sequence
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    (float, float)
        The pair, as floats (not range-checked: StackConfig validates).

    Raises
    ------
    ValueError
        Not exactly two numbers; the message names ``key``.
    """
    parts: Any = value
    if isinstance(value, str):
        parts = value.replace(";", ",").split(",")
    try:
        if isinstance(parts, (str, bytes)) or len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except (TypeError, ValueError):
        msg = f"`{key}` must be two numbers like \"0.05,0.05\" or [0.05, 0.05], got {value!r}"
        raise ValueError(msg) from None


def _spelling(value: str) -> str:
    out = value.strip().lower()
    for ch in "-+ ":
        out = out.replace(ch, "_")
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")


def parse_method(field: str, value: Any, key: str) -> str:
    """Read a method name: the public name of a ``field``'s method.

    Case, ``-``, ``+`` and spaces are forgiven and :data:`METHOD_ALIASES` applied.

    Parameters
    ----------
    field : {"normalize", "weighting", "reject", "combine"}
        The StackConfig field.
    value : object
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    str
        One of the field's public method names.

    Raises
    ------
    ValueError
        An unknown name; the message names ``key`` and lists the valid names and aliases.
    """
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


def gpu_flag(config: Mapping[str, Any], keys: tuple[str, ...] = STACK_GPU_KEYS) -> bool | None:
    """Resolve ZeMosaic's GPU switches: the first of ``keys`` that is set to true or false.

    Parameters
    ----------
    config : mapping
        ZeMosaic keys.
    keys : tuple of str
        The switches in the order they decide; default :data:`STACK_GPU_KEYS` (the
        classic stack); grid mode passes :data:`GRID_GPU_KEYS`.

    Returns
    -------
    bool or None
        A key that is unset or "auto" passes the decision to the next one; None when no
        key decides (the caller's default applies).

    Raises
    ------
    ValueError
        A switch that is neither a boolean nor "auto" (the message names it).
    """
    for key in keys:
        flag = parse_optional_bool(config.get(key), key)
        if flag is not None:
            return flag
    return None


def _stack_value(field: str, value: Any, key: str) -> Any:
    if field in _VALID:
        return parse_method(field, value, key)
    if field in _BOOL_FIELDS:
        return parse_bool(value, key)
    if field in _PAIR_FIELDS:
        return parse_pair(value, key)
    return value


def _wsc_impl(data: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(legacy, field)`` from the WSC keys: the first key set decides ``legacy``, as in
    ZeMosaic; ``field`` is the first ``"pixinsight"`` / ``"zemosaic"`` among them."""
    legacy: bool | None = None
    field = None
    for key in _WSC_IMPL_KEYS:
        value = data.get(key)
        if not is_set(value):
            continue
        impl = _spelling(value) if isinstance(value, str) else value
        if impl not in _WSC_IMPLS:
            msg = f"`{key}` must be one of {{{', '.join(repr(v) for v in _WSC_IMPLS)}}}, got {value!r}"
            raise ValueError(msg)
        legacy = impl == _LEGACY if legacy is None else legacy
        if field is None and impl != _LEGACY:
            field = impl
    return bool(legacy), field


def stack_config_from_dict(data: Mapping[str, Any], /, *, base: StackConfig | None = None) -> StackConfig:
    """Build a StackConfig from ZeMosaic keys and/or field names, on top of ``base``.

    Parameters
    ----------
    data : mapping
        A whole ``zemosaic_config.json`` dict, field names, or both (see the module
        docstring for the table and the rules).
    base : StackConfig, optional
        The values of the fields ``data`` leaves unset; default ``StackConfig()``.

    Returns
    -------
    StackConfig
        ``base`` with the fields that ``data`` sets (validated).

    Raises
    ------
    TypeError
        ``data`` is not a mapping.
    ValueError
        A known key holds an unknown method name (the message lists the valid ones)
        or an invalid value.
    """
    if not isinstance(data, Mapping):
        msg = f"`data` must be a mapping of config keys, got {type(data).__name__}"
        raise TypeError(msg)
    base = StackConfig() if base is None else base
    values: dict[str, Any] = {}
    for key, field in STACK_KEYS.items():
        if is_set(data.get(key)) and field not in values:
            values[field] = _stack_value(field, data[key], key)
    for key in StackConfig.field_names():
        if key != "wsc_impl" and is_set(data.get(key)):
            values[key] = _stack_value(key, data[key], key)
    legacy, impl = _wsc_impl(data)
    if impl is not None:
        values["wsc_impl"] = impl
    if legacy and values.get("reject") == "winsorized_sigma_clip":
        values["reject"] = "winsorized_quantile"
    return base.replace(**values)


def stack_config_to_zemosaic(config: StackConfig, /) -> dict[str, Any]:
    """Write ``config`` as a JSON-able dict under ZeMosaic's keys where ZeMosaic has one.

    Parameters
    ----------
    config : StackConfig
        The config to write.

    Returns
    -------
    dict
        ZeMosaic keys (``stacking_*``, ``wsc_impl``, ...) and, for the fields ZeMosaic
        lacks, field names; :func:`stack_config_from_dict` of it gives ``config`` back
        exactly.
    """
    out = config.to_dict()
    written: dict[str, str] = {}
    for key, field in STACK_KEYS.items():
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


def _number(kind: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    def read(value: Any, key: str) -> Any:
        try:
            return kind(value)
        except (TypeError, ValueError):
            msg = f"`{key}` must be a number, got {value!r}"
            raise ValueError(msg) from None
    return read


def _percent(value: Any, key: str) -> float:
    return _number(float)(value, key) / 100.0


def _gigabytes(value: Any, key: str) -> float:
    return _number(float)(value, key) * 1024.0


def _text(value: Any, key: str) -> str:
    return str(value).strip().lower()


#: ZeMosaic key -> (GridConfig field, reader), in the order each field reads them: the
#: first key set wins. ``batch_overlap_pct`` is ZeMosaic's batch overlap in percent.
GRID_KEYS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "grid_size_factor": ("grid_size_factor", _number(float)),
    "grid_overlap_fraction": ("overlap_fraction", _number(float)),
    "batch_overlap_pct": ("overlap_fraction", _percent),
    "grid_workers": ("workers", _number(int)),
    "grid_worker_kind": ("worker_kind", _text),
    "stack_chunk_budget_mb": ("stack_chunk_budget_mb", _number(float)),
    "grid_chunk_ram_mb": ("stack_chunk_budget_mb", _number(float)),
    "grid_chunk_ram": ("stack_chunk_budget_mb", _number(float)),
    "grid_chunk_ram_gb": ("stack_chunk_budget_mb", _gigabytes),
    "enable_resource_telemetry": ("telemetry_enabled", parse_bool),
    "resource_telemetry_log_to_csv": ("telemetry_log_to_csv", parse_bool),
    "resource_telemetry_interval_sec": ("telemetry_interval_sec", _number(float)),
    "parallel_target_ram_fraction": ("target_ram_fraction", _number(float)),
    "parallel_max_cpu_workers": ("max_cpu_workers", _number(int)),
    "grid_match_photometry": ("match_photometry", parse_bool),
    "grid_max_canvas_gb": ("max_canvas_gb", _number(float)),
}


def grid_settings_from_dict(config: Mapping[str, Any], /, *, max_overlap_fraction: float) -> dict[str, Any]:
    """Read the GridConfig fields (all but ``stack``) that a ZeMosaic config sets.

    Parameters
    ----------
    config : mapping
        ZeMosaic keys (:data:`GRID_KEYS`, :data:`GRID_GPU_KEYS`); other keys are ignored.
    max_overlap_fraction : float
        The largest tile overlap a grid accepts: ``batch_overlap_pct``, a percentage that
        ZeMosaic lets run to 100, is clipped into [0, this]. An explicit
        ``grid_overlap_fraction`` is not clipped (GridConfig validates it).

    Returns
    -------
    dict
        Field name -> value, for the fields set; ``use_gpu`` always (None when no GPU
        switch decides). A memory budget of 0 or less (ZeMosaic's "auto") is left unset.

    Raises
    ------
    ValueError
        A value that is not a number or boolean where one is expected (the message names
        the key).
    """
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key, (field, read) in GRID_KEYS.items():
        if field not in out and is_set(config.get(key)):
            out[field] = read(config[key], key)
            source[field] = key
    if source.get("overlap_fraction") == "batch_overlap_pct":
        out["overlap_fraction"] = min(max_overlap_fraction, max(0.0, out["overlap_fraction"]))
    if out.get("stack_chunk_budget_mb", 1.0) <= 0:
        del out["stack_chunk_budget_mb"]
    out["use_gpu"] = gpu_flag(config, GRID_GPU_KEYS)
    return out
