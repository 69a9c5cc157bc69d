"""Benchmark matrix: cases (N, H, W, C), backends, and the data each case stacks.

Two sizes of matrix, chosen when the tests are collected:

- **quick** (default, and always with ``--benchmark-disable``): tiny stacks, so the
  whole ``benchmarks/`` directory runs in a few seconds in CI and never rots. Every
  benchmark still runs its function once and checks its result.
- **full** (``ZEMOSAIC_BENCH_FULL=1``): the matrix of ``docs/performance.md`` — N = 8,
  32, 128 frames of 512², 32 × 1024², RGB, and 2048² — 5 to 10 minutes on 2 CPU cores. The slow
  references are trimmed where they would take minutes or exhaust the RAM (see
  ``Case.references``).

``ZEMOSAIC_BENCH_CASES=m32_512,rgb32_512`` narrows either matrix to the named cases, and
``ZEMOSAIC_BENCH_ROUNDS=7`` overrides the rounds of every benchmark (the minimum over
more rounds is steadier on a busy machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pytest


@dataclass(frozen=True)
class Case:
    """One stack shape and which references run on it."""

    name: str
    n_frames: int
    height: int
    width: int
    channels: int = 1
    references: tuple[str, ...] = ("astropy", "ccdproc", "nanmedian")
    algorithms: tuple[str, ...] = ("kappa_sigma", "winsorized_sigma_clip", "median")
    torch_cpu: bool = True
    rounds: int = 3
    tags: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, ...]:
        frame = (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)
        return (self.n_frames,) + frame

    @property
    def frame_pixels(self) -> int:
        return self.n_frames * self.height * self.width * self.channels

    @property
    def stack_bytes(self) -> int:
        return 4 * self.frame_pixels


QUICK_CASES = (
    Case("quick_m8", 8, 64, 48, rounds=1),
    Case("quick_rgb5", 5, 40, 32, 3, references=("astropy", "nanmedian"), rounds=1),
)

FULL_CASES = (
    Case("m8_512", 8, 512, 512),
    Case("m32_512", 32, 512, 512),
    Case("m128_512", 128, 512, 512, rounds=2),
    # The headline case of the CPU targets (issue #4).
    Case("m32_1024", 32, 1024, 1024, rounds=3),
    Case("rgb32_512", 32, 512, 512, 3, references=("astropy", "nanmedian"), rounds=2),
    Case("m32_2048", 32, 2048, 2048, rounds=1),
    # 2.1 GB of frames: astropy would need ~9 GB and ~15 s, ccdproc ~17 GB, and
    # np.nanmedian ~30 s, so only our NumPy path runs here.
    Case("m128_2048", 128, 2048, 2048, references=(), algorithms=("kappa_sigma", "median"),
         torch_cpu=False, rounds=1),
)

BACKENDS = ("numpy", "torch:cpu", "cupy", "torch:cuda")


def full_matrix(config: pytest.Config) -> bool:
    """True when the full matrix was asked for and benchmarks are really timed."""
    if config.getoption("benchmark_disable", default=False):
        return False
    return os.environ.get("ZEMOSAIC_BENCH_FULL", "") == "1"


def selected_cases(config: pytest.Config) -> tuple[Case, ...]:
    cases = FULL_CASES if full_matrix(config) else QUICK_CASES
    wanted = [c.strip() for c in os.environ.get("ZEMOSAIC_BENCH_CASES", "").split(",") if c.strip()]
    if wanted:
        known = {c.name: c for c in FULL_CASES + QUICK_CASES}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            msg = (f"ZEMOSAIC_BENCH_CASES names unknown case(s) {unknown}; "
                   f"valid: {', '.join(sorted(known))}")
            raise pytest.UsageError(msg)
        cases = tuple(known[w] for w in wanted)
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = selected_cases(metafunc.config)
        metafunc.parametrize("case", cases, ids=[c.name for c in cases], scope="module")


def make_frames(case: Case, seed: int = 0) -> np.ndarray:
    """A sky-like stack: gradient + Gaussian noise, 0.2 % cosmic rays, 1 % NaN samples.

    float32, shape ``case.shape``; deterministic for a seed. Built frame by frame so
    that 2 GB stacks need no float64 temporaries.
    """
    rng = np.random.default_rng(seed)
    frame_shape = case.shape[1:]
    ramp = np.linspace(-50.0, 50.0, case.width, dtype=np.float32)
    base = 1000.0 + (ramp[None, :] if case.channels == 1 else ramp[None, :, None])
    frames = np.empty(case.shape, dtype=np.float32)
    for i in range(case.n_frames):
        frame = frames[i]
        rng.standard_normal(frame_shape, dtype=np.float32, out=frame)
        frame *= 10.0
        frame += base
        hits = rng.random(frame_shape, dtype=np.float32)
        frame[hits < 0.002] += 300.0 + 3000.0 * hits[hits < 0.002] / 0.002
        frame[hits > 0.99] = np.nan
    return frames


_DATA: dict[str, np.ndarray] = {}


@pytest.fixture(scope="module")
def frames(case: Case) -> np.ndarray:
    """The case's stack on the host (cached; one large case at a time)."""
    if case.name not in _DATA:
        for name in [k for k in _DATA if k != case.name]:
            del _DATA[name]
        _DATA[case.name] = make_frames(case)
    return _DATA[case.name]
