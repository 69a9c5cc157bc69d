"""Tests for ``ResourceTelemetryController`` and ``grid_telemetry_context``."""

from __future__ import annotations

import gc
import logging
import math
import re
import sys
import threading
from datetime import datetime, timezone

import pytest

import zemosaic_xp
from zemosaic_xp.telemetry import (
    CONTEXT_KEYS,
    SAMPLE_KEYS,
    ResourceTelemetryController,
    grid_telemetry_context,
    read_telemetry_csv,
)
from zemosaic_xp.telemetry import controller as controller_mod

from .fakes import fake_pynvml


class FakeClock:
    """Stands in for ``time.monotonic`` so throttling is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(controller_mod.time, "monotonic", fake)
    return fake


def format_resource_label(payload: dict) -> str:
    """What ZeMosaic's Qt GUI shows (``_on_worker_stats_updated``): every key is optional."""
    parts = []
    cpu = payload.get("cpu_percent")
    if cpu is not None:
        parts.append(f"CPU {float(cpu):.1f}%")
    used, total = payload.get("ram_used_mb"), payload.get("ram_total_mb")
    if used is not None and total:
        parts.append(f"RAM {used / 1024:.1f} / {total / 1024:.1f} GiB")
    g_used, g_total, g_util = (payload.get(k) for k in ("gpu_used_mb", "gpu_total_mb", "gpu_util_percent"))
    if g_total:
        util = g_util if g_util is not None else 100.0 * g_used / g_total
        parts.append(f"GPU {util:.0f}% ({g_used / 1024:.1f} / {g_total / 1024:.1f} GiB)")
    return " | ".join(parts)


class TestInterval:
    @pytest.mark.parametrize(("given", "effective"), [
        (0.3, 0.5),      # below the floor: raised to 0.5 s
        (0, 1.5),        # falsy: the default
        (None, 1.5),
        (False, 1.5),
        (-2.0, 1.5),     # not positive: the default
        (math.nan, 1.5),  # not finite: the default
        (math.inf, 1.5),
        (0.5, 0.5),
        (2.0, 2.0),
        ("2.5", 2.5),    # a config file may give a string
    ])
    def test_clamping(self, given, effective):
        assert ResourceTelemetryController(True, given, None).interval_sec == effective

    def test_not_a_number(self):
        with pytest.raises(ValueError, match="`interval_sec` must be a number"):
            ResourceTelemetryController(True, "fast", None)

    def test_callback_not_callable(self):
        with pytest.raises(TypeError, match="`callback` must be callable"):
            ResourceTelemetryController(True, 1.0, "print")


class TestThrottle:
    def test_first_passes_second_suppressed_unless_forced(self, clock, recorder, no_gpu_libs):
        tel = ResourceTelemetryController(True, 2.0, recorder)
        assert tel.maybe_emit_stats({"phase_index": 0}) is True  # the first call always emits
        clock.now += 1.0
        assert tel.maybe_emit_stats({"phase_index": 0}) is False
        assert tel.emit_stats({"phase_index": 0}) is False
        assert tel.emit_stats({"phase_index": 1}, force=True) is True
        clock.now += 1.9  # measured from the forced emission
        assert tel.maybe_emit_stats() is False
        clock.now += 0.1
        assert tel.maybe_emit_stats() is True
        assert len(recorder.calls) == 3

    def test_first_emit_passes_at_any_clock_value(self, clock, recorder, no_gpu_libs):
        clock.now = 0.0
        assert ResourceTelemetryController(True, 1.0, recorder).maybe_emit_stats() is True


class TestPayload:
    def test_callback_signature_and_keys(self, recorder, no_gpu_libs):
        tel = ResourceTelemetryController(True, 1.0, recorder)
        ctx = grid_telemetry_context(2, "Grid: tile stacking", 3, 12, eta_seconds=95.0, files_done=40,
                                     files_total=160, extra={"cpu_workers": 8, "use_gpu": False})
        tel.emit_stats(ctx)
        (args, payload), = recorder.calls
        assert args == ("STATS_UPDATE", None, "INFO")
        assert set(payload) == set(CONTEXT_KEYS) | set(SAMPLE_KEYS) | {"timestamp_iso", "cpu_workers", "use_gpu"}
        assert len(SAMPLE_KEYS) == 12  # upstream's 12 resource keys, under upstream's names
        assert "gpu_sample_source" in payload and "sample_source" not in payload
        assert payload["tiles_done"] == 3 and payload["eta_seconds"] == 95.0 and payload["cpu_workers"] == 8

    def test_sample_overrides_context(self, recorder, no_gpu_libs):
        tel = ResourceTelemetryController(True, 1.0, recorder)
        tel.emit_stats({"cpu_percent": -1.0, "gpu_name": "stale"})
        payload = recorder.payloads[0]
        assert payload["cpu_percent"] != -1.0 and payload["gpu_name"] is None

    def test_gui_label_without_gpu(self, recorder, no_gpu_libs):
        ResourceTelemetryController(True, 1.0, recorder).emit_stats({})
        label = format_resource_label(recorder.payloads[0])
        assert label.startswith("CPU ") and " | RAM " in label and label.endswith(" GiB")
        assert "GPU" not in label

    def test_gui_label_with_nvml(self, recorder, no_gpu_libs, monkeypatch):
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([]))
        ResourceTelemetryController(True, 1.0, recorder).emit_stats({})
        payload = recorder.payloads[0]
        assert payload["gpu_backend"] == "nvml"
        assert format_resource_label(payload).endswith(" | GPU 37% (2.0 / 8.0 GiB)")

    def test_timestamp_is_utc_iso_ending_in_z(self, recorder, no_gpu_libs):
        # Upstream: datetime.utcnow().isoformat() + "Z" (we always write the microseconds).
        before = datetime.now(timezone.utc)
        ResourceTelemetryController(True, 1.0, recorder).emit_stats({})
        text = recorder.payloads[0]["timestamp_iso"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
        stamp = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert abs((stamp - before).total_seconds()) < 60

    def test_types_and_units(self, recorder, no_gpu_libs, monkeypatch):
        import psutil

        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([]))
        ResourceTelemetryController(True, 1.0, recorder).emit_stats(
            grid_telemetry_context(1, "Grid: Setup", 0, 6, eta_seconds=12.5))
        p = recorder.payloads[0]
        assert isinstance(p["phase_index"], int) and isinstance(p["phase_name"], str)
        assert isinstance(p["tiles_done"], int) and isinstance(p["tiles_total"], int)
        assert isinstance(p["eta_seconds"], float)  # seconds
        assert all(isinstance(p[k], float) for k in ("cpu_percent", "ram_used_mb", "ram_total_mb",
                                                      "ram_available_mb", "gpu_used_mb", "gpu_total_mb",
                                                      "gpu_free_mb", "gpu_util_percent", "gpu_mem_util_percent"))
        assert 0.0 <= p["cpu_percent"] <= 100.0
        assert p["ram_total_mb"] == pytest.approx(psutil.virtual_memory().total / 2**20)  # MiB
        assert (p["gpu_total_mb"], p["gpu_used_mb"], p["gpu_free_mb"]) == (8192.0, 2048.0, 6144.0)  # MiB
        assert (p["gpu_name"], p["gpu_backend"], p["gpu_sample_source"]) == ("Fake RTX 4090", "nvml", "nvml")

    @pytest.mark.parametrize("eta", [None, -1.0, math.nan, math.inf, "soon"])
    def test_eta_dropped_unless_finite_non_negative(self, recorder, no_gpu_libs, eta):
        ResourceTelemetryController(True, 1.0, recorder).emit_stats({"eta_seconds": eta})
        assert "eta_seconds" not in recorder.payloads[0]

    def test_eta_zero_kept(self, recorder, no_gpu_libs):
        ResourceTelemetryController(True, 1.0, recorder).emit_stats({"eta_seconds": 0})
        assert recorder.payloads[0]["eta_seconds"] == 0

    def test_context_that_is_not_a_mapping(self, recorder, no_gpu_libs, caplog):
        with caplog.at_level(logging.WARNING, logger="zemosaic_xp.telemetry"):
            assert ResourceTelemetryController(True, 1.0, recorder).emit_stats(["phase", 1]) is True
        assert "`context` must be a mapping" in caplog.text
        assert set(recorder.payloads[0]) == set(SAMPLE_KEYS) | {"timestamp_iso"}


class TestInactive:
    def test_disabled_emits_and_writes_nothing(self, recorder, tmp_path):
        csv_path = tmp_path / "resource_telemetry.csv"
        tel = ResourceTelemetryController(False, 1.0, recorder, csv_path)
        assert tel.emit_stats({}, force=True) is False
        tel.close()
        assert recorder.calls == [] and not csv_path.exists()

    def test_no_callback_writes_nothing(self, tmp_path):
        csv_path = tmp_path / "resource_telemetry.csv"
        tel = ResourceTelemetryController(True, 1.0, None, csv_path)
        assert tel.emit_stats({}, force=True) is False
        assert not csv_path.exists()


class TestRobustness:
    def test_callback_that_raises_never_propagates(self, no_gpu_libs, tmp_path, caplog):
        def broken(*args, **kwargs):
            raise RuntimeError("GUI queue closed")

        tel = ResourceTelemetryController(True, 1.0, broken, tmp_path / "t.csv")
        with caplog.at_level(logging.DEBUG, logger="zemosaic_xp.telemetry"):
            for _ in range(3):
                assert tel.emit_stats({}, force=True) is True
        tel.close()
        assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1  # warned once
        assert len(read_telemetry_csv(tmp_path / "t.csv")) == 3  # the CSV goes on

    def test_sampler_that_raises_never_propagates(self, recorder, monkeypatch):
        def broken():
            raise MemoryError("no room to sample")

        monkeypatch.setattr(controller_mod, "sample_runtime_resources", broken)
        assert ResourceTelemetryController(True, 1.0, recorder).emit_stats({"phase_index": 1}) is True
        payload = recorder.payloads[0]
        assert payload["phase_index"] == 1 and all(payload[k] is None for k in SAMPLE_KEYS)

    def test_callback_may_emit_again(self, no_gpu_libs):
        # The lock is re-entrant: a callback that emits (forced) does not deadlock.
        seen = []
        tel = ResourceTelemetryController(True, 1.0, None)

        def callback(key, progress, level, **payload):
            seen.append(payload.get("phase_index"))
            if len(seen) == 1:
                tel.emit_stats({"phase_index": 2}, force=True)

        tel.callback = callback
        tel.emit_stats({"phase_index": 1})
        assert seen == [1, 2]


class TestClose:
    def test_close_twice_and_emit_after_close(self, recorder, no_gpu_libs, tmp_path):
        tel = ResourceTelemetryController(True, 1.0, recorder, tmp_path / "t.csv")
        tel.emit_stats({})
        tel.close()
        tel.close()
        assert tel.closed and not tel.active
        assert tel.emit_stats({}, force=True) is False
        assert len(recorder.calls) == 1

    def test_context_manager(self, recorder, no_gpu_libs, tmp_path):
        with ResourceTelemetryController(True, 1.0, recorder, tmp_path / "t.csv") as tel:
            tel.emit_stats({})
        assert tel.closed

    def test_garbage_collection_closes_the_csv(self, recorder, no_gpu_libs, tmp_path):
        tel = ResourceTelemetryController(True, 1.0, recorder, tmp_path / "t.csv")
        tel.emit_stats({})
        handle = tel._writer._file
        del tel
        gc.collect()
        assert handle.closed  # and no ResourceWarning (warnings are errors here)

    def test_failed_construction_is_collected_quietly(self):
        with pytest.raises(ValueError, match="interval_sec"):
            ResourceTelemetryController(True, object(), None)
        gc.collect()  # __del__ of the half-built object must not raise

    @pytest.mark.parametrize("round_", range(10))
    def test_emit_from_worker_while_main_closes(self, no_gpu_libs, tmp_path, round_):
        calls = []
        tel = ResourceTelemetryController(True, 0.5, lambda *a, **kw: calls.append(kw), tmp_path / "t.csv")
        errors: list[BaseException] = []
        started = threading.Event()

        def worker():
            try:
                for i in range(100_000):
                    tel.emit_stats({"tiles_done": i}, force=True)
                    started.set()
                    if tel.closed:
                        break
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(exc)
            finally:
                started.set()

        thread = threading.Thread(target=worker)
        thread.start()
        started.wait(5)
        tel.close()
        n_at_close = len(calls)
        thread.join(10)
        assert not thread.is_alive()
        assert errors == []
        assert len(calls) == n_at_close >= 1  # nothing emitted once close() returned
        assert len(read_telemetry_csv(tmp_path / "t.csv")) == len(calls)  # every emission is a complete row


class TestGridContext:
    def test_known_answer(self):
        ctx = grid_telemetry_context(2, "Grid: tile stacking", 3, 12, eta_seconds=90, files_done=5,
                                     files_total=60, extra={"cpu_workers": 4, "use_gpu": True})
        assert list(ctx.items()) == [
            ("phase_index", 2), ("phase_name", "Grid: tile stacking"), ("tiles_done", 3), ("tiles_total", 12),
            ("eta_seconds", 90.0), ("files_done", 5), ("files_total", 60), ("cpu_workers", 4), ("use_gpu", True)]

    def test_optional_keys_left_out(self):
        assert grid_telemetry_context(0, "Grid: Init", 0, 12) == {
            "phase_index": 0, "phase_name": "Grid: Init", "tiles_done": 0, "tiles_total": 12}

    @pytest.mark.parametrize("eta", [None, -5, math.nan, math.inf])
    def test_eta_only_when_finite_non_negative(self, eta):
        assert "eta_seconds" not in grid_telemetry_context(1, "Grid: Setup", 0, 4, eta_seconds=eta)

    @pytest.mark.parametrize("key", ["tiles_done", "cpu_percent", "timestamp_iso"])
    def test_extra_cannot_shadow_reserved_keys(self, key):
        with pytest.raises(ValueError, match=f"`extra` key '{key}' is reserved"):
            grid_telemetry_context(1, "Grid: Setup", 0, 4, extra={key: 1})

    def test_counter_must_be_an_integer(self):
        with pytest.raises(ValueError, match="`tiles_done` must be an integer; got 2.5"):
            grid_telemetry_context(2, "Grid: tile stacking", 2.5, 4)


def test_public_api():
    assert "ResourceTelemetryController" in zemosaic_xp.__all__
    assert zemosaic_xp.ResourceTelemetryController is ResourceTelemetryController
    import zemosaic_xp.telemetry as telemetry

    assert all(hasattr(telemetry, name) for name in telemetry.__all__)
