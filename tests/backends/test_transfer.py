"""backends/transfer.py: moving arrays to a backend and back, byte order and dtype."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_on
from zemosaic_xp.backends import to_backend, to_host


def test_to_backend_fixes_byte_order_and_dtype():
    big = np.arange(5, dtype=">i2")
    out = to_backend(big, "numpy")
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, np.arange(5))
    keep_int = to_backend(big, "numpy", dtype_float32=False)
    assert keep_int.dtype == np.int16 and keep_int.dtype.isnative


def test_native_float32_is_returned_as_it_is():
    a = np.ones((2, 3), np.float32)
    assert to_backend(a, "numpy") is a
    assert to_host(a) is a


def test_nested_sequences_become_float32():
    out = to_backend([[1, 2], [3, 4]], "numpy")
    assert out.dtype == np.float32 and out.shape == (2, 2)


def test_round_trip_on_every_backend(backend):
    # Big-endian FITS data must arrive as native float32 on the device and come back equal.
    data = np.arange(12, dtype=">f4").reshape(3, 4)
    on_device = to_backend(data, backend)
    assert_on(on_device, backend)
    np.testing.assert_array_equal(np.asarray(to_host(on_device)), data)


def test_torch_cpu_to_host_shares_memory():
    torch = pytest.importorskip("torch")
    t = torch.arange(4, dtype=torch.float32)
    host = to_host(t)
    host[0] = 7.0
    assert float(t[0]) == 7.0
