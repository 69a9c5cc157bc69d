"""Master-tile inputs: opening, validation errors that name the file, band reads."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp.io import FitsFrameSource, FitsReadError
from zemosaic_xp.io.bands import ArraySource, BandReader, FitsSource, open_sources, read_band

from ..classic.helpers import write_frame


@pytest.fixture
def rgb():
    return np.random.default_rng(0).normal(100.0, 5.0, size=(13, 7, 3)).astype(np.float32)


def test_missing_file_is_named(tmp_path, rgb):
    good = write_frame(tmp_path / "a.fits", rgb)
    with pytest.raises(FileNotFoundError, match="missing_007.fits"):
        open_sources([good, tmp_path / "missing_007.fits"])


def test_corrupt_file_is_named(tmp_path, rgb):
    good = write_frame(tmp_path / "a.fits", rgb)
    bad = tmp_path / "corrupt.fits"
    bad.write_bytes(b"SIMPLE  = nonsense" * 300)
    with pytest.raises(FitsReadError, match="corrupt.fits"):
        open_sources([good, bad])


def test_shape_mismatch_names_both_files_and_shapes(tmp_path, rgb):
    a = write_frame(tmp_path / "a.fits", rgb)
    b = write_frame(tmp_path / "b.fits", rgb[:10])
    expected = r"'.*b\.fits' has frame shape \(10, 7, 3\); expected \(13, 7, 3\) like '.*a\.fits'"
    with pytest.raises(ValueError, match=expected):
        open_sources([a, b])
    mono = write_frame(tmp_path / "m.fits", rgb[..., 0])
    with pytest.raises(ValueError, match=r"m\.fits' has frame shape \(13, 7\)"):
        open_sources([a, mono])


def test_empty_and_wrong_inputs():
    with pytest.raises(ValueError, match="`inputs` is empty"):
        open_sources([])
    with pytest.raises(TypeError, match="expected a FITS path or an"):
        open_sources([3.0])
    with pytest.raises(TypeError, match="inputs\\[0\\] has dtype bool"):
        open_sources([np.zeros((4, 4), bool)])
    with pytest.raises(ValueError, match="inputs\\[0\\] has shape \\(4,\\)"):
        open_sources([np.zeros(4)])


def test_a_path_listed_again_is_opened_once(tmp_path, rgb, caplog, monkeypatch):
    # issue 15, case 10: a repeated frame counted twice in coverage, weights and rejection
    monkeypatch.chdir(tmp_path)
    a = write_frame(tmp_path / "a.fits", rgb)
    b = write_frame(tmp_path / "b.fits", rgb + 1)
    (tmp_path / "link.fits").symlink_to(a)
    with caplog.at_level("WARNING", logger="zemosaic_xp.io"):
        sources = open_sources([a, "./b.fits", "a.fits", rgb, b, "link.fits", rgb])
    assert [s.name for s in sources] == [str(a), "./b.fits", "inputs[3]", "inputs[6]"]  # arrays are never merged
    (record,) = caplog.records
    assert record.getMessage() == (f"[P3] the inputs list 2 frame(s) more than once; each is stacked once: "
                                   f"'{a}' (inputs 0, 2, 5: '{a}', 'a.fits', 'link.fits'); "
                                   f"'./b.fits' (inputs 1, 4: './b.fits', '{b}')")


def test_distinct_inputs_raise_no_warning(tmp_path, rgb, caplog):
    paths = [write_frame(tmp_path / f"{i}.fits", rgb) for i in range(3)]
    with caplog.at_level("WARNING"):
        assert len(open_sources(paths)) == 3
    assert caplog.records == []


@pytest.mark.parametrize("dtype", [">f4", "<f4", ">f8", ">i2", "uint16"])
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
def test_byte_orders_integer_types_and_layouts_are_read_as_native_float32(tmp_path, rgb, dtype, layout):
    data = np.round(rgb * 100).astype(np.float64)  # integers fit int16/uint16 scaled by astropy
    path = write_frame(tmp_path / "x.fits", data, layout=layout, dtype=dtype)
    (source,) = open_sources([path])
    rows = source.read_rows(2, 9)
    assert rows.dtype == np.float32 and rows.dtype.isnative and rows.shape == (7, 7, 3)
    np.testing.assert_array_equal(rows, data[2:9].astype(np.float32))
    if dtype == "uint16":
        assert fits.getheader(path)["BZERO"] == 32768  # astropy stored int16 + BZERO


def test_uint16_values_above_int16_range(tmp_path):
    raw = np.array([[0, 1000, 40000], [65535, 2, 3]], dtype=np.uint16)
    fits.PrimaryHDU(data=raw).writeto(tmp_path / "u.fits")
    (source,) = open_sources([tmp_path / "u.fits"])
    assert source.mono and source.frame_shape == (2, 3)
    np.testing.assert_array_equal(source.read_rows(0, 2)[..., 0], raw.astype(np.float32))


def test_alpha_rows_equal_whole_alpha(tmp_path, rgb):
    alpha = np.random.default_rng(1).integers(0, 256, size=(13, 7)).astype(np.uint8)
    path = write_frame(tmp_path / "a.fits", rgb, alpha=alpha)
    whole = FitsFrameSource(path).read_alpha()
    source = FitsSource(path)
    assert source.has_alpha
    for r0, r1 in [(0, 13), (0, 1), (5, 9), (12, 13)]:
        np.testing.assert_array_equal(source.read_alpha_rows(r0, r1), whole[r0:r1])


def test_alpha_rows_of_a_per_channel_alpha(tmp_path, rgb):
    alpha = np.random.default_rng(2).integers(0, 256, size=(3, 13, 7)).astype(np.uint8)
    path = tmp_path / "c.fits"
    fits.HDUList([fits.PrimaryHDU(np.moveaxis(rgb, -1, 0)), fits.ImageHDU(alpha, name="ALPHA")]).writeto(path)
    np.testing.assert_array_equal(FitsFrameSource(path).read_alpha_rows(3, 8),
                                  FitsFrameSource(path).read_alpha()[3:8])


def test_array_source_converts_like_stack(rgb):
    ints = np.arange(12, dtype=np.uint16).reshape(3, 4)
    src = ArraySource(ints, "inputs[0]")
    out = src.read_rows(1, 3)
    assert out.shape == (2, 4, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], ints[1:3].astype(np.float32))
    bad = rgb.copy()
    bad[0, 0, 0] = np.inf
    assert np.isnan(ArraySource(bad, "x").read_rows(0, 1)[0, 0, 0])


def test_read_band_puts_frames_last_and_alpha_weights(tmp_path, rgb):
    alpha = np.full((13, 7), 255, np.uint8)
    alpha[4, :] = 0
    paths = [write_frame(tmp_path / "a.fits", rgb, alpha=alpha), write_frame(tmp_path / "b.fits", rgb + 1)]
    sources = open_sources(paths + [rgb + 2])
    band, weights = read_band(sources, 3, 6, alpha=True)
    assert band.shape == (3, 7, 3, 3) and weights.shape == (3, 7, 1, 3)
    for i, offset in enumerate((0, 1, 2)):
        np.testing.assert_array_equal(band[..., i], rgb[3:6] + offset)
    assert np.all(weights[1, :, 0, 0] == 0) and np.all(weights[0, :, 0, 0] == 1)
    assert np.all(weights[..., 1:] == 1)  # frames without ALPHA weigh 1
    assert read_band(sources, 0, 2, alpha=False)[1] is None


def test_single_stack_array_is_split_into_frames(rgb):
    sources = open_sources(np.stack([rgb, rgb]))
    assert len(sources) == 2 and sources[1].name == "inputs[1]"


@pytest.mark.parametrize(("block_bytes", "band_rows", "reads"), [(1, 2, 7), (10**9, 2, 1), (3 * 7 * 4 * 4 * 5, 1, 3)])
def test_band_reader_serves_bands_from_blocks(tmp_path, rgb, block_bytes, band_rows, reads):
    alpha = np.random.default_rng(4).integers(0, 256, size=(13, 7)).astype(np.uint8)
    sources = open_sources([write_frame(tmp_path / "a.fits", rgb, alpha=alpha), rgb + 1, rgb + 2])
    reader = BandReader(sources, alpha=True, block_bytes=block_bytes)
    for r0 in range(0, 13, band_rows):
        r1 = min(13, r0 + band_rows)
        band, weights = reader.band(r0, r1)
        ref_band, ref_weights = read_band(sources, r0, r1, alpha=True)
        np.testing.assert_array_equal(band, ref_band)
        np.testing.assert_array_equal(weights, ref_weights)
    assert reader.reads == reads


@pytest.mark.parametrize(("block_bytes", "band_rows", "reads"), [(1, 2, 7), (10**9, 2, 1), (3 * 7 * 3 * 4 * 5, 1, 3)])
def test_band_reader_without_weights_serves_views_of_frames_first_blocks(tmp_path, rgb, block_bytes, band_rows,
                                                                         reads):
    # For a GPU session, without weights: blocks are read frames first (each frame's rows
    # written contiguously); a band is their frames-last view, the same values as read_band's.
    sources = open_sources([write_frame(tmp_path / "a.fits", rgb), rgb + 1, rgb + 2])
    reader = BandReader(sources, alpha=False, block_bytes=block_bytes, frames_first=True)
    assert BandReader(sources, alpha=False, block_bytes=block_bytes).band(0, 1)[0].flags.c_contiguous  # CPU
    for r0 in range(0, 13, band_rows):
        r1 = min(13, r0 + band_rows)
        band, weights = reader.band(r0, r1)
        ref_band, _ = read_band(sources, r0, r1, alpha=False)
        assert weights is None and band.shape == ref_band.shape
        np.testing.assert_array_equal(band, ref_band)
        assert np.shares_memory(band, reader._band)  # a view: no copy on the host
    assert reader.reads == reads


def test_gpu_session_uploads_a_strided_band_as_stored():
    # A GPU session sends the frames-first block as it lies in memory and transposes it on
    # the device: here the fault injector's NumPy "GPU", where no copy is made at all.
    from zemosaic_xp.backends import select_backend
    from zemosaic_xp.gpu.session import DeviceSession
    from zemosaic_xp.gpu.testing import FaultInjector

    block = np.random.default_rng(5).normal(size=(4, 6, 5, 3)).astype(np.float32)  # (N, rows, W, C)
    band = np.moveaxis(block, 0, -1)  # a whole block's strided (rows, W, C, N) view
    gpu = DeviceSession(FaultInjector().backend, attempt=1, budget_bytes=10**6, rows=None)
    got = gpu.upload(band)
    np.testing.assert_array_equal(np.asarray(got), band)
    assert np.shares_memory(np.asarray(got), block)
    cpu = DeviceSession(select_backend("numpy"), attempt=0, budget_bytes=10**6, rows=None)
    np.testing.assert_array_equal(cpu.upload(band), band)
    part = np.moveaxis(block[:, 1:5], 0, -1)  # part of a block: copied in memory order, then permuted
    got = gpu.upload(part)
    np.testing.assert_array_equal(np.asarray(got), part)
    assert np.moveaxis(np.asarray(got), -1, 0).flags.c_contiguous and not np.shares_memory(np.asarray(got), block)

