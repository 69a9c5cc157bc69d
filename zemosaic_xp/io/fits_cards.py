"""A minimal FITS image writer: the master tile's HDUs without importing astropy.

``zemosaic-xp stack`` reads its frames with the fast header reader
(:mod:`.fits_header`) and writes one float32 image, a uint8 ``ALPHA`` extension and
an ``UNCERT`` extension. Importing ``astropy.io.fits`` for that write costs more than
a small stack itself, so :func:`~.fits_write.write_fits` writes such files here when
every card is one of the simple kinds below, and through astropy otherwise.

The files are byte for byte what astropy writes for the same HDUs (same structural
cards and comments, same value formatting, big-endian data padded to 2 880-byte
blocks; ``tests/io/test_fits_cards.py`` compares them), so reading them back gives the
same header and data.

Cards written here: standard keywords (up to 8 characters of ``A-Z 0-9 _ -``) and
``HIERARCH`` keywords, whose value is a ``str`` of printable ASCII, a ``bool``, an
integer or a finite float, with an optional printable ASCII comment, fitting in one
80-character card. Anything else (long strings needing ``CONTINUE``, commentary
cards, structural keys among the cards) makes :func:`render_header` return None: the
caller then writes through astropy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

__all__ = ["Cards", "ImageExtension", "render_card", "render_header", "write_image_hdus", "BLOCK"]

#: FITS block size in bytes: headers and data are padded to a multiple of it.
BLOCK = 2880
_CARD = 80
_STANDARD_KEY = re.compile(r"[A-Z0-9_-]{1,8}")
_HIERARCH_KEY = re.compile(r"HIERARCH [A-Z0-9_-]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
_STRUCTURAL = re.compile(r"SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|EXTNAME|END|BSCALE|BZERO|BLANK"
                         r"|CHECKSUM|DATASUM|GROUPS|COMMENT|HISTORY")
_BITPIX = {np.dtype(np.float32): -32, np.dtype(np.float64): -64, np.dtype(np.uint8): 8,
           np.dtype(np.int16): 16, np.dtype(np.int32): 32}


class Cards:
    """Ordered header cards, set like an astropy ``Header`` (no astropy needed).

    Setting a key that exists replaces its value in place (and its comment, when one is
    given), as ``Header.__setitem__`` does; ``HIERARCH X`` and ``X`` name the same card;
    ``COMMENT`` and ``HISTORY`` cards are appended (the minimal writer leaves them to
    astropy).

    Parameters
    ----------
    items : iterable of (key, value) or (key, value, comment), optional
        Initial cards, in order.
    """

    def __init__(self, items: Any = ()) -> None:
        self._cards: dict[str, list] = {}
        for item in items:
            self.set(*item)

    @staticmethod
    def _id(key: str) -> str:
        key = str(key).upper()
        return key[9:] if key.startswith("HIERARCH ") else key

    def set(self, key: str, value: Any, comment: str | None = None) -> None:
        """Set one card.

        Parameters
        ----------
        key : str
            The keyword (``"HIERARCH NAME"`` for a long one).
        value : str, bool, int or float
            The value.
        comment : str, optional
            The comment; None keeps the existing card's comment (empty for a new card).
        """
        ident = self._id(key)
        if ident in ("COMMENT", "HISTORY", ""):
            ident = f"{ident}#{len(self._cards)}"  # commentary cards repeat: each is appended
        old = self._cards.get(ident)
        if old is None:
            self._cards[ident] = [str(key), value, "" if comment is None else str(comment)]
        else:
            old[1] = value
            if comment is not None:
                old[2] = str(comment)

    def remove(self, key: str) -> None:
        """Remove the card ``key`` when it is there.

        Parameters
        ----------
        key : str
            The keyword.
        """
        self._cards.pop(self._id(key), None)

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, tuple) and len(value) == 2:
            self.set(key, value[0], value[1])
        else:
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``.

        Parameters
        ----------
        key : str
            The keyword.
        default : object
            Returned when there is no such card.

        Returns
        -------
        object
            The card's value, or ``default``.
        """
        card = self._cards.get(self._id(key))
        return default if card is None else card[1]

    def __contains__(self, key: str) -> bool:
        return self._id(key) in self._cards

    def __len__(self) -> int:
        return len(self._cards)

    def cards(self) -> list[tuple[str, Any, str]]:
        """Every card as ``(key, value, comment)``, in order.

        Returns
        -------
        list of (str, object, str)
            The cards.
        """
        return [tuple(card) for card in self._cards.values()]

    def to_astropy(self) -> Any:
        """The same cards as an ``astropy.io.fits.Header`` (imports astropy).

        Returns
        -------
        astropy.io.fits.Header
            A new header holding every card.
        """
        from astropy.io import fits

        return fits.Header(self.cards())


@dataclass
class ImageExtension:
    """An image extension to write after the primary HDU.

    Attributes
    ----------
    name : str
        Its ``EXTNAME``.
    data : ndarray
        float32 or uint8 pixels, NumPy axis order (written as NAXIS1 = last axis).
    cards : Cards
        Cards after the structural ones and ``EXTNAME``.
    """

    name: str
    data: np.ndarray
    cards: Cards = field(default_factory=Cards)

    def to_astropy(self) -> Any:
        """The same extension as an ``astropy.io.fits.ImageHDU`` (imports astropy).

        Returns
        -------
        astropy.io.fits.ImageHDU
            Data, ``EXTNAME`` and cards.
        """
        from astropy.io import fits

        hdu = fits.ImageHDU(data=self.data, name=self.name)
        for key, value, comment in self.cards.cards():
            hdu.header[key] = (value, comment)
        return hdu


def _format_value(value: Any) -> str | None:
    """The value field as astropy formats it, or None for a kind not handled here."""
    if isinstance(value, str):
        if not _PRINTABLE.fullmatch(value):
            return None
        if value == "":
            return "''"
        quoted = "'{:8}'".format(value.replace("'", "''"))
        return f"{quoted:20}"
    if isinstance(value, (bool, np.bool_)):
        return f"{'T' if value else 'F':>20}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):>20d}"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return None
        text = str(value).replace("e", "E")
        if len(text) > 20:
            exp = text.find("E")
            text = text[:20] if exp < 0 else text[:20 - (len(text) - exp)] + text[exp:]
        return f"{text:>20}"
    return None


def render_card(key: str, value: Any, comment: str = "") -> str | None:
    """One 80-character card as astropy writes it, or None when it is not a simple card.

    Parameters
    ----------
    key : str
        An upper-case keyword of up to 8 characters, or ``"HIERARCH NAME"``.
    value : str, bool, int or float
        The value (a float must be finite).
    comment : str
        The comment (printable ASCII); empty for none.

    Returns
    -------
    str or None
        The card, padded to 80 characters; None for anything else (a long string, a
        long card, another type, a non-ASCII character, a lower-case keyword).
    """
    comment = "" if comment is None else str(comment)
    text = _format_value(value)
    if text is None or not _PRINTABLE.fullmatch(comment):
        return None
    tail = f" / {comment}" if comment else ""
    if _STANDARD_KEY.fullmatch(key):
        out = f"{key:8}= {text}{tail}"
    elif _HIERARCH_KEY.fullmatch(key):
        text = text.strip()
        keyword = f"{key} "
        out = f"{keyword}= {text}{tail}"
        if len(keyword) + 2 + len(text) == _CARD + 1:
            out = f"{key}= {text}{tail}"  # astropy drops the blank before '=' when it must
    else:
        return None
    return f"{out:80}" if len(out) <= _CARD else None


def _structural(data: np.ndarray, extname: str | None, extend: bool) -> list[tuple[str, Any, str]]:
    bitpix = _BITPIX[data.dtype]
    axes = [(f"NAXIS{i + 1}", int(n), "") for i, n in enumerate(reversed(data.shape))]
    if extname is None:
        return [("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", bitpix, "array data type"),
                ("NAXIS", data.ndim, "number of array dimensions"), *axes, *([("EXTEND", True, "")] if extend else [])]
    return [("XTENSION", "IMAGE", "Image extension"), ("BITPIX", bitpix, "array data type"),
            ("NAXIS", data.ndim, "number of array dimensions"), *axes,
            ("PCOUNT", 0, "number of parameters"), ("GCOUNT", 1, "number of groups"),
            ("EXTNAME", extname, "extension name")]


def render_header(data: np.ndarray, cards: list[tuple[str, Any, str]], extname: str | None = None, *,
                  extend: bool = True) -> bytes | None:
    """A whole HDU header (structural cards, ``cards``, ``END``), padded to 2 880 bytes.

    Parameters
    ----------
    data : ndarray
        The HDU's pixels (float32, float64, uint8, int16 or int32): they give BITPIX and
        the NAXIS cards.
    cards : list of (key, value, comment)
        The other cards, in order.
    extname : str, optional
        None for the primary HDU, else the image extension's ``EXTNAME``.
    extend : bool
        Whether extensions follow the primary HDU (its ``EXTEND = T`` card).

    Returns
    -------
    bytes or None
        The header; None when a card is not simple (see :func:`render_card`), names a
        structural keyword, or the data type is not one of the above.
    """
    if data.dtype not in _BITPIX:
        return None
    lines = []
    for key, value, comment in cards:
        if _STRUCTURAL.fullmatch(str(key)):
            return None
        lines.append(render_card(str(key), value, comment))
    if any(line is None for line in lines):
        return None
    lines = [render_card(*card) for card in _structural(data, extname, extend)] + lines
    text = "".join(lines) + f"{'END':80}"
    text += " " * (-len(text) % BLOCK)
    return text.encode("ascii")


def _write_data(fh: BinaryIO, data: np.ndarray, chunk_bytes: int = 4 << 20) -> None:
    """Big-endian pixels in row chunks (no whole byte-swapped copy), zero-padded to a block."""
    big = data.dtype.newbyteorder(">")
    flat = data.reshape(-1, data.shape[-1]) if data.ndim > 1 else data.reshape(1, -1)
    step = max(1, chunk_bytes // max(1, flat.shape[1] * data.dtype.itemsize))
    for r in range(0, flat.shape[0], step):
        fh.write(np.ascontiguousarray(flat[r:r + step], dtype=big).data)
    fh.write(b"\0" * (-data.nbytes % BLOCK))


def write_image_hdus(fh: BinaryIO, hdus: list[tuple[bytes, np.ndarray]]) -> None:
    """Write rendered HDUs: each header (from :func:`render_header`) and its data.

    Parameters
    ----------
    fh : binary file
        Open for writing, at the start of the file.
    hdus : list of (bytes, ndarray)
        The headers and their pixels, primary first.
    """
    for header, data in hdus:
        fh.write(header)
        _write_data(fh, data)
