"""Tests for the telemetry CSV: header order, the extras rule, flushing, errors."""

from __future__ import annotations

import csv
import logging

import pytest

from zemosaic_xp.telemetry import (
    CSV_FIXED_COLUMNS,
    SAMPLE_KEYS,
    ResourceTelemetryController,
    TelemetryCsvWriter,
    grid_telemetry_context,
    read_telemetry_csv,
)

# upstream_spec §6.3, verbatim order.
UPSTREAM_DEFAULT_COLUMNS = (
    "timestamp_iso, phase_index, phase_name, cpu_percent, ram_used_mb, ram_total_mb, ram_available_mb, "
    "gpu_used_mb, gpu_total_mb, gpu_free_mb, gpu_util_percent, gpu_mem_util_percent, gpu_name, gpu_backend, "
    "gpu_sample_source, files_done, files_total, tiles_done, tiles_total, eta_seconds, cpu_workers, "
    "rows_per_chunk, gpu_rows_per_chunk, max_chunk_bytes, gpu_max_chunk_bytes, use_gpu, use_gpu_phase5"
).split(", ")


def header_of(path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.reader(f))


class TestHeader:
    def test_fixed_columns_are_upstreams_27_in_order(self):
        assert len(UPSTREAM_DEFAULT_COLUMNS) == 27
        assert list(CSV_FIXED_COLUMNS) == UPSTREAM_DEFAULT_COLUMNS
        assert set(SAMPLE_KEYS) <= set(CSV_FIXED_COLUMNS)

    def test_header_is_fixed_columns_then_sorted_extras(self, recorder, no_gpu_libs, tmp_path):
        path = tmp_path / "resource_telemetry.csv"
        tel = ResourceTelemetryController(True, 1.0, recorder, path)
        tel.emit_stats({"phase_index": 0, "phase_name": "P3", "zeta": 1, "p3_gpu_last_rows": 64,
                        "alpha": "a", "cpu_workers": 6})
        tel.close()
        assert header_of(path) == list(CSV_FIXED_COLUMNS) + ["alpha", "p3_gpu_last_rows", "zeta"]

    def test_later_unknown_keys_are_ignored(self, recorder, no_gpu_libs, tmp_path):
        path = tmp_path / "resource_telemetry.csv"
        tel = ResourceTelemetryController(True, 1.0, recorder, path)
        tel.emit_stats({"phase_index": 0, "alpha": 1})
        tel.emit_stats({"phase_index": 1, "alpha": 2, "late_key": 3}, force=True)
        tel.close()
        assert "late_key" not in header_of(path)
        rows = read_telemetry_csv(path)
        assert [r["alpha"] for r in rows] == [1, 2]
        assert "late_key" in recorder.payloads[1]  # the callback still gets it

    def test_header_of_a_run_is_upstreams_then_sorted_extras(self, recorder, no_gpu_libs, tmp_path):
        # The header a real emission writes: upstream's 27 columns verbatim (gpu_sample_source,
        # no column of ours among them), then the extras sorted.
        path = tmp_path / "resource_telemetry.csv"
        with ResourceTelemetryController(True, 1.0, recorder, path) as tel:
            tel.emit_stats(grid_telemetry_context(2, "Grid: tile stacking", 0, 4,
                                                  extra={"use_gpu": False, "zz_extra": 1, "cpu_workers": 2}))
        assert header_of(path) == UPSTREAM_DEFAULT_COLUMNS + ["zz_extra"]
        row, = read_telemetry_csv(path)
        assert row["gpu_sample_source"] is None and row["cpu_workers"] == 2  # no GPU here


class TestRows:
    def test_round_trip_types(self, tmp_path):
        writer = TelemetryCsvWriter(tmp_path / "t.csv")
        writer.write_row({"timestamp_iso": "2026-01-01T00:00:00+00:00", "phase_index": 2,
                          "phase_name": "Grid: tile stacking, pass 1", "cpu_percent": 12.5,
                          "gpu_used_mb": None, "use_gpu": True})
        writer.close()
        row, = read_telemetry_csv(tmp_path / "t.csv")
        assert row["phase_index"] == 2 and row["cpu_percent"] == 12.5
        assert row["phase_name"] == "Grid: tile stacking, pass 1"  # the comma is quoted
        assert row["gpu_used_mb"] is None and row["use_gpu"] is True

    def test_numpy_scalars_are_plain_numbers(self, tmp_path):
        import numpy as np

        writer = TelemetryCsvWriter(tmp_path / "t.csv")
        writer.write_row({"timestamp_iso": "2026-01-01T00:00:00+00:00", "max_chunk_bytes": np.int64(2**28),
                          "eta_seconds": np.float64(1.5), "use_gpu": np.bool_(True)})
        writer.close()
        row, = read_telemetry_csv(tmp_path / "t.csv")
        assert (row["max_chunk_bytes"], row["eta_seconds"], row["use_gpu"]) == (2**28, 1.5, True)

    def test_rows_are_on_disk_while_the_run_goes_on(self, recorder, no_gpu_libs, tmp_path):
        # A run killed now leaves a readable file: header and each row are flushed at once.
        path = tmp_path / "t.csv"
        tel = ResourceTelemetryController(True, 1.0, recorder, path)
        tel.emit_stats({"tiles_done": 1})
        tel.emit_stats({"tiles_done": 2}, force=True)
        assert [r["tiles_done"] for r in read_telemetry_csv(path)] == [1, 2]
        tel.close()

    def test_cut_last_line_is_skipped(self, tmp_path):
        path = tmp_path / "t.csv"
        writer = TelemetryCsvWriter(path)
        writer.write_row({"timestamp_iso": "2026-01-01T00:00:00+00:00", "tiles_done": 1})
        writer.close()
        with open(path, "a", encoding="utf-8") as f:
            f.write("2026-01-01T00:00:02+00:00,3,Grid")  # a killed run's half row
        assert len(read_telemetry_csv(path)) == 1

    def test_first_emission_truncates_an_old_file(self, recorder, no_gpu_libs, tmp_path):
        path = tmp_path / "t.csv"
        path.write_text("old,run\n1,2\n", encoding="utf-8")
        tel = ResourceTelemetryController(True, 1.0, recorder, path)
        assert path.read_text(encoding="utf-8") == "old,run\n1,2\n"  # nothing happens before emitting
        tel.emit_stats({})
        tel.close()
        assert header_of(path)[0] == "timestamp_iso" and len(read_telemetry_csv(path)) == 1

    def test_write_after_close_raises(self, tmp_path):
        writer = TelemetryCsvWriter(tmp_path / "t.csv")
        writer.close()
        with pytest.raises(ValueError, match="is closed"):
            writer.write_row({})


class TestErrors:
    def test_unwritable_path_disables_only_the_csv(self, recorder, no_gpu_libs, tmp_path, caplog):
        blocker = tmp_path / "not_a_dir"
        blocker.write_text("", encoding="utf-8")  # a file where the folder should be (fails as root too)
        tel = ResourceTelemetryController(True, 1.0, recorder, blocker / "resource_telemetry.csv")
        with caplog.at_level(logging.WARNING, logger="zemosaic_xp.telemetry"):
            assert tel.emit_stats({}) is True
            assert tel.emit_stats({}, force=True) is True
        tel.close()
        assert len(recorder.calls) == 2
        assert sum("telemetry CSV disabled" in r.getMessage() for r in caplog.records) == 1

    def test_error_mid_run_stops_writing(self, recorder, no_gpu_libs, tmp_path, monkeypatch):
        path = tmp_path / "t.csv"
        tel = ResourceTelemetryController(True, 1.0, recorder, path)
        tel.emit_stats({"tiles_done": 1})
        attempts = []

        def disk_full(payload):
            attempts.append(payload)
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(tel._writer, "write_row", disk_full)
        tel.emit_stats({"tiles_done": 2}, force=True)
        tel.emit_stats({"tiles_done": 3}, force=True)
        tel.close()
        assert len(attempts) == 1 and len(recorder.calls) == 3
        assert [r["tiles_done"] for r in read_telemetry_csv(path)] == [1]

    def test_read_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="nope.csv' does not exist"):
            read_telemetry_csv(tmp_path / "nope.csv")

    def test_read_other_csv(self, tmp_path):
        path = tmp_path / "stack_plan.csv"
        path.write_text("file_path,exposure\na.fits,10\n", encoding="utf-8")
        with pytest.raises(ValueError, match="is not a telemetry CSV.*'timestamp_iso'"):
            read_telemetry_csv(path)
