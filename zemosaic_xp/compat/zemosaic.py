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
stacking_final_combine_percentile combine_percentile           number, percent (0-100)
stacking_cosmic_mode              cosmic                       "off", "auto" or "always"
stacking_cosmic_min_depth         cosmic_min_depth             whole number
stacking_cosmic_method            cosmic_method                "sharp" or "lacosmic"
apply_radial_weight               radial_weight                bool
radial_feather_fraction           radial_feather_fraction      number
radial_shape_power                radial_shape_power           number
poststack_equalize_rgb            rgb_equalize                 bool
poststack_rgb_equalize_gain_clip  rgb_equalize_gain_clip       [low, high]
poststack_rgb_equalize_*          rgb_equalize_* (bg_percentile, min_samples, min_coverage)
================================  ===========================  ==========================

Rules: every value is read by type (:mod:`.values`) and range-checked by
``StackConfig`` / ``GridConfig``; a bad value is a ``ValueError`` naming the key as
written (``stacking_kappa_low``, not the field) and the config file when the dict came
from :func:`load_config_file`. Nothing is clamped, rounded or replaced in silence. Keys
that we neither read nor list in :data:`IGNORED_KEYS` / :data:`IGNORED_PREFIXES`
(ZeMosaic's GUI and pipeline settings that grid and classic knowingly ignore) are listed
once, in one ``[CONFIG]`` warning, with the nearest known key (a typo such as
``grid_workerz`` is caught). ``None`` and blank strings mean "not set"
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

import difflib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.config import WSC_IMPLEMENTATIONS, StackConfig
from .values import (
    METHOD_ALIASES,
    is_set,
    parse_bool,
    parse_gigabytes_as_mb,
    parse_int,
    parse_method,
    parse_number,
    parse_optional_bool,
    parse_pair,
    parse_percent,
    parse_text,
    spelling,
)

# The value readers (is_set, parse_bool, ...) live in compat/values.py, their one home.
__all__ = ["STACK_KEYS", "METHOD_ALIASES", "GRID_KEYS", "STACK_GPU_KEYS", "GRID_GPU_KEYS", "GRID_EXTRA_KEYS",
           "IGNORED_KEYS", "IGNORED_PREFIXES", "ConfigFile", "load_config_file", "unknown_keys",
           "warn_unknown_keys", "naming_keys", "gpu_flag", "stack_config_from_dict", "stack_config_to_zemosaic",
           "grid_settings_from_dict"]

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
    "stacking_final_combine_percentile": "combine_percentile",
    "stacking_cosmic_mode": "cosmic",
    "stacking_cosmic_min_depth": "cosmic_min_depth",
    "stacking_cosmic_method": "cosmic_method",
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

_STACK_DEFAULTS = StackConfig()
_BOOL_FIELDS = ("radial_weight", "rgb_equalize", "winsor_rewinsor")
_PAIR_FIELDS = ("winsor_limits", "rgb_equalize_gain_clip", "rgb_equalize_bg_percentile")

#: ZeMosaic keys that grid and classic knowingly ignore (no "unknown key" warning): its
#: GUI's and classic pipeline's settings named in upstream_spec §3.9, §4, §5 and §7 —
#: GPU device choice, WSC memory knobs, the frame pre-filter, the parallel planner and
#: Phase 3 memory controller (we size bands from ``memory_budget_bytes`` instead).
IGNORED_KEYS = frozenset({
    "use_gpu", "gpu_id_phase5", "gpu_selector", "gpu_hybrid_vram_guard",
    "winsor_worker_limit", "winsor_max_frames_per_pass", "winsor_auto_fallback_on_memory_error",
    "winsor_min_frames_per_pass", "winsor_memmap_fallback", "winsor_split_strategy",
    "stack_stat_min_finite_frac", "stack_stat_min_nonzero_frac", "stack_stat_min_finite_px_per_channel",
    "parallel_autotune_enabled", "parallel_target_cpu_load", "parallel_gpu_vram_fraction",
    "chunk_profile_mode", "phase3_ram_high_pct", "phase3_ram_critical_pct", "phase3_chunk_scale_high",
    "phase3_chunk_scale_critical", "phase3_internal_chunk_threshold", "phase3_internal_chunk_size",
    "extreme_group_threshold", "extreme_group_winsor_cap", "center_out_normalization_p3",
    "inter_master_merge_enable",
})
#: Families of ZeMosaic keys ignored likewise (upstream_spec §4.4, §4.5, §7): the quality
#: crop and gate, the Alt-Az clean-up and the Phase 3 memory orchestrator overrides.
IGNORED_PREFIXES = ("quality_crop_", "quality_gate_", "altaz_", "phase3_mem_orch_")
_LISTED_UNKNOWN = 8  # names in the warning before "and N more"

class ConfigFile(dict):
    """The dict of a config file, which remembers the file's path.

    A plain ``dict`` in every other way (JSON-able, picklable); the readers of this
    module name :attr:`path` in their errors and warnings.

    Parameters
    ----------
    data : mapping
        The keys and values.
    path : path-like
        The file they were read from.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    """

    def __init__(self, data: Mapping[str, Any], path: str | os.PathLike) -> None:
        super().__init__(data)
        self.path = Path(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ConfigFile, (dict(self), self.path))


def load_config_file(path: str | os.PathLike) -> ConfigFile:
    """Read a ZeMosaic config file (``zemosaic_config.json``) into a dict.

    Parameters
    ----------
    path : str or path-like
        A JSON file holding one object of ZeMosaic keys (or StackConfig field names).
        UTF-8, with or without the byte-order mark that Windows editors write.

    Returns
    -------
    ConfigFile
        The JSON object as it is, a dict that remembers ``path``; the adapters read the
        keys they know (naming the file in their errors) and warn about the rest.

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
    return ConfigFile(data, path)


def _json_kind(value: Any) -> str:
    kinds = ((list, "array"), (str, "string"), (bool, "boolean"), ((int, float), "number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _known_keys() -> frozenset[str]:
    return frozenset(STACK_KEYS) | frozenset(StackConfig.field_names()) | frozenset(_WSC_IMPL_KEYS) \
        | frozenset(GRID_KEYS) | frozenset(GRID_GPU_KEYS) | frozenset(GRID_EXTRA_KEYS)


def unknown_keys(data: Mapping[str, Any], /) -> list[str]:
    """List the keys of a config that nothing reads and that are not knowingly ignored.

    Parameters
    ----------
    data : mapping
        ZeMosaic keys and/or StackConfig field names.

    Returns
    -------
    list of str
        In the dict's order: keys that are neither read (stacking, grid, GPU keys,
        StackConfig fields) nor on :data:`IGNORED_KEYS` / :data:`IGNORED_PREFIXES`.
    """
    known = _known_keys() | IGNORED_KEYS
    return [str(key) for key in data
            if str(key) not in known and not str(key).startswith(IGNORED_PREFIXES)]


def warn_unknown_keys(data: Mapping[str, Any], /) -> list[str]:
    """Log one ``[CONFIG]`` warning listing the :func:`unknown_keys` of a config, if any.

    Parameters
    ----------
    data : mapping
        The config; a :class:`ConfigFile` is named in the warning.

    Returns
    -------
    list of str
        The unknown keys (empty: nothing logged). Each is listed with the nearest
        known key, if one is close (a typo).
    """
    unknown = unknown_keys(data)
    if not unknown:
        return unknown
    known = sorted(_known_keys())
    names = []
    for key in unknown[:_LISTED_UNKNOWN]:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        names.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    more = len(unknown) - _LISTED_UNKNOWN
    listing = ", ".join(names) + (f" and {more} more" if more > 0 else "")
    logger.warning("[CONFIG] %s%d unknown key%s ignored: %s", _where(data), len(unknown),
                   "" if len(unknown) == 1 else "s", listing)
    return unknown


def _where(data: Any) -> str:
    path = getattr(data, "path", None)
    return f"config file '{path}': " if path is not None else ""


def _key_sources(data: Mapping[str, Any]) -> dict[str, str]:
    """Field -> the key that set it (the first set, as the readers take them)."""
    sources: dict[str, str] = {}
    for key, field in STACK_KEYS.items():
        if is_set(data.get(key)):
            sources.setdefault(field, key)
    for key, (field, _) in GRID_KEYS.items():
        if is_set(data.get(key)):
            sources.setdefault(field, key)
    for key in StackConfig.field_names():
        if is_set(data.get(key)):
            sources[key] = key  # a field name wins over the ZeMosaic key
    return sources


class _ConfigValueError(ValueError):
    """A config error whose message already names the key and the file."""


@contextmanager
def naming_keys(data: Mapping[str, Any], /) -> Iterator[None]:
    """Name the config key and file in the ``ValueError`` raised inside the block.

    Validation messages name a field (`` `kappa_low` must be ...``); inside this
    block they are rewritten to name the key that set it (`` `stacking_kappa_low` ...``)
    and prefixed with ``config file '<path>': `` when ``data`` is a :class:`ConfigFile`.

    Parameters
    ----------
    data : mapping
        The config the block reads.

    Yields
    ------
    None
        Nothing; the block runs as is.

    Raises
    ------
    ValueError
        The block's, reworded (nested blocks reword once).
    """
    try:
        yield
    except _ConfigValueError:
        raise
    except ValueError as exc:
        msg = str(exc)
        for field, key in _key_sources(data).items():
            if key != field:
                msg = msg.replace(f"`{field}`", f"`{key}`").replace(f"`{field}[", f"`{key}[")
        raise _ConfigValueError(_where(data) + msg) from exc

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
    """The value of ``field`` read by type; ranges are StackConfig's to check."""
    if field in METHOD_ALIASES:  # the method fields
        return parse_method(field, value, key)
    if field in _BOOL_FIELDS:
        return parse_bool(value, key)
    if field in _PAIR_FIELDS:
        return parse_pair(value, key)
    default = getattr(_STACK_DEFAULTS, field)
    if field == "max_iters" or isinstance(default, int):  # bools are handled above
        return parse_int(value, key)
    if isinstance(default, float):
        return parse_number(value, key)
    return value  # wsc_impl: StackConfig checks the choice


def _wsc_impl(data: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``(legacy, field)`` from the WSC keys: the first key set decides ``legacy``, as in
    ZeMosaic; ``field`` is the first ``"pixinsight"`` / ``"zemosaic"`` among them."""
    legacy: bool | None = None
    field = None
    for key in _WSC_IMPL_KEYS:
        value = data.get(key)
        if not is_set(value):
            continue
        impl = spelling(value) if isinstance(value, str) else value
        if impl not in _WSC_IMPLS:
            msg = f"`{key}` must be one of {{{', '.join(repr(v) for v in _WSC_IMPLS)}}}, got {value!r}"
            raise ValueError(msg)
        legacy = impl == _LEGACY if legacy is None else legacy
        if field is None and impl != _LEGACY:
            field = impl
    return bool(legacy), field


def stack_config_from_dict(data: Mapping[str, Any], /, *, base: StackConfig | None = None,
                           warn_unknown: bool = True) -> StackConfig:
    """Build a StackConfig from ZeMosaic keys and/or field names, on top of ``base``.

    Parameters
    ----------
    data : mapping
        A whole ``zemosaic_config.json`` dict, field names, or both (see the module
        docstring for the table and the rules); a :class:`ConfigFile` is named in errors.
    base : StackConfig, optional
        The values of the fields ``data`` leaves unset; default ``StackConfig()``.
    warn_unknown : bool
        Log the keys nothing reads (:func:`warn_unknown_keys`); default True. A caller
        that reads more keys of the same dict warns once itself.

    Returns
    -------
    StackConfig
        ``base`` with the fields that ``data`` sets (validated).

    Raises
    ------
    TypeError
        ``data`` is not a mapping.
    ValueError
        A known key holds a value of the wrong type (``"x"`` for a number, ``1.7`` for
        an integer), out of range, or an unknown method name (the message lists the
        valid ones); it names the key as written and the file.
    """
    if not isinstance(data, Mapping):
        msg = f"`data` must be a mapping of config keys, got {type(data).__name__}"
        raise TypeError(msg)
    if warn_unknown:
        warn_unknown_keys(data)
    base = StackConfig() if base is None else base
    with naming_keys(data):
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


#: ZeMosaic key -> (GridConfig field, reader), in the order each field reads them: the
#: first key set wins. ``batch_overlap_pct`` is ZeMosaic's batch overlap in percent.
GRID_KEYS: dict[str, tuple[str, Callable[[Any, str], Any]]] = {
    "grid_size_factor": ("grid_size_factor", parse_number),
    "grid_overlap_fraction": ("overlap_fraction", parse_number),
    "batch_overlap_pct": ("overlap_fraction", parse_percent),
    "grid_workers": ("workers", parse_int),
    "grid_worker_kind": ("worker_kind", parse_text),
    "stack_chunk_budget_mb": ("stack_chunk_budget_mb", parse_number),
    "grid_chunk_ram_mb": ("stack_chunk_budget_mb", parse_number),
    "grid_chunk_ram": ("stack_chunk_budget_mb", parse_number),
    "grid_chunk_ram_gb": ("stack_chunk_budget_mb", parse_gigabytes_as_mb),
    "enable_resource_telemetry": ("telemetry_enabled", parse_bool),
    "resource_telemetry_log_to_csv": ("telemetry_log_to_csv", parse_bool),
    "resource_telemetry_interval_sec": ("telemetry_interval_sec", parse_number),
    "parallel_target_ram_fraction": ("target_ram_fraction", parse_number),
    "parallel_max_cpu_workers": ("max_cpu_workers", parse_int),
    "grid_match_photometry": ("match_photometry", parse_bool),
    "grid_max_canvas_gb": ("max_canvas_gb", parse_number),
    "final_mosaic_rgb_equalize_enabled": ("final_rgb_equalize", parse_bool),
    "final_mosaic_rgb_equalize_gain_clip": ("final_rgb_gain_clip", parse_pair),
    "final_mosaic_dbe_enabled": ("dbe", parse_bool),
    "final_mosaic_dbe_strength": ("dbe_strength", parse_text),
    "save_final_as_uint16": ("save_uint16", parse_bool),
    "legacy_rgb_cube": ("legacy_rgb_cube", parse_bool),
}
#: Read with GRID_KEYS: false leaves the final RGB gains unclipped.
_RGB_CLIP_SWITCH = "final_mosaic_rgb_equalize_clip_enabled"
#: Grid keys read outside GRID_KEYS' one-key-one-field table: the clip switch above and
#: ``grid_rgb_equalize`` (the tiles' RGB equalisation, ``GridConfig.from_dict``).
GRID_EXTRA_KEYS = (_RGB_CLIP_SWITCH, "grid_rgb_equalize")


def grid_settings_from_dict(config: Mapping[str, Any], /, *, max_overlap_fraction: float) -> dict[str, Any]:
    """Read the GridConfig fields (all but ``stack``) that a ZeMosaic config sets.

    Parameters
    ----------
    config : mapping
        ZeMosaic keys (:data:`GRID_KEYS`, :data:`GRID_GPU_KEYS`); other keys are ignored.
    max_overlap_fraction : float
        The largest tile overlap a grid accepts: ``batch_overlap_pct`` (a percentage)
        must lie in [0, 100 × this]. An explicit ``grid_overlap_fraction`` is checked by
        GridConfig.

    Returns
    -------
    dict
        Field name -> value, for the fields set; ``use_gpu`` always (None when no GPU
        switch decides). A memory budget of 0 (ZeMosaic's "auto") is left unset, so the
        default applies.

    Raises
    ------
    ValueError
        A value of the wrong type (``"two"`` or ``1.7`` for ``grid_workers``), a
        ``batch_overlap_pct`` out of range or a negative memory budget; the message
        names the key. Nothing is clipped or replaced.
    """
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    for key, (field, read) in GRID_KEYS.items():
        if field not in out and is_set(config.get(key)):
            out[field] = read(config[key], key)
            source[field] = key
    if source.get("overlap_fraction") == "batch_overlap_pct" \
            and not 0.0 <= out["overlap_fraction"] <= max_overlap_fraction:
        msg = (f"`batch_overlap_pct` must be in [0, {max_overlap_fraction * 100:g}] (percent of the tile "
               f"side), got {config['batch_overlap_pct']!r}")
        raise ValueError(msg)
    budget = out.get("stack_chunk_budget_mb")
    if budget is not None and budget < 0:
        key = source["stack_chunk_budget_mb"]
        msg = f"`{key}` must be >= 0 (0 = auto, the default budget), got {config[key]!r}"
        raise ValueError(msg)
    if budget == 0:
        del out["stack_chunk_budget_mb"]
    if is_set(config.get(_RGB_CLIP_SWITCH)) and not parse_bool(config[_RGB_CLIP_SWITCH], _RGB_CLIP_SWITCH):
        out["final_rgb_gain_clip"] = None
    out["use_gpu"] = gpu_flag(config, GRID_GPU_KEYS)
    return out


def __getattr__(name: str) -> Any:
    """ZeMosaic's worker entries (:mod:`.grid_entry`, :mod:`.phase3`), imported on first use."""
    if name in ("run_grid_mode", "stack_master_tile_auto", "start_phase3"):
        from . import grid_entry, phase3
        return getattr(grid_entry if name == "run_grid_mode" else phase3, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
