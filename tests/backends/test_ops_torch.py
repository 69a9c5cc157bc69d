"""backends/ops_torch.py: torch CPU stacks run on NumPy's ops, and say so."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_on, get_backend, host
from zemosaic_xp import StackConfig, stack
from zemosaic_xp.backends.ops_numpy import NumpyOps
from zemosaic_xp.backends.ops_torch import TorchCpuOps
from zemosaic_xp.core.ops import portable_only
from zemosaic_xp.synthetic import make_stack


@pytest.fixture
def torch_backend():
    return get_backend("torch:cpu")


def test_torch_cpu_stack_is_delegated_to_numpy_and_says_so(torch_backend, monkeypatch):
    # The delegation is what runs (NumPy's ops sort NumPy views of the tensors; the torch
    # ops' own band primitives are never called) and the result says so; the result still
    # comes back as tensors.
    torch = torch_backend.xp
    seen: list[type] = []
    real_sort = NumpyOps.sort_valid

    def spy(self, x):
        seen.append(type(x))
        return real_sort(self, x)

    def torch_band_path(self, x):
        raise AssertionError("the torch band path ran: the stack was not delegated")

    monkeypatch.setattr(NumpyOps, "sort_valid", spy)
    monkeypatch.setattr(TorchCpuOps, "sort_valid", torch_band_path)
    frames = torch.from_numpy(make_stack(n_frames=7, shape=(12, 10), seed=1).frames)
    # A percentile combine: the numba band kernels decline, the core's pipeline sorts.
    config = StackConfig.plain(reject="linear_fit_clip", combine="percentile", radial_weight=True)
    result = stack(frames, config=config)
    numpy_name = NumpyOps(get_backend("numpy").xp).name
    assert result.stats["ops"] == f"{numpy_name} (delegated)"
    assert seen and set(seen) == {np.ndarray}
    assert_on(result.image, torch_backend)


def test_delegated_result_equals_portable_torch(torch_backend):
    # Parity of two implementations: NumPy's kernels (delegated) vs the portable torch path.
    torch = torch_backend.xp
    frames = torch.from_numpy(make_stack(n_frames=9, shape=(14, 11), seed=2, cosmic_rays_per_frame=5).frames)
    config = StackConfig.plain(reject="kappa_sigma")
    fast = stack(frames, config=config)
    with portable_only():
        ref = stack(frames, config=config)
    assert ref.stats["ops"] == "portable" and fast.stats["ops"].endswith("(delegated)")
    for name in ("coverage", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(host(getattr(fast, name)), host(getattr(ref, name)), err_msg=name)
    np.testing.assert_allclose(host(fast.image), host(ref.image), rtol=1e-6)


def test_host_delegate_shares_memory(torch_backend):
    torch = torch_backend.xp
    ops = TorchCpuOps(torch)
    numpy_ops, to, back = ops.host_delegate()
    assert isinstance(numpy_ops, NumpyOps)
    t = torch.zeros(3, dtype=torch.float32)
    to(t)[1] = 5.0
    assert float(t[1]) == 5.0
    assert float(back(np.ones(2, np.float32))[0]) == 1.0


def test_band_primitives_return_tensors(torch_backend):
    # stack_band never delegates: bands given to it directly keep tensors throughout.
    torch = torch_backend.xp
    ops = TorchCpuOps(torch)
    x = torch.tensor([[3.0, float("nan"), 1.0], [2.0, 2.0, float("inf")]], dtype=torch.float32)
    s, n_valid = ops.sort_valid(x)
    assert isinstance(s, torch.Tensor) and isinstance(n_valid, torch.Tensor)
    assert n_valid[:, 0].tolist() == [2, 3]
