"""Cached kernels loaded without numba's target refresh (backends/numba/cache_load.py).

A fresh process loads every kernel family from the cache without numba's compiler
set-up, and gets, bit for bit, what a process with numba's usual set-up gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

from zemosaic_xp.backends.numba import cache_load, common  # noqa: E402

# Stacks that reach every kernel family: each rejection, the combines, weights and
# normalisation, and 16-bit files read as stored (the master tile).
_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import numba.core.base as base
    from numba.core.registry import cpu_target
    refreshes = [0]
    original = base.BaseContext.refresh
    def counted(self):
        refreshes[0] += 1
        original(self)
    base.BaseContext.refresh = counted
    if sys.argv[2] == "refresh":
        cpu_target.target_context.refresh()  # numba's usual set-up, before any kernel loads
    from astropy.io import fits
    from zemosaic_xp import StackConfig, stack, stack_master_tile
    from zemosaic_xp.backends.numba import numba_kernels
    assert numba_kernels() is not None
    rng = np.random.default_rng(4)
    frames = rng.normal(1000, 10, (12, 18, 20)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.05] += 500
    frames[0, :3] = np.nan
    out = {}
    configs = [dict(reject=r) for r in ("none", "kappa_sigma", "winsorized_sigma_clip", "winsorized_quantile",
                                         "linear_fit_clip", "percentile", "mad", "gesd", "minmax", "auto")]
    configs += [dict(reject="none", combine="median"), dict(reject="kappa_sigma", combine="sum"),
                dict(reject="winsorized_sigma_clip", wsc_impl="zemosaic"),
                dict(reject="kappa_sigma", weighting="noise_variance", normalize="multiplicative")]
    for i, kw in enumerate(configs):
        r = stack(frames, config=StackConfig.plain(**kw))
        out[f"{i}_image"], out[f"{i}_se"] = r.image, r.uncertainty
    paths = []
    for k in range(12):
        paths.append(os.path.join(sys.argv[1], f"f{k}.fits"))
        if not os.path.exists(paths[-1]):
            data = np.clip(frames[k] - 900, 0, 60000).astype(np.uint16)
            fits.PrimaryHDU(data).writeto(paths[-1])
    tile = stack_master_tile(paths, StackConfig.plain(reject="kappa_sigma"), backend="numpy")
    assert tile.stats.get("stored_bands"), tile.stats
    out["tile"] = tile.image
    np.savez(os.path.join(sys.argv[1], sys.argv[2] + ".npz"), **out)
    print(json.dumps({"refreshes": refreshes[0]}))
""")


def _run(tmp_path, mode: str) -> int:
    env = {**os.environ, "ZEMOSAIC_XP_NUMBA": "1"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path), mode], capture_output=True, text=True,
                          timeout=900, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["refreshes"]


def test_kernels_load_from_the_cache_without_a_refresh_and_give_the_same_bits(tmp_path):
    if not common.cache_enabled:
        pytest.skip("numba cannot write a cache here: every process compiles")
    _run(tmp_path, "refresh")  # numba's usual set-up (and the cache warmed where it was cold)
    if cache_load.CHECKED_VERSIONS[0] <= cache_load._version() < cache_load.CHECKED_VERSIONS[1]:
        assert _run(tmp_path, "fast") == 0  # every kernel came from the cache, none refreshed numba's target
    else:
        _run(tmp_path, "fast")
    usual, fast = np.load(tmp_path / "refresh.npz"), np.load(tmp_path / "fast.npz")
    assert sorted(usual.files) == sorted(fast.files)
    for name in usual.files:
        np.testing.assert_array_equal(fast[name], usual[name], err_msg=name)


def test_only_cached_dispatchers_of_checked_versions_change(monkeypatch):
    import numba

    def kernel(x):
        return x + 1

    cached = numba.njit(cache=True)(kernel)
    plain = numba.njit(kernel)
    assert type(cache_load.fast_cache_load(plain)._cache).__name__ == "NullCache"  # no cache: untouched
    monkeypatch.setattr(cache_load, "CHECKED_VERSIONS", ((0, 0), (0, 1)))
    assert type(cache_load.fast_cache_load(cached)._cache).__name__ == "FunctionCache"  # another numba
    monkeypatch.undo()
    fast = cache_load.fast_cache_load(numba.njit(cache=True)(kernel))
    checked = cache_load.CHECKED_VERSIONS[0] <= cache_load._version() < cache_load.CHECKED_VERSIONS[1]
    assert type(fast._cache).__name__ == ("FastLoadFunctionCache" if checked else "FunctionCache")
    assert fast(1) == 2
