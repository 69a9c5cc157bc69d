"""GPU auto mode C on a fake GPU (CPU-only CI) and, where one exists, on a real GPU.

The acceptance points of issue #6: (1) success marks used_gpu; (2) OOM on attempt 1
frees memory, halves the bands, attempt 2 succeeds; (3) two failures put this tile
and every later tile of the run on the CPU, with the specified log lines and an
output equal to a pure-CPU run; (4) a non-OOM error retries without shrinking;
(5) garbage GPU output is detected.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from zemosaic_xp import GpuPolicy, stack_master_tile
from zemosaic_xp.backends import Backend, BackendUnavailable
from zemosaic_xp.gpu import policy as gpu_policy_module
from zemosaic_xp.gpu.policy import DISABLED_MESSAGE
from zemosaic_xp.gpu.testing import FaultInjector, InjectedGpuError
from zemosaic_xp.synthetic import make_stack

from ..conftest import GPU_BACKENDS, get_backend

LOGGER = "zemosaic_xp.gpu.policy"
BUDGET = 250_000  # bytes per band: 8 rows of these frames (4 bands)
GPU_BASES = ("fake",) + GPU_BACKENDS


@pytest.fixture(scope="module")
def frames():
    return make_stack(n_frames=7, shape=(32, 18), seed=9, rgb=True, cosmic_rays_per_frame=5).frames


@pytest.fixture(scope="module")
def cpu_result(frames):
    return stack_master_tile(list(frames), gpu_policy=GpuPolicy("cpu"), memory_budget_bytes=BUDGET)


@pytest.fixture(params=GPU_BASES)
def base(request):
    """The real backend under the injected faults: NumPy ("fake"), or a real GPU if present."""
    return "numpy" if request.param == "fake" else get_backend(request.param)


@pytest.fixture
def freed(monkeypatch):
    calls = []
    real = gpu_policy_module.free_device_memory

    def spy(backend=None):
        calls.append(backend.name if backend is not None else None)
        real(backend)

    monkeypatch.setattr(gpu_policy_module, "free_device_memory", spy)
    return calls


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def _tile(frames, policy, **kwargs):
    return stack_master_tile(list(frames), gpu_policy=policy, memory_budget_bytes=BUDGET, **kwargs)


def _assert_gpu_image(result, cpu_result, base):
    if base == "numpy":  # the fake GPU computes with NumPy: bit-identical
        np.testing.assert_array_equal(result.image, cpu_result.image)
    else:
        np.testing.assert_allclose(result.image, cpu_result.image, rtol=1e-5, atol=1e-3)


# (1) ------------------------------------------------------------------------------------
def test_gpu_success_marks_used_gpu(frames, cpu_result, base, caplog):
    injector = FaultInjector([], base=base)
    policy = injector.policy("auto")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = _tile(frames, policy)
        second = _tile(frames, policy)
    for result in (first, second):
        assert result.used_gpu is True and result.stats["used_gpu"] is True
        assert result.stats["backend"] == injector.backend.name
        assert result.stats["phase3_gpu_chunk_summary"]["used_gpu"] is True
        _assert_gpu_image(result, cpu_result, base)
    enabled = [m for m in _messages(caplog) if "GPU auto mode enabled" in m]
    assert len(enabled) == 1 and enabled[0].startswith("[P3][GPU] ")
    assert policy.state()["attempts"] == 2 and policy.failures == 0
    assert [a for a, _ in injector.log] == [0, 1, 2]  # one health check, one attempt per tile


# (2) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("oom", ["oom", "oom_rt"])
def test_oom_frees_memory_halves_bands_and_retries(frames, cpu_result, base, freed, caplog, oom):
    injector = FaultInjector([oom, "ok"], base=base)
    policy = injector.policy("auto")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = _tile(frames, policy)
    first, second = result.stats["gpu_attempts"]
    assert first["oom"] and not first["ok"] and second["ok"]
    assert second["rows"] == first["rows"] // 2 and second["budget_bytes"] == first["budget_bytes"] // 2
    assert result.stats["band_rows"] == second["rows"]
    assert result.stats["n_bands"] == -(-32 // second["rows"])
    assert result.used_gpu and policy.oom_events == 1 and not policy.hard_disabled
    assert freed == [injector.backend.name]
    (retry,) = [m for m in _messages(caplog) if "retrying once" in m]
    assert retry.startswith("[P3][GPU] tile 1: GPU attempt 1 ran out of memory")
    assert f"band rows {first['rows']} -> {second['rows']}" in retry
    _assert_gpu_image(result, cpu_result, base)
    # The run remembers the OOM: the next tile starts from the halved budget.
    assert _tile(frames, policy).stats["memory_budget_bytes"] == BUDGET // 2


# (3) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("faults", [("error", "error"), ("oom", "oom"), ("oom", "nan")])
def test_two_failures_disable_the_gpu_for_the_rest_of_the_run(frames, cpu_result, base, caplog, faults):
    injector = FaultInjector(list(faults), base=base)
    policy = injector.policy("auto")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        tiles = [_tile(frames, policy, tile_id=f"T{i}") for i in range(3)]
    messages = _messages(caplog)
    assert sum("retrying once" in m for m in messages) == 1
    assert messages.count(DISABLED_MESSAGE) == 1
    assert DISABLED_MESSAGE == "[P3][GPU] GPU disabled for remaining Phase 3 tiles after repeated failures."
    assert messages.index(DISABLED_MESSAGE) > [i for i, m in enumerate(messages) if "retrying once" in m][0]
    assert policy.hard_disabled and policy.attempts == 2 and policy.failures == 2
    assert [a for a, _ in injector.log] == [0, 1, 2]  # no GPU attempt after the disable
    for result in tiles:
        assert result.used_gpu is False and result.stats["backend"] == "numpy"
        np.testing.assert_array_equal(result.image, cpu_result.image)  # equal to a pure-CPU run
        np.testing.assert_array_equal(result.alpha, cpu_result.alpha)
    assert [a["ok"] for a in tiles[0].stats["gpu_attempts"]] == [False, False, True]
    assert [a["backend"] for a in tiles[1].stats["gpu_attempts"]] == ["numpy"]
    assert tiles[2].stats["gpu_policy"]["tiles_cpu"] == 3


# (4) ------------------------------------------------------------------------------------
def test_non_oom_error_retries_without_shrinking(frames, cpu_result, base, freed, caplog):
    injector = FaultInjector(["error"], base=base, at_call=25)  # deep inside the core's compute
    policy = injector.policy("auto")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = _tile(frames, policy)
    first, second = result.stats["gpu_attempts"]
    assert "InjectedGpuError" in first["error"] and not first["oom"]
    assert (second["rows"], second["budget_bytes"]) == (first["rows"], first["budget_bytes"])
    assert result.used_gpu and policy.oom_events == 0 and freed == []
    (retry,) = [m for m in _messages(caplog) if "retrying once" in m]
    assert retry.startswith("[P3][GPU] tile 1: GPU attempt 1 failed (InjectedGpuError: CUDA error")
    _assert_gpu_image(result, cpu_result, base)


# (5) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("garbage", ["nan", "zero"])
def test_garbage_gpu_output_counts_as_a_failure(frames, cpu_result, base, garbage, caplog):
    injector = FaultInjector([garbage, "ok"], base=base)
    policy = injector.policy("auto")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        result = _tile(frames, policy)
    first, second = result.stats["gpu_attempts"]
    word = "all-NaN" if garbage == "nan" else "all zero"
    assert first["error"].startswith("GpuResultError: GPU result is " + word) and not first["oom"]
    assert second["ok"] and result.used_gpu
    _assert_gpu_image(result, cpu_result, base)
    injector = FaultInjector([garbage, garbage], base=base)
    assert _tile(frames, injector.policy("auto")).used_gpu is False


def test_all_nan_gpu_output_is_fine_when_the_inputs_have_no_usable_data(tmp_path):
    from ..classic.helpers import write_frames

    frames = np.ones((3, 6, 5), np.float32)
    paths = write_frames(tmp_path, frames, alpha=np.zeros((6, 5), np.uint8))
    result = stack_master_tile(paths, gpu_policy=FaultInjector([]).policy(), memory_budget_bytes=BUDGET)
    assert result.used_gpu and np.all(np.isnan(result.image)) and np.all(result.alpha == 0)


# health check and modes -----------------------------------------------------------------
def test_failed_health_check_in_auto_mode_runs_on_the_cpu(frames, cpu_result, caplog):
    injector = FaultInjector([], health="error")
    policy = injector.policy("auto")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        results = [_tile(frames, policy) for _ in range(2)]
    assert all(not r.used_gpu for r in results)
    np.testing.assert_array_equal(results[0].image, cpu_result.image)
    (line,) = [m for m in _messages(caplog) if "no usable GPU" in m]
    assert line.startswith("[P3][GPU] no usable GPU (numpy:fake-gpu health check failed")
    assert injector.log == [(0, "error")] and policy.attempts == 0  # checked once


def test_gpu_mode_with_an_unusable_gpu_is_a_clear_error(frames):
    policy = FaultInjector([], health="error").policy("gpu")
    with pytest.raises(BackendUnavailable, match="GPU mode requested but no usable GPU: numpy:fake-gpu"):
        _tile(frames, policy)


def test_cpu_mode_never_touches_the_gpu(frames, cpu_result):
    injector = FaultInjector(["error", "error"])
    policy = injector.policy("cpu")
    result = _tile(frames, policy)
    assert not result.used_gpu and injector.log == [] and policy.attempts == 0
    np.testing.assert_array_equal(result.image, cpu_result.image)


def test_auto_without_any_gpu_falls_back_to_numpy(frames, cpu_result, monkeypatch):
    def unavailable(name="auto"):
        if name in ("cupy", "torch:cuda"):
            raise BackendUnavailable(f"{name}: not here")
        from zemosaic_xp.backends import select_backend as real

        return real(name)

    monkeypatch.setattr(gpu_policy_module, "select_backend", unavailable)
    policy = GpuPolicy("auto")
    result = _tile(frames, policy)
    assert not result.used_gpu and policy.state()["healthy"] is False
    np.testing.assert_array_equal(result.image, cpu_result.image)


def test_input_errors_are_not_gpu_failures(tmp_path, frames, monkeypatch):
    # A file that is cut short between bands is the input's fault: it must propagate at
    # once, not be retried on the GPU and count towards disabling it. (A deleted file would
    # not do: the stack holds its frames' files open, so their data stay readable.)
    import os

    from zemosaic_xp.io import bands as sources
    from zemosaic_xp.io.fits import FitsReadError

    from ..classic.helpers import write_frames

    paths = write_frames(tmp_path, frames)
    real = sources.read_frames_first  # BandReader's blocks without weights

    def truncating(sources, r0, r1, **kwargs):
        if r0 > 0 and os.path.getsize(paths[1]) > 2880:
            os.truncate(paths[1], 2880)  # the header block only
        return real(sources, r0, r1, **kwargs)

    monkeypatch.setattr(sources, "read_frames_first", truncating)
    policy = FaultInjector([]).policy("auto")
    with pytest.raises(FitsReadError, match="f0001.fits"):
        stack_master_tile(paths, gpu_policy=policy, memory_budget_bytes=20_000)  # 3-row read blocks
    assert policy.failures == 0 and policy.attempts == 1 and not policy.hard_disabled


def test_policy_argument_validation():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        GpuPolicy("fast")
    with pytest.raises(ValueError, match="must be a GPU backend"):
        GpuPolicy("auto", Backend("numpy", None, "cpu", False))
    with pytest.raises(ValueError, match="must be one of \\('cupy', 'torch:cuda'\\)"):
        GpuPolicy("auto", "numpy")
    with pytest.raises(ValueError, match="fault must be one of"):
        FaultInjector(["boom"])
    assert GpuPolicy.for_backend("torch").mode == "cpu"
    assert GpuPolicy.for_backend("cupy").mode == "gpu"
    assert GpuPolicy.for_backend(None).mode == "auto"


def test_custom_exception_can_be_injected(frames):
    injector = FaultInjector([InjectedGpuError("custom"), KeyError("x")])
    result = _tile(frames, injector.policy())
    assert not result.used_gpu
    assert [a["error"] for a in result.stats["gpu_attempts"][:2]] == ["InjectedGpuError: custom", "KeyError: 'x'"]
