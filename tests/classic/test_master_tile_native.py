"""Master tiles through the native read path (issue 13): FITS bytes → frames-first bands → kernel.

The native path must give exactly what the core's band path gives (and what ``stack()``
gives in memory), for every configuration it takes, whatever the budget; frames that
need no statistic are not read by the scan.
"""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_xp import StackConfig, stack, stack_master_tile
from zemosaic_xp.backends.numba import numba_kernels
from zemosaic_xp.classic import scan as scan_module
from zemosaic_xp.core.ops import portable_only
from zemosaic_xp.synthetic import make_stack

from .helpers import write_frames

pytestmark = pytest.mark.skipif(numba_kernels() is None, reason="the native band kernels need numba")

CONFIGS = [
    StackConfig(normalize="none", weighting="none", reject="kappa_sigma"),
    StackConfig(normalize="none", weighting="none", reject="winsorized_sigma_clip", combine="median"),
    StackConfig(normalize="none", weighting="none", reject="none", combine="max"),
    StackConfig(normalize="linear_fit", weighting="none", reject="kappa_sigma"),
    StackConfig(normalize="none", weighting="none", reject="percentile", combine="sum"),
    StackConfig(normalize="none", weighting="none", reject="mad", combine="min"),
    StackConfig(normalize="none", weighting="none", reject="minmax", combine="median"),
    StackConfig(normalize="none", weighting="none", reject="gesd"),
    StackConfig(normalize="linear_fit", weighting="none", reject="linear_fit_clip"),
    StackConfig(normalize="none", weighting="none", reject="winsorized_quantile", winsor_rewinsor=True),
    # Weighted (issue 13): the default config (quality weights, WSC), radial weights.
    StackConfig(),
    StackConfig(reject="kappa_sigma", combine="median", radial_weight=True),
    StackConfig(normalize="linear_fit", reject="linear_fit_clip", combine="sum", radial_weight=True),
]


@pytest.fixture(scope="module")
def uint16_paths(tmp_path_factory):
    # Camera frames: BITPIX 16 with BZERO 32768 (astropy writes uint16 that way).
    frames = make_stack(n_frames=9, shape=(37, 29), seed=5, rgb=True, nan_region=False).frames
    frames = np.clip(np.rint(frames), 0, 65535).astype(np.uint16)
    folder = tmp_path_factory.mktemp("u16")
    return frames, write_frames(folder, frames, dtype="uint16", layout="CHW")


@pytest.fixture(scope="module")
def float_paths(tmp_path_factory):
    frames = make_stack(n_frames=7, shape=(33, 21), seed=6).frames  # with a NaN region
    return frames, write_frames(tmp_path_factory.mktemp("f32"), frames)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.normalize}-{c.reject}-{c.combine}")
@pytest.mark.parametrize("data", ["uint16_paths", "float_paths"])
def test_native_path_equals_the_core_path_and_stack(request, data, config):
    frames, paths = request.getfixturevalue(data)
    native = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=20_000)
    with portable_only():
        core = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=20_000)
    assert native.stats.get("native_bands") is True and "native_bands" not in core.stats
    assert native.stats["n_bands"] > 1  # several blocks, several sub-bands
    np.testing.assert_array_equal(native.image, core.image)
    np.testing.assert_array_equal(native.coverage, core.coverage)
    # The core sums squared deviations in float32 chunks, the kernels in float64 (core/uncertainty.py).
    np.testing.assert_allclose(native.uncertainty, core.uncertainty, rtol=1e-5, equal_nan=True)
    assert native.stats["rejected_pct"] == core.stats["rejected_pct"]
    in_memory = stack(frames.astype(np.float32), config=config)
    np.testing.assert_array_equal(native.image, in_memory.image)


def test_native_path_does_not_depend_on_the_budget(uint16_paths):
    _, paths = uint16_paths
    config = CONFIGS[0]
    small = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=40_000)
    large = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=1 << 30)
    assert small.stats["n_bands"] > large.stats["n_bands"] == 1
    np.testing.assert_array_equal(small.image, large.image)
    np.testing.assert_array_equal(small.coverage, large.coverage)


def test_frames_that_need_no_statistic_are_not_read_by_the_scan(uint16_paths, monkeypatch):
    _, paths = uint16_paths
    expected = stack_master_tile(paths, CONFIGS[1], backend="numpy")

    def refuse(*args, **kwargs):
        raise AssertionError("the scan read a frame although the plan needs no statistic")

    monkeypatch.setattr(scan_module, "_read_frame_once", refuse)
    got = stack_master_tile(paths, CONFIGS[1], backend="numpy")
    np.testing.assert_array_equal(got.image, expected.image)
    with pytest.raises(AssertionError, match="the scan read a frame"):
        stack_master_tile(paths, CONFIGS[3], backend="numpy")  # linear_fit needs sub-samples


@pytest.mark.parametrize("budget", [20_000, 200_000, 1 << 30])
def test_radial_weights_come_from_the_whole_frame_in_every_band(tmp_path, budget):
    # issue 16: the band driver passes each band's first row and the frame height, so the
    # radial map of a streamed master tile is the frame's, whatever the band size.
    frames = make_stack(n_frames=7, shape=(37, 29), seed=5, rgb=True).frames
    paths = write_frames(tmp_path, frames)
    config = StackConfig(radial_weight=True)
    expected = stack(frames, config=config)
    got = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=budget)
    np.testing.assert_array_equal(got.image, expected.image)


@pytest.fixture(scope="module")
def stored_paths(tmp_path_factory):
    # 16-bit frames the kernels read as stored: mono camera frames (BZERO 32768),
    # interleaved RGB, and 50 signed frames with BSCALE/BZERO (NumPy's sort, N > 48).
    folder = tmp_path_factory.mktemp("stored")
    rng = np.random.default_rng(8)
    mono = np.clip(np.rint(make_stack(n_frames=9, shape=(41, 23), seed=9, nan_region=False).frames), 0, 65535)
    mono[:, 3, :5] = 65535  # saturated
    rgb = np.clip(np.rint(make_stack(n_frames=6, shape=(19, 17), seed=10, rgb=True, nan_region=False).frames),
                  0, 65535)
    scaled = rng.normal(0, 300, (50, 21, 18)).astype(">i2")
    paths = {"mono": write_frames(folder / "m", mono.astype(np.uint16), dtype="uint16"),
             "hwc": write_frames(folder / "h", rgb.astype(np.uint16), dtype="uint16", layout="HWC"),
             "scaled": write_frames(folder / "s", scaled, dtype=">i2", BSCALE=0.25, BZERO=1000.0)}
    return paths


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.normalize}-{c.weighting}-{c.reject}-{c.combine}")
@pytest.mark.parametrize("kind", ["mono", "hwc", "scaled"])
def test_stored_16_bit_files_give_the_converted_files_result(stored_paths, kind, config, monkeypatch):
    from zemosaic_xp.classic import master_tile

    paths = stored_paths[kind]
    stored = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=30_000)
    monkeypatch.setattr(master_tile, "stored_scalings", lambda sources: None)
    converted = stack_master_tile(paths, config, backend="numpy", memory_budget_bytes=30_000)
    assert stored.stats["stored_bands"] is True and converted.stats["stored_bands"] is False
    assert stored.stats["n_bands"] > 1
    for name in ("image", "coverage", "uncertainty"):
        assert getattr(stored, name).tobytes() == getattr(converted, name).tobytes(), name
    assert stored.stats["rejected_pct"] == converted.stats["rejected_pct"]


def test_per_pixel_uncertainty_weights_keep_the_converting_read(stored_paths, tmp_path):
    # weighting="uncertainty" reads each file's UNCERT rows beside its pixels: no stored read.
    from astropy.io import fits

    paths = []
    for i, path in enumerate(stored_paths["mono"][:4]):
        with fits.open(path) as hdul:
            data = hdul[0].data
            hdus = fits.HDUList([fits.PrimaryHDU(data, hdul[0].header),
                                 fits.ImageHDU(np.full(data.shape, 3.0 + i, np.float32), name="UNCERT")])
            hdus[1].header["UTYPE"] = "StdDevUncertainty"
            paths.append(str(tmp_path / f"u{i}.fits"))
            hdus.writeto(paths[-1])
    result = stack_master_tile(paths, StackConfig(weighting="uncertainty"), backend="numpy")
    assert result.stats.get("stored_bands") is not True
