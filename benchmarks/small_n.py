"""Rejection at small N: lone hits and 2-hit coincidences removed, clean samples lost.

For each rejection (``StackConfig.plain(reject=name)``: no normalisation, no weights, the
algorithm's defaults, ``min_survivors`` 3) and N = 2…12, three stacks of ``--pixels``
pixels of Gaussian noise (1000 ± 10 ADU, seed 0):

- lone: frame 0 of every pixel carries a hit of +``--hit`` σ; reported: % of pixels
  where it was rejected (``rejected_high`` ≥ 1);
- pair: frames 0 and 1 carry hits of +``--hit`` σ and +1.3·``--hit`` σ; % of pixels
  where both were rejected (``rejected_high`` ≥ 2);
- clean: no hit; % of all samples rejected (low or high).

Run::

    python -m benchmarks.small_n [--pixels 4096] [--hit 50]

It prints the Markdown table of docs/algorithms.md ("Rejection at small N").
"""

from __future__ import annotations

import argparse

import numpy as np

METHODS = ("winsorized_sigma_clip", "gesd", "mad", "percentile", "minmax", "winsorized_quantile",
           "kappa_sigma", "linear_fit_clip", "auto")
SIGMA, LEVEL = 10.0, 1000.0


def measure(pixels: int = 4096, hit: float = 50.0, ns=range(2, 13), methods=METHODS) -> dict:
    """``{method: {n: (lone %, pair %, clean %)}}``."""
    from zemosaic_xp import StackConfig, stack

    side = int(np.sqrt(pixels))
    out: dict = {}
    for method in methods:
        config = StackConfig.plain(reject=method)
        out[method] = {}
        for n in ns:
            rng = np.random.default_rng(n)
            base = rng.normal(LEVEL, SIGMA, (3, n, side, side)).astype(np.float32)
            lone, pair, clean = base[0], base[1], base[2]
            lone[0] += hit * SIGMA
            pair[0] += hit * SIGMA
            if n >= 2:
                pair[1] += 1.3 * hit * SIGMA
            r_lone = stack(lone, config=config)
            r_pair = stack(pair, config=config)
            r_clean = stack(clean, config=config)
            lone_pct = 100.0 * float(np.mean(np.asarray(r_lone.rejected_high) >= 1))
            pair_pct = 100.0 * float(np.mean(np.asarray(r_pair.rejected_high) >= 2))
            lost = np.asarray(r_clean.rejected_low) + np.asarray(r_clean.rejected_high)
            clean_pct = 100.0 * float(lost.sum()) / (n * side * side)
            out[method][n] = (lone_pct, pair_pct, clean_pct)
    return out


def _pct(v: float) -> str:
    if v == 0 or v == 100:
        return f"{v:.0f}"
    return f"{v:.0f}" if v >= 1 else f"{v:.1f}" if v >= 0.1 else "<0.1"


def table(results: dict) -> str:
    """Markdown: one row per rejection, one column per N, cells ``lone / pair / clean`` in %."""
    ns = sorted(next(iter(results.values())))
    lines = ["| `reject` | " + " | ".join(f"N = {n}" for n in ns) + " |",
             "|---|" + "---|" * len(ns)]
    for method, row in results.items():
        cells = [" / ".join(_pct(v) for v in row[n]) for n in ns]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=4096)
    parser.add_argument("--hit", type=float, default=50.0, help="hit amplitude in σ")
    args = parser.parse_args()
    print(table(measure(args.pixels, args.hit)))


if __name__ == "__main__":
    main()
