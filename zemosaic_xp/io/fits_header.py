"""A fast reader of FITS HDU headers, for the common files of a stack.

Opening a frame with astropy parses every card into objects, which costs a few
milliseconds per file: seconds for a stack of a thousand frames, more than the
stacking itself at small sizes. :func:`scan_hdus` reads the raw 2880-byte header
blocks of every HDU and parses only ``KEY = value`` cards into plain Python values,
enough to locate the image data (BITPIX, NAXISn, BZERO, BSCALE, EXTNAME, offsets).
It returns None for anything it is not sure about (no ``SIMPLE``, a compressed image,
a malformed card, a truncated header): the caller then falls back to astropy, which
gives the full diagnosis. The raw header bytes are kept so that a full
``astropy.io.fits.Header`` can still be built on demand.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

__all__ = ["HduInfo", "ScannedPath", "scan_hdus", "BLOCK"]

#: FITS block size in bytes.
BLOCK = 2880
_CARD = 80
_MAX_HEADER_BLOCKS = 400  # ~14 000 cards: beyond that, let astropy judge


@dataclass(frozen=True)
class HduInfo:
    """One HDU of a file, as :func:`scan_hdus` read it.

    Attributes
    ----------
    cards : dict of str to object
        ``KEY = value`` cards: str, int, float or bool (first occurrence of a key).
    raw_header : bytes
        The header blocks as stored (ASCII, a multiple of 2880 bytes).
    data_offset : int
        Byte offset of the data in the file.
    data_bytes : int
        Size of the data, without the padding to a whole block.
    """

    cards: dict
    raw_header: bytes
    data_offset: int
    data_bytes: int

    @property
    def name(self) -> str:
        """``EXTNAME`` (upper case), ``"PRIMARY"`` for the primary HDU without one.

        Returns
        -------
        str
            The HDU's name as astropy reports it.
        """
        name = self.cards.get("EXTNAME")
        if isinstance(name, str) and name.strip():
            return name.strip().upper()
        return "PRIMARY" if "SIMPLE" in self.cards else ""

    @property
    def shape(self) -> tuple[int, ...]:
        """Data shape in NumPy order (``NAXISn`` … ``NAXIS1``).

        Returns
        -------
        tuple of int
            Empty for an HDU without data.
        """
        naxis = int(self.cards.get("NAXIS", 0))
        return tuple(int(self.cards[f"NAXIS{naxis - i}"]) for i in range(naxis))

    @property
    def is_image(self) -> bool:
        """Whether the HDU is the primary array or an ``IMAGE`` extension.

        Returns
        -------
        bool
            False for tables.
        """
        return "SIMPLE" in self.cards or str(self.cards.get("XTENSION", "")).strip().upper() == "IMAGE"


def _value(text: str) -> object:
    """The value of a card's value field (columns 11-80), or raise ValueError."""
    text = text.strip()
    if text.startswith("'"):
        end, out = 1, []
        while True:
            quote = text.find("'", end)
            if quote < 0:
                raise ValueError(text)
            out.append(text[end:quote])
            if text[quote + 1:quote + 2] == "'":  # '' is an escaped quote
                out.append("'")
                end = quote + 2
                continue
            return "".join(out).rstrip()
    value = text.split("/", 1)[0].strip()
    if value in ("T", "F"):
        return value == "T"
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return float(value.replace("D", "E"))


def _parse(raw: bytes) -> tuple[dict, bool] | None:
    """Cards of header blocks and whether END was seen; None for a malformed card."""
    cards: dict = {}
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    for i in range(0, len(text), _CARD):
        card = text[i:i + _CARD]
        key = card[:8].rstrip()
        if key == "END":
            return cards, True
        if card[8:10] != "= " or key in cards or key in ("COMMENT", "HISTORY", ""):
            continue
        try:
            cards[key] = _value(card[10:])
        except ValueError:
            return None
    return cards, False


def _data_bytes(cards: dict) -> int:
    naxis = int(cards.get("NAXIS", 0))
    if naxis == 0:
        return 0
    count = math.prod(int(cards[f"NAXIS{i}"]) for i in range(1, naxis + 1))
    pcount, gcount = int(cards.get("PCOUNT", 0)), int(cards.get("GCOUNT", 1))
    return abs(int(cards["BITPIX"])) // 8 * gcount * (pcount + count)


def scan_hdus(path: str | os.PathLike) -> list[HduInfo] | None:
    """The HDUs of a FITS file from their raw headers, or None to let astropy decide.

    Parameters
    ----------
    path : str or os.PathLike
        An existing file.

    Returns
    -------
    list of HduInfo or None
        Every HDU in file order; None when the file does not start with ``SIMPLE = T``,
        a header is malformed or truncated, or an HDU is a compressed image.
    """
    size = os.path.getsize(path)
    hdus: list[HduInfo] = []
    with open(path, "rb") as fh:
        offset = 0
        while offset + BLOCK <= size:
            fh.seek(offset)
            raw = b""
            for _ in range(_MAX_HEADER_BLOCKS):
                block = fh.read(BLOCK)
                if len(block) < BLOCK:
                    return None
                raw += block
                parsed = _parse(raw)
                if parsed is None:
                    return None
                cards, ended = parsed
                if ended:
                    break
            else:
                return None
            if not hdus and cards.get("SIMPLE") is not True:
                return None
            if cards.get("ZIMAGE") is True or "BITPIX" not in cards:
                return None
            try:
                data_bytes = _data_bytes(cards)
            except (KeyError, TypeError, ValueError):
                return None
            data_offset = offset + len(raw)
            hdus.append(HduInfo(cards, raw, data_offset, data_bytes))
            offset = data_offset + math.ceil(data_bytes / BLOCK) * BLOCK
    return hdus or None


class ScannedPath(os.PathLike):
    """A FITS file's path with the HDUs :func:`scan_hdus` found in it.

    :func:`zemosaic_xp.nddata.master_tile_inputs` reads every input's headers (units,
    masks); the frame sources opened next take the HDUs from here rather than read and
    parse them a second time (a millisecond or two a file). Behaves as the path
    everywhere: ``os.fspath``, ``str``, ``==`` with the path.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    hdus : list of HduInfo
        What :func:`scan_hdus` returned for it.
    """

    __slots__ = ("path", "hdus")

    def __init__(self, path: str | os.PathLike, hdus: list[HduInfo]) -> None:
        self.path = os.fspath(path)
        self.hdus = hdus

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return repr(self.path)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, os.PathLike)):
            return self.path == os.fspath(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.path)
