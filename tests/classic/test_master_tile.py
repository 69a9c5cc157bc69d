"""stack_master_tile: equality with stack(), ALPHA weights, bands, writing with provenance."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import zemosaic_xp as zx
from zemosaic_xp import MasterTileResult, StackConfig, stack, stack_master_tile, write_master_tile
from zemosaic_xp.io import read_frame
from zemosaic_xp.synthetic import make_stack

from .helpers import write_frames

METHODS = [("none", "mean"), ("kappa_sigma", "mean"), ("kappa_sigma", "median"),
           ("winsorized_sigma_clip", "mean")]


@pytest.fixture(scope="module")
def rgb_frames():
    return make_stack(n_frames=9, shape=(26, 21), seed=4, rgb=True, cosmic_rays_per_frame=6).frames


@pytest.fixture(scope="module")
def mono_frames():
    return make_stack(n_frames=8, shape=(19, 24), seed=5, rgb=False, cosmic_rays_per_frame=5).frames


def _same(result: MasterTileResult, ref) -> None:
    np.testing.assert_array_equal(result.image, ref.image)
    np.testing.assert_array_equal(result.coverage, ref.coverage)
    expected_alpha = np.where((ref.coverage > 0) if ref.coverage.ndim == 2 else (ref.coverage > 0).any(-1), 255, 0)
    np.testing.assert_array_equal(result.alpha, expected_alpha)
    for key in ("rejected_pct", "iterations", "valid_samples", "gains", "offsets"):
        assert result.stats[key] == ref.stats[key], key


@pytest.mark.parametrize(("reject", "combine"), METHODS)
@pytest.mark.parametrize("kind", ["rgb", "mono"])
def test_fits_streaming_equals_stack_in_memory(tmp_path, rgb_frames, mono_frames, reject, combine, kind):
    frames = rgb_frames if kind == "rgb" else mono_frames
    config = StackConfig(reject=reject, combine=combine, frame_stats_samples=300)
    paths = write_frames(tmp_path, frames)
    ref = stack(frames, config=config)
    result = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=12_000)
    assert result.stats["n_bands"] > 3  # really streamed in bands (native blocks too: weighted configs)
    assert result.image.shape == frames.shape[1:] and result.image.dtype == np.float32
    assert result.alpha.dtype == np.uint8 and result.alpha.shape == frames.shape[1:3]
    assert result.used_gpu is False and result.stats["backend"] == "numpy"
    _same(result, ref)


def test_band_budget_and_spill_do_not_change_the_result(tmp_path, rgb_frames):
    paths = write_frames(tmp_path, rgb_frames)
    big = stack_master_tile(paths, backend="numpy", memory_budget_bytes=10**9)
    small = stack_master_tile(paths, backend="numpy", memory_budget_bytes=9_000)
    assert big.stats["n_bands"] == 1 and small.stats["band_rows"] == 1
    assert small.stats["frame_stats_spilled"] and not big.stats["frame_stats_spilled"]
    np.testing.assert_array_equal(small.image, big.image)
    assert small.stats["weights"] == big.stats["weights"]



def test_many_narrow_frames_read_in_taller_blocks(tmp_path, monkeypatch):
    # Each file's read is at least _MIN_READ_BYTES (float32) when the budget allows: with
    # many narrow frames the flat per-buffer size alone would read a few rows per file.
    import zemosaic_xp.classic.master_tile as mt

    s = make_stack(n_frames=40, shape=(64, 16), seed=9, rgb=False, cosmic_rays_per_frame=2)
    paths = write_frames(tmp_path, s.frames)
    config = StackConfig(reject="kappa_sigma", normalize="none", weighting="none")
    monkeypatch.setattr(mt, "_READ_BLOCK_BYTES", 1024)  # alone: _MIN_BLOCK_ROWS (8) rows per block
    monkeypatch.setattr(mt, "_MIN_READ_BYTES", 0)
    short = stack_master_tile(paths, config, backend="numpy")
    monkeypatch.setattr(mt, "_MIN_READ_BYTES", 32 * 16 * 4)  # 32 rows of 16 float32 per file
    tall = stack_master_tile(paths, config, backend="numpy")
    capped = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=4 * 20 * 40 * 16 * 4)
    assert short.stats["native_bands"] and short.stats["band_rows"] == 8
    assert tall.stats["band_rows"] == 32
    assert capped.stats["band_rows"] <= 20  # the budget still bounds a block
    np.testing.assert_array_equal(tall.image, short.image)
    np.testing.assert_array_equal(capped.image, short.image)


def test_arrays_take_the_same_path(rgb_frames):
    ints = np.round(np.nan_to_num(np.clip(rgb_frames, 0, 60000))).astype(np.uint16)
    ref = stack(ints)
    _same(stack_master_tile(list(ints), backend="numpy", memory_budget_bytes=50_000), ref)
    _same(stack_master_tile(ints, backend="numpy"), ref)  # one (N, H, W, C) array


def test_mixed_paths_and_arrays(tmp_path, mono_frames):
    paths = write_frames(tmp_path, mono_frames[:4])
    result = stack_master_tile(paths + list(mono_frames[4:]), backend="numpy", memory_budget_bytes=40_000)
    _same(result, stack(mono_frames))


def test_alpha_extension_weights_pixels_like_stack_weights(tmp_path, rgb_frames):
    rng = np.random.default_rng(3)
    alpha = rng.integers(0, 256, size=rgb_frames.shape[:3]).astype(np.uint8)
    alpha[:, :, :3] = 0  # a strip no frame covers
    paths = write_frames(tmp_path, rgb_frames, alpha=None)
    paths_alpha = [str(p) for p in write_frames(tmp_path / "a", rgb_frames[:1], alpha=alpha[0])]
    for i in range(1, len(rgb_frames)):
        paths_alpha += write_frames(tmp_path / "a", rgb_frames[i:i + 1], prefix=f"g{i}_", alpha=alpha[i])
    weights = np.clip(alpha.astype(np.float32) / 255.0, 0, 1)
    ref = stack(rgb_frames, weights=weights)
    result = stack_master_tile(paths_alpha, backend="numpy", memory_budget_bytes=30_000)
    _same(result, ref)
    assert np.all(result.alpha[:, :3] == 0) and np.all(np.isnan(result.image[:, :3]))
    assert not np.array_equal(result.image, stack(rgb_frames).image)
    assert stack_master_tile(paths, backend="numpy").stats["n_frames"] == len(paths)


def test_all_nan_frame_is_skipped_and_result_equals_stack_of_the_rest(tmp_path, mono_frames):
    frames = mono_frames.copy()
    frames[2] = np.nan
    paths = write_frames(tmp_path, frames)
    result = stack_master_tile(paths, backend="numpy")
    assert result.stats["skipped_frames"] == [paths[2]]
    assert result.stats["n_frames"] == 7 and result.stats["n_frames_input"] == 8
    _same(result, stack(np.delete(frames, 2, axis=0)))


def test_big_endian_and_uint16_inputs_are_handled(tmp_path, mono_frames):
    ints = np.round(np.nan_to_num(np.clip(mono_frames, 0, 6000)) * 10).astype(np.uint16)
    le = write_frames(tmp_path / "le", ints.astype("<f4"), dtype="<f4")
    u16 = write_frames(tmp_path / "u16", ints, dtype="uint16")
    be = write_frames(tmp_path / "be", ints, dtype=">f8")
    ref = stack(ints)
    for paths in (le, u16, be):
        _same(stack_master_tile(paths, backend="numpy", memory_budget_bytes=40_000), ref)


def test_progress_events(tmp_path, mono_frames):
    events = []
    stack_master_tile(list(mono_frames), backend="numpy", memory_budget_bytes=40_000,
                      progress_callback=lambda *a, **k: events.append((a, k)))
    scan = [e for e in events if e[0][:2] == ("STAGE_PROGRESS", "scan")]
    bands = [e for e in events if e[0][:2] == ("STAGE_PROGRESS", "stack")]
    assert [e[0][2] for e in scan] == list(range(1, 9)) and scan[-1][1]["total"] == 8
    assert bands[-1][0][2] == bands[-1][1]["total"] > 1
    (summary,) = [e for e in events if e[0][0] == "phase3_gpu_chunk_summary"]
    for key in ("upload_ms", "compute_ms", "download_ms", "rows_per_chunk", "total_rows", "n_frames",
                "algo", "duration_s", "used_gpu"):
        assert key in summary[1], key
    assert summary[1]["total_rows"] == 19 and summary[1]["n_frames"] == 8


def test_torch_cpu_backend_is_close(rgb_frames):
    pytest.importorskip("torch")
    ref = stack_master_tile(list(rgb_frames), backend="numpy")
    got = stack_master_tile(list(rgb_frames), backend="torch:cpu", memory_budget_bytes=50_000)
    assert got.stats["backend"] == "torch:cpu" and isinstance(got.image, np.ndarray)
    np.testing.assert_allclose(got.image, ref.image, rtol=1e-5, atol=1e-3)


def test_torch_tensors_as_inputs(rgb_frames):
    torch = pytest.importorskip("torch")
    result = stack_master_tile(torch.from_numpy(rgb_frames), backend="numpy", memory_budget_bytes=50_000)
    _same(result, stack(rgb_frames))


def test_argument_errors(rgb_frames):
    frames = list(rgb_frames)
    with pytest.raises(TypeError, match="`config` must be a StackConfig"):
        stack_master_tile(frames, {"reject": "none"})
    with pytest.raises(ValueError, match="`memory_budget_bytes` must be a positive integer"):
        stack_master_tile(frames, memory_budget_bytes=0)
    with pytest.raises(ValueError, match="pass either `backend=`"):
        stack_master_tile(frames, backend="numpy", gpu_policy=zx.GpuPolicy("cpu"))
    with pytest.raises(ValueError, match="`backend` must be one of"):
        stack_master_tile(frames, backend="metal")


def test_write_master_tile_round_trip_with_provenance(tmp_path, rgb_frames):
    paths = write_frames(tmp_path / "in", rgb_frames, EXPTIME=30.0)
    config = StackConfig(reject="kappa_sigma", kappa_low=2.5, kappa_high=3.5)
    result = stack_master_tile(paths, config, backend="numpy", tile_id=7)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [10.0, 20.0]
    out = write_master_tile(result, tmp_path / "out" / "master_tile_007.fits", wcs=wcs,
                            header={"OBJECT": "M31", "LONG_KEYWORD": 5})
    with fits.open(out) as hdul:
        hdr = hdul[0].header
        assert hdul[0].data.shape == (3, 26, 21) and hdul[0].data.dtype.byteorder in (">", "!")
        np.testing.assert_array_equal(hdul["ALPHA"].data, result.alpha)
    assert hdr["NCOMBINE"] == 9 and hdr["ZMT_TYPE"] == "Master Tile" and hdr["ZMT_ID"] == "7"
    assert (hdr["ZMT_REJ"], hdr["ZMT_NORM"], hdr["ZMT_WGHT"], hdr["ZMT_COMB"]) == (
        "kappa_sigma", "linear_fit", "noise_variance", "mean")
    assert hdr["ZMT_KAPLO"] == 2.5 and hdr["ZMT_KAPHI"] == 3.5 and hdr["ZMT_WINLO"] == 0.05
    assert hdr["ZMT_BACK"] == "numpy" and hdr["ZMT_GPU"] is False
    assert hdr["ZMT_VERS"] == zx.__version__ and hdr["EXPTOTAL"] == 270.0
    assert hdr["CTYPE1"] == "RA---TAN" and hdr["OBJECT"] == "M31" and hdr["LONG_KEYWORD"] == 5
    back = read_frame(out)
    np.testing.assert_array_equal(back.data, result.image)
    np.testing.assert_array_equal(back.alpha, result.alpha / 255.0)
