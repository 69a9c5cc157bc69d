"""``CpuMeter``: psutil's busy-time arithmetic, and no false 0 % (first sample, back-to-back samples, threads)."""

from __future__ import annotations

import sys
import threading
from collections import namedtuple

import pytest

from zemosaic_xp.telemetry import CpuMeter, ResourceTelemetryController
from zemosaic_xp.telemetry.cpu import busy_percent

# Linux's psutil.cpu_times() fields (seconds, summed over CPUs).
Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def times(user=0.0, idle=0.0, iowait=0.0, guest=0.0):
    return Times(user, 0.0, 0.0, idle, iowait, 0.0, 0.0, 0.0, guest, 0.0)


class BusyPsutil:
    """A psutil stand-in on a machine busy at ``busy`` %: every cpu_times() call is 1 s later."""

    def __init__(self, busy: float = 60.0) -> None:
        self.busy, self.user, self.idle = busy / 100.0, 0.0, 0.0

    def cpu_times(self):
        self.user += self.busy
        self.idle += 1.0 - self.busy
        return times(user=self.user, idle=self.idle)

    def virtual_memory(self):
        return namedtuple("Mem", "total available")(8 * 2**30, 6 * 2**30)


class FakeTime:
    def __init__(self) -> None:
        self.now, self.slept = 100.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestBusyPercent:
    def test_known_answer(self):
        # 30 s busy out of 40 s of CPU time: 75 %.
        assert busy_percent(times(user=10, idle=90), times(user=40, idle=100)) == 75.0

    def test_iowait_is_idle_and_guest_counted_once(self):
        # user includes 4 s of guest time (Linux): total = 4 + 10 + 2 = 16 s; busy = 4 s -> 25 %.
        assert busy_percent(times(), times(user=4, idle=10, iowait=2, guest=4)) == 25.0

    def test_no_elapsed_time_is_none(self):
        assert busy_percent(times(user=5, idle=5), times(user=5, idle=5)) is None


class TestCpuMeter:
    def test_first_reading_waits_for_a_window_instead_of_reporting_zero(self):
        fake, ps = FakeTime(), BusyPsutil(60.0)
        meter = CpuMeter(0.1, clock=fake.clock, sleep=fake.sleep)
        meter.prime(ps)
        assert meter.read(ps) == pytest.approx(60.0)  # psutil.cpu_percent would say 0.0 here
        assert fake.slept == [pytest.approx(0.1)]

    def test_reading_too_soon_repeats_the_last_value(self):
        fake, ps = FakeTime(), BusyPsutil(60.0)
        meter = CpuMeter(0.1, clock=fake.clock, sleep=fake.sleep)
        assert meter.read(ps) == pytest.approx(60.0)
        ps.busy = 0.2  # the machine calms down
        fake.now += 0.01
        assert meter.read(ps) == pytest.approx(60.0)  # 10 ms: too short, not 0.0
        fake.now += 0.5
        assert meter.read(ps) == pytest.approx(20.0)  # a real window again
        assert len(fake.slept) == 1  # only the very first reading waited

    def test_primed_long_ago_does_not_wait(self):
        fake, ps = FakeTime(), BusyPsutil(35.0)
        meter = CpuMeter(0.1, clock=fake.clock, sleep=fake.sleep)
        meter.prime(ps)
        fake.now += 2.0
        assert meter.read(ps) == pytest.approx(35.0) and fake.slept == []

    def test_another_thread_shares_the_window(self):
        # psutil.cpu_percent keeps its state per thread: a sampler thread's first call would read 0.0.
        fake, ps = FakeTime(), BusyPsutil(50.0)
        meter = CpuMeter(0.1, clock=fake.clock, sleep=fake.sleep)
        meter.read(ps)
        fake.now += 1.0
        seen = []
        thread = threading.Thread(target=lambda: seen.append(meter.read(ps)))
        thread.start()
        thread.join()
        assert seen == [pytest.approx(50.0)]


def test_no_false_zero_in_emitted_samples(recorder, no_gpu_libs, monkeypatch):
    # The run's first sample and the back-to-back forced samples of a phase change
    # (microseconds apart) on a machine busy at 60 %: each reports 60 %, none 0.0.
    monkeypatch.setitem(sys.modules, "psutil", BusyPsutil(60.0))
    tel = ResourceTelemetryController(True, 1.0, recorder)
    tel.emit_stats({"phase_index": 0})
    tel.emit_stats({"phase_index": 1}, force=True)
    tel.emit_stats({"phase_index": 2}, force=True)
    tel.close()
    assert [p["cpu_percent"] for p in recorder.payloads] == [pytest.approx(60.0)] * 3

