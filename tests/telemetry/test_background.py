"""The background sampler: samples through long phases, one throttle with progress, a clean stop."""

from __future__ import annotations

import threading
import time

import pytest

from zemosaic_xp.telemetry import BackgroundSampler, ResourceTelemetryController

THREAD_NAME = "zemosaic-xp-telemetry"
INTERVAL = 0.5  # the controller's floor: the shortest test


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


class Timed:
    """A callback that records, per STATS_UPDATE, the throttle's clock and the payload."""

    def __init__(self, tel_ref: list, on_call=None) -> None:
        self.tel_ref, self.on_call = tel_ref, on_call
        self.emit_times: list[float] = []
        self.payloads: list[dict] = []

    def __call__(self, key, progress, level, **payload) -> None:
        # The callback runs under the controller's lock: _last_emit is this emission's time.
        self.emit_times.append(self.tel_ref[0]._last_emit)
        self.payloads.append(payload)
        if self.on_call is not None:
            self.on_call(payload)


def make(interval=INTERVAL, on_call=None):
    ref: list = []
    cb = Timed(ref, on_call)
    tel = ResourceTelemetryController(True, interval, cb)
    ref.append(tel)
    return tel, cb


def test_slow_phase_gets_a_sample_at_least_every_two_intervals(no_gpu_libs):
    tel, cb = make()
    state = {"phase": 0, "done": 0}
    tel.start_background(lambda: {"phase_index": state["phase"], "tiles_done": state["done"]})
    tel.emit_stats({"phase_index": 0, "tiles_done": 0})
    for done in range(1, 7):  # quick progress: throttled together with the sampler
        state["done"] = done
        tel.maybe_emit_stats({"phase_index": 0, "tiles_done": done})
        time.sleep(0.1)
    state["phase"] = 1
    tel.emit_stats({"phase_index": 1, "tiles_done": 6}, force=True)
    time.sleep(3.0)  # a slow phase: no progress at all
    tel.close()
    gaps = [b - a for a, b in zip(cb.emit_times, cb.emit_times[1:])]
    assert max(gaps) <= 2 * INTERVAL, gaps
    slow = [p for p in cb.payloads if p["phase_index"] == 1]
    assert len(slow) >= 4  # ~6 at one per 0.5 s; before: the forced one only
    assert [p["tiles_done"] for p in cb.payloads] == sorted(p["tiles_done"] for p in cb.payloads)


def test_never_two_unforced_samples_closer_than_the_interval(no_gpu_libs):
    tel, cb = make()
    tel.start_background()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # progress far more often than the interval
        tel.maybe_emit_stats({"phase_index": 2})
        time.sleep(0.02)
    tel.close()
    gaps = [b - a for a, b in zip(cb.emit_times, cb.emit_times[1:])]
    assert len(cb.emit_times) >= 3 and min(gaps) >= INTERVAL, gaps


def test_background_samples_carry_the_latest_context_by_default(no_gpu_libs):
    tel, cb = make()
    tel.emit_stats({"phase_index": 3, "phase_name": "Grid: photometry & blending", "tiles_done": 5})
    tel.maybe_emit_stats({"phase_index": 3, "phase_name": "Grid: photometry & blending", "tiles_done": 6})
    assert len(cb.payloads) == 1  # the second was throttled, but remembered
    sampler = tel.start_background()
    time.sleep(INTERVAL * 2.5)
    tel.close()
    assert sampler.emitted >= 1
    assert cb.payloads[-1]["tiles_done"] == 6 and cb.payloads[-1]["phase_name"] == "Grid: photometry & blending"


def test_a_context_that_raises_falls_back_to_the_latest(no_gpu_libs):
    tel, cb = make()
    tel.emit_stats({"phase_index": 2})

    def broken():
        raise KeyError("not ready")

    tel.start_background(broken)
    time.sleep(INTERVAL * 2.5)
    tel.close()
    assert len(cb.payloads) >= 2 and all(p["phase_index"] == 2 for p in cb.payloads)


class TestStop:
    def test_close_stops_and_joins_the_thread(self, no_gpu_libs):
        tel, _ = make()
        sampler = tel.start_background()
        assert sampler.alive and len(sampler_threads()) == 1
        assert tel.start_background() is sampler  # one sampler per controller
        tel.close()
        assert not sampler.alive and sampler_threads() == []
        tel.close()  # idempotent

    def test_close_waits_for_a_sample_in_progress(self, no_gpu_libs):
        entered, release = threading.Event(), threading.Event()

        def slow_gui(payload):
            if threading.current_thread().name == THREAD_NAME:
                entered.set()
                release.wait(2.0)

        tel, cb = make(on_call=slow_gui)
        tel.emit_stats({})
        sampler = tel.start_background()
        assert entered.wait(5.0)
        threading.Timer(0.2, release.set).start()
        tel.close()  # returns once the callback did
        assert not sampler.alive and sampler_threads() == []
        count = len(cb.payloads)
        time.sleep(INTERVAL * 1.5)
        assert len(cb.payloads) == count  # nothing after close

    def test_close_from_the_samplers_own_callback(self, no_gpu_libs):
        holder = []

        def close_now(payload):
            if threading.current_thread().name == THREAD_NAME:
                holder[0].close()

        tel, _ = make(on_call=close_now)
        holder.append(tel)
        tel.emit_stats({})
        sampler = tel.start_background()
        deadline = time.monotonic() + 5.0
        while sampler.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tel.closed and not sampler.alive

    @pytest.mark.parametrize("kind", ["disabled", "no-callback", "closed"])
    def test_inactive_controller_starts_no_thread(self, kind, recorder):
        tel = ResourceTelemetryController(kind != "disabled", 1.0, None if kind == "no-callback" else recorder)
        if kind == "closed":
            tel.close()
        assert tel.start_background() is None and sampler_threads() == []

    def test_sampler_ends_when_the_controller_is_closed_under_it(self, no_gpu_libs):
        tel, _ = make()
        sampler = BackgroundSampler(tel).start()  # started by hand: close() does not know it
        tel.close()
        deadline = time.monotonic() + 2 * INTERVAL + 2.0
        while sampler.alive and time.monotonic() < deadline:  # it sees the controller closed and ends
            time.sleep(0.05)
        assert not sampler.alive and sampler_threads() == []
