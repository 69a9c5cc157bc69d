"""``zemosaic-xp bench``: finds the suite, runs it, renders the markdown table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zemosaic_xp.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_missing_suite_is_one_clear_error(tmp_path, capsys):
    assert main(["bench", "--suite", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no benchmarks/ directory found" in err and "--suite" in err


@pytest.mark.slow
def test_quick_run_writes_the_table(tmp_path):
    # A separate process: the command runs pytest itself.
    out = tmp_path / "table.md"
    code = ("import sys; from zemosaic_xp.cli import main; "
            f"sys.exit(main(['--quiet', 'bench', '--cases', 'quick_m8', '-o', {str(out)!r}]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = out.read_text()
    assert "| quick_m8 | 8×64×48 | kappa_sigma |" in table
    assert "astropy sigma_clip" in table


def test_peers_grid_refuses_suite_options(capsys):
    assert main(["bench", "--cases", "m32_512", "--peers-grid", "--surveys", "small"]) == 2
    assert "--peers-grid --surveys small,large instead" in capsys.readouterr().err


def test_peers_grid_needs_its_script(tmp_path, capsys):
    (tmp_path / "report.py").write_text("")  # a suite folder without peers_grid.py
    assert main(["bench", "--suite", str(tmp_path), "--peers-grid", "--repeat", "1"]) == 2
    assert f"no peers_grid.py in {tmp_path}" in capsys.readouterr().err
