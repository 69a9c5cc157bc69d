"""``benchmarks/outofcore.py`` at tiny scale (40 frames of 64², grid 30 frames), so the script cannot rot.

The full-scale run (10 000 frames, 256 MiB) is a benchmark, not a test: see docs/outofcore.md.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "outofcore.py"


@pytest.fixture(scope="module")
def ooc():
    spec = importlib.util.spec_from_file_location("outofcore_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def report(ooc, tmp_path_factory):
    work = tmp_path_factory.mktemp("ooc")
    out = work / "report.json"
    # The script's bound is absolute (its own process, as a user runs it); here it runs inside
    # pytest, which already holds whatever earlier tests loaded (and numba's compiler when its
    # cache is cold): the slack counts that too, so the check measures this run's growth.
    code = ooc.main(["--frames", "40", "--shape", "64", "--budget-mb", "16", "--workdir", str(work),
                     "--grid-frames", "30", "--json", str(out), "--slack-mb", str(_slack_mb())])
    return code, json.loads(out.read_text()), work


def _slack_mb() -> int:
    """300 MiB above the RSS this test process already holds (MiB)."""
    psutil = pytest.importorskip("psutil")
    return 300 + psutil.Process().memory_info().rss // 2**20


def test_report_fields_and_pass(report, capsys):
    code, data, _ = report
    assert code == 0
    assert {"cpu", "cpu_count", "zemosaic_xp"} <= set(data["machine"])
    rows = {row["case"]: row for row in data["results"]}
    assert set(rows) == {"classic", "grid"}
    for row in rows.values():
        for key in ("wall_sec", "stack_sec", "frame_px_per_sec", "baseline_rss", "peak_rss", "ru_maxrss",
                    "bound_rss", "rss_ok", "input_bytes", "frames_per_tile", "rejected_pct", "load_avg_before"):
            assert row[key] is not None, key
        assert row["rss_ok"] and row["sanity_errors"] == []
        assert 0 < row["baseline_rss"] <= row["peak_rss"]
        assert row["bound_rss"] == (16 + data["args"]["slack_mb"]) * 2**20
        assert data["args"]["slack_mb"] >= 300
    assert rows["classic"]["n_frames"] == 40 and rows["classic"]["frames_per_tile"] == [40]
    assert rows["classic"]["frame_px_per_sec"] == pytest.approx(40 * 64 * 64 / rows["classic"]["stack_sec"])
    assert rows["grid"]["n_frames"] == 30 and max(rows["grid"]["frames_per_tile"]) <= 30
    assert rows["classic"]["input_bytes"] > 40 * 64 * 64 * 4
    assert (rows["classic"]["normalize"], rows["classic"]["weighting"]) == ("linear_fit", "noise_variance")  # defaults


def test_classic_configuration_options(ooc, report, capsys):
    _, _, work = report  # the frames of the report, reused
    out = work / "plain.json"
    code = ooc.main(["--frames", "40", "--shape", "64", "--budget-mb", "16", "--workdir", str(work),
                     "--grid-frames", "0", "--normalize", "none", "--weighting", "none", "--json", str(out),
                     "--slack-mb", str(_slack_mb())])
    assert code == 0
    (row,) = json.loads(out.read_text())["results"]
    assert (row["normalize"], row["weighting"]) == ("none", "none")
    assert "classic: normalize none, weighting none, generation" in capsys.readouterr().out


def test_bound_violation_detected(ooc, report):
    rows = [dict(row) for row in report[1]["results"]]
    assert ooc.evaluate(rows, slack_mb=-10_000) is False
    assert not any(row["rss_ok"] for row in rows)
    assert "**NO**" in ooc.markdown_table(rows)
    assert ooc.evaluate(rows, slack_mb=report[1]["args"]["slack_mb"]) is True


def test_sanity_catches_a_broken_stack(ooc, report):
    row = dict(report[1]["results"][0])
    assert ooc.sanity_errors(row) == []
    broken = dict(row, level=0.0, finite_fraction=0.5, rejected_pct=0.0, frames_used=row["n_frames"] - 1)
    assert len(ooc.sanity_errors(broken)) == 4


def test_dataset_reused_only_when_complete(ooc, report, tmp_path):
    work = report[2]
    calls = []
    params = {"kind": "classic", "n_frames": 40, "size": 64, "seed": 8}
    folder, _, reused = ooc._dataset(work, "classic_40x64", params, calls.append)
    assert reused and calls == [] and len(list(folder.glob("frame_*.fits"))) == 40

    def interrupted(tmp):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ooc._dataset(tmp_path, "d", {"n": 1}, interrupted)
    assert not (tmp_path / "d").exists()
    _, _, reused = ooc._dataset(tmp_path, "d", {"n": 1}, lambda tmp: None)
    assert not reused and (tmp_path / "d" / "manifest.json").exists()


def test_failed_child_exits_2(ooc, tmp_path, capsys):
    # No frame: the classic child raises, and the script says so with status 2.
    assert ooc.main(["--frames", "0", "--shape", "32", "--grid-frames", "0", "--workdir", str(tmp_path)]) == 2
    assert "classic child failed" in capsys.readouterr().err
