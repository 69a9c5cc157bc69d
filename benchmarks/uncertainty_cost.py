"""Cost of the uncertainty map: ``stack(..., uncertainty=True)`` over ``uncertainty=False`` (issue 18).

Process CPU time (``time.process_time``: every thread of this process), best of ``--reps``
(without and with the map run alternately),
on ``N`` synthetic frames of ``S × S`` (Gaussian noise and one hot pixel), by default on the
portable core path (``core.ops.portable_only``: what torch, CuPy and NumPy without numba
run); ``--native`` uses the registered fast paths (numba on NumPy). Prints one line per
configuration: times without / with the map and their ratio. Run it on an idle machine::

    python benchmarks/uncertainty_cost.py --frames 32 --size 512 --reps 7
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np

from zemosaic_xp import StackConfig, stack
from zemosaic_xp.core.ops import portable_only

CONFIGS = {
    "mean": StackConfig.plain(),
    "median": StackConfig.plain(combine="median"),
    "sum": StackConfig.plain(combine="sum"),
    "ksig_mean": StackConfig.plain(reject="kappa_sigma"),
    "ksig_median": StackConfig.plain(reject="kappa_sigma", combine="median"),
    "weighted_mean": StackConfig(normalize="none", weighting="noise_variance", reject="none", combine="mean"),
    "default": StackConfig(),
}


def _best_pair(off, on, reps: int) -> tuple[float, float]:
    """Best CPU time of each of two callables, run alternately (a load spike hits both)."""
    best = [float("inf"), float("inf")]
    for _ in range(reps):
        for i, fn in enumerate((off, on)):
            t0 = time.process_time()
            fn()
            best[i] = min(best[i], time.process_time() - t0)
    return best[0], best[1]


def main() -> None:
    """Parse the command line and print the with / without times of each configuration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--configs", default="mean,median,sum,ksig_mean,ksig_median,weighted_mean",
                        help=f"comma-separated, among {', '.join(CONFIGS)}")
    parser.add_argument("--native", action="store_true", help="registered fast paths (numba) instead of portable")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = (1000 + 10 * rng.standard_normal((args.frames, args.size, args.size))).astype(np.float32)
    frames[:, 5, 5] += 5000
    mode = contextlib.nullcontext() if args.native else portable_only()
    with mode:
        for name in args.configs.split(","):
            config = CONFIGS[name]
            off, on = _best_pair(lambda c=config: stack(frames, config=c, uncertainty=False),
                                 lambda c=config: stack(frames, config=c, uncertainty=True), args.reps)
            print(f"{name:14s} without {off:.3f} s  with {on:.3f} s  ratio {on / off:.3f}", flush=True)


if __name__ == "__main__":
    main()
