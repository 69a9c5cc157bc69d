"""Stacking configuration: :class:`StackConfig`, validated when it is built.

The method names are public strings; each stage module (``normalize``, ``weights``,
``reject``, ``combine``) maps them to private functions, and a test checks that the
tuples below and those maps agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = [
    "StackConfig",
    "NORMALIZE_METHODS",
    "WEIGHTING_METHODS",
    "REJECT_METHODS",
    "COMBINE_METHODS",
    "WSC_IMPLEMENTATIONS",
    "COSMIC_MODES",
    "COSMIC_METHODS",
]

#: Frame normalisation methods.
NORMALIZE_METHODS = ("none", "linear_fit", "sky_mean", "median", "additive", "multiplicative",
                     "additive_scaling", "multiplicative_scaling")
#: Quality-weighting methods (user weights are passed to ``stack`` directly).
WEIGHTING_METHODS = ("none", "noise_variance", "uncertainty")
#: Pixel rejection algorithms.
REJECT_METHODS = ("none", "kappa_sigma", "winsorized_sigma_clip", "winsorized_quantile",
                  "linear_fit_clip", "percentile", "mad", "gesd", "minmax", "auto")
#: Final combine operators.
COMBINE_METHODS = ("mean", "median", "percentile", "sum", "min", "max")
#: Implementations of ``winsorized_sigma_clip`` (``wsc_impl``); docs/algorithms.md compares them.
WSC_IMPLEMENTATIONS = ("pixinsight", "zemosaic")
#: Per-frame cosmic-ray masking before the stack (``cosmic``; docs/algorithms.md, "Cosmic rays").
COSMIC_MODES = ("off", "auto", "always")
#: Cosmic-ray detectors (``cosmic_method``): our own, or L.A.Cosmic through astroscrappy.
COSMIC_METHODS = ("sharp", "lacosmic")

# Iteration caps when ``max_iters`` is None (astropy's sigma_clip default; PixInsight's WSC).
DEFAULT_MAX_ITERS = {"kappa_sigma": 5, "winsorized_sigma_clip": 10}
# Catalogue rejections (docs/algorithms.md): iterative ones converge per pixel; the
# one-pass ones (percentile, minmax) report 1. gesd runs floor(f·n) ESD steps instead.
DEFAULT_MAX_ITERS.update({"mad": 5, "linear_fit_clip": 10, "winsorized_quantile": 5,
                          "percentile": 1, "minmax": 1})


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


def _check_pair(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2:
        msg = f"`{name}` must be a pair (low, high), got {value!r}"
        raise ValueError(msg)
    low, high = (_check_positive(f"{name}[{i}]", v, allow_zero=True) for i, v in enumerate(value))
    return low, high


@dataclass(frozen=True)
class StackConfig:
    """How frames are normalised, weighted, rejected and combined.

    Defaults are ZeMosaic's (linear_fit / noise_variance / winsorized_sigma_clip /
    mean, κ = 3/3). :meth:`plain` gives an unweighted, unnormalised mean. Every
    attribute is also a keyword argument of the constructor; the config is frozen
    and validated when it is built.

    Attributes
    ----------
    normalize : {"none", "linear_fit", "sky_mean", "median", "additive", "multiplicative", \
"additive_scaling", "multiplicative_scaling"}
        Per-frame normalisation against ``reference_frame`` (see docs/algorithms.md).
    weighting : {"none", "noise_variance", "uncertainty"}
        Quality weights; user weights passed to ``stack`` are multiplied in.
        ``uncertainty``: ``1/σ²`` per pixel from astropy ``NDData`` frames' own
        uncertainties (``stack`` only; no frame-level weight).
    reject : {"none", "kappa_sigma", "winsorized_sigma_clip", "winsorized_quantile", \
"linear_fit_clip", "percentile", "mad", "gesd", "minmax", "auto"}
        Pixel rejection along the frame axis; ``"auto"`` chooses per pixel by its
        number of valid samples (``mad`` at 3, ``gesd`` from 4; docs/algorithms.md).
    combine : {"mean", "median", "percentile", "sum", "min", "max"}
        Final combine of the surviving samples (only ``mean`` and ``sum`` use weights;
        ``percentile`` is the unweighted quantile ``combine_percentile``).
    combine_percentile : float
        Quantile of the ``percentile`` combine, in percent, [0, 100] (linear
        interpolation between order statistics); 50 (the median).
    kappa_low, kappa_high : float
        Rejection thresholds in units of the robust scale, > 0.
    max_iters : int or None
        Iteration cap of iterative rejections; None uses the algorithm's default
        (5 for kappa_sigma, 10 for winsorized_sigma_clip). ``1`` is a single pass.
    winsor_limits : (float, float)
        Low / high winsorisation fractions, each in [0, 0.5).
    min_survivors : int
        A rejection never leaves fewer samples than this, except that one sample of
        three or more may always go (the floor is ``min(min_survivors, n_valid − 1)``
        from 3 valid samples, ``min(min_survivors, n_valid)`` below): a pixel whose
        next rejection would go below the floor keeps its current set. So order
        statistics (``percentile``, ``mad``) reject a hit at N = 3 and keep 2.
    sigma_ddof : int
        Delta degrees of freedom of the standard deviation in ``kappa_sigma``
        (0 = population std, as NumPy and astropy's ``stdfunc="std"``).
    reference_frame : int
        Index of the normalisation reference frame.
    radial_weight : bool
        Multiply weights by the radial map cos(π/2·min(r/feather, 1))^power, floored at
        ``radial_floor`` (config key ``apply_radial_weight``).
    radial_feather_fraction, radial_shape_power : float
        Parameters of the radial map.
    rgb_equalize : bool
        Post-stack RGB equalisation (opt-in).
    frame_stats_samples : int
        Pixels per frame and channel used to estimate normalisation and noise
        statistics (a regular stride over the frame); 0 uses every pixel.
    percentile_low, percentile_high : float
        ``percentile`` rejection: drop x with (m − x) > low·|m| or (x − m) > high·|m|,
        m = the pixel's median (Siril's defaults 0.2 / 0.1), each > 0.
    minmax_low, minmax_high : int
        ``minmax`` rejection: valid samples dropped from the bottom / top of each pixel
        (default 1 / 1), each >= 0.
    gesd_outlier_fraction : float
        ``gesd``: at most floor(fraction · n_valid) outliers per pixel, in (0, 1); 0.3.
    gesd_alpha : float
        ``gesd``: significance level of Rosner's test, in (0, 0.5); 0.05.
    winsor_rewinsor : bool
        ``winsorized_quantile``: give rejected samples their winsorised value instead of
        dropping them (ZeMosaic's legacy behaviour; False by default, see the docs).
    radial_floor : float
        Minimum of the radial weight map, in [0, 1]; 0.05 (ZeMosaic's).
    rgb_equalize_gain_clip : (float, float)
        Range of the RGB equalisation gains, ``0 < low <= 1 <= high``; (0.95, 1.05).
    rgb_equalize_bg_percentile : (float, float)
        Luminance percentiles bounding the background mask, ``0 <= low < high <= 100``;
        (5, 85).
    rgb_equalize_min_samples : int
        Fewest background pixels for the equalisation to apply; 5000.
    rgb_equalize_min_coverage : float
        Smallest background / valid pixel fraction for it to apply, in [0, 1]; 0.01.
    wsc_impl : {"pixinsight", "zemosaic"}
        ``winsorized_sigma_clip`` flavour: ``"pixinsight"`` [default], PixInsight/Siril's
        winsorised robust (m, σ) then κ-σ rejection, repeated until the kept set stops
        changing; ``"zemosaic"``, ZeMosaic's Huber variant (upstream_spec §2.6.1), which
        can fail to reject a single outlier below ~10 frames (see docs/algorithms.md).
    cosmic : {"off", "auto", "always"}
        Per-frame cosmic-ray masks, made on the host before the stack (and, in grid
        mode, before the reprojection): hit pixels become NaN (no data). ``"auto"``
        masks only where fewer than ``cosmic_min_depth`` frames cover a pixel (deeper
        pixels are left to ``reject``); ``"always"`` everywhere; ``"off"`` [default]
        never. The core itself ignores this field: the adapters apply it
        (``zemosaic_xp.io.cosmic``).
    cosmic_min_depth : int
        Depth (valid frames of a pixel) from which ``cosmic="auto"`` leaves a pixel to
        the rejection, >= 1; 7 (from 7 frames ``gesd`` removes 2-hit coincidences,
        docs/algorithms.md "Rejection at small N").
    cosmic_method : {"sharp", "lacosmic"}
        The detector: ``"sharp"`` [default], ours; ``"lacosmic"``, L.A.Cosmic through
        astroscrappy (extra ``[cosmic]``).

    Raises
    ------
    ValueError
        A field holds an unknown method name (the message lists the valid ones) or a
        value outside its range (the message names the field and the range).
    """

    normalize: str = "linear_fit"
    weighting: str = "noise_variance"
    reject: str = "winsorized_sigma_clip"
    combine: str = "mean"
    combine_percentile: float = 50.0
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
    percentile_low: float = 0.2
    percentile_high: float = 0.1
    minmax_low: int = 1
    minmax_high: int = 1
    gesd_outlier_fraction: float = 0.3
    gesd_alpha: float = 0.05
    winsor_rewinsor: bool = False
    radial_floor: float = 0.05
    rgb_equalize_gain_clip: tuple[float, float] = (0.95, 1.05)
    rgb_equalize_bg_percentile: tuple[float, float] = (5.0, 85.0)
    rgb_equalize_min_samples: int = 5000
    rgb_equalize_min_coverage: float = 0.01
    wsc_impl: str = "pixinsight"
    cosmic: str = "off"
    cosmic_min_depth: int = 7
    cosmic_method: str = "sharp"

    def __post_init__(self) -> None:
        _check_choice("normalize", self.normalize, NORMALIZE_METHODS)
        _check_choice("weighting", self.weighting, WEIGHTING_METHODS)
        _check_choice("reject", self.reject, REJECT_METHODS)
        _check_choice("combine", self.combine, COMBINE_METHODS)
        _check_choice("wsc_impl", self.wsc_impl, WSC_IMPLEMENTATIONS)
        _check_choice("cosmic", self.cosmic, COSMIC_MODES)
        _check_choice("cosmic_method", self.cosmic_method, COSMIC_METHODS)
        _check_int("cosmic_min_depth", self.cosmic_min_depth, minimum=1)
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
        self._check_catalogue_fields()

    def _check_catalogue_fields(self) -> None:
        """Validate the parameters of the catalogue algorithms (docs/algorithms.md)."""
        for name in ("percentile_low", "percentile_high"):
            object.__setattr__(self, name, _check_positive(name, getattr(self, name)))
        q = _check_positive("combine_percentile", self.combine_percentile, allow_zero=True)
        if q > 100.0:
            msg = f"`combine_percentile` must be in [0, 100] (percent), got {self.combine_percentile!r}"
            raise ValueError(msg)
        object.__setattr__(self, "combine_percentile", q)
        for name in ("minmax_low", "minmax_high", "rgb_equalize_min_samples"):
            _check_int(name, getattr(self, name), minimum=0)
        for name, high in (("gesd_outlier_fraction", 1.0), ("gesd_alpha", 0.5)):
            value = _check_positive(name, getattr(self, name))
            if value >= high:
                msg = f"`{name}` must be in (0, {high:g}), got {getattr(self, name)!r}"
                raise ValueError(msg)
            object.__setattr__(self, name, value)
        for name in ("radial_floor", "rgb_equalize_min_coverage"):
            value = _check_positive(name, getattr(self, name), allow_zero=True)
            if value > 1.0:
                msg = f"`{name}` must be in [0, 1], got {getattr(self, name)!r}"
                raise ValueError(msg)
            object.__setattr__(self, name, value)
        low, high = _check_pair("rgb_equalize_gain_clip", self.rgb_equalize_gain_clip)
        if not (0.0 < low <= 1.0 <= high):
            msg = f"`rgb_equalize_gain_clip` must satisfy 0 < low <= 1 <= high, got {self.rgb_equalize_gain_clip!r}"
            raise ValueError(msg)
        object.__setattr__(self, "rgb_equalize_gain_clip", (low, high))
        low, high = _check_pair("rgb_equalize_bg_percentile", self.rgb_equalize_bg_percentile)
        if not (0.0 <= low < high <= 100.0):
            msg = (f"`rgb_equalize_bg_percentile` must satisfy 0 <= low < high <= 100, "
                   f"got {self.rgb_equalize_bg_percentile!r}")
            raise ValueError(msg)
        object.__setattr__(self, "rgb_equalize_bg_percentile", (low, high))
        if not isinstance(self.winsor_rewinsor, bool):
            msg = f"`winsor_rewinsor` must be True or False, got {self.winsor_rewinsor!r}"
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, data: Any, /) -> StackConfig:
        """Build a config from field names and/or ZeMosaic's config keys.

        Parameters
        ----------
        data : mapping
            Field names and/or ZeMosaic keys. A whole ``zemosaic_config.json`` dict is
            accepted: ZeMosaic keys (``stacking_rejection_algorithm``,
            ``stacking_winsor_limits`` = "0.05,0.05", ``wsc_impl``,
            ``apply_radial_weight``, ...) and method aliases are translated, unrelated
            keys are ignored, field names win over ZeMosaic keys. The table and the
            rules are in :mod:`zemosaic_xp.compat.zemosaic`.

        Returns
        -------
        StackConfig
            The defaults, overridden by what ``data`` sets.

        Raises
        ------
        TypeError
            ``data`` is not a mapping.
        ValueError
            A known key holds an unknown method name (the message lists the valid
            ones) or an invalid value.
        """
        # The one reference from core to an upper layer, resolved at call time: ZeMosaic's
        # key tables live in compat (one home), and from_dict reading them is public API.
        from ..compat.zemosaic import stack_config_from_dict

        return stack_config_from_dict(data, base=cls())

    def to_dict(self, *, zemosaic: bool = False) -> dict[str, Any]:
        """Return the config as a JSON-able dict; ``from_dict`` of it gives the config back.

        Parameters
        ----------
        zemosaic : bool
            False (default): every field under its own name. True: the fields
            ZeMosaic knows under its keys (``stacking_*``, ``wsc_impl``,
            ``apply_radial_weight``, ...), the rest under their field names.

        Returns
        -------
        dict of str to object
            One entry per field; pairs are written as lists.
        """
        if zemosaic:
            from ..compat.zemosaic import stack_config_to_zemosaic

            return stack_config_to_zemosaic(self)
        values = {name: getattr(self, name) for name in self.field_names()}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    @classmethod
    def plain(cls, **overrides: Any) -> StackConfig:
        """Build an unnormalised, unweighted, unrejected mean (``none/none/none/mean``).

        Parameters
        ----------
        **overrides : object
            Fields to set on top of it, by name (e.g. ``reject="kappa_sigma"``).

        Returns
        -------
        StackConfig
            The validated config.
        """
        base = {"normalize": "none", "weighting": "none", "reject": "none", "combine": "mean"}
        base.update(overrides)
        return cls(**base)

    def effective_max_iters(self) -> int:
        """Return the iteration cap the rejection runs with.

        Returns
        -------
        int
            ``max_iters``, or the default of the ``reject`` algorithm when it is None
            (``DEFAULT_MAX_ITERS``: 5 for kappa_sigma, 10 for winsorized_sigma_clip,
            1 for the one-pass percentile and minmax; 5 for algorithms not listed).
        """
        if self.max_iters is not None:
            return self.max_iters
        return DEFAULT_MAX_ITERS.get(self.reject, 5)

    def replace(self, **changes: Any) -> StackConfig:
        """Return a copy with some fields changed.

        Parameters
        ----------
        **changes : object
            New values, by field name.

        Returns
        -------
        StackConfig
            A new config, validated again.

        Raises
        ------
        TypeError
            A name that is not a field.
        ValueError
            An invalid value, as the constructor reports it.
        """
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """List the names of all configuration fields.

        Returns
        -------
        tuple of str
            In declaration order, as ``to_dict`` writes them.
        """
        return tuple(f.name for f in fields(cls))
