"""Pass 1: all-NaN frames skipped, sub-samples as stack() takes them, chunked statistics."""

from __future__ import annotations

import logging

import array_api_compat.numpy as np_xp
import numpy as np
import pytest

from zemosaic_xp import StackConfig
from zemosaic_xp.classic.scan import ChunkedFrameSamples, plan_scan, scan_frames
from zemosaic_xp.core.frames import FrameStack
from zemosaic_xp.core.framestats import FrameSamples
from zemosaic_xp.core.pipeline import plan_frames
from zemosaic_xp.io.bands import open_sources
from zemosaic_xp.synthetic import make_stack

from .helpers import write_frames


def _noop(*args, **kwargs):
    return None


@pytest.fixture(scope="module")
def rgb_frames():
    return make_stack(n_frames=11, shape=(30, 22), seed=7, rgb=True, cosmic_rays_per_frame=4).frames


def test_all_nan_frame_is_skipped_with_a_warning_naming_it(tmp_path, rgb_frames, caplog):
    frames = rgb_frames.copy()
    frames[3] = np.nan
    paths = write_frames(tmp_path, frames)
    with caplog.at_level(logging.WARNING, logger="zemosaic_xp.classic.scan"):
        scan = scan_frames(open_sources(paths), stats_samples=500, budget_bytes=10**8, progress_callback=_noop)
    scan.close()
    assert scan.skipped == [paths[3]]
    assert len(scan.sources) == 10
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert paths[3] in record.getMessage() and "no finite pixel" in record.getMessage()


def test_only_all_nan_frames_is_an_error(tmp_path):
    paths = write_frames(tmp_path, np.full((2, 4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"no usable frame: all 2 frames have no finite pixel \('.*f0000.fits'"):
        scan_frames(open_sources(paths), stats_samples=0, budget_bytes=10**8, progress_callback=_noop)


def test_in_memory_samples_equal_stack_samples(rgb_frames):
    scan = scan_frames(open_sources(list(rgb_frames)), stats_samples=97, budget_bytes=10**9,
                       progress_callback=_noop)
    assert not scan.spilled and isinstance(scan.stats, FrameSamples)
    np.testing.assert_array_equal(scan.stats.samples, FrameStack(rgb_frames).samples(97))
    scan.close()


@pytest.mark.parametrize("config", [StackConfig(), StackConfig(normalize="sky_mean"),
                                    StackConfig(normalize="none", weighting="none")],
                         ids=["linear_fit+noise", "sky_mean", "none"])
@pytest.mark.parametrize("workers", [1, 2])
def test_spilled_chunked_statistics_are_bit_identical(rgb_frames, config, workers, monkeypatch):
    import zemosaic_xp.classic.scan as scan_module

    pools = []

    class Pool(scan_module.ThreadPoolExecutor):
        def __init__(self, n):
            pools.append(n)
            super().__init__(n)

    monkeypatch.setattr(scan_module, "ThreadPoolExecutor", Pool)
    sources = open_sources(list(rgb_frames))
    samples = 200  # per frame and channel: 3·200·4 B, ×16 => spill below ~38 kB per frame
    whole = scan_frames(sources, stats_samples=samples, budget_bytes=10**9, progress_callback=_noop)
    chunked = scan_frames(sources, stats_samples=samples, budget_bytes=3 * 200 * 4 * 16 * 4,
                          progress_callback=_noop, workers=workers)
    assert chunked.spilled and isinstance(chunked.stats, ChunkedFrameSamples)
    # 11 frames -> chunks of 4, 4, 3 on one thread; of 2 on two threads (the same budget in all).
    assert chunked.stats.frames_per_chunk == 4 // workers
    for name, args in [("quantile", (0.25,)), ("quantile", (0.9,)), ("luminance_quantile", (0.25,))]:
        np.testing.assert_array_equal(getattr(chunked.stats, name)(*args), getattr(whole.stats, name)(*args))
    np.testing.assert_array_equal(chunked.stats.clipped_std(kappa=3.0, max_iters=5),
                                  whole.stats.clipped_std(kappa=3.0, max_iters=5))
    start = (np.full((11, 3), 1.01), np.zeros((11, 3)))
    for ref in (0, 5):  # the reference in the first chunk and in the second
        got, expected = chunked.stats.paired_fit(ref, *start), whole.stats.paired_fit(ref, *start)
        assert np.all(expected[2][np.arange(11) != ref])  # the paired fit was used: the test means something
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    a, b = plan_frames(whole.stats, config), plan_frames(chunked.stats, config)
    assert a.stats == b.stats
    assert pools == ([2] * len(pools) if workers == 2 else [])  # chunks on threads only when asked
    assert len(pools) >= (workers > 1) * 4
    whole.close()
    chunked.close()


def test_spilled_reads_without_positioned_reads(rgb_frames, monkeypatch):
    # Windows has no os.preadv: the chunks' threads then take turns to seek and read.
    import zemosaic_xp.classic.scan as scan_module

    sources = open_sources(list(rgb_frames))
    budget = 3 * 200 * 4 * 16 * 4
    want = scan_frames(sources, stats_samples=200, budget_bytes=budget, progress_callback=_noop, workers=2)
    monkeypatch.setattr(scan_module, "_PREADV", False)
    got = scan_frames(sources, stats_samples=200, budget_bytes=budget, progress_callback=_noop, workers=2)
    assert got.spilled and got.stats.workers == 2
    np.testing.assert_array_equal(got.stats.clipped_std(kappa=3.0, max_iters=5),
                                  want.stats.clipped_std(kappa=3.0, max_iters=5))
    np.testing.assert_array_equal(got.stats._store.read(0, 11), want.stats._store.read(0, 11))
    want.close()
    got.close()


def test_chunked_rejects_unknown_statistics(rgb_frames):
    scan = scan_frames(open_sources(list(rgb_frames)), stats_samples=50, budget_bytes=1,
                       progress_callback=_noop)
    with pytest.raises(AttributeError, match="no per-frame statistic 'nope'"):
        scan.stats.nope()
    assert scan.stats.frames_per_chunk == 1
    assert scan.stats.xp is np_xp
    scan.close()


def test_flags_and_exposure(tmp_path, rgb_frames):
    alpha = np.zeros(rgb_frames.shape[1:3], np.uint8)
    paths = write_frames(tmp_path, rgb_frames[:2], alpha=alpha, EXPTIME=10.0)
    scan = scan_frames(open_sources(paths), stats_samples=10, budget_bytes=10**8, progress_callback=_noop)
    assert scan.has_alpha and not scan.has_data and not scan.has_nonzero  # ALPHA 0 everywhere
    assert scan.exposure_total_sec == 20.0
    scan.close()
    scan = scan_frames(open_sources([np.zeros((3, 3), np.float32)]), stats_samples=10, budget_bytes=10**8,
                       progress_callback=_noop)
    assert scan.has_data and not scan.has_nonzero and scan.exposure_total_sec is None
    scan.close()


@pytest.mark.parametrize("config", [StackConfig(), StackConfig(normalize="sky_mean", weighting="none")],
                         ids=["linear_fit+noise", "sky_mean"])
def test_plan_of_a_spilled_scan_takes_one_pass_and_equals_in_memory(rgb_frames, config):
    sources = open_sources(list(rgb_frames))
    whole = scan_frames(sources, stats_samples=150, budget_bytes=10**9, progress_callback=_noop)
    spilled = scan_frames(sources, stats_samples=150, budget_bytes=3 * 150 * 4 * 16 * 3,
                          progress_callback=_noop)
    passes = []
    compute = spilled.stats._compute
    spilled.stats._compute = lambda keys: passes.append(keys) or compute(keys)
    assert plan_scan(spilled, config).stats == plan_frames(whole.stats, config).stats
    assert len(passes) == 1  # every statistic of the plan in a single pass over the chunks
    expected = {"linear_fit+noise": {"quantile", "clipped_std"}, "sky_mean": {"luminance_quantile"}}
    kind = "sky_mean" if config.normalize == "sky_mean" else "linear_fit+noise"
    assert {key[0] for key in passes[0]} == expected[kind]
    whole.close()
    spilled.close()


@pytest.mark.parametrize("stats_samples", [0, 7, 97, 10**6])
@pytest.mark.parametrize("kind", ["rgb", "mono"])
def test_frames_read_in_row_blocks_sample_like_frame_stack(rgb_frames, stats_samples, kind):
    frames = rgb_frames if kind == "rgb" else rgb_frames[..., 1]
    # A budget this small reads each 30-row frame in blocks of 1-2 rows.
    scan = scan_frames(open_sources(list(frames)), stats_samples=stats_samples, budget_bytes=22 * 3 * 4 * 4 * 2,
                       progress_callback=_noop)
    expected = FrameStack(frames).samples(stats_samples)
    got = scan.stats._store.read(0, len(frames))
    np.testing.assert_array_equal(got, expected)
    scan.close()


def test_block_read_flags_match_whole_frame(tmp_path, rgb_frames):
    alpha = np.zeros(rgb_frames.shape[1:3], np.uint8)
    alpha[-1, -1] = 255  # only the very last pixel is usable
    frames = rgb_frames[:2].copy()
    frames[:, -1, -1] = 0.0
    paths = write_frames(tmp_path, frames, alpha=alpha)
    for budget in (10**8, 100):
        scan = scan_frames(open_sources(paths), stats_samples=10, budget_bytes=budget, progress_callback=_noop)
        assert scan.has_alpha and scan.has_data and not scan.has_nonzero
        scan.close()
