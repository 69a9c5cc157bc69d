"""``auto``: ``mad`` where a pixel has 3 valid samples, ``gesd`` from 4, nothing below 3."""

from __future__ import annotations

import numpy as np

from tests.conftest import host, on
from tests.core.reject.stacks import stack_column
from zemosaic_xp import StackConfig, stack


def test_auto_known_answers(backend):
    # N = 3: mad. Median 11, |dev| 1 0 89 -> MAD 1, σ 1.48, 100 goes; 10 and 11 stay (mean 10.5).
    image, low, high, cov, _ = stack_column(backend, [10, 11, 100], reject="auto")
    assert (image, low, high, cov) == (10.5, 0, 1, 2)
    # N = 2: nothing can be told apart.
    image, low, high, cov, _ = stack_column(backend, [10, 100], reject="auto")
    assert (image, low, high, cov) == (55.0, 0, 0, 2)
    # N = 6: gesd removes the lone hit, keeps the rest (mean of 10..14 = 12).
    image, low, high, cov, _ = stack_column(backend, [10, 11, 12, 13, 14, 100], reject="auto")
    assert (image, low, high, cov) == (12.0, 0, 1, 5)


def _varying_depth():
    rng = np.random.default_rng(21)
    frames = rng.normal(1000.0, 10.0, (9, 12, 20)).astype(np.float32)
    frames[0, ::2, ::2] += 600.0
    frames[1, ::4, ::4] += 900.0
    frames[3:, :, :5] = np.nan      # depth 3
    frames[2:, :, 5:8] = np.nan     # depth 2
    frames[1:, :, 8:10] = np.nan    # depth 1
    frames[5:, :, 10:13] = np.nan   # depth 5; depth 9 from column 13
    frames[:, 0, 19] = np.nan       # no data
    return frames


def test_auto_is_mad_at_three_samples_and_gesd_above(backend):
    frames = _varying_depth()
    results = {name: stack(on(backend, frames), config=StackConfig.plain(reject=name))
               for name in ("auto", "mad", "gesd")}
    image = {k: host(r.image) for k, r in results.items()}
    high = {k: host(r.rejected_high) for k, r in results.items()}
    n_valid = np.isfinite(frames).sum(axis=0)
    three, deep = n_valid == 3, n_valid >= 4
    np.testing.assert_array_equal(image["auto"][three], image["mad"][three])
    np.testing.assert_array_equal(high["auto"][three], high["mad"][three])
    np.testing.assert_array_equal(image["auto"][deep], image["gesd"][deep])
    np.testing.assert_array_equal(high["auto"][deep], high["gesd"][deep])
    assert (high["auto"][n_valid <= 2] == 0).all()
    assert np.isnan(image["auto"][0, 19]) and int(host(results["auto"].coverage)[0, 19]) == 0
    # every lone hit is gone where 3 or more frames overlap
    lone = np.zeros(n_valid.shape, dtype=bool)
    lone[::2, ::2] = True
    lone[::4, ::4] = False
    assert (high["auto"][lone & (n_valid >= 3)] == 1).all()


def test_auto_does_not_depend_on_the_band_size():
    frames = _varying_depth()
    config = StackConfig(reject="auto")
    a = stack(frames, config=config, memory_budget_bytes=2048)
    b = stack(frames, config=config, memory_budget_bytes=1 << 26)
    for name in ("image", "coverage", "weight_sum", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
