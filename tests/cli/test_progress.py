"""The CLI progress bar: drawn only on a terminal, log lines above it (issue 15, case 17).

Before: the bar wrote ``\\r`` into files and pipes, and a log line was printed on the
bar's line. The terminal tests replay the written characters on a tiny screen model
(``\\r`` returns to column 0, ``\\n`` starts a line) and check what a user sees.
"""

from __future__ import annotations

import io
import logging
import os
import shutil

import pytest

from zemosaic_xp.cli import main
from zemosaic_xp.cli.progress import ProgressBar

from ..classic.helpers import write_frames


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """The lines a terminal shows after printing ``text``."""
    lines, col = [""], 0
    for ch in text:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("")
            col = 0
        else:
            line = lines[-1]
            lines[-1] = line[:col].ljust(col) + ch + line[col + 1:]
            col += 1
    return [line.rstrip() for line in lines]


def progress(bar, stage, done, total):
    bar("STAGE_PROGRESS", stage, done, total=total)


@pytest.fixture
def root_handler():
    """A root stream handler on a fake terminal, as ``logging.basicConfig`` installs one."""
    term = FakeTerminal()
    handler = logging.StreamHandler(term)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield term, handler
    root.removeHandler(handler)


def test_log_lines_are_printed_above_the_bar(root_handler):
    term, handler = root_handler
    bar = ProgressBar(term, min_interval_sec=0.0)
    progress(bar, "GRID: tile stacking", 5, 10)
    logging.getLogger("zemosaic_xp.test").warning("[GRID] tile 3 retried")
    progress(bar, "GRID: tile stacking", 7, 10)
    logging.getLogger("zemosaic_xp.test").warning("[GRID] tile 4 retried")
    bar.close()
    assert screen(term.getvalue()) == [
        "WARNING [GRID] tile 3 retried",
        "WARNING [GRID] tile 4 retried",
        "GRID: tile stacking          [#####################---------]  70.0%",
        "",
    ]
    assert handler.stream is term  # given back


def test_print_above_and_the_final_bar_stays(root_handler):
    term, _ = root_handler
    bar = ProgressBar(term, min_interval_sec=0.0)
    bar("ETA_UPDATE:00:01:05", None, "ETA_LEVEL")
    progress(bar, "stack", 1, 4)
    bar.print_above("zemosaic-xp: --gpu: no usable GPU")
    progress(bar, "stack", 4, 4)
    logging.getLogger("zemosaic_xp.test").warning("after the bar")
    bar.close()
    assert screen(term.getvalue()) == [
        "zemosaic-xp: --gpu: no usable GPU",
        "stack                        [##############################] 100.0%",
        "WARNING after the bar",
        "",
    ]


def test_the_bar_fits_a_narrow_terminal(monkeypatch):
    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((50, 20)))
    term = FakeTerminal()
    bar = ProgressBar(term, min_interval_sec=0.0)
    bar("ETA_UPDATE:00:00:09", None, "ETA_LEVEL")
    progress(bar, "a long stage name that is cut", 1, 3)
    assert max(len(line) for line in screen(term.getvalue())) <= 49  # a full line would wrap


def test_no_carriage_return_into_a_file_or_pipe():
    out = io.StringIO()  # isatty() is False
    bar = ProgressBar(out, min_interval_sec=0.0)
    for stage in ("scan", "stack"):
        for done in range(11):
            progress(bar, stage, done, 10)
    bar.close()
    assert "\r" not in out.getvalue()
    assert out.getvalue() == "scan: 100.0%\nstack: 100.0%\n"  # a line per completed stage


def test_plain_lines_at_a_low_rate_while_a_stage_runs(monkeypatch):
    clock = iter(range(0, 1000, 10))  # each event 10 s after the previous one
    monkeypatch.setattr("zemosaic_xp.cli.progress.time.monotonic", lambda: float(next(clock)))
    out = io.StringIO()
    bar = ProgressBar(out, plain_interval_sec=30.0)
    bar("ETA_UPDATE:00:02:00", None, "ETA_LEVEL")
    for done in range(8):
        progress(bar, "GRID: tile stacking", done, 7)
    assert out.getvalue().splitlines() == ["GRID: tile stacking:  42.9% (ETA 00:02:00)",
                                           "GRID: tile stacking:  85.7% (ETA 00:02:00)",
                                           "GRID: tile stacking: 100.0%"]


def test_disabled_bar_writes_nothing():
    term = FakeTerminal()
    bar = ProgressBar(term, enabled=False)
    progress(bar, "stack", 1, 1)
    bar.close()
    assert term.getvalue() == ""


def test_stack_command_into_a_file_has_no_carriage_return(tmp_path, capsys):
    import numpy as np

    frames = np.random.default_rng(0).normal(100, 5, (4, 12, 10)).astype(np.float32)
    paths = write_frames(tmp_path, frames)
    assert main(["stack", *paths, "-o", str(tmp_path / "m.fits"), "--backend", "numpy"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "stack: 100.0%" in err
