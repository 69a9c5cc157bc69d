"""``stack_plan.csv``: the list of plate-solved frames a grid run stacks.

The format is ZeMosaic's (``reference/upstream_spec.md`` §3.2): the delimiter
sniffed among ``, ; | TAB space``, a header row whose columns are matched through
aliases (first non-empty alias wins), or no header at all (the first non-empty
value of a row is then the path). Paths written on another machine are found in
the input folder: absolute, relative to the folder, a Windows drive or UNC path
with its tail looked up under the folder, then the bare file name.

Where upstream reads UTF-8 ignoring errors (a latin-1 ``é`` vanishes from a path, which
is then "not found"), the encoding is detected: UTF-8 with or without a byte-order mark,
UTF-16 with one; anything else is an error naming the file and the byte offset. A header
without a path column is an error naming its columns and the accepted names. A frame
listed twice (the same file after resolving, ``./x.fits`` and ``x.fits``) is stacked once,
with a ``[GRID]`` warning naming the repeats.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

__all__ = ["PlanEntry", "StackPlan", "load_stack_plan", "split_by_mount", "PLAN_FILENAME"]

logger = logging.getLogger(__name__)

PLAN_FILENAME = "stack_plan.csv"

_ALIASES = {
    "path": ("file_path", "filepath", "file", "path", "filename", "fits", "raw"),
    "exposure": ("exposure", "exp", "exptime", "exposure_s"),
    "bortle": ("bortle", "bortle_class", "sky_quality"),
    "filter": ("filter", "band", "channel"),
    "batch_id": ("batch_id", "batch", "session", "night"),
    "order": ("order", "seq", "sequence", "index"),
    "mount": ("mount", "eqmode", "mount_mode"),
}
_EQ_NAMES = frozenset({"EQ", "EQUATORIAL", "GEM", "GERMAN"})
_ALTZ_NAMES = frozenset({"ALTZ", "ALT-AZ", "ALT/AZ", "ALT-AZM", "ALTAZ", "ALTITUDE-AZIMUTH"})
_DELIMITERS = ",;|\t "
_SNIFF_CHARS = 2048
_FITS_SUFFIXES = (".fit", ".fits", ".fts", ".fz")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


@dataclass(frozen=True)
class PlanEntry:
    """One frame of the plan.

    Attributes
    ----------
    path : Path
        The resolved, existing file.
    exposure : float
        Exposure in seconds (1.0 when absent); the frame's weight factor.
    mount : {"EQ", "ALTZ"} or None
        The ``mount`` column, normalised (``GEM``, ``ALT-AZ``, ... are recognised);
        None when absent or not recognised.
    filter, batch_id, bortle : str or None
        Carried for the record; grid mode does not use them.
    order : int
        The ``order`` column, else the row index.
    """

    path: Path
    exposure: float = 1.0
    mount: str | None = None
    filter: str | None = None
    batch_id: str | None = None
    bortle: str | None = None
    order: int = 0


@dataclass
class StackPlan:
    """A parsed ``stack_plan.csv``.

    Attributes
    ----------
    entries : list of PlanEntry
        Rows whose file exists, in file order.
    missing : list of str
        Paths as written in the CSV for rows whose file was not found (skipped).
    source : Path
        The CSV read.
    duplicates : list of str
        Paths as written in the CSV for rows that repeat a frame of an earlier row
        (skipped: each frame is stacked once).
    """

    entries: list[PlanEntry]
    source: Path
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)


def _sniff_delimiter(text: str) -> str:
    sample = text[:_SNIFF_CHARS]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _normalise_mount(value: str | None) -> str | None:
    if not value:
        return None
    text = value.strip().upper().replace("_", "-")
    if text in _EQ_NAMES:
        return "EQ"
    if text in _ALTZ_NAMES or text.replace("-", "") in _ALTZ_NAMES:
        return "ALTZ"
    return None


def _names_a_frame(row: list[str]) -> bool:
    return any(cell.strip().lower().endswith(_FITS_SUFFIXES) for cell in row)


def _looks_like_header(rows: list[list[str]]) -> bool:
    """A first row that names no frame, and has a known column name or is followed by a frame."""
    first = rows[0]
    if _names_a_frame(first):
        return False
    names = {cell.strip().lower() for cell in first}
    known = {alias for aliases in _ALIASES.values() for alias in aliases}
    return bool(names & known) or (len(rows) > 1 and _names_a_frame(rows[1]))


def _candidates(raw: str, base: Path) -> list[Path]:
    """Where a path written in the CSV may be, in the order they are tried."""
    text = raw.strip().strip('"').strip("'")
    out = [Path(text)]
    if not Path(text).is_absolute():
        out.append(base / text)
    windows = bool(_WINDOWS_DRIVE.match(text)) or text.startswith("\\\\") or "\\" in text
    if windows:
        win = PureWindowsPath(text)
        parts = win.parts[1:] if (win.drive or win.root) else win.parts
        # The tail after the drive / UNC share, then ever shorter tails under the folder.
        for i in range(len(parts)):
            out.append(base.joinpath(*parts[i:]))
        out.append(base / win.name)
    else:
        out.append(base / Path(text).name)
    return out


def _resolve(raw: str, base: Path) -> Path | None:
    for candidate in _candidates(raw, base):
        try:
            if candidate.is_file():
                return candidate.resolve()
        except OSError:  # e.g. a name too long for this file system
            continue
    return None


def _first(row: dict[str, str], field_name: str) -> str | None:
    for alias in _ALIASES[field_name]:
        value = row.get(alias)
        if value is not None and value.strip():
            return value.strip()
    return None


def _exposure(value: str | None, where: str) -> float:
    if value is None:
        return 1.0
    try:
        number = float(value)
    except ValueError:
        logger.warning("[GRID] %s: exposure %r is not a number; using 1.0", where, value)
        return 1.0
    if not math.isfinite(number) or number <= 0:
        logger.warning("[GRID] %s: exposure %r is not > 0; using 1.0", where, value)
        return 1.0
    return number


def _order(value: str | None, default: int) -> int:
    try:
        return int(float(value)) if value is not None else default
    except ValueError:
        return default


def _decode(data: bytes, source: Path) -> str:
    """The plan's text: UTF-8 (byte-order mark or not) or UTF-16 with a byte-order mark."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, skip = "utf-16", 0
    else:
        encoding, skip = "utf-8", len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        if b"\x00" in data:  # valid UTF-8 for ASCII, but every other byte is a NUL
            offset = data.index(b"\x00")
            msg = (f"'{source}' is not UTF-8 text: NUL byte at offset {offset} (UTF-16 without a byte-order "
                   f"mark, or not a text file); save the plan as UTF-8")
            raise ValueError(msg)
    try:
        return data[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        offset = exc.start + skip
        line = data.count(b"\n", 0, offset) + 1
        kind = "UTF-16" if encoding == "utf-16" else "UTF-8"
        msg = (f"'{source}' is not {kind} text: byte 0x{data[offset]:02x} at offset {offset} (line {line}) "
               f"does not decode (latin-1 / Windows-1252?); save the plan as UTF-8")
        raise ValueError(msg) from None


def _rows(text: str, source: Path) -> list[dict[str, str]]:
    """Rows as dicts keyed by lower-case column name; ``path`` only when there is no header."""
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=delimiter == " ")
    raw_rows = [r for r in reader if any(cell.strip() for cell in r)]
    if not raw_rows:
        return []
    if _looks_like_header(raw_rows):
        header = [cell.strip().lower() for cell in raw_rows[0]]
        if not set(header) & set(_ALIASES["path"]):
            msg = (f"'{source}' has no column of frame paths: its header is "
                   f"{', '.join(repr(c) for c in raw_rows[0])}; name that column one of "
                   f"{', '.join(_ALIASES['path'])} (or drop the header row: the first value of "
                   f"each row is then the path)")
            raise ValueError(msg)
        return [dict(zip(header, r)) for r in raw_rows[1:]]
    rows = []
    for r in raw_rows:
        first = next(cell for cell in r if cell.strip())
        rows.append({"path": first})
    return rows


def _warn_duplicates(source: Path, repeats: dict[Path, list[tuple[int, str]]]) -> None:
    listed = []
    for rows in repeats.values():
        numbers = ", ".join(str(row) for row, _ in rows)
        spellings = list(dict.fromkeys(raw for _, raw in rows))
        also = f": {', '.join(repr(raw) for raw in spellings)}" if len(spellings) > 1 else ""
        listed.append(f"{spellings[0]!r} (rows {numbers}{also})")
    logger.warning("[GRID] %s lists %d frame(s) more than once; each is stacked once: %s",
                   source.name, len(repeats), "; ".join(listed))


def load_stack_plan(folder: str | os.PathLike, *, filename: str = PLAN_FILENAME) -> StackPlan:
    """Read ``<folder>/stack_plan.csv`` and resolve its frames.

    Parameters
    ----------
    folder : path
        The input folder; relative and foreign (Windows) paths are looked up in it.
    filename : str
        Plan file name inside ``folder``.

    Returns
    -------
    StackPlan
        Rows whose file exists; missing files are skipped with a warning and listed
        in ``missing``, rows repeating a frame (same file after resolving) are skipped
        with one warning and listed in ``duplicates``. Column names are matched
        case-insensitively.

    Raises
    ------
    FileNotFoundError
        No plan file in ``folder``.
    ValueError
        The plan has no row with a path, a header without a path column (the message
        names its columns and the accepted names), or is neither UTF-8 nor UTF-16 with
        a byte-order mark (the message names the byte offset).
    """
    base = Path(folder)
    source = base / filename
    if not source.is_file():
        msg = (f"no {filename} in '{base}': grid mode needs a plan listing the plate-solved frames "
               f"(one path per row, optional columns exposure, mount, ...)")
        raise FileNotFoundError(msg)
    rows = _rows(_decode(source.read_bytes(), source), source)
    entries: list[PlanEntry] = []
    missing: list[str] = []
    seen: dict[Path, list[tuple[int, str]]] = {}
    for index, row in enumerate(rows):
        raw = _first(row, "path")
        if raw is None:
            continue
        where = f"{source.name} row {index + 1}"
        path = _resolve(raw, base)
        if path is None:
            logger.warning("[GRID] %s: file %r not found (tried it as written, under '%s' and by "
                           "name); row skipped", where, raw, base)
            missing.append(raw)
            continue
        seen.setdefault(path, []).append((index + 1, raw))
        if len(seen[path]) > 1:
            continue
        entries.append(PlanEntry(
            path=path, exposure=_exposure(_first(row, "exposure"), where),
            mount=_normalise_mount(_first(row, "mount")), filter=_first(row, "filter"),
            batch_id=_first(row, "batch_id"), bortle=_first(row, "bortle"),
            order=_order(_first(row, "order"), index)))
    if not entries and not missing:
        msg = f"'{source}' lists no frame: expected one FITS path per row"
        raise ValueError(msg)
    repeats = {path: rows for path, rows in seen.items() if len(rows) > 1}
    if repeats:
        _warn_duplicates(source, repeats)
    duplicates = [raw for rows in repeats.values() for _, raw in rows[1:]]
    return StackPlan(entries, source, missing, duplicates)


def split_by_mount(plan: StackPlan) -> dict[str | None, list[PlanEntry]]:
    """Group the entries of a plan by mount when every entry has one and both kinds occur.

    Parameters
    ----------
    plan : StackPlan
        The parsed plan.

    Returns
    -------
    dict of {"EQ", "ALTZ", None} to list of PlanEntry
        ``{"EQ": [...], "ALTZ": [...]}`` when the plan mixes the two (ZeMosaic stacks
        them apart, into ``grid_EQ`` / ``grid_ALTZ``), else ``{None: all entries}``;
        entries keep their plan order.
    """
    mounts = {entry.mount for entry in plan.entries}
    if None in mounts or len(mounts) < 2:
        return {None: list(plan.entries)}
    return {mount: [e for e in plan.entries if e.mount == mount] for mount in ("EQ", "ALTZ") if mount in mounts}
