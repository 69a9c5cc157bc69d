#!/usr/bin/env python
"""GPU check benchmark (issue 13, item 6): each backend against our NumPy path, three ways in.

::

    python benchmarks/gpu_bench.py [--backends numpy,cupy,torch:cuda] [--shape 32x1024x1024]
        [--rejections kappa_sigma,...] [--modes host,device,fits] [--repeat 3] [--case-budget 10]
        [--workdir DIR] [--seed 13] [--json out.json] [-o table.md]

The frames are N camera-like 16-bit frames of H × W pixels: the peer benchmark's recipe
(``benchmarks/peers_data.py``: a ~1000 ADU sky with stars, Gaussian noise of σ = 10 ADU,
cosmic rays on ~0.05 % of the pixels), rounded to uint16. For each backend of
``--backends`` (NumPy first) and each rejection (the six of ``benchmarks/peers_tools.py``,
same settings: no normalisation, no weighting; ``median`` is reject none + combine median)
it times three ways in:

- ``host``: ``zx.stack(frames, config=cfg, backend=name)`` on the float32 host frames
  (the copy to the device is included);
- ``device``: ``zx.stack(device_frames, config=cfg)`` with the frames already on the
  device (``zemosaic_xp.backends.to_backend``, copied before the clock starts);
- ``fits``: ``zx.stack_master_tile(paths, cfg, backend=name)`` on the same frames written
  once as uint16 FITS (``BITPIX 16``, ``BZERO 32768``) under ``--workdir``.

Every call ends with ``zemosaic_xp.backends.synchronize`` before the clock stops. Each
case runs once untimed (the warm-up: CUDA kernels compile there; the peak device memory
is read on it), then ``--repeat`` times (fewer once the timed runs of the case took
``--case-budget`` seconds); the best time is kept. Reported per case:
M frame-px/s (N·H·W / best seconds / 10⁶), the ratio to the NumPy backend in the same
mode, the peak device memory of the call (CuPy: the default memory pool's size after
``free_all_blocks()`` before the call, i.e. the most it held; torch:
``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``; both include
input already on the device), and the parity with ``zx.stack`` of the same frames on
NumPy: max |Δimage| / σ (σ = the frames' 10 ADU noise) over the pixels finite in both,
and how many pixels of the coverage and of the rejection maps differ (``stack_master_tile``
returns no rejection maps).

A backend that cannot run here (no driver, no CuPy, no CUDA device) is reported as
skipped with the reason :func:`zemosaic_xp.backends.select_backend` gives. CuPy and torch
are imported only by a backend that runs. Progress goes to stderr, the report to stdout.
Exit status: 0 done, 1 a run failed (or a GPU stack fell back to the CPU), 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the sibling scripts peers_*.py and outofcore.py, however this one is started
    sys.path.insert(0, _HERE)

from gpu_bench_measure import host_result, parity, time_call  # noqa: E402
from gpu_bench_report import add_ratios, report  # noqa: E402
from peers_data import NOISE_SIGMA_ADU, SKY_LEVEL_ADU, _cosmic_rays, _quantise  # noqa: E402
from peers_tools import REJECTIONS  # noqa: E402

DEFAULT_BACKENDS = "numpy,cupy,torch:cuda"
DEFAULT_SHAPE = "32x1024x1024"
MODES = ("host", "device", "fits")
MiB = 2**20
_DATA_VERSION = 1  # bump when the frame recipe changes: cached FITS sets are then rebuilt



# ------------------------------------------------------------------------------------------
# options and data
# ------------------------------------------------------------------------------------------

def parse_shape(spec: str) -> tuple[int, int, int]:
    """Read a stack shape ``"NxHxW"`` (or ``"NxS"`` for square frames).

    Parameters
    ----------
    spec : str
        E.g. ``"32x1024x1024"``, ``"6x32x32"``, ``"32x1024"``.

    Returns
    -------
    (int, int, int)
        ``(n_frames, height, width)``.

    Raises
    ------
    ValueError
        Not of that form, fewer than 2 frames or a side below 8 pixels.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", spec)
    if match is None:
        msg = f"`--shape` {spec!r} is not NxHxW (or NxS); e.g. {DEFAULT_SHAPE}"
        raise ValueError(msg)
    n, h = int(match.group(1)), int(match.group(2))
    w = int(match.group(3)) if match.group(3) else h
    if n < 2 or h < 8 or w < 8:
        msg = f"`--shape` {spec!r}: need N >= 2 frames of at least 8 × 8 pixels"
        raise ValueError(msg)
    return n, h, w


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the options (see the module docstring).

    Parameters
    ----------
    argv : list of str, optional
        Options (default ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        The options, plus ``backend_list``, ``rejection_list``, ``mode_list`` and ``shape_nhw``.

    Raises
    ------
    ValueError
        An unknown backend, rejection or mode, a bad shape or ``--repeat`` below 1.
    """
    from zemosaic_xp.backends import BACKEND_NAMES

    p = argparse.ArgumentParser(prog="gpu_bench.py", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--backends", default=DEFAULT_BACKENDS,
                   help=f"comma-separated backend names (default {DEFAULT_BACKENDS})")
    p.add_argument("--shape", default=DEFAULT_SHAPE, help=f"NxHxW: frames × rows × columns (default {DEFAULT_SHAPE})")
    p.add_argument("--rejections", default=",".join(REJECTIONS),
                   help=f"comma-separated, of {', '.join(REJECTIONS)} (default: all)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default: all)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case after one warm-up; best kept (3)")
    p.add_argument("--case-budget", type=float, default=10.0,
                   help="stop a case's timed runs once they took this many seconds (at least one run; 10)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/zemosaic_gpu_bench"),
                   help="where the FITS frames are written once and reused (default /tmp/zemosaic_gpu_bench)")
    p.add_argument("--seed", type=int, default=13, help="seed of the generated frames (13)")
    p.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the markdown report here")
    args = p.parse_args(argv)
    args.shape_nhw = parse_shape(args.shape)
    backends = [b.lower() for b in _split(args.backends)]
    bad = [b for b in backends if b not in BACKEND_NAMES or b == "auto"]
    if not backends or bad:
        valid = ", ".join(n for n in BACKEND_NAMES if n != "auto")
        msg = f"`--backends` must name some of {valid}; got {args.backends!r}"
        raise ValueError(msg)
    # NumPy first: its results are the others' reference; no name twice.
    args.backend_list = sorted(dict.fromkeys(backends), key=lambda b: b != "numpy")
    args.rejection_list = list(dict.fromkeys(_split(args.rejections)))
    if not args.rejection_list or any(r not in REJECTIONS for r in args.rejection_list):
        msg = f"`--rejections` must name some of {', '.join(REJECTIONS)}; got {args.rejections!r}"
        raise ValueError(msg)
    args.mode_list = [m for m in MODES if m in _split(args.modes)]
    if not args.mode_list or any(m not in MODES for m in _split(args.modes)):
        msg = f"`--modes` must name some of {', '.join(MODES)}; got {args.modes!r}"
        raise ValueError(msg)
    if args.repeat < 1:
        msg = f"`--repeat` must be >= 1, got {args.repeat}"
        raise ValueError(msg)
    if not args.case_budget > 0:
        msg = f"`--case-budget` must be > 0 seconds, got {args.case_budget}"
        raise ValueError(msg)
    return args


def make_frames(n_frames: int, height: int, width: int, *, seed: int = 13) -> np.ndarray:
    """Camera-like uint16 frames: sky with stars, σ = 10 ADU noise, cosmic rays.

    Parameters
    ----------
    n_frames, height, width : int
        Shape of the stack.
    seed : int
        Seed of the sky, the noise and the cosmic rays.

    Returns
    -------
    ndarray, shape (n_frames, height, width), uint16
        The frames (the peer benchmark's recipe, without its satellite trail).
    """
    from zemosaic_xp.synthetic import render_sky

    shape = (height, width)
    sky = render_sky(shape, rng=np.random.default_rng(seed), sky_level=SKY_LEVEL_ADU, gradient=100.0,
                     n_stars=max(4, height * width // 20000)).astype(np.float64)
    frames = np.empty((n_frames, height, width), dtype=np.uint16)
    for i in range(n_frames):
        rng = np.random.default_rng([seed, i])
        frames[i] = _quantise(sky + NOISE_SIGMA_ADU * rng.standard_normal(shape) + _cosmic_rays(shape, rng))
    return frames


def write_fits_frames(workdir: Path, frames: np.ndarray, seed: int) -> tuple[list[Path], float]:
    """Write ``frames`` as 16-bit FITS (BITPIX 16, BZERO 32768) once; reuse them while the manifest matches.

    Parameters
    ----------
    workdir : Path
        The benchmark's working folder.
    frames : ndarray, shape (N, H, W), uint16
        The frames of :func:`make_frames`.
    seed : int
        Their seed (part of the manifest).

    Returns
    -------
    (list of Path, float)
        The frame files in order, and the seconds spent writing them (0 when reused).
    """
    from outofcore import _dataset  # sibling script: manifest check, build in a temp folder, rename

    n, h, w = frames.shape

    def build(tmp: Path) -> dict:
        """Write the frames into ``tmp/frames``; return the manifest's extra keys.

        Parameters
        ----------
        tmp : Path
            The data set's temporary folder.

        Returns
        -------
        dict
            What the files are (BITPIX, BZERO).
        """
        from astropy.io import fits

        (tmp / "frames").mkdir()
        for i, frame in enumerate(frames):
            fits.PrimaryHDU(frame).writeto(tmp / "frames" / f"frame_{i:04d}.fits")
        return {"bitpix": 16, "bzero": 32768}

    params = {"kind": "gpu_bench", "n_frames": n, "height": h, "width": w, "seed": seed,
              "noise_sigma_adu": NOISE_SIGMA_ADU, "gpu_bench_version": _DATA_VERSION}
    folder, seconds, _ = _dataset(workdir, f"gpu_bench_{n}x{h}x{w}", params, build)
    return sorted((folder / "frames").glob("frame_*.fits")), seconds


def stack_config(rejection: str) -> Any:
    """The :class:`~zemosaic_xp.StackConfig` of ``rejection``, as the peer benchmark runs it.

    Parameters
    ----------
    rejection : str
        A key of ``peers_tools.REJECTIONS``.

    Returns
    -------
    StackConfig
        No normalisation, no weighting, the rejection and combine of that entry.
    """
    from zemosaic_xp import StackConfig

    return StackConfig.from_dict({"stacking_normalize_method": "none", "stacking_weighting_method": "none",
                                  **REJECTIONS[rejection][0]})


# ------------------------------------------------------------------------------------------
# backends and device memory
# ------------------------------------------------------------------------------------------

def open_backend(name: str) -> tuple[Any | None, dict]:
    """The backend ``name`` and what it is, or None and why it cannot run here.

    Parameters
    ----------
    name : str
        A backend name.

    Returns
    -------
    (Backend or None, dict)
        The backend, and ``{"available", "reason", "device", "version"}``.
    """
    from zemosaic_xp.backends import BackendUnavailable, select_backend

    try:
        backend = select_backend(name)
    except BackendUnavailable as exc:
        return None, {"available": False, "reason": str(exc), "device": None, "version": None}
    info = {"available": True, "reason": None, "device": str(backend.device), "version": None}
    if backend.library == "numpy":
        info["version"] = np.__version__
    elif backend.library == "array_api_strict":
        from importlib.metadata import version

        info["version"] = version("array_api_strict")
    if backend.library == "cupy":  # GPU branch: CuPy is imported only here
        import cupy

        info["version"] = cupy.__version__
        info["device"] = _described(lambda: cupy.cuda.runtime.getDeviceProperties(backend.device.id)["name"],
                                    info["device"])
    elif backend.library == "torch":
        import torch

        info["version"] = torch.__version__
        if backend.is_gpu:
            info["device"] = _described(lambda: torch.cuda.get_device_name(backend.device), info["device"])
    return backend, info


def _described(read_name: Callable[[], Any], fallback: str) -> str:
    """A device's name for the report (bytes or str), or ``fallback`` when it cannot be read."""
    try:
        name = read_name()
    except Exception:  # noqa: BLE001 - the name is only informative
        return fallback
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def run_backend(name: str, backend: Any, args: argparse.Namespace, host_frames: np.ndarray,
                paths: list[Path], references: dict) -> list[dict]:
    """Measure every mode and rejection on one backend.

    Parameters
    ----------
    name : str
        The backend name as given.
    backend : Backend
        The backend.
    args : argparse.Namespace
        The options.
    host_frames : ndarray, shape (N, H, W), float32
        The frames on the host.
    paths : list of Path
        The same frames as FITS files.
    references : dict
        Rejection -> NumPy ``stack`` result (:func:`host_result`); filled by the NumPy backend.

    Returns
    -------
    list of dict
        One row per (mode, rejection): timings, peak memory, parity, ``error`` on failure.
    """
    import zemosaic_xp as zx
    from zemosaic_xp.backends import free_device_memory, synchronize, to_backend

    rows = []
    for mode in args.mode_list:
        device_frames = None
        if mode == "device":
            try:
                device_frames = to_backend(host_frames, backend)
                synchronize(backend)
            except Exception as exc:  # noqa: BLE001 - e.g. out of device memory: this mode's rows fail
                error = f"copying the frames to the device: {_error_text(exc)}"
                _progress(f"  {name} {mode}: FAILED {error}")
                rows += [{"backend": name, "mode": mode, "rejection": r, "error": error} for r in args.rejection_list]
                free_device_memory(backend)
                continue
        for rejection in args.rejection_list:
            cfg = stack_config(rejection)
            if mode == "host":
                call = partial(zx.stack, host_frames, config=cfg, backend=name)
            elif mode == "device":
                call = partial(zx.stack, device_frames, config=cfg)
            else:
                call = partial(zx.stack_master_tile, paths, cfg, backend=name)
            row: dict[str, Any] = {"backend": name, "mode": mode, "rejection": rejection}
            try:
                measured = time_call(call, backend, args.repeat, args.case_budget)
            except Exception as exc:  # noqa: BLE001 - reported in the table, exit status 1
                row["error"] = _error_text(exc)
                _progress(f"  {name} {mode} {rejection}: FAILED {row['error']}")
                free_device_memory(backend)
                rows.append(row)
                continue
            result = measured.pop("result")
            row.update(measured)
            row["mfps"] = host_frames.size / measured["best_sec"] / 1e6
            row["used_gpu"] = result["used_gpu"]
            if backend.is_gpu and result["used_gpu"] is False:
                row["error"] = f"fell back to the CPU (gpu_attempts: {result['gpu_attempts']})"
            if name == "numpy" and mode == "host":
                references[rejection] = result
            if rejection not in references:  # NumPy not among --backends: one untimed reference stack
                references[rejection] = host_result(zx.stack(host_frames, config=cfg, backend="numpy"))
            row["parity"] = parity(result, references[rejection], NOISE_SIGMA_ADU)
            _progress(f"  {name} {mode} {rejection}: {row['best_sec']:.3g} s")
            rows.append(row)
        call = device_frames = None  # let the device frames go before the next mode
        free_device_memory(backend)
    return rows


def machine_info(args: argparse.Namespace) -> dict:
    """What ran: host, versions, shape, options.

    Parameters
    ----------
    args : argparse.Namespace
        The options.

    Returns
    -------
    dict
        JSON-able description of the run.
    """
    import zemosaic_xp

    return {"platform": platform.platform(terse=True), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "zemosaic_xp": zemosaic_xp.__version__,
            "shape": list(args.shape_nhw), "repeat": args.repeat, "case_budget_sec": args.case_budget,
            "modes": args.mode_list, "rejections": args.rejection_list, "seed": args.seed}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report.

    Parameters
    ----------
    argv : list of str, optional
        Options (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 done, 1 a run failed or a GPU stack fell back to the CPU, 2 bad options.
    """
    try:
        args = parse_args(argv)
    except ValueError as exc:
        print(f"gpu_bench.py: error: {exc}", file=sys.stderr)
        return 2
    n, h, w = args.shape_nhw
    backends: dict[str, dict] = {}
    opened = {}
    for name in args.backend_list:
        opened[name], backends[name] = open_backend(name)
        _progress(f"{name}: " + (backends[name]["device"] if opened[name] else f"skipped ({backends[name]['reason']})"))
    _progress(f"frames: {n} × {h} × {w}, seed {args.seed}")
    frames_u16 = make_frames(n, h, w, seed=args.seed)
    paths: list[Path] = []
    if "fits" in args.mode_list and any(opened.values()):
        args.workdir.mkdir(parents=True, exist_ok=True)
        paths, seconds = write_fits_frames(args.workdir.resolve(), frames_u16, args.seed)
        _progress(f"FITS frames: {paths[0].parent} ({'written in %.1f s' % seconds if seconds else 'reused'})")
    host_frames = frames_u16.astype(np.float32)
    del frames_u16
    rows: list[dict] = []
    references: dict = {}
    for name in args.backend_list:
        if opened[name] is not None:
            rows += run_backend(name, opened[name], args, host_frames, paths, references)
    add_ratios(rows)
    machine = machine_info(args)
    text = report(machine, rows, backends)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "backends": backends, "rows": rows}, indent=1))
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
