"""Stacking configuration: :class:`StackConfig`, validated when it is built.

The method names are public strings; each stage module (``normalize``, ``weights``,
``reject``, ``combine``) maps them to private functions, and a test checks that the
tuples below and those maps agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "StackConfig",
    "NORMALIZE_METHODS",
    "WEIGHTING_METHODS",
    "REJECT_METHODS",
    "COMBINE_METHODS",
]

#: Frame normalisation methods.
NORMALIZE_METHODS = ("none", "linear_fit", "sky_mean")
#: Quality-weighting methods (user weights are passed to ``stack`` directly).
WEIGHTING_METHODS = ("none", "noise_variance")
#: Pixel rejection algorithms.
REJECT_METHODS = ("none", "kappa_sigma", "winsorized_sigma_clip")
#: Final combine operators.
COMBINE_METHODS = ("mean", "median")

# Iteration caps when ``max_iters`` is None (astropy's sigma_clip default; PixInsight's WSC).
DEFAULT_MAX_ITERS = {"kappa_sigma": 5, "winsorized_sigma_clip": 10}


def _check_choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in valid:
        msg = f"`{name}` must be one of {{{', '.join(repr(v) for v in valid)}}}, got {value!r}"
        raise ValueError(msg)
    return value


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        msg = f"`{name}` must be a number, got {value!r}"
        raise ValueError(msg) from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"`{name}` must be finite and {bound}, got {value!r}"
        raise ValueError(msg)
    return number


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"`{name}` must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class StackConfig:
    """How frames are normalised, weighted, rejected and combined.

    Defaults are ZeMosaic's (linear_fit / noise_variance / winsorized_sigma_clip /
    mean, κ = 3/3). :meth:`plain` gives an unweighted, unnormalised mean.

    Parameters
    ----------
    normalize : {"none", "linear_fit", "sky_mean"}
        Per-frame, per-channel normalisation against ``reference_frame``.
    weighting : {"none", "noise_variance"}
        Quality weights; user weights passed to ``stack`` are multiplied in.
    reject : {"none", "kappa_sigma", "winsorized_sigma_clip"}
        Pixel rejection along the frame axis.
    combine : {"mean", "median"}
        Final combine of the surviving samples (``median`` ignores weights).
    kappa_low, kappa_high : float
        Rejection thresholds in units of the robust scale, > 0.
    max_iters : int or None
        Iteration cap of iterative rejections; None uses the algorithm's default
        (5 for kappa_sigma, 10 for winsorized_sigma_clip). ``1`` is a single pass.
    winsor_limits : (float, float)
        Low / high winsorisation fractions, each in [0, 0.5).
    min_survivors : int
        A rejection never leaves fewer samples than this (nor fewer than the valid
        ones when there are fewer): a pixel whose next rejection would go below it
        keeps its current set.
    sigma_ddof : int
        Delta degrees of freedom of the standard deviation in ``kappa_sigma``
        (0 = population std, as NumPy and astropy's ``stdfunc="std"``).
    reference_frame : int
        Index of the normalisation reference frame.
    radial_weight : bool
        Multiply weights by the radial map cos(π/2·min(r/feather, 1))^power, floor 0.05.
    radial_feather_fraction, radial_shape_power : float
        Parameters of the radial map.
    rgb_equalize : bool
        Post-stack RGB equalisation (opt-in).
    frame_stats_samples : int
        Pixels per frame and channel used to estimate normalisation and noise
        statistics (a regular stride over the frame); 0 uses every pixel.
    """

    normalize: str = "linear_fit"
    weighting: str = "noise_variance"
    reject: str = "winsorized_sigma_clip"
    combine: str = "mean"
    kappa_low: float = 3.0
    kappa_high: float = 3.0
    max_iters: int | None = None
    winsor_limits: tuple[float, float] = (0.05, 0.05)
    min_survivors: int = 3
    sigma_ddof: int = 0
    reference_frame: int = 0
    radial_weight: bool = False
    radial_feather_fraction: float = 0.8
    radial_shape_power: float = 2.0
    rgb_equalize: bool = False
    frame_stats_samples: int = 65536

    def __post_init__(self) -> None:
        _check_choice("normalize", self.normalize, NORMALIZE_METHODS)
        _check_choice("weighting", self.weighting, WEIGHTING_METHODS)
        _check_choice("reject", self.reject, REJECT_METHODS)
        _check_choice("combine", self.combine, COMBINE_METHODS)
        object.__setattr__(self, "kappa_low", _check_positive("kappa_low", self.kappa_low))
        object.__setattr__(self, "kappa_high", _check_positive("kappa_high", self.kappa_high))
        if self.max_iters is not None:
            _check_int("max_iters", self.max_iters, minimum=1)
        limits = self.winsor_limits
        if isinstance(limits, str) or not hasattr(limits, "__len__") or len(limits) != 2:
            msg = f"`winsor_limits` must be a pair (low, high), got {limits!r}"
            raise ValueError(msg)
        low, high = (_check_positive(f"winsor_limits[{i}]", v, allow_zero=True) for i, v in enumerate(limits))
        if not (low < 0.5 and high < 0.5):
            msg = f"`winsor_limits` fractions must each be in [0, 0.5), got {limits!r}"
            raise ValueError(msg)
        object.__setattr__(self, "winsor_limits", (low, high))
        _check_int("min_survivors", self.min_survivors, minimum=1)
        _check_int("sigma_ddof", self.sigma_ddof, minimum=0)
        _check_int("reference_frame", self.reference_frame, minimum=0)
        feather = _check_positive("radial_feather_fraction", self.radial_feather_fraction)
        if feather > 1.0:
            msg = f"`radial_feather_fraction` must be in (0, 1], got {self.radial_feather_fraction!r}"
            raise ValueError(msg)
        object.__setattr__(self, "radial_feather_fraction", feather)
        object.__setattr__(self, "radial_shape_power",
                           _check_positive("radial_shape_power", self.radial_shape_power))
        _check_int("frame_stats_samples", self.frame_stats_samples, minimum=0)
        for flag in ("radial_weight", "rgb_equalize"):
            if not isinstance(getattr(self, flag), bool):
                msg = f"`{flag}` must be True or False, got {getattr(self, flag)!r}"
                raise ValueError(msg)

    @classmethod
    def plain(cls, **overrides: Any) -> StackConfig:
        """An unnormalised, unweighted, unrejected mean (``none/none/none/mean``)."""
        base = {"normalize": "none", "weighting": "none", "reject": "none", "combine": "mean"}
        base.update(overrides)
        return cls(**base)

    def effective_max_iters(self) -> int:
        """``max_iters``, or the rejection algorithm's default when it is None."""
        if self.max_iters is not None:
            return self.max_iters
        return DEFAULT_MAX_ITERS.get(self.reject, 5)

    def replace(self, **changes: Any) -> StackConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (field names as keys)."""
        out = asdict(self)
        out["winsor_limits"] = list(self.winsor_limits)
        return out

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all configuration fields."""
        return tuple(f.name for f in fields(cls))
