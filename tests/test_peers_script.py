"""``benchmarks/peers.py`` at tiny scale (16 frames of 64²), so the peer benchmark cannot rot.

Not a timing test: the figures come from a full run on a quiet machine (docs/performance.md,
"Whole-process peer benchmark (Siril)"). Here the pipeline must produce its table, its
quality columns must be those of a working stack (a broken read, a wrong scale or a flipped
image gives noise of tens of ADU), and a machine without ``siril-cli`` must still get ours.
16 frames rather than 6: below ~10 frames a lone outlier cannot reach 3σ of a sample
(its z-score is at most (N − 1)/√N), so κ-σ could not be asked to remove anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "peers.py"
CASE = "16x64"
SIGMA_ADU = 10.0  # the frames' noise (peers_data.NOISE_SIGMA_ADU)


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def tiny_run(peers, tmp_path_factory):
    work = tmp_path_factory.mktemp("peers")
    code = peers.main(["--cases", CASE, "--rejections", "kappa_sigma,median", "--repeat", "1",
                       "--workdir", str(work), "--backend", "numpy", "--json", str(work / "out.json"),
                       "-o", str(work / "table.md")])
    data = json.loads((work / "out.json").read_text())
    rows = {row["rejection"]: row for row in data["cases"][0]["rows"]}
    return code, data, rows, (work / "table.md").read_text(), work


def test_table_is_produced(tiny_run):
    code, data, rows, table, _ = tiny_run
    assert code == 0
    assert "### 16 × 64²" in table
    assert "| rejection | ours s | Siril s | Siril / ours |" in table
    assert "| kappa_sigma |" in table and "| median |" in table
    assert data["machine"]["cpu_count"] == os.cpu_count()
    assert data["machine"]["ours"].startswith("zemosaic-xp ")
    assert set(rows) == {"kappa_sigma", "median"}
    case = data["cases"][0]
    assert (case["n_frames"], case["size"]) == (16, 64) and case["outlier_pixels"] > 50


def _check_quality(entry: dict, rejection: str) -> None:
    # A working stack of 16 frames: the clean pixels within a fraction of one frame's σ
    # of the clean mean (median: ~0.75 σ/√N ≈ 1.9 ADU), and (almost) no outlier left.
    assert entry["nonfinite"] == 0
    assert entry["noise_adu"] < 0.5 * SIGMA_ADU, entry
    assert abs(entry["bias_adu"]) < 1.0, entry
    assert entry["outliers_left"] <= 0.05 * entry["outlier_pixels"], entry
    assert entry["best_sec"] > 0 and entry["peak_rss_mib"] > 1
    if rejection == "kappa_sigma":
        assert 0.0 < entry["rejected_pct"] < 5.0


def test_ours_quality(tiny_run):
    rows = tiny_run[2]
    for rejection, row in rows.items():
        ours = row["ours"]
        assert "error" not in ours, ours
        _check_quality(ours, rejection)
        assert ours["backend"] == "numpy" and ours["output_scale"] == 1.0
    assert rows["median"]["ours"]["rejected_pct"] == 0.0
    # The mean of survivors is closer to the clean mean than the median is.
    assert rows["kappa_sigma"]["ours"]["noise_adu"] < rows["median"]["ours"]["noise_adu"]


def test_siril_quality(tiny_run):
    _, data, rows, table, _ = tiny_run
    if data["machine"]["siril"] is None:
        pytest.skip("siril-cli is not installed here (apt-get install siril)")
    for rejection, row in rows.items():
        siril = row["siril"]
        assert "error" not in siril, siril
        _check_quality(siril, rejection)
        assert siril["output_scale"] == 65535.0  # Siril 1.0 writes ADU / 65535
        assert row["ratio"] == pytest.approx(siril["best_sec"] / row["ours"]["best_sec"])
    assert rows["median"]["siril"]["rejected_pct"] is None  # Siril logs no rejection for `med`
    assert "rescaled by 65535" in table
    # Same data, same median: the two tools agree to float32 rounding.
    assert rows["median"]["siril"]["noise_adu"] == pytest.approx(rows["median"]["ours"]["noise_adu"], rel=1e-3)


def test_bench_peers_without_siril(tiny_run, monkeypatch, capsys):
    # `zemosaic-xp bench --peers` with a PATH that has no siril-cli: ours alone, a clear message.
    from zemosaic_xp.cli import main

    work = tiny_run[4]
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert shutil.which("siril-cli") is None
    out = work / "nosiril.json"
    code = main(["--quiet", "bench", "--json", str(out), "--peers", "--cases", CASE, "--rejections", "median",
                 "--repeat", "1", "--workdir", str(work), "--backend", "numpy"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "siril-cli not found: install it with `apt-get install siril`" in captured.err
    assert "| median |" in captured.out and "Siril: not found" in captured.out
    data = json.loads(out.read_text())
    row = data["cases"][0]["rows"][0]
    assert data["machine"]["siril"] is None and row["siril"] is None and row["ratio"] is None
    assert "error" not in row["ours"] and data["cases"][0]["data_reused"]


def test_case_spec(peers):
    from peers_data import parse_case

    assert parse_case("6x64") == (6, 64) and parse_case("500×512") == (500, 512)
    for bad in ("64", "1x64", "6x8", "axb"):
        with pytest.raises(ValueError, match="is not NxS"):
            parse_case(bad)


def test_bad_options_exit_2(peers, tmp_path, capsys):
    assert peers.main(["--rejections", "sigma", "--workdir", str(tmp_path)]) == 2
    assert "`--rejections` must name some of kappa_sigma" in capsys.readouterr().err
    assert peers.main(["--cases", "32", "--workdir", str(tmp_path)]) == 2
    assert peers.main(["--repeat", "0", "--workdir", str(tmp_path)]) == 2


def test_siril_log_and_scale(peers, tmp_path):
    from astropy.io import fits
    from peers_quality import read_stack
    from peers_tools import siril_rejected_pct, siril_script

    log = "log: Pixel rejection in channel #0: 0.614% - 0.537%\nlog: Rejection stacking complete."
    assert siril_rejected_pct(log) == (0.614, 0.537)
    assert siril_rejected_pct("log: Not using rejection for stacking") is None
    assert "stack lnk_ rej s 3 3 -nonorm -out=../siril_x" in siril_script("kappa_sigma", "siril_x")
    fits.PrimaryHDU(np.full((4, 4), 1000 / 65535, dtype=np.float32)).writeto(tmp_path / "unit.fits")
    image, scale, _ = read_stack(tmp_path / "unit.fits")
    assert scale == 65535.0 and np.allclose(image, 1000.0, rtol=1e-6)


def test_failed_tool_is_reported(peers, tiny_run, tmp_path, capsys):
    # A "siril-cli" that fails: the row says so with the log, ours still measured, exit 2.
    fake = tmp_path / "siril-cli"
    fake.write_text("#!/bin/sh\necho 'boom: no such sequence'\nexit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "fail.json"
    code = peers.main(["--cases", CASE, "--rejections", "median", "--repeat", "1", "--workdir", str(tiny_run[4]),
                       "--backend", "numpy", "--siril", str(fake), "--json", str(out)])
    assert code == 2
    assert "Failed runs:" in capsys.readouterr().out
    row = json.loads(out.read_text())["cases"][0]["rows"][0]
    assert row["siril"]["error"].startswith("exit 3: boom: no such sequence (log: ")
    assert "error" not in row["ours"] and row["ratio"] is None


def test_ours_runs_from_compiled_bytecode(tiny_run):
    # The runs time an installed copy: the package's modules have their bytecode (pip
    # compiles it; an editable checkout under PYTHONDONTWRITEBYTECODE would not).
    import zemosaic_xp

    code, data, rows, table, work = tiny_run
    assert data["machine"]["bytecode"] == "bytecode compiled"
    assert "ours: bytecode compiled" in table
    init = Path(zemosaic_xp.__file__)
    assert importlib.util.cache_from_source(str(init)) and Path(importlib.util.cache_from_source(str(init))).is_file()
