"""Grid-mode settings: :class:`GridConfig`, built directly or from ZeMosaic config keys.

A ZeMosaic ``zemosaic_config.json`` drives a grid run unchanged through
:meth:`GridConfig.from_dict`; the keys it reads, and how their values are parsed, are
in :mod:`zemosaic_xp.compat.zemosaic`. Stacking options are a
:class:`~zemosaic_xp.core.config.StackConfig`, the same object the classic adapter
uses, so both modes reject and combine with the same core.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from ..compat import zemosaic
from ..core.config import StackConfig
from ..mosaic.background import dbe_strength

__all__ = ["GridConfig", "grid_stack_config", "WORKER_KINDS"]

# Defaults (see docs/grid.md "Defaults"). A tile is 1.5 median frame fields wide:
# big enough that most frames fall wholly inside a few tiles, small enough that a
# survey of a few dozen frames is cut into several tiles that run in parallel.
_DEFAULT_GRID_SIZE_FACTOR = 1.5
# 10 % overlap: the frames are normalised once for the survey, so neighbouring tiles
# agree pixel for pixel and the overlap only carries the assembly's check fit and the
# feather; each overlapping pixel is reprojected and stacked twice (40 %, ZeMosaic's
# batch default, costs up to 2.8x the work).
_DEFAULT_OVERLAP = 0.10
# 192 MB of a tile's patches in RAM, the rest spilled to a scratch file read by rows:
# on the large survey of benchmarks/peers_grid.py (100 x 1024^2, tiles of 15-61 frames)
# the workers' peak RSS went 590 -> 326 MiB, the wall time the same within noise
# (docs/grid.md, stop 33). ZeMosaic's own default is 512.
_DEFAULT_CHUNK_MB = 192.0
_MAX_OVERLAP = 0.9
# The RAM fraction the auto worker count may plan for: below 10 % no worker fits, above
# 98 % the OS has nothing left (upstream clips into this range; we refuse instead).
_RAM_FRACTION = (0.1, 0.98)
#: What runs the tiles of a run with several workers (``GridConfig.worker_kind``).
WORKER_KINDS = ("process", "thread")


def grid_stack_config(**overrides: Any) -> StackConfig:
    """The stacking defaults of grid mode, with ``overrides`` applied.

    Parameters
    ----------
    **overrides
        StackConfig fields to change.

    Returns
    -------
    StackConfig
        Validated.

    Notes
    -----
    ``linear_fit`` normalisation (gain *and* offset: survey frames differ in both,
    and a multiplicative ``median`` scaling leaves the offsets as steps), ``noise_variance``
    weights, ``gesd`` rejection, ``mean`` combine, κ = 3/3.

    ``gesd`` (Rosner's generalized ESD test) rather than upstream grid's ``kappa_sigma``:
    a survey is shallow at its rim and wherever few frames overlap, and κ-σ with the
    standard deviation of all samples cannot reject a lone outlier in fewer than 8
    frames (N/√(N−1) must exceed κ = 3), so satellite trails and cosmic rays survive
    there; docs/grid.md ("Notes on the defaults") compares the three on the demo survey.
    """
    base = {"normalize": "linear_fit", "weighting": "noise_variance", "reject": "gesd",
            "combine": "mean"}
    base.update(overrides)
    return StackConfig(**base)


@dataclass(frozen=True)
class GridConfig:
    """Settings of one grid-mode run.

    The fields are the constructor's keywords; every value is validated on
    construction (``ValueError`` or ``TypeError`` naming the field).

    Attributes
    ----------
    grid_size_factor : float
        Tile side in units of the median frame field of view (> 0). Default 1.5.
    overlap_fraction : float
        Overlap between neighbouring tiles as a fraction of the tile side, [0, 0.9].
        Default 0.1.
    stack : StackConfig
        Normalisation, weighting, rejection and combine of each tile's frames
        (default :func:`grid_stack_config`). ``weighting="uncertainty"`` needs an
        ``UNCERT`` extension in every frame (``CCDData.write``), checked before any tile.
    workers : int or None
        Tiles made at once; 0 = auto (max(1, cpu_count − 2), capped by RAM),
        1 = in-process, None = not set (the library's safe default, 1).
    worker_kind : {"process", "thread"}
        What runs the tiles when ``workers`` > 1. "process" (default): spawned worker
        processes; a tile that kills its process (OOM killer, a native crash) is
        survived. "thread": threads of the calling process, which start at once and
        share its imports and frame cache — faster where the worker start-up weighs
        (small machines and surveys; see ``docs/grid.md``), but a crashing tile takes
        the whole process down. Results are identical.
    use_gpu : bool or None
        Stack tiles on a GPU backend; None = not set (CPU).
    stack_chunk_budget_mb : float
        Memory of one tile's reprojected patches held in RAM (past it they spill to a
        scratch file, read by rows) and of one row band of the stack (> 0). The result does not
        depend on it. Default 192 (ZeMosaic's: 512).
    match_photometry : bool
        Fit per-tile gain/offset on the overlaps before blending. Default True.
    feather_px : int or None
        Blend ramp width at tile edges, in px (>= 0); None (default) = the assembly's
        default.
    telemetry_enabled : bool
        Emit resource telemetry (``STATS_UPDATE``). Default False.
    telemetry_interval_sec : float
        Seconds between telemetry samples. Default 1.5.
    telemetry_log_to_csv : bool
        Also log the telemetry to a CSV in the output folder. Default True.
    target_ram_fraction : float
        Fraction of available RAM the auto worker count may plan for, in
        [0.1, 0.98] (outside it: ``ValueError``, not clipped). Default 0.9.
    max_cpu_workers : int
        Upper bound of the auto worker count, >= 0 (0 = none, the default).
    max_canvas_gb : float or None
        Largest memory, in GiB, that the assembly of the mosaic may need (estimated
        from the canvas before any tile is stacked; :mod:`.canvas`). None (default) =
        90 % of the least of the available RAM and the process's own limits
        (``RLIMIT_AS``, ``RLIMIT_DATA``, its cgroup); 0 = no limit.
    final_rgb_equalize : bool
        Equalise the RGB channels of the final mosaic (ZeMosaic's
        ``final_mosaic_rgb_equalize_enabled``; :mod:`zemosaic_xp.mosaic.finish`).
        Default False.
    final_rgb_gain_clip : (float, float) or None
        Range of its channel gains, ``low`` <= 1 <= ``high``; None = not clipped.
        Default (0.80, 1.25), ZeMosaic's.
    dbe : bool
        Subtract the large-scale background of the final mosaic (ZeMosaic's
        ``final_mosaic_dbe_enabled``; :mod:`zemosaic_xp.mosaic.background`, needs
        photutils). Default False.
    dbe_strength : str
        ``weak``, ``normal`` (default), ``strong`` or ``aggressive`` (``low`` and
        ``high`` are read as ``weak`` and ``strong``).
    save_uint16 : bool
        Also write ``mosaic_grid_viewer.fits``, a uint16 copy for viewers (ZeMosaic's
        ``save_final_as_uint16``; :mod:`zemosaic_xp.io.viewer`). Default False.
    legacy_rgb_cube : bool
        ZeMosaic's ``legacy_rgb_cube``: a mono mosaic is written as a one-plane cube
        (1, H, W) instead of 2-D (RGB mosaics are (3, H, W) either way); recorded as
        ``ZEMOLEG`` in the viewer copy. Default False.
    """

    grid_size_factor: float = _DEFAULT_GRID_SIZE_FACTOR
    overlap_fraction: float = _DEFAULT_OVERLAP
    stack: StackConfig = field(default_factory=grid_stack_config)
    workers: int | None = None
    worker_kind: str = "process"
    use_gpu: bool | None = None
    stack_chunk_budget_mb: float = _DEFAULT_CHUNK_MB
    match_photometry: bool = True
    feather_px: int | None = None
    telemetry_enabled: bool = False
    telemetry_interval_sec: float = 1.5
    telemetry_log_to_csv: bool = True
    target_ram_fraction: float = 0.9
    max_cpu_workers: int = 0
    max_canvas_gb: float | None = None
    final_rgb_equalize: bool = False
    final_rgb_gain_clip: tuple[float, float] | None = (0.80, 1.25)
    dbe: bool = False
    dbe_strength: str = "normal"
    save_uint16: bool = False
    legacy_rgb_cube: bool = False

    def __post_init__(self) -> None:
        factor = _number("grid_size_factor", self.grid_size_factor)
        if factor <= 0:
            msg = f"`grid_size_factor` must be > 0, got {self.grid_size_factor!r}"
            raise ValueError(msg)
        overlap = _number("overlap_fraction", self.overlap_fraction)
        if not 0.0 <= overlap <= _MAX_OVERLAP:
            msg = f"`overlap_fraction` must be in [0, {_MAX_OVERLAP}], got {self.overlap_fraction!r}"
            raise ValueError(msg)
        budget = _number("stack_chunk_budget_mb", self.stack_chunk_budget_mb)
        if budget <= 0:
            msg = f"`stack_chunk_budget_mb` must be > 0, got {self.stack_chunk_budget_mb!r}"
            raise ValueError(msg)
        if not isinstance(self.stack, StackConfig):
            msg = f"`stack` must be a StackConfig, got {type(self.stack).__name__}"
            raise TypeError(msg)
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 0):
            msg = f"`workers` must be an integer >= 0 (0 = auto) or None, got {self.workers!r}"
            raise ValueError(msg)
        if self.worker_kind not in WORKER_KINDS:
            msg = f"`worker_kind` must be one of {', '.join(WORKER_KINDS)}, got {self.worker_kind!r}"
            raise ValueError(msg)
        if self.feather_px is not None and (not isinstance(self.feather_px, int) or self.feather_px < 0):
            msg = f"`feather_px` must be an integer >= 0 or None, got {self.feather_px!r}"
            raise ValueError(msg)
        if self.max_canvas_gb is not None:
            canvas_gb = _number("max_canvas_gb", self.max_canvas_gb)
            if canvas_gb < 0:
                msg = f"`max_canvas_gb` must be >= 0 (0 = no limit) or None (auto), got {self.max_canvas_gb!r}"
                raise ValueError(msg)
            object.__setattr__(self, "max_canvas_gb", canvas_gb)
        frac = _number("target_ram_fraction", self.target_ram_fraction)
        if not _RAM_FRACTION[0] <= frac <= _RAM_FRACTION[1]:
            msg = f"`target_ram_fraction` must be in [{_RAM_FRACTION[0]}, {_RAM_FRACTION[1]}], got {frac!r}"
            raise ValueError(msg)
        if isinstance(self.max_cpu_workers, bool) or not isinstance(self.max_cpu_workers, int) \
                or self.max_cpu_workers < 0:
            msg = f"`max_cpu_workers` must be an integer >= 0 (0 = no limit), got {self.max_cpu_workers!r}"
            raise ValueError(msg)
        object.__setattr__(self, "dbe_strength", dbe_strength(self.dbe_strength, "dbe_strength"))
        if self.final_rgb_gain_clip is not None:
            clip = tuple(_number("final_rgb_gain_clip", v) for v in self.final_rgb_gain_clip)
            if len(clip) != 2 or not 0.0 < clip[0] <= 1.0 <= clip[1]:
                msg = f"`final_rgb_gain_clip` must be (low, high) with 0 < low <= 1 <= high, got {clip!r}"
                raise ValueError(msg)
            object.__setattr__(self, "final_rgb_gain_clip", clip)
        object.__setattr__(self, "target_ram_fraction", frac)
        object.__setattr__(self, "grid_size_factor", factor)
        object.__setattr__(self, "overlap_fraction", overlap)
        object.__setattr__(self, "stack_chunk_budget_mb", budget)
        object.__setattr__(self, "telemetry_interval_sec",
                           _number("telemetry_interval_sec", self.telemetry_interval_sec))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> GridConfig:
        """Build a GridConfig from ZeMosaic config keys (unknown keys: one warning).

        Parameters
        ----------
        config : mapping of str to object, or GridConfig
            A parsed ``zemosaic_config.json``; a GridConfig is returned as is.

        Returns
        -------
        GridConfig
            Validated; fields whose keys are absent keep their defaults.

        Raises
        ------
        TypeError
            ``config`` is neither a mapping nor a GridConfig.
        ValueError
            A value of the wrong type, out of range, or an unknown method name (the
            message lists the valid ones); it names the key as written, and the file
            for a :class:`~zemosaic_xp.compat.zemosaic.ConfigFile`. Nothing is clipped
            or replaced.

        Notes
        -----
        Keys that nothing reads are listed once in a ``[CONFIG]`` warning, except
        ZeMosaic's settings we knowingly ignore
        (:data:`~zemosaic_xp.compat.zemosaic.IGNORED_KEYS`).
        Reads ``grid_size_factor``, ``batch_overlap_pct`` (percent, in [0, 90]; or
        ``grid_overlap_fraction``), ``grid_workers``, ``use_gpu_grid``
        (inheriting ``use_gpu_phase5`` / ``stack_use_gpu`` / ``use_gpu_stack`` when unset
        or "auto"), ``grid_worker_kind`` (``process`` / ``thread``),
        ``stack_chunk_budget_mb`` / ``grid_chunk_ram_mb`` / ``grid_chunk_ram_gb``, the
        ``stacking_*`` methods, ``apply_radial_weight`` and ``radial_*``,
        ``enable_resource_telemetry``, ``resource_telemetry_interval_sec``,
        ``resource_telemetry_log_to_csv``, ``parallel_target_ram_fraction``,
        ``parallel_max_cpu_workers``, ``grid_max_canvas_gb``,
        ``grid_match_photometry``, ``final_mosaic_rgb_equalize_enabled`` (with
        ``final_mosaic_rgb_equalize_gain_clip`` and ``_clip_enabled``) and
        ``final_mosaic_dbe_enabled`` / ``final_mosaic_dbe_strength``,
        ``save_final_as_uint16``, ``legacy_rgb_cube`` and ``grid_rgb_equalize`` (the
        tiles' RGB equalisation; it wins over ``poststack_equalize_rgb``); the tables and
        parsers are :data:`zemosaic_xp.compat.zemosaic.GRID_KEYS` and
        :func:`zemosaic_xp.compat.zemosaic.stack_config_from_dict` (stacking methods
        left unset keep the grid defaults of :func:`grid_stack_config`).
        """
        if isinstance(config, GridConfig):
            return config
        if not isinstance(config, Mapping):
            msg = f"`config` must be a GridConfig or a dict of ZeMosaic keys, got {type(config).__name__}"
            raise TypeError(msg)
        zemosaic.warn_unknown_keys(config)
        with zemosaic.naming_keys(config):
            kw = zemosaic.grid_settings_from_dict(config, max_overlap_fraction=_MAX_OVERLAP)
            stack_keys = config
            if zemosaic.is_set(config.get("grid_rgb_equalize")):  # grid's own switch of the tiles' RGB eq
                stack_keys = copy.copy(config)  # a ConfigFile keeps its path (error messages)
                stack_keys["poststack_equalize_rgb"] = config["grid_rgb_equalize"]
            kw["stack"] = zemosaic.stack_config_from_dict(stack_keys, base=grid_stack_config(), warn_unknown=False)
            return cls(**kw)

    def replace(self, **changes: Any) -> GridConfig:
        """Return a copy with some fields changed.

        Parameters
        ----------
        **changes
            New values of fields, by field name.

        Returns
        -------
        GridConfig
            The copy, validated again.
        """
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-able dict.

        Field names, not ZeMosaic keys: a record of the run (the manifest, a report), not
        input for :meth:`from_dict`.

        Returns
        -------
        dict of str to object
            One entry per field, under its field name; ``stack`` as
            ``StackConfig.to_dict()``.
        """
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stack"}
        out["stack"] = self.stack.to_dict()
        return out

    def tile_hash_dict(self) -> dict[str, Any]:
        """Return the settings a tile's pixels depend on (resume compares their hash).

        Excludes workers, GPU, memory budget and telemetry: tiles are identical for
        any of those.

        Returns
        -------
        dict of str to object
            JSON-able: ``grid_size_factor``, ``overlap_fraction`` and ``stack`` (as a dict).
        """
        return {"grid_size_factor": self.grid_size_factor, "overlap_fraction": self.overlap_fraction,
                "stack": self.stack.to_dict()}


def _number(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f"`{name}` must be a number, got {value!r}"
        raise ValueError(msg) from None
    if not math.isfinite(number):
        msg = f"`{name}` must be finite, got {value!r}"
        raise ValueError(msg)
    return number

