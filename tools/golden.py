"""Golden hashes of stack(), master-tile and grid outputs: proof that a refactor changed no result.

Usage::

    python tools/golden.py write tools/golden_hashes.json   # before a change
    python tools/golden.py check tools/golden_hashes.json   # after it: exit 1 on any difference

Each case hashes the raw bytes (SHA-256) of every output array, so "same hash" means
bit-identical. The cases cover every rejection and combine on NumPy (with and without
the numba kernels), torch on the CPU and array-api-strict, user and per-pixel weights,
NaN inputs, RGB, master tiles read from FITS, and a grid mosaic. Hashes depend on the
CPU's SIMD paths, so compare on one machine; this is a developer tool, not a CI test.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# Import the checkout this script lives in, not whatever is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REJECTS = ("none", "kappa_sigma", "winsorized_sigma_clip", "winsorized_quantile", "linear_fit_clip",
           "percentile", "mad", "gesd", "minmax")
COMBINES = ("mean", "median", "sum", "min", "max")


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        if a.dtype.kind in "iu":
            # Counts are compared by value: the portable path used to return the default
            # integer (int64) where the documented dtype is int32.
            a = a.astype(np.int64)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def _to_numpy(a):
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _result_digest(r) -> str:
    return _digest(*(_to_numpy(getattr(r, n)) for n in
                     ("image", "weight_sum", "coverage", "rejected_low", "rejected_high")))


def _frames(rgb: bool, seed: int, n: int = 9):
    import zemosaic_xp as zx

    frames = zx.synthetic.make_stack(n_frames=n, shape=(48, 40), seed=seed, rgb=rgb).frames.astype(np.float32)
    frames[1, 3:7, 5:9] = np.nan
    frames[:, 0, 0] = np.nan
    return frames


def stack_cases() -> dict[str, str]:
    import zemosaic_xp as zx

    out: dict[str, str] = {}
    backends = ["numpy", "torch:cpu", "array_api_strict"]
    for rgb in (False, True):
        frames = _frames(rgb, 3)
        for reject in REJECTS:
            for backend in backends:
                cfg = zx.StackConfig(reject=reject)
                r = zx.stack(frames, config=cfg, backend=backend)
                out[f"stack/{'rgb' if rgb else 'mono'}/{reject}/{backend}"] = _result_digest(r)
                r = zx.stack(frames, config=cfg, backend=backend, memory_budget_bytes=40_000)
                out[f"stack/{'rgb' if rgb else 'mono'}/{reject}/{backend}/bands"] = _result_digest(r)
        for combine in COMBINES:
            cfg = zx.StackConfig(reject="kappa_sigma", combine=combine, normalize="median")
            out[f"stack/{'rgb' if rgb else 'mono'}/combine-{combine}"] = _result_digest(zx.stack(frames, config=cfg))
    frames = _frames(False, 5, n=12)
    rng = np.random.default_rng(1)
    pix_w = rng.uniform(0.2, 1.0, size=frames.shape).astype(np.float32)
    for reject in REJECTS:
        cfg = zx.StackConfig(reject=reject, normalize="additive_scaling", weighting="none", radial_weight=True)
        out[f"stack/pixel-weights/{reject}"] = _result_digest(zx.stack(frames, config=cfg, weights=pix_w))
        out[f"stack/frame-weights/{reject}"] = _result_digest(
            zx.stack(frames, config=zx.StackConfig(reject=reject), weights=np.linspace(0.5, 1.5, 12)))
    for impl in ("pixinsight", "zemosaic"):
        cfg = zx.StackConfig(wsc_impl=impl, rgb_equalize=True)
        out[f"stack/wsc-{impl}/rgb-eq"] = _result_digest(zx.stack(_frames(True, 8), config=cfg))
    return out


def master_tile_cases(tmp: Path) -> dict[str, str]:
    from astropy.io import fits

    import zemosaic_xp as zx

    out: dict[str, str] = {}
    frames = _frames(True, 11, n=10)
    paths = []
    for i, f in enumerate(frames):
        p = tmp / f"f{i:02d}.fits"
        fits.PrimaryHDU(np.moveaxis(f, -1, 0).astype(">f4")).writeto(p)
        paths.append(str(p))
    for reject in ("winsorized_sigma_clip", "kappa_sigma", "linear_fit_clip", "gesd"):
        cfg = zx.StackConfig(reject=reject)
        r = zx.stack_master_tile(paths, cfg, backend="numpy", memory_budget_bytes=200_000)
        out[f"master/{reject}"] = _digest(r.image, r.alpha, r.coverage)
        r = zx.stack_master_tile(paths, cfg, backend="numpy")
        out[f"master/{reject}/one-band"] = _digest(r.image, r.alpha, r.coverage)
    return out


def grid_cases(tmp: Path) -> dict[str, str]:
    from astropy.io import fits

    import zemosaic_xp as zx
    from zemosaic_xp.synthetic import make_survey

    out: dict[str, str] = {}
    survey = make_survey(tmp / "survey", n_frames=12, frame_shape=(96, 96), grid=(2, 2), rgb=True, seed=2)
    for reject in ("winsorized_sigma_clip", "kappa_sigma"):
        dest = tmp / f"mosaic-{reject}"
        zx.run_grid_mode(survey.folder, dest, config={"stacking_rejection_algorithm": reject},
                         grid_workers=1, resume=False)
        with fits.open(dest / "mosaic_grid.fits") as hdul:
            arrays = [np.asarray(h.data) for h in hdul if h.data is not None]
        with fits.open(dest / "mosaic_grid_coverage.fits") as hdul:
            arrays.append(np.asarray(hdul[0].data))
        tiles = sorted((dest / "tiles").glob("tile_*.fits"))
        for t in tiles:
            with fits.open(t) as hdul:
                arrays.extend(np.asarray(h.data) for h in hdul if h.data is not None)
        out[f"grid/{reject}"] = _digest(*arrays)
    return out


def compute() -> dict[str, str]:
    out = stack_cases()
    with tempfile.TemporaryDirectory() as d:
        out.update(master_tile_cases(Path(d)))
        out.update(grid_cases(Path(d)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "_child":
        print(json.dumps(compute()))
        return 0
    if len(argv) != 3 or argv[1] not in ("write", "check"):
        print(__doc__)
        return 2
    results = {}
    for numba in ("1", "0"):
        env = dict(os.environ, ZEMOSAIC_XP_NUMBA=numba)
        proc = subprocess.run([sys.executable, __file__, "_child", "-"], env=env, capture_output=True,
                              text=True, check=True)
        for key, value in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            results[f"numba={numba}/{key}"] = value
    path = Path(argv[2])
    if argv[1] == "write":
        path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        print(f"{len(results)} hashes written to {path}")
        return 0
    golden = json.loads(path.read_text())
    diff = sorted(k for k in golden.keys() | results.keys() if golden.get(k) != results.get(k))
    for key in diff:
        print(f"DIFFERENT {key}: {golden.get(key)} -> {results.get(key)}")
    print(f"{len(golden) - len(diff)} of {len(golden)} identical")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
