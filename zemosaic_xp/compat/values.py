"""How ZeMosaic's config values are spelled: booleans, switches, numbers, pairs, method names.

Every reader takes the value and the key it came from, and raises ``ValueError``
naming that key when the value has the wrong type: ``"two"`` for a number, ``1.7``
for an integer (never truncated), ``"maybe"`` for a boolean. Ranges are not checked
here: ``StackConfig`` and ``GridConfig`` validate them, and
:mod:`zemosaic_xp.compat.zemosaic` names the key in their messages too.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..core.config import COMBINE_METHODS, NORMALIZE_METHODS, REJECT_METHODS, WEIGHTING_METHODS

__all__ = [
    "METHOD_ALIASES",
    "is_set",
    "parse_bool",
    "parse_optional_bool",
    "parse_number",
    "parse_percent",
    "parse_gigabytes_as_mb",
    "parse_text",
    "parse_int",
    "parse_pair",
    "parse_method",
    "spelling",
]

logger = logging.getLogger(__name__)

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_UNSET_FLAGS = ("auto", "none", "null")

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
        "minimum": "min", "maximum": "max", "quantile": "percentile",
    },
}
_VALID = {"normalize": NORMALIZE_METHODS, "weighting": WEIGHTING_METHODS,
          "reject": REJECT_METHODS, "combine": COMBINE_METHODS}


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


def parse_number(value: Any, key: str) -> float:
    """Read a finite number: an int, a float or a string that spells one.

    Parameters
    ----------
    value : object
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    float
        The number (range not checked).

    Raises
    ------
    ValueError
        A boolean, a non-numeric string, a list, NaN or infinity; the message names ``key``.
    """
    number = None
    if not isinstance(value, bool):  # float(True) would pass a switch for 1.0
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not math.isfinite(number):
        msg = f"`{key}` must be a number, got {value!r}"
        raise ValueError(msg)
    return number


def parse_percent(value: Any, key: str) -> float:
    """Read a percentage as a fraction (``40`` → 0.4).

    Parameters
    ----------
    value : object
        The config value, a number in percent.
    key : str
        Its key, to name in the error.

    Returns
    -------
    float
        ``value / 100`` (range not checked).
    """
    return parse_number(value, key) / 100.0


def parse_gigabytes_as_mb(value: Any, key: str) -> float:
    """Read a size in GiB as MiB (``0.5`` → 512).

    Parameters
    ----------
    value : object
        The config value, a number of GiB.
    key : str
        Its key, to name in the error.

    Returns
    -------
    float
        ``value × 1024`` (range not checked).
    """
    return parse_number(value, key) * 1024.0


def parse_text(value: Any, key: str) -> str:
    """Read a string setting, stripped and lower-cased.

    Parameters
    ----------
    value : object
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    str
        The normalised string.

    Raises
    ------
    ValueError
        ``value`` is not a string; the message names ``key``.
    """
    if not isinstance(value, str):
        msg = f"`{key}` must be a string, got {value!r}"
        raise ValueError(msg)
    return value.strip().lower()


def parse_int(value: Any, key: str) -> int:
    """Read a whole number: an int, a float without a fraction (``2.0``) or a string of one.

    Parameters
    ----------
    value : object
        The config value.
    key : str
        Its key, to name in the error.

    Returns
    -------
    int
        The number (range not checked).

    Raises
    ------
    ValueError
        Not a number, or a number with a fraction such as ``1.7``: it is not rounded
        (the API refuses ``2.5`` too); the message names ``key``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = parse_number(value, key)
    except ValueError:
        msg = f"`{key}` must be a whole number, got {value!r}"
        raise ValueError(msg) from None
    if not number.is_integer():
        msg = (f"`{key}` must be a whole number, got {value!r} (it is not rounded: write "
               f"{math.floor(number)} or {math.ceil(number)})")
        raise ValueError(msg)
    return int(number)


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


def spelling(value: str) -> str:
    """Normalise a name as method names are matched: lower case, ``-``, ``+`` and spaces as ``_``.

    Parameters
    ----------
    value : str
        A name as written in a config.

    Returns
    -------
    str
        Lower case, runs of ``_`` collapsed, no leading or trailing ``_``.
    """
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
        name = spelling(value)
        name = METHOD_ALIASES[field].get(name, name)
        if name in valid:
            if name != spelling(value):
                logger.debug("config `%s` = %r read as %r", key, value, name)
            return name
    aliases = ", ".join(sorted(METHOD_ALIASES[field]))
    msg = (f"`{key}` must be one of {{{', '.join(repr(v) for v in valid)}}} "
           f"(aliases: {aliases}), got {value!r}")
    raise ValueError(msg)
