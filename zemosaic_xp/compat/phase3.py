"""ZeMosaic's Phase 3 call: ``_stack_master_tile_auto`` on our classic master tiles.

ZeMosaic's worker stacks each master tile with ``_stack_master_tile_auto(images,
stacking_params, parallel_plan, ...)`` → ``(image, metadata, used_gpu)``
(``reference/upstream_spec.md`` §4.1, §4.2). :func:`stack_master_tile_auto` takes the
same inputs and stacks them with :func:`zemosaic_xp.classic.stack_master_tile` (the
core's stacking, GPU mode C by the run's :class:`~zemosaic_xp.gpu.GpuPolicy`); nothing
is stacked here.

A Phase 3 of many tiles should share one :func:`start_phase3` run: one GPU policy (a GPU
disabled after repeated failures stays disabled, as ZeMosaic's module-wide state does),
one monotone progress bar over all tiles with ``MASTER_TILE_COUNT_UPDATE`` and an ETA,
and the optional ``STATS_UPDATE`` telemetry (:class:`~zemosaic_xp.classic.progress.MasterTileRun`).

Unlike ZeMosaic, the GPU decision honours the user's switches (``use_gpu_phase5`` /
``stack_use_gpu`` / ``use_gpu_stack`` of ``zconfig``, ``use_gpu`` of the plan).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from . import zemosaic as _keys
from .gui_events import callback_level
from .values import is_set, parse_bool, parse_number

__all__ = ["stack_master_tile_auto", "start_phase3", "stacking_config", "STACKING_PARAM_KEYS",
           "IGNORED_STACKING_PARAMS"]

logger = logging.getLogger(__name__)

#: Keys of ZeMosaic's ``stacking_params`` dict -> the config key they carry.
STACKING_PARAM_KEYS: dict[str, str] = {
    "stack_norm_method": "stacking_normalize_method",
    "stack_weight_method": "stacking_weighting_method",
    "stack_reject_algo": "stacking_rejection_algorithm",
    "stack_kappa_low": "stacking_kappa_low",
    "stack_kappa_high": "stacking_kappa_high",
    "parsed_winsor_limits": "stacking_winsor_limits",
    "winsor_limits": "stacking_winsor_limits",
    "stack_final_combine": "stacking_final_combine_method",
    "stack_final_combine_percentile": "stacking_final_combine_percentile",
    "poststack_equalize_rgb": "poststack_equalize_rgb",
    "apply_radial_weight": "apply_radial_weight",
    "radial_feather_fraction": "radial_feather_fraction",
    "radial_shape_power": "radial_shape_power",
    "wsc_impl": "wsc_impl",
}
#: ``stacking_params`` keys read and knowingly ignored: bands are sized from the memory
#: budget, and the result never depends on it.
IGNORED_STACKING_PARAMS = frozenset({"winsor_max_frames_per_pass"})
# Where a descriptor (dict) of an image holds its pixels or its file.
_DESCRIPTOR_KEYS = ("data", "image", "array", "path", "file_path", "fits_path")


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def stacking_config(stacking_params: Mapping[str, Any] | None, /) -> Any:
    """The StackConfig of ZeMosaic's ``stacking_params`` dict.

    Parameters
    ----------
    stacking_params : mapping or None
        ``stack_norm_method``, ``stack_weight_method``, ``stack_reject_algo``,
        ``stack_kappa_low`` / ``_high``, ``parsed_winsor_limits`` (a pair of fractions),
        ``stack_final_combine``, ``poststack_equalize_rgb``, ``apply_radial_weight``,
        ``radial_feather_fraction``, ``radial_shape_power``
        (:data:`STACKING_PARAM_KEYS`); absent ones take ZeMosaic's defaults (the
        StackConfig defaults). Unknown keys are named in one ``[CONFIG]`` warning.

    Returns
    -------
    StackConfig
        Validated.

    Raises
    ------
    ValueError
        A value of the wrong type, out of range, or an unknown method (the message
        names the config key).
    TypeError
        ``stacking_params`` is not a mapping.
    """
    if stacking_params is None:
        stacking_params = {}
    if not isinstance(stacking_params, Mapping):
        msg = f"`stacking_params` must be a dict, got {type(stacking_params).__name__}"
        raise TypeError(msg)
    unknown = sorted(str(k) for k in stacking_params
                     if k not in STACKING_PARAM_KEYS and k not in IGNORED_STACKING_PARAMS)
    if unknown:
        logger.warning("[CONFIG] stacking_params: %d unknown key%s ignored: %s", len(unknown),
                       "" if len(unknown) == 1 else "s", ", ".join(unknown))
    keys = {STACKING_PARAM_KEYS[k]: v for k, v in stacking_params.items()
            if k in STACKING_PARAM_KEYS and is_set(v)}
    return _keys.stack_config_from_dict(keys, warn_unknown=False)


def _plan_hints(parallel_plan: Any) -> tuple[bool | None, int | None]:
    """``(use_gpu, memory budget bytes)`` from ZeMosaic's plan (a dataclass or a dict)."""
    flag = _get(parallel_plan, "use_gpu")
    use_gpu = None if not is_set(flag) else parse_bool(flag, "parallel_plan.use_gpu")
    # The scheduler's plain-dict plan carries max_chunk_mb (upstream_spec §4.2).
    keys = (("gpu_max_chunk_bytes", 1), ("max_chunk_bytes", 1), ("max_chunk_mb", 2**20))
    for key, unit in keys:
        if key == "gpu_max_chunk_bytes" and use_gpu is False:
            continue
        value = _get(parallel_plan, key)
        if is_set(value):
            budget = int(parse_number(value, f"parallel_plan.{key}") * unit)
            if budget > 0:
                return use_gpu, budget
    return use_gpu, None


def _policy(use_gpu: bool | None) -> Any:
    from ..gpu.policy import GpuPolicy

    return GpuPolicy("cpu" if use_gpu is False else "auto")


def start_phase3(tiles_total: int, progress_callback: Callable[..., Any] | None = None, zconfig: Any = None, *,
                 output_folder: str | os.PathLike | None = None, gpu_policy: Any = None) -> Any:
    """Start a Phase 3 run: one GPU policy, one progress bar and telemetry for its tiles.

    Parameters
    ----------
    tiles_total : int
        Master tiles the run will stack.
    progress_callback : callable, optional
        ZeMosaic's ``cb(key, progress, level, **kw)``.
    zconfig : object or mapping, optional
        ZeMosaic's config, read with ``getattr`` (or a dict): the GPU switches
        (:data:`~zemosaic_xp.compat.zemosaic.STACK_GPU_KEYS`; absent = GPU when
        healthy), ``enable_resource_telemetry`` (False),
        ``resource_telemetry_interval_sec`` (1.5) and ``resource_telemetry_log_to_csv``
        (True).
    output_folder : path, optional
        Where ``resource_telemetry.csv`` goes (no CSV without it).
    gpu_policy : GpuPolicy, optional
        The run's policy instead of one from the GPU switches (tests inject faults
        with :class:`zemosaic_xp.gpu.testing.FaultInjector`).

    Returns
    -------
    zemosaic_xp.classic.progress.MasterTileRun
        Pass it as ``run=`` to every :func:`stack_master_tile_auto` of the run, then
        call its ``finish()``; close ``run.telemetry`` (when not None) at the end.
    """
    from ..classic.progress import MasterTileRun
    from ..telemetry import DEFAULT_CSV_NAME, ResourceTelemetryController

    config = {key: _get(zconfig, key) for key in
              _keys.STACK_GPU_KEYS + ("enable_resource_telemetry", "resource_telemetry_interval_sec",
                                      "resource_telemetry_log_to_csv")}
    use_gpu = _keys.gpu_flag(config)
    telemetry = None
    if is_set(config["enable_resource_telemetry"]) and parse_bool(config["enable_resource_telemetry"],
                                                                   "enable_resource_telemetry"):
        interval = config["resource_telemetry_interval_sec"]
        interval = parse_number(interval, "resource_telemetry_interval_sec") if is_set(interval) else 1.5
        to_csv = config["resource_telemetry_log_to_csv"]
        to_csv = True if not is_set(to_csv) else parse_bool(to_csv, "resource_telemetry_log_to_csv")
        csv = os.path.join(os.fspath(output_folder), DEFAULT_CSV_NAME) if to_csv and output_folder else None
        telemetry = ResourceTelemetryController(True, interval, progress_callback, csv_path=csv)
    policy = gpu_policy if gpu_policy is not None else _policy(use_gpu)
    return MasterTileRun(tiles_total, progress_callback, telemetry=telemetry, gpu_policy=policy)


def _inputs(images: Any) -> list[Any]:
    """Arrays and paths from ZeMosaic's image descriptors (arrays, paths, or dicts holding one)."""
    if images is None or isinstance(images, (str, os.PathLike)) or hasattr(images, "shape"):
        return images  # stack_master_tile names what is wrong
    out = []
    for i, item in enumerate(images):
        if isinstance(item, Mapping):
            found = next((item[k] for k in _DESCRIPTOR_KEYS if is_set(item.get(k))), None)
            if found is None:
                msg = (f"image descriptor {i} holds none of {', '.join(_DESCRIPTOR_KEYS)} "
                       f"(keys: {', '.join(map(str, item))})")
                raise ValueError(msg)
            out.append(found)
        else:
            out.append(item)
    return out


def _weight_stats(weights: Any) -> dict | None:
    """ZeMosaic's ``{min, max, frames}`` of the per-frame (and channel) weights, or None."""
    if not weights:
        return None
    flat = [float(v) for w in weights for v in (w if isinstance(w, (list, tuple)) else [w])]
    return {"min": min(flat), "max": max(flat), "frames": len(weights)} if flat else None


def stack_master_tile_auto(images: Any, stacking_params: Mapping[str, Any] | None = None,
                           parallel_plan: Any = None, progress_callback: Callable[..., Any] | None = None, *,
                           run: Any = None, tile_id: Any = None, **extra: Any) -> tuple[Any, dict, bool]:
    """Stack one master tile as ZeMosaic's ``_stack_master_tile_auto`` does.

    Parameters
    ----------
    images : sequence
        The tile's aligned frames: ``(H, W)`` / ``(H, W, C)`` arrays (NaN = no data),
        FITS paths, or descriptors (dicts) holding one under ``data``, ``image``,
        ``array``, ``path``, ``file_path`` or ``fits_path``.
    stacking_params : mapping, optional
        ZeMosaic's ``stacking_params`` (:func:`stacking_config`).
    parallel_plan : object or mapping, optional
        ZeMosaic's plan hints, read with ``getattr`` or as a dict: ``use_gpu`` (False
        keeps the tile on the CPU), ``gpu_max_chunk_bytes`` / ``max_chunk_bytes`` /
        ``max_chunk_mb`` (the band memory budget). Row hints are ignored: bands are
        sized from the budget, and the result never depends on it.
    progress_callback : callable, optional
        The tile's ``cb(key, progress, level, **kw)`` (with ``run``: the run's callback
        gets the tile's progress as part of the whole). GPU warnings arrive as
        ``"WARN"``.
    run : MasterTileRun, optional
        The Phase 3 run (:func:`start_phase3`) this tile belongs to: its GPU policy
        decides (not the plan's ``use_gpu``) and its callback reports.
    tile_id : object, optional
        Name of the tile in log lines and metadata.
    **extra
        Other keywords of ZeMosaic's call (``logger``, ``zconfig``, ...): accepted and
        ignored (named in a debug log line).

    Returns
    -------
    image : ndarray, float32
        ``(H, W, C)``, or ``(H, W)`` for mono frames; NaN where no sample survived.
    metadata : dict
        ZeMosaic's keys ``weight_method``, ``weight_stats``, ``rgb_equalization``,
        ``rejected_pct``, ``phase3_used_gpu``, ``phase3_gpu_chunk_summary``, plus
        ``alpha`` (uint8 ``(H, W)``, 255 where covered), ``coverage`` and our
        ``stats``.
    used_gpu : bool
        The image came from a GPU attempt.

    Raises
    ------
    ValueError, TypeError
        Bad ``stacking_params`` or plan values (the message names the key), or
        frames of different shapes.
    FileNotFoundError, zemosaic_xp.io.fits.FitsReadError
        A path that is missing or unreadable (named).
    """
    from ..classic.master_tile import stack_master_tile

    if extra:
        logger.debug("[P3] stack_master_tile_auto: keywords not used: %s", ", ".join(sorted(extra)))
    config = stacking_config(stacking_params)
    use_gpu, budget = _plan_hints(parallel_plan)
    inputs = _inputs(images)
    kwargs = {"memory_budget_bytes": budget, "tile_id": tile_id}
    if run is not None:
        result = run.stack(inputs, config, **kwargs)
    else:
        policy = _policy(use_gpu)
        if progress_callback is not None:
            policy.notify = lambda text, level: progress_callback(text, None, callback_level(level))
        result = stack_master_tile(inputs, config, gpu_policy=policy, progress_callback=progress_callback,
                                   **kwargs)
    stats = result.stats
    metadata = {
        "weight_method": stats.get("weighting", config.weighting),
        "weight_stats": _weight_stats(stats.get("weights")),
        "rgb_equalization": stats.get("rgb_equalization"),
        "rejected_pct": stats.get("rejected_pct"),
        "phase3_used_gpu": bool(result.used_gpu),
        "phase3_gpu_chunk_summary": stats.get("phase3_gpu_chunk_summary"),
        "alpha": result.alpha,
        "coverage": result.coverage,
        "stats": stats,
    }
    return result.image, metadata, bool(result.used_gpu)
