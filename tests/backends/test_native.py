"""backends/native.py and core.ops.ops_for: the one, explicit lookup of native ops."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import get_backend
from zemosaic_xp.backends.native import native_ops
from zemosaic_xp.backends.ops_gpu import GpuOps
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.backends.ops_torch import TorchCpuOps
from zemosaic_xp.core.ops import ArrayOps, ops_for, portable_only


def test_ops_for_picks_native_ops_per_backend():
    numpy = get_backend("numpy")
    assert isinstance(ops_for(numpy.xp, numpy.device), NumpyOps)
    assert ops_for(numpy.xp, numpy.device) is ops_for(numpy.xp, numpy.device)  # cached
    torch_backend = get_backend("torch:cpu")
    assert isinstance(ops_for(torch_backend.xp, torch_backend.device), TorchCpuOps)
    strict = get_backend("array_api_strict")
    assert type(ops_for(strict.xp, strict.device)) is ArrayOps  # no native ops: the portable reference


def test_portable_only_switches_native_ops_off():
    xp = get_backend("numpy").xp
    with portable_only():
        assert type(ops_for(xp, "cpu")) is ArrayOps
    assert isinstance(ops_for(xp, "cpu"), NumpyOps)


def test_torch_on_a_gpu_device_gets_the_gpu_strategy():
    torch = pytest.importorskip("torch")
    xp = get_backend("torch:cpu").xp
    ops = native_ops(xp, torch.device("cuda"))  # a device object needs no GPU
    assert isinstance(ops, GpuOps) and ops.name == "torch:cuda"
    assert (ops.compact, ops.check_every, ops.count_search, ops.band_bytes) == (False, 2, True, None)
    assert isinstance(native_ops(xp, None), TorchCpuOps)


def test_other_namespaces_have_no_native_ops():
    strict = get_backend("array_api_strict")
    assert native_ops(strict.xp, strict.device) is None


def test_core_asks_backends_itself_without_registration():
    # Nothing registers ops at import any more: the native lookup module is not even
    # loaded until the core first needs ops, and then the core loads it itself.
    code = (
        "import sys\n"
        "from zemosaic_xp.core.ops import ops_for\n"
        "import array_api_compat.numpy as xp\n"
        "assert 'zemosaic_xp.backends.native' not in sys.modules\n"
        "ops = ops_for(xp, 'cpu')\n"
        "print(type(ops).__module__, type(ops).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["zemosaic_xp.backends.ops_numpy", "NumpyOps"]
