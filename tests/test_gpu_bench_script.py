"""``benchmarks/gpu_bench.py`` and ``benchmarks/gpu_check.sh`` at tiny scale, so the GPU check cannot rot.

No GPU has run this project yet: the check must work the first time a machine with CUDA
runs it. Here (no GPU) the benchmark must measure NumPy with its parity columns and report
CuPy as skipped with the reason ``select_backend`` gives; on a GPU machine CuPy is measured
instead, and both are accepted. Not a timing test. ``gpu_check.sh`` itself needs CUDA and
minutes, so only its syntax is checked, and that CI never calls it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "gpu_bench.py"
CHECK = ROOT / "benchmarks" / "gpu_check.sh"
MODES = ("host", "device", "fits")
REJECTIONS = ("kappa_sigma", "winsorized_sigma_clip", "linear_fit_clip", "percentile", "gesd", "median")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_bench")
    proc = _run("--backends", "numpy,cupy", "--shape", "6x32x32", "--repeat", "1", "--workdir", str(work),
                "--json", str(work / "out.json"), cwd=work)
    data = json.loads((work / "out.json").read_text()) if (work / "out.json").is_file() else None
    return proc, data


def _table_rows(stdout: str, backend: str) -> list[list[str]]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith(f"| {backend} |"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_numpy_rows_with_parity(tiny_run):
    proc, data = tiny_run
    assert proc.returncode == 0, proc.stderr
    header = ("| backend | mode | rejection | best s | M frame-px/s | × NumPy | peak dev MiB | max abs Δ / σ | "
              "coverage | rejection maps | note |")
    assert header in proc.stdout
    rows = _table_rows(proc.stdout, "numpy")
    assert {(r[1], r[2]) for r in rows} == {(m, r) for m in MODES for r in REJECTIONS}
    for row in rows:
        _, mode, _, best, mfps, ratio, peak, delta, coverage, rejection_maps, note = row
        assert float(best) > 0 and float(mfps) > 0
        assert ratio == "1×" and peak == "—" and note == ""
        # NumPy against itself: the in-memory paths are the reference, the FITS path is bit-identical.
        assert delta == "0" and coverage == "identical"
        assert rejection_maps == ("n/a (FITS path)" if mode == "fits" else "identical")
    numpy_rows = [r for r in data["rows"] if r["backend"] == "numpy"]
    assert len(numpy_rows) == len(MODES) * len(REJECTIONS)
    for row in numpy_rows:
        assert row["parity"]["max_abs_diff_over_sigma"] == 0.0 and row["parity"]["coverage_diff_px"] == 0
        assert row["peak_device_bytes"] is None and "error" not in row
    assert data["machine"]["shape"] == [6, 32, 32]


def test_cupy_skipped_with_reason_or_measured(tiny_run):
    proc, data = tiny_run
    cupy = data["backends"]["cupy"]
    rows = _table_rows(proc.stdout, "cupy")
    if not cupy["available"]:
        assert cupy["reason"], cupy
        assert len(rows) == 1 and rows[0][3] == "skipped", rows
        assert rows[0][-1].startswith("skipped: ") and len(rows[0][-1]) > len("skipped: ")
        assert f"- `cupy`: skipped: {cupy['reason']}" in proc.stdout
        assert not [r for r in data["rows"] if r["backend"] == "cupy"]
    else:  # a machine with CUDA: measured like NumPy, with device memory and parity
        assert {(r[1], r[2]) for r in rows} == {(m, r) for m in MODES for r in REJECTIONS}
        for row in (r for r in data["rows"] if r["backend"] == "cupy"):
            assert "error" not in row, row
            assert row["peak_device_bytes"] > 0 and row["ratio_numpy"] > 0
            assert row["parity"]["max_abs_diff_over_sigma"] < 0.5, row  # float rounding, not a broken stack


def test_bad_option_exit_2(tmp_path):
    proc = _run("--backends", "numpy,nonsense", cwd=tmp_path)
    assert proc.returncode == 2 and "--backends" in proc.stderr


def test_gpu_check_script_syntax():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    proc = subprocess.run([bash, "-n", str(CHECK)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert os.access(CHECK, os.X_OK), "benchmarks/gpu_check.sh must be executable"


def test_ci_never_runs_the_gpu_check():
    ci = ROOT / ".ci" / "run"
    if ci.is_file():
        assert "gpu_check" not in ci.read_text()
