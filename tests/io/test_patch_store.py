"""``PatchStore``: a spilled store gives the same bands as one in RAM, read from many threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import zemosaic_xp.io.patch_store as patch_store
from zemosaic_xp.io.patch_store import PatchStore

BOXES = [(0, 30, 0, 40), (5, 38, 10, 50), (12, 40, 3, 33)]
SHAPE = (40, 50)


def _fill(store, rng):
    for k, (y0, y1, x0, x1) in enumerate(BOXES):
        patch = rng.normal(100, 5, (y1 - y0, x1 - x0, 2)).astype(np.float32)
        patch[rng.random(patch.shape) < 0.1] = np.nan
        store.put(k, patch, rng.uniform(0, 1, (y1 - y0, x1 - x0)).astype(np.float32))


@pytest.mark.parametrize("preadv", [True, False], ids=["preadv", "seek-and-read"])
def test_spilled_bands_read_from_threads_equal_the_bands_in_ram(tmp_path, monkeypatch, preadv):
    if preadv and not patch_store._PREADV:
        pytest.skip("no os.preadv on this platform")
    monkeypatch.setattr(patch_store, "_PREADV", preadv)
    with PatchStore(BOXES, SHAPE, 2, budget_bytes=1 << 30, scratch_dir=tmp_path) as ram, \
            PatchStore(BOXES, SHAPE, 2, budget_bytes=1, scratch_dir=tmp_path) as disk:
        assert disk.spilled and not ram.spilled
        _fill(ram, np.random.default_rng(0))
        _fill(disk, np.random.default_rng(0))
        bands = [(r, min(SHAPE[0], r + 3)) for r in range(0, SHAPE[0], 3)] * 4
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda b: disk.band(*b, [0, 1, 2], 2, 45), bands))
        for (r0, r1), (values, weights) in zip(bands, got):
            want_v, want_w = ram.band(r0, r1, [0, 1, 2], 2, 45)
            assert values.tobytes() == want_v.tobytes() and weights.tobytes() == want_w.tobytes()
    assert not any(p.name.startswith(".patches_") for p in tmp_path.iterdir())


def test_a_truncated_scratch_file_is_an_error(tmp_path):
    with PatchStore(BOXES, SHAPE, 2, budget_bytes=1, scratch_dir=tmp_path) as disk:
        _fill(disk, np.random.default_rng(1))
        disk._fh.truncate(100)
        with pytest.raises(OSError, match="shorter than expected"):
            disk.band(0, 40, [0, 1, 2])
