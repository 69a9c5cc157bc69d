"""Fixtures for the telemetry tests: fresh probes, hidden GPU libraries, fake ones, a recorder.

There is no GPU here and neither nvidia-ml-py nor CuPy is installed, so GPU sources
are simulated by fake modules placed in ``sys.modules``; the real ones (and torch,
which other tests may have imported) are hidden so results do not depend on the machine.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from zemosaic_xp.telemetry import reset_resource_probes


@pytest.fixture(autouse=True)
def fresh_probes():
    """Every test starts and ends with no cached psutil / GPU detection."""
    reset_resource_probes()
    yield
    reset_resource_probes()


@pytest.fixture
def no_gpu_libs(monkeypatch):
    """Hide pynvml, cupy and torch: ``None`` in ``sys.modules`` makes them unimportable."""
    for name in ("pynvml", "cupy", "torch"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


class Recorder:
    """A ``progress_callback`` that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))

    @property
    def payloads(self) -> list[dict[str, Any]]:
        return [kw for _, kw in self.calls]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
