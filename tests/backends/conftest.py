"""Fixtures of the backend tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def band_calls(monkeypatch):
    """Bands the numba whole-band kernel stacked (it declines what it does not implement)."""
    kernels = pytest.importorskip("zemosaic_xp.backends.numba.kernels",
                                  reason="the kernels need the optional `numba` (pip install zemosaic-xp[fast])")
    calls = []
    original = kernels.stack_band

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(len(result) == 4)
        return result

    monkeypatch.setattr(kernels, "stack_band", spy)
    return calls


@pytest.fixture
def kernels_on(monkeypatch):
    """The numba kernels on, whatever ``ZEMOSAIC_XP_NUMBA`` says for the rest of the suite."""
    monkeypatch.delenv("ZEMOSAIC_XP_NUMBA", raising=False)
