"""Write and read ``resource_telemetry.csv``, one row per ``STATS_UPDATE`` payload.

The column set is fixed when the file is opened: upstream ZeMosaic's 27 default
columns in its order, then the first payload's other keys, sorted (what upstream's
``csv.DictWriter`` writes). Keys that first appear in a later payload are
dropped, so every row has the header's shape and the file stays a plain table.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import IO, Any, Mapping

__all__ = ["CSV_FIXED_COLUMNS", "DEFAULT_CSV_NAME", "TelemetryCsvWriter", "read_telemetry_csv"]

_SHOWN_HEADER = 120  # characters of a foreign header quoted in the error (a FITS card runs to 2880)

logger = logging.getLogger(__name__)

#: File name upstream ZeMosaic writes in the output folder.
DEFAULT_CSV_NAME = "resource_telemetry.csv"

#: Columns every telemetry CSV starts with, in this order: upstream's 27 defaults
#: (``reference/upstream_spec.md`` §6.3).
CSV_FIXED_COLUMNS = (
    "timestamp_iso",
    "phase_index",
    "phase_name",
    "cpu_percent",
    "ram_used_mb",
    "ram_total_mb",
    "ram_available_mb",
    "gpu_used_mb",
    "gpu_total_mb",
    "gpu_free_mb",
    "gpu_util_percent",
    "gpu_mem_util_percent",
    "gpu_name",
    "gpu_backend",
    "gpu_sample_source",
    "files_done",
    "files_total",
    "tiles_done",
    "tiles_total",
    "eta_seconds",
    "cpu_workers",
    "rows_per_chunk",
    "gpu_rows_per_chunk",
    "max_chunk_bytes",
    "gpu_max_chunk_bytes",
    "use_gpu",
    "use_gpu_phase5",
)


class TelemetryCsvWriter:
    """Append telemetry payloads to a CSV file, one flushed row per payload.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file. Opened (truncated) by the first :meth:`write_row`, not here;
        its folder must exist.

    Notes
    -----
    The header is written and flushed with the first row, and every row is one
    ``write`` followed by a flush, so a run that is killed leaves a readable file of
    complete rows (at worst the line being written is cut, which readers skip).
    Not thread-safe on its own: the controller serialises calls. Errors (``OSError``)
    propagate to the caller, which decides to stop logging.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.columns: tuple[str, ...] | None = None
        self._file: IO[str] | None = None
        self._closed = False

    def write_row(self, payload: Mapping[str, Any]) -> None:
        """Write one payload; the first call opens the file and writes the header.

        Parameters
        ----------
        payload : mapping of str to value
            Keys outside the header are ignored; missing keys give empty cells; None
            gives an empty cell.
        """
        if self._closed:
            msg = f"telemetry CSV {str(self.path)!r} is closed; create a new writer to log again"
            raise ValueError(msg)
        row = dict(payload)
        if self._file is None:
            extras = sorted(k for k in row if k not in CSV_FIXED_COLUMNS)
            self.columns = CSV_FIXED_COLUMNS + tuple(extras)
            self._file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - kept open
            self._write_line(self.columns)
        assert self.columns is not None  # set together with _file
        self._write_line([_cell(row.get(col)) for col in self.columns])

    def close(self) -> None:
        """Close the file; idempotent. Later :meth:`write_row` calls raise ``ValueError``."""
        self._closed = True
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def _write_line(self, cells: Any) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        assert self._file is not None
        self._file.write(buf.getvalue())  # one write per row: no half row from a buffered split
        self._file.flush()


def _cell(value: Any) -> Any:
    # csv writes str(value): shortest round-trip floats, and plain numbers for NumPy
    # scalars too (their repr, "np.float64(1.5)", would not parse back).
    return "" if value is None else value


def read_telemetry_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a telemetry CSV back as one dict per complete row.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :class:`TelemetryCsvWriter` (or upstream ZeMosaic).

    Returns
    -------
    list of dict
        Column name to value: ``int`` or ``float`` where the cell parses as a number,
        ``True``/``False`` for the words, None for an empty cell, else the string.
        A row cut short (the last line of a killed run) is skipped.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is binary (holds a NUL byte), or has no header or no
        ``timestamp_iso`` column; the message names the file (one line). Text that
        is not UTF-8 (upstream's cp1252 on Windows) is read as latin-1.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"telemetry CSV {str(path)!r} does not exist; pass the resource_telemetry.csv of a run"
        raise FileNotFoundError(msg)
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:  # a binary file (an image, a FITS): csv would stop on the NUL byte
        msg = (f"{str(path)!r} is not a telemetry CSV: it holds binary data (NUL byte at offset {nul}); "
               f"pass the resource_telemetry.csv of a run")
        raise ValueError(msg)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Upstream writes the CSV in the platform's encoding (cp1252 on Windows): its text
        # reads as latin-1, whose every byte decodes; a foreign file then fails on its header.
        logger.debug("[TELEMETRY] %s is not UTF-8 (%s at byte %d); read as latin-1", path, exc.reason, exc.start)
        text = data.decode("latin-1")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or "timestamp_iso" not in header:
        shown = repr(header) if header is None or len(repr(header)) <= _SHOWN_HEADER else \
            repr(header)[:_SHOWN_HEADER] + "..."
        msg = f"{str(path)!r} is not a telemetry CSV: its header {shown} has no 'timestamp_iso' column"
        raise ValueError(msg)
    return [dict(zip(header, (_parse(c) for c in cells))) for cells in reader if len(cells) == len(header)]


def _parse(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
