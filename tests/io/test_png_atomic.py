"""The dependency-free PNG writer and the atomic-replace helper."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from zemosaic_xp.io.atomic import atomic_path
from zemosaic_xp.io.png import write_png


def _decode(data: bytes) -> tuple[int, int, int, np.ndarray]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, _, colour, *_ = ihdr
    channels = 3 if colour == 2 else 1
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    assert np.all(rows[:, 0] == 0)
    return width, height, colour, rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
def test_png_round_trip(tmp_path, shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    path = write_png(tmp_path / "p.png", pixels)
    width, height, colour, decoded = _decode(path.read_bytes())
    assert (height, width) == shape[:2] and colour == (2 if len(shape) == 3 else 0)
    np.testing.assert_array_equal(decoded.reshape(shape), pixels)


def test_png_rejects_bad_pixels(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "p.png", np.zeros((3, 3), np.float32))


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
