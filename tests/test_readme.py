"""Every code block of README.md runs as pasted, in order, in one fresh folder.

Python blocks run as scripts (``python block.py``, so their ``if __name__ ==
"__main__":`` guards work as for a user, worker processes included); bash blocks run
with ``bash -e``. The two set-up commands (``pip install ...``) are what CI itself runs
(``.ci/run``), so they are the only blocks skipped here.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return [(lang, code) for lang, code in _BLOCK.findall(README.read_text(encoding="utf-8"))]


def test_readme_has_the_two_setup_commands_first():
    setup = [code.strip() for lang, code in _blocks()[:2]]
    assert setup == ['python -m pip install . && zemosaic-xp demo demo_out',
                     'python -m pip install ".[test]" && python -m pytest -q --benchmark-disable']


@pytest.mark.slow
def test_readme_code_blocks_run_as_pasted(tmp_path):
    bindir = pathlib.Path(sys.executable).parent
    if shutil.which("zemosaic-xp", path=str(bindir)) is None and shutil.which("zemosaic-xp") is None:
        pytest.skip("the zemosaic-xp command is not installed (pip install .)")
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", MPLBACKEND="Agg",
               PYTHONPATH=str(README.parent))
    ran = 0
    for i, (lang, code) in enumerate(_blocks()):
        if "pip install" in code:
            continue
        if lang == "python":
            script = tmp_path / f"readme_block_{i}.py"
            script.write_text(code, encoding="utf-8")
            cmd = [sys.executable, script.name]
        elif lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        else:
            continue
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README block {i} ({lang}) failed:\n{code}\n--- output ---\n" \
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 6
    assert (tmp_path / "mosaic" / "mosaic_grid.fits").exists()
    assert (tmp_path / "master_tile_001.fits").exists() and (tmp_path / "master.fits").exists()
