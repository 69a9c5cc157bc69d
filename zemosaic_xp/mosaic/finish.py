"""The optional last steps of a mosaic before it is saved: RGB equalisation, then DBE.

ZeMosaic's final mosaic may get two corrections after the assembly (upstream_spec §3.7
steps 9–10), in this order, each switched by its config key:

1. ``final_mosaic_rgb_equalize_enabled`` — the channels' background medians pulled
   together (:func:`zemosaic_xp.core.rgb.equalize_rgb`, the one home of the RGB
   equalisation) with ZeMosaic's final-mosaic gain range, [0.80, 1.25] by default
   (``final_mosaic_rgb_equalize_gain_clip``), over the pixels with data;
2. ``final_mosaic_dbe_enabled`` — the background extraction of
   :mod:`.background` at ``final_mosaic_dbe_strength``.

:func:`finish_mosaic` applies them to a :class:`~.assemble.MosaicResult` in place and
records what was done in its ``info`` (``rgb_equalization``, ``dbe``); its header cards
come from :func:`finish_cards`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from .assemble import MosaicResult

__all__ = ["finish_mosaic", "finish_cards", "FINAL_RGB_GAIN_CLIP"]

logger = logging.getLogger(__name__)

#: ZeMosaic's default gain range of the final-mosaic RGB equalisation.
FINAL_RGB_GAIN_CLIP = (0.80, 1.25)


def finish_mosaic(result: MosaicResult, *, rgb_equalize: bool = False,
                  rgb_gain_clip: tuple[float, float] | None = FINAL_RGB_GAIN_CLIP, dbe: bool = False,
                  dbe_strength: str = "normal", emit: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Equalise the RGB channels and/or extract the background of a mosaic, in place.

    Parameters
    ----------
    result : MosaicResult
        The assembled mosaic; ``result.image`` (H, W, C) float32 is replaced, NaN (no
        data) pixels stay NaN, ``weight``, ``coverage`` and ``uncertainty`` are kept.
    rgb_equalize : bool
        Apply the RGB equalisation (3-channel mosaics only; others are recorded as
        ``non_rgb``).
    rgb_gain_clip : (float, float) or None
        Range the channel gains are clipped to; None = not clipped.
    dbe : bool
        Subtract the large-scale background (:func:`.background.extract_background`).
    dbe_strength : str
        Its strength (``weak``, ``normal``, ``strong``, ``aggressive``; ``low``/``high``).
    emit : callable, optional
        ``emit(fmt, *args)`` gets one line per step (e.g. ``GridProgress.message``, which
        logs it and sends it to the progress callback); default: logged here.

    Returns
    -------
    dict
        ``{"rgb_equalization": info or None, "dbe": info or None}`` (JSON-able), also
        stored in ``result.info``.

    Raises
    ------
    ImportError
        ``dbe`` without photutils (the message names ``final_mosaic_dbe_enabled``).
    ValueError
        An unknown ``dbe_strength`` (the message names ``final_mosaic_dbe_strength``).
    """
    say = emit or logger.info
    done: dict[str, Any] = {"rgb_equalization": None, "dbe": None}
    if rgb_equalize:
        from ..core.rgb import equalize_rgb

        clip = (0.0, float("inf")) if rgb_gain_clip is None else tuple(float(v) for v in rgb_gain_clip)
        image, info = equalize_rgb(result.image, gain_clip=clip)
        result.image = np.asarray(image, dtype=np.float32)
        done["rgb_equalization"] = info
        say("[GRID][RGB-EQ] final mosaic: %s (gains %.4f / %.4f / %.4f)", info["decision"], info["gain_r"],
            info["gain_g"], info["gain_b"])
    if dbe:
        from .background import extract_background

        valid = result.coverage > 0
        image, info = extract_background(result.image, strength=dbe_strength, valid=valid)
        result.image = np.where(np.isfinite(result.image), image, np.nan).astype(np.float32)
        done["dbe"] = info
        say("[GRID][DBE] final mosaic: applied=%s strength=%s box=%d px degree=%d channels=%d/%d", info["applied"],
            info["strength"], info["box_px"], info["degree"], sum(ch["applied"] for ch in info["channels"]),
            len(info["channels"]))
    result.info.update(done)
    return done


def finish_cards(done: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """FITS cards recording :func:`finish_mosaic`'s steps.

    Parameters
    ----------
    done : dict
        What :func:`finish_mosaic` returned.

    Returns
    -------
    list of (keyword, value, comment)
        ``RGBEQ`` (and ``RGBGAINR/G/B`` when applied), ``DBE`` and ``DBESTR`` (when
        asked for).
    """
    cards: list[tuple[str, Any, str]] = []
    rgb = done.get("rgb_equalization")
    if rgb is not None:
        cards.append(("RGBEQ", bool(rgb["applied"]), f"final RGB equalisation ({rgb['decision']})"))
        if rgb["applied"]:
            cards += [(f"RGBGAIN{c}", float(rgb[f"gain_{c.lower()}"]), f"final RGB gain, {c}") for c in "RGB"]
    dbe = done.get("dbe")
    if dbe is not None:
        cards.append(("DBE", bool(dbe["applied"]), "large-scale background subtracted"))
        cards.append(("DBESTR", str(dbe["strength"]), "background extraction strength"))
    return cards
