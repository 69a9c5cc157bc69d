"""Master tiles: FITS streaming vs in-memory ``stack()``, in frame-pixels per second.

Throughput = N·H·W·C / wall time. The streamed run includes both passes over the files
(scan + bands); the page cache is warm after the first round, as it is for a master tile
whose frames were just written by alignment.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_xp import StackConfig, stack, stack_master_tile

N_FRAMES, SHAPE = 96, (192, 192)
CONFIGS = {"default": StackConfig(), "kappa": StackConfig(reject="kappa_sigma")}


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(6)
    return (1000.0 + 10.0 * rng.standard_normal((N_FRAMES, *SHAPE))).astype(np.float32)


@pytest.fixture(scope="module")
def paths(tmp_path_factory, frames):
    folder = tmp_path_factory.mktemp("bench_classic")
    out = []
    for i, frame in enumerate(frames):
        path = folder / f"f{i:03d}.fits"
        fits.PrimaryHDU(frame.astype(">f4")).writeto(path)
        out.append(str(path))
    return out


def _throughput(benchmark) -> None:
    if benchmark.stats is not None:
        benchmark.extra_info["frame_pixels_per_sec"] = N_FRAMES * SHAPE[0] * SHAPE[1] / benchmark.stats["mean"]


@pytest.mark.benchmark(group="classic")
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("budget_mb", [16, 256])
def test_stream_from_fits(benchmark, paths, name, budget_mb):
    result = benchmark(stack_master_tile, paths, CONFIGS[name], backend="numpy",
                       memory_budget_bytes=budget_mb * 2**20)
    benchmark.extra_info["band_rows"] = result.stats["band_rows"]
    _throughput(benchmark)


@pytest.mark.benchmark(group="classic")
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_in_memory_stack(benchmark, frames, name):
    benchmark(stack, frames, config=CONFIGS[name], memory_budget_bytes=256 * 2**20)
    _throughput(benchmark)
