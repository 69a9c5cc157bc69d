"""ZeMosaic's grid-mode call: ``run_grid_mode`` with the worker's keyword signature.

ZeMosaic's worker (``zemosaic_worker.py``) calls ``grid_mode.run_grid_mode(input_folder=...,
output_folder=..., progress_callback=..., stack_norm_method=..., ..., zconfig=...)``
(``reference/upstream_spec.md`` §3.1). :func:`run_grid_mode` here takes exactly those
keywords and runs our grid mode (:func:`zemosaic_xp.grid.runner.run_grid_mode`, whose
own API does not change):

1. the settings are ZeMosaic's config keys read from ``zconfig`` (an object read with
   ``getattr``, as the worker's ``zconfig`` namespace, or a dict), only the keys we
   know (:func:`zconfig_settings`);
2. keys that are absent take ZeMosaic's defaults (:data:`ZEMOSAIC_GRID_DEFAULTS`:
   tiles of 4 frame fields, 40 % overlap, winsorized sigma clip, GPU on when healthy,
   auto workers), not ours;
3. the explicit keywords win over both (the worker passes them from the same config).

Every key reaches the native run through ``GridConfig.from_dict``: ``grid_rgb_equalize``
equalises each RGB tile's channels (the core's RGB equalisation),
``final_mosaic_rgb_equalize_enabled`` and ``final_mosaic_dbe_enabled`` /
``final_mosaic_dbe_strength`` correct the final mosaic (:mod:`zemosaic_xp.mosaic.finish`),
``save_final_as_uint16`` writes ``mosaic_grid_viewer.fits`` beside it
(:mod:`zemosaic_xp.io.viewer`) and ``legacy_rgb_cube`` writes a mono mosaic as a
(1, H, W) cube. The background extraction is ZeMosaic's default but needs photutils:
when the config does not ask for it explicitly and photutils is missing, it is skipped
with one ``[GRID]`` warning (asked for explicitly, the run stops with an ``ImportError``
naming the key). Unknown extra keywords are named in one ``[CONFIG]`` warning, sent to
the callback as ``WARN`` too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from . import zemosaic as _keys
from .gui_events import callback_level
from .values import is_set, parse_bool

__all__ = ["run_grid_mode", "zconfig_settings", "grid_settings", "ZEMOSAIC_GRID_DEFAULTS",
           "WORKER_ARGUMENT_KEYS", "NATIVE_KEYWORDS"]

logger = logging.getLogger(__name__)

#: ZeMosaic's values for the keys a grid run reads when the config lacks them
#: (``zemosaic_config.DEFAULT_CONFIG`` and ``grid_mode.run_grid_mode``, upstream_spec §3.9, §7).
ZEMOSAIC_GRID_DEFAULTS: dict[str, Any] = {
    "grid_size_factor": 4.0,  # not in DEFAULT_CONFIG: run_grid_mode's own fallback
    "batch_overlap_pct": 40,
    "stacking_normalize_method": "linear_fit",
    "stacking_weighting_method": "noise_variance",
    "stacking_rejection_algorithm": "winsorized_sigma_clip",
    "stacking_kappa_low": 3.0,
    "stacking_kappa_high": 3.0,
    "stacking_winsor_limits": "0.05,0.05",
    "stacking_final_combine_method": "mean",
    "wsc_impl": "pixinsight",
    "apply_radial_weight": False,
    "radial_feather_fraction": 0.8,
    "radial_shape_power": 2.0,
    "grid_workers": 0,
    "enable_resource_telemetry": False,
    "resource_telemetry_interval_sec": 1.5,
    "resource_telemetry_log_to_csv": True,
    "parallel_target_ram_fraction": 0.9,
    "parallel_max_cpu_workers": 0,
    "final_mosaic_dbe_enabled": True,
    "final_mosaic_dbe_strength": "normal",
    "final_mosaic_rgb_equalize_enabled": False,
    "save_final_as_uint16": False,
    "legacy_rgb_cube": False,
}
# GPU: use_gpu_grid (True) inherits use_gpu_phase5 (True); applied only when no GPU key is set.
_GPU_DEFAULT = ("use_gpu_phase5", True)

#: The worker's keyword -> the ZeMosaic config key it carries.
WORKER_ARGUMENT_KEYS: dict[str, str] = {
    "stack_norm_method": "stacking_normalize_method",
    "stack_weight_method": "stacking_weighting_method",
    "stack_reject_algo": "stacking_rejection_algorithm",
    "stack_kappa_low": "stacking_kappa_low",
    "stack_kappa_high": "stacking_kappa_high",
    "winsor_limits": "stacking_winsor_limits",
    "stack_final_combine": "stacking_final_combine_method",
    "apply_radial_weight": "apply_radial_weight",
    "radial_feather_fraction": "radial_feather_fraction",
    "radial_shape_power": "radial_shape_power",
    "save_final_as_uint16": "save_final_as_uint16",
    "legacy_rgb_cube": "legacy_rgb_cube",
    "grid_rgb_equalize": "grid_rgb_equalize",
}

#: Extra keywords passed on to :func:`zemosaic_xp.grid.runner.run_grid_mode` as they are
#: (``use_gpu`` is ZeMosaic's spelling of ``grid_use_gpu``).
NATIVE_KEYWORDS = ("grid_use_gpu", "use_gpu", "grid_workers", "executor", "resume", "cancel", "gpu_policy")


def _known_keys() -> tuple[str, ...]:
    keys = dict.fromkeys(_keys.STACK_KEYS)
    keys.update(dict.fromkeys(_keys.GRID_KEYS))
    keys.update(dict.fromkeys(_keys.GRID_GPU_KEYS))
    keys.update(dict.fromkeys(_keys.GRID_EXTRA_KEYS))
    keys.update(dict.fromkeys(("wsc_impl", "winsor_impl", "stack_winsor_impl", "poststack_equalize_rgb")))
    return tuple(keys)


def zconfig_settings(zconfig: Any) -> dict[str, Any]:
    """Read the ZeMosaic keys a grid run knows from the worker's ``zconfig``.

    Parameters
    ----------
    zconfig : object, mapping or None
        ZeMosaic's config: an object whose attributes are the keys (read with
        ``getattr``, as the worker's namespace), or a dict of keys.

    Returns
    -------
    dict
        The known keys (stacking, grid, GPU, telemetry and the final-mosaic features)
        that ``zconfig`` sets, not None and not blank; the GUI's other settings are
        left out.
    """
    if zconfig is None:
        return {}
    if isinstance(zconfig, Mapping):
        get = zconfig.get
    else:
        def get(key: str) -> Any:
            return getattr(zconfig, key, None)
    out = {}
    for key in _known_keys():
        value = get(key)
        if is_set(value):
            out[key] = value
    return out


def grid_settings(zconfig: Any = None, **arguments: Any) -> dict[str, Any]:
    """The ZeMosaic keys of one grid run: defaults, then ``zconfig``, then the keywords.

    Parameters
    ----------
    zconfig : object, mapping or None
        See :func:`zconfig_settings`.
    **arguments
        The worker's keywords of :data:`WORKER_ARGUMENT_KEYS` (None = not given).

    Returns
    -------
    dict
        ZeMosaic keys, ready for ``GridConfig.from_dict``. ``grid_rgb_equalize``,
        when unset, takes ``poststack_equalize_rgb`` and else True (ZeMosaic's rule);
        it decides the tiles' RGB equalisation (``poststack_equalize_rgb``, the
        core's :func:`~zemosaic_xp.core.rgb.equalize_rgb` on each RGB tile).
    """
    settings = dict(ZEMOSAIC_GRID_DEFAULTS)
    given = zconfig_settings(zconfig)
    if not any(key in given for key in _keys.GRID_GPU_KEYS):
        settings[_GPU_DEFAULT[0]] = _GPU_DEFAULT[1]
    if any(key in given for key in ("grid_overlap_fraction",)):
        settings.pop("batch_overlap_pct")  # the explicit fraction is read first anyway
    settings.update(given)
    for name, value in arguments.items():
        if is_set(value):
            settings[WORKER_ARGUMENT_KEYS[name]] = value
    if not is_set(settings.get("grid_rgb_equalize")):
        fallback = settings.get("poststack_equalize_rgb")
        settings["grid_rgb_equalize"] = True if not is_set(fallback) else fallback
    # ZeMosaic's grid stacks tiles without poststack_equalize_rgb: grid_rgb_equalize decides.
    settings["poststack_equalize_rgb"] = parse_bool(settings["grid_rgb_equalize"], "grid_rgb_equalize")
    return settings


def _photutils_missing() -> bool:
    try:
        import photutils  # noqa: F401
    except ImportError:
        return True
    return False


def _warn(callback: Callable[..., Any] | None, message: str, *args: Any) -> None:
    logger.warning(message, *args)
    if callback is not None:
        text = message % args if args else message
        try:
            callback(text, None, callback_level(logging.WARNING))
        except Exception as exc:  # noqa: BLE001 - a GUI error must not stop the run
            logger.warning("[GRID] progress_callback raised %s: %s (ignored)", type(exc).__name__, exc)


def run_grid_mode(input_folder: str | os.PathLike, output_folder: str | os.PathLike,
                  progress_callback: Callable[..., Any] | None = None,
                  stack_norm_method: str | None = None, stack_weight_method: str | None = None,
                  stack_reject_algo: str | None = None, stack_kappa_low: float | None = None,
                  stack_kappa_high: float | None = None, winsor_limits: Any = None,
                  stack_final_combine: str | None = None, apply_radial_weight: bool | None = None,
                  radial_feather_fraction: float | None = None, radial_shape_power: float | None = None,
                  save_final_as_uint16: bool | None = None, legacy_rgb_cube: bool | None = None,
                  grid_rgb_equalize: bool | None = None, zconfig: Any = None, **extra: Any) -> Any:
    """Run grid mode as ZeMosaic's worker calls it.

    Parameters
    ----------
    input_folder : path
        Holds ``stack_plan.csv``.
    output_folder : path
        Receives the mosaic, its tiles and telemetry (see the native
        :func:`zemosaic_xp.grid.runner.run_grid_mode`).
    progress_callback : callable, optional
        ZeMosaic's ``cb(key, progress, level, **kw)``: messages (warnings as
        ``"WARN"``), ``STAGE_PROGRESS``, ``ETA_UPDATE:HH:MM:SS``,
        ``MASTER_TILE_COUNT_UPDATE:d/t``, ``STATS_UPDATE``.
    stack_norm_method, stack_weight_method, stack_reject_algo : str, optional
        ``stacking_normalize_method``, ``stacking_weighting_method``,
        ``stacking_rejection_algorithm`` (names or ZeMosaic's aliases).
    stack_kappa_low, stack_kappa_high : float, optional
        ``stacking_kappa_low`` / ``_high``.
    winsor_limits : str or (float, float), optional
        ``stacking_winsor_limits`` ("0.05,0.05" or a pair of fractions).
    stack_final_combine : str, optional
        ``stacking_final_combine_method`` (``mean``, ``median``, ``percentile``, ...).
    apply_radial_weight : bool, optional
        ``apply_radial_weight``.
    radial_feather_fraction, radial_shape_power : float, optional
        ``radial_feather_fraction``, ``radial_shape_power``.
    save_final_as_uint16 : bool, optional
        Also write ``mosaic_grid_viewer.fits``, a uint16 copy of the mosaic for viewers
        (:func:`zemosaic_xp.io.viewer.write_uint16_viewer`), beside each mosaic.
        ``zconfig``'s ``final_mosaic_rgb_equalize_enabled`` and
        ``final_mosaic_dbe_enabled`` / ``_strength`` (ZeMosaic's default: on, normal)
        correct the final mosaic first (:mod:`zemosaic_xp.mosaic.finish`).
    legacy_rgb_cube : bool, optional
        Write a mono mosaic as a (1, H, W) cube (ZeMosaic's legacy layout) instead of
        2-D; recorded in the viewer copy's ``ZEMOLEG``.
    grid_rgb_equalize : bool, optional
        RGB equalisation of each RGB tile (the core's, on every tile's stack); unset:
        ``poststack_equalize_rgb``, else True (ZeMosaic's default).
    zconfig : object or mapping, optional
        ZeMosaic's config (attributes read with ``getattr``, or a dict); its absent
        keys take :data:`ZEMOSAIC_GRID_DEFAULTS`.
    **extra
        :data:`NATIVE_KEYWORDS` are passed on (``cancel``, ``executor``, ``resume``,
        ``grid_workers``, ``grid_use_gpu`` / ``use_gpu``, ``gpu_policy``); any other
        keyword is accepted and named in one ``[CONFIG]`` warning.

    Returns
    -------
    zemosaic_xp.grid.result.GridResult
        The native run's report (ZeMosaic's own returns nothing).

    Raises
    ------
    ValueError
        A setting of the wrong type or out of range (the message names the key),
        and every error of the native run; nothing falls back to classic mode.
    ImportError
        ``final_mosaic_dbe_enabled`` set true in ``zconfig`` without photutils (the
        message names the key).
    FileNotFoundError
        No ``stack_plan.csv``, or none of its frames exists.
    """
    from ..grid.config import GridConfig  # compat is below grid: the entry imports it when called
    from ..grid.runner import run_grid_mode as native_run

    arguments = {"stack_norm_method": stack_norm_method, "stack_weight_method": stack_weight_method,
                 "stack_reject_algo": stack_reject_algo, "stack_kappa_low": stack_kappa_low,
                 "stack_kappa_high": stack_kappa_high, "winsor_limits": winsor_limits,
                 "stack_final_combine": stack_final_combine, "apply_radial_weight": apply_radial_weight,
                 "radial_feather_fraction": radial_feather_fraction, "radial_shape_power": radial_shape_power,
                 "save_final_as_uint16": save_final_as_uint16, "legacy_rgb_cube": legacy_rgb_cube,
                 "grid_rgb_equalize": grid_rgb_equalize}
    native = {name: extra.pop(name) for name in NATIVE_KEYWORDS if name in extra}
    if "use_gpu" in native:
        use_gpu = native.pop("use_gpu")
        native.setdefault("grid_use_gpu", None if use_gpu is None else parse_bool(use_gpu, "use_gpu"))
    if extra:
        _warn(progress_callback, "[CONFIG] run_grid_mode: %d unknown keyword%s ignored: %s", len(extra),
              "" if len(extra) == 1 else "s", ", ".join(sorted(extra)))
    settings = grid_settings(zconfig, **arguments)
    dbe_key = "final_mosaic_dbe_enabled"
    if dbe_key not in zconfig_settings(zconfig) and parse_bool(settings[dbe_key], dbe_key) and _photutils_missing():
        settings[dbe_key] = False
        _warn(progress_callback, "[GRID] %s (ZeMosaic's default) needs photutils, not installed: no background "
              "extraction of the final mosaic (pip install 'zemosaic_xp[dbe]')", dbe_key)
    config = GridConfig.from_dict(settings)
    return native_run(input_folder, output_folder, progress_callback, config=config, **native)
