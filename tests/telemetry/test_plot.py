"""Tests for the telemetry summary, the plot and the ``telemetry-plot`` command."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from zemosaic_xp import cli
from zemosaic_xp.telemetry import (
    ResourceTelemetryController,
    TelemetryCsvWriter,
    format_telemetry_summary,
    grid_telemetry_context,
    plot_telemetry_csv,
    summarize_telemetry_csv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_csv(path, rows):
    writer = TelemetryCsvWriter(path)
    for row in rows:
        writer.write_row(row)
    writer.close()
    return path


def row(second, phase_index, phase_name, cpu, ram_used, gpu_used=None, **extra):
    return {"timestamp_iso": f"2026-03-01T22:00:{second:02d}+00:00", "phase_index": phase_index,
            "phase_name": phase_name, "cpu_percent": cpu, "ram_used_mb": ram_used, "ram_total_mb": 16384.0,
            "gpu_used_mb": gpu_used, "gpu_total_mb": None if gpu_used is None else 8192.0, **extra}


@pytest.fixture
def run_csv(tmp_path):
    """Two phases; stacking saturates the CPU (96 %) and VRAM (7782.4 / 8192 = 95 %)."""
    return write_csv(tmp_path / "resource_telemetry.csv", [
        row(0, 0, "Grid: Init", 10.0, 4096.0, 1024.0),
        row(2, 2, "Grid: tile stacking", 80.0, 8192.0, 4096.0, cpu_workers=8, rows_per_chunk=0),
        row(4, 2, "Grid: tile stacking", 96.0, 12288.0, 7782.4, cpu_workers=8, rows_per_chunk=0),
    ])


class TestSummary:
    def test_upstream_z_timestamps_with_microseconds(self, tmp_path):
        # What the controller writes now (ZeMosaic's format): "...T22:00:01.250000Z".
        path = write_csv(tmp_path / "z.csv", [
            {"timestamp_iso": "2026-03-01T22:00:01.250000Z", "phase_index": 0, "phase_name": "Grid: Init",
             "cpu_percent": 10.0},
            {"timestamp_iso": "2026-03-01T22:00:03.000000Z", "phase_index": 4, "phase_name": "Grid: Completed",
             "cpu_percent": 30.0},
        ])
        s = summarize_telemetry_csv(path)
        assert s["duration_sec"] == 1.75 and [p["phase_index"] for p in s["phases"]] == [0, 4]

    def test_known_answer(self, run_csv):
        s = summarize_telemetry_csv(run_csv)
        assert s["rows"] == 3 and s["duration_sec"] == 4.0
        init, stacking = s["phases"]
        assert (init["phase_index"], init["phase_name"], init["rows"]) == (0, "Grid: Init", 1)
        assert stacking["cpu_mean"] == 88.0 and stacking["cpu_max"] == 96.0
        assert stacking["ram_max_fraction"] == 0.75
        assert stacking["gpu_used_max_mb"] == 7782.4 and stacking["vram_max_fraction"] == pytest.approx(0.95)
        assert stacking["plan_means"] == {"cpu_workers": 8.0}  # zero-valued plan columns are left out
        assert s["overall"]["cpu_mean"] == pytest.approx((10 + 80 + 96) / 3)
        assert s["overall"]["ram_max_fraction"] == 0.75

    def test_warnings_above_90_percent(self, run_csv):
        warnings = summarize_telemetry_csv(run_csv)["warnings"]
        assert len(warnings) == 2
        assert warnings[0].startswith("CPU reached 96.0% in 'Grid: tile stacking'")
        assert warnings[1].startswith("VRAM reached 95.0% in 'Grid: tile stacking'")

    def test_ram_warning(self, tmp_path):
        path = write_csv(tmp_path / "t.csv", [row(0, 3, "Grid: photometry & blending", 50.0, 15500.0)])
        assert summarize_telemetry_csv(path)["warnings"][0].startswith("RAM reached 94.6%")

    def test_text(self, run_csv):
        text = format_telemetry_summary(summarize_telemetry_csv(run_csv))
        lines = text.splitlines()
        assert lines[0].endswith("(3 samples over 0:00:04)")
        assert any(ln.startswith("Grid: tile stacking") and "88.0%" in ln and "96.0%" in ln
                   and "7.6 / 8.0 GiB (95%)" in ln for ln in lines)
        assert any(ln.startswith("overall") for ln in lines)
        assert "plan Grid: tile stacking: cpu_workers 8" in lines
        assert sum(ln.startswith("! ") for ln in lines) == 2

    def test_no_gpu_and_no_phase(self, tmp_path):
        path = write_csv(tmp_path / "t.csv", [{"timestamp_iso": "2026-03-01T22:00:00Z", "cpu_percent": 5.0}])
        s = summarize_telemetry_csv(path)
        assert s["phases"][0]["vram_max_fraction"] is None and s["duration_sec"] is None
        assert "(no phase)" in format_telemetry_summary(s)

    def test_header_only(self, tmp_path):
        path = tmp_path / "t.csv"
        path.write_text("timestamp_iso,cpu_percent\n", encoding="utf-8")
        with pytest.raises(ValueError, match="no complete row"):
            summarize_telemetry_csv(path)


class TestPlot:
    def test_png_with_gpu(self, run_csv, tmp_path):
        out = plot_telemetry_csv(run_csv, tmp_path / "telemetry.png")
        assert out == tmp_path / "telemetry.png"
        assert out.read_bytes()[:8] == PNG_MAGIC
        assert sorted(p.name for p in tmp_path.iterdir()) == ["resource_telemetry.csv", "telemetry.png"]

    def test_default_name_without_gpu_single_row(self, tmp_path):
        path = write_csv(tmp_path / "resource_telemetry.csv", [row(0, 0, "Grid: Init", 3.0, 2048.0)])
        out = plot_telemetry_csv(path)
        assert out == tmp_path / "resource_telemetry.png" and out.read_bytes()[:8] == PNG_MAGIC

    def test_svg_by_suffix(self, run_csv, tmp_path):
        out = plot_telemetry_csv(run_csv, tmp_path / "t.svg")
        assert b"<svg" in out.read_bytes()[:500]

    def test_missing_output_folder(self, run_csv, tmp_path):
        with pytest.raises(FileNotFoundError, match="output folder .*nowhere' of the plot does not exist"):
            plot_telemetry_csv(run_csv, tmp_path / "nowhere" / "t.png")

    def test_without_matplotlib(self, run_csv, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
        with pytest.raises(ImportError, match=r"pip install 'zemosaic-xp\[plot\]'"):
            plot_telemetry_csv(run_csv, tmp_path / "t.png")

    def test_matplotlib_is_imported_lazily(self):
        code = "import sys, zemosaic_xp.telemetry; assert 'matplotlib' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def telemetry_cli(monkeypatch):
    # Only this sub-command: the CLI shell on this branch also lists modules that other
    # issues add (stack_cmd), and the test must not depend on them.
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ("zemosaic_xp.cli.telemetry_cmd",))
    return cli.main


class TestCommand:
    def test_plot_and_summary(self, telemetry_cli, run_csv, tmp_path, capsys):
        out = tmp_path / "telemetry.png"
        assert telemetry_cli(["telemetry-plot", str(run_csv), "-o", str(out)]) == 0
        assert out.read_bytes()[:8] == PNG_MAGIC
        stdout = capsys.readouterr().out
        assert stdout.startswith("Telemetry summary: ")
        assert "! CPU reached 96.0%" in stdout
        assert stdout.rstrip().endswith(f"plot written to {out}")

    def test_summary_only(self, telemetry_cli, run_csv, capsys):
        assert telemetry_cli(["telemetry-plot", str(run_csv), "--no-plot"]) == 0
        assert "plot written" not in capsys.readouterr().out
        assert not run_csv.with_suffix(".png").exists()

    def test_missing_file_is_one_line(self, telemetry_cli, tmp_path, capsys):
        assert telemetry_cli(["telemetry-plot", str(tmp_path / "missing.csv")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("zemosaic-xp: error: telemetry CSV") and "missing.csv" in err
        assert len(err.splitlines()) == 1

    def test_end_to_end_from_a_controller(self, telemetry_cli, recorder, no_gpu_libs, tmp_path, capsys):
        csv_path = tmp_path / "resource_telemetry.csv"
        with ResourceTelemetryController(True, 0.5, recorder, csv_path) as tel:
            for phase, name in enumerate(["Grid: Init", "Grid: Setup", "Grid: tile stacking"]):
                tel.emit_stats(grid_telemetry_context(phase, name, phase, 4, extra={"cpu_workers": 2}), force=True)
            tel.emit_stats(grid_telemetry_context(4, "Grid: Completed", 4, 4, eta_seconds=0), force=True)
        assert telemetry_cli(["telemetry-plot", str(csv_path)]) == 0
        assert csv_path.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
        assert "Grid: Completed" in capsys.readouterr().out


class TestForeignFiles:
    """issue 15, case 14: a binary or non-CSV file is one line naming it, not a decode error."""

    @pytest.mark.parametrize(("content", "match"), [
        (PNG_MAGIC + b"\x00\x00\x00\rIHDR", r"it holds binary data \(NUL byte at offset 8\)"),
        (b"\xff\xd8\xff\xe0JFIF", r"its header \['ÿØÿàJFIF'\] has no 'timestamp_iso' column"),
        (b"SIMPLE  =                    T" + b" " * 2850, r"its header \['SIMPLE  = +T +\.\.\. has no 'timestamp_iso'"),
    ], ids=["png", "not-utf8", "fits-header"])
    def test_one_line_naming_the_file(self, telemetry_cli, tmp_path, capsys, content, match):
        path = tmp_path / "not_telemetry.bin"
        path.write_bytes(content)
        assert telemetry_cli(["telemetry-plot", str(path), "--no-plot"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and len(err) < 300
        assert re.match(rf"zemosaic-xp: error: '{re.escape(str(path))}' is not a telemetry CSV: {match}", err)

    def test_upstreams_cp1252_text_is_read(self, tmp_path):
        path = tmp_path / "resource_telemetry.csv"
        path.write_bytes("timestamp_iso,phase_name,cpu_percent\n2026-01-01T00:00:00Z,Réduction,5\n".encode("cp1252"))
        assert [p["phase_name"] for p in summarize_telemetry_csv(path)["phases"]] == ["Réduction"]

    def test_a_bom_written_by_a_spreadsheet_is_read(self, run_csv, tmp_path):
        path = tmp_path / "excel.csv"
        path.write_bytes(b"\xef\xbb\xbf" + run_csv.read_bytes())
        assert summarize_telemetry_csv(path)["rows"] == summarize_telemetry_csv(run_csv)["rows"]
