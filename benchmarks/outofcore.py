#!/usr/bin/env python
"""Out-of-core proof (issue 8): many frames stacked under a memory budget, peak RSS measured.

::

    python benchmarks/outofcore.py --frames 10000 --shape 256 --budget-mb 256 \\
        --workdir /tmp/ooc [--grid-frames 2000] [--json out.json]

Two cases, each run in a child process of ``sys.executable`` (one at a time):

- **classic**: ``stack_master_tile(paths, StackConfig(), memory_budget_bytes=budget,
  backend="numpy")`` on ``--frames`` aligned mono float32 FITS frames (sky with stars
  from :func:`zemosaic_xp.synthetic.render_sky`, noise, per-frame gain/offset, cosmic
  rays, NaN boxes in every 50th frame);
- **grid**: ``run_grid_mode(..., grid_workers=1)`` with ``stack_chunk_budget_mb`` =
  budget on a :func:`zemosaic_xp.synthetic.make_survey` survey of ``--grid-frames``
  frames on a small pointing pattern (2×2 by default), so each tile sees ~N/2–N frames.

Measured per case: wall time of the child (start-up and imports included, s), time of
the stacking call (s), frame-pixels/s = N·h·w / stacking s, the child's RSS after its
imports and a warm-up (*baseline*) and its peak RSS (``VmHWM`` of ``/proc/self/status``), cross-checked
by ``ru_maxrss`` from ``os.wait4`` and by psutil sampling every 0.1 s. The bound is
peak RSS ≤ budget + ``--slack-mb`` (300 MiB); MB here are MiB. Each result is checked
(finite image at the expected level, plausible rejected %), so a broken run fails
instead of being timed. Exit status: 0 pass, 1 a bound violated, 2 a sanity check or
a child failed.

Frames are written once under ``--workdir`` and reused when their ``manifest.json``
matches the parameters; a data set is built in a temporary folder renamed at the end,
so an interrupted generation is never reused. By default the frames are evicted from
the page cache before each case (``posix_fadvise(DONTNEED)``); ``--warm-cache`` skips that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MiB = 2**20
DATASET_VERSION = 1
NAN_EVERY = 50  # every 50th classic frame has a NaN box
SKY_LEVEL = 1000.0


# ------------------------------------------------------------------------------------------
# data sets
# ------------------------------------------------------------------------------------------

def _dataset(workdir: Path, name: str, params: dict, build) -> tuple[Path, float, bool]:
    """Folder ``workdir/name`` built by ``build(tmp_folder)`` unless its manifest matches ``params``.

    Returns (folder, generation seconds, reused).
    """
    folder = workdir / name
    manifest = folder / "manifest.json"
    want = dict(params, version=DATASET_VERSION)
    if manifest.exists():
        try:
            if json.loads(manifest.read_text())["params"] == want:
                return folder, 0.0, True
        except (ValueError, KeyError):
            pass
    for stale in workdir.glob(f".{name}.partial-*"):  # interrupted generations (one run per workdir)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = workdir / f".{name}.partial-{os.getpid()}"
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    extra = build(tmp) or {}
    seconds = time.perf_counter() - t0
    (tmp / "manifest.json").write_text(json.dumps({"params": want, "generation_sec": seconds, **extra}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder, seconds, False


def _fits_writer(shape: tuple[int, int]):
    """``write(path, frame)``: 2-D big-endian float32 FITS, header block built once by astropy."""
    import numpy as np
    from astropy.io import fits

    header = fits.PrimaryHDU(data=np.zeros(shape, dtype=">f4")).header.tostring().encode("ascii")
    pad = b"\0" * ((-shape[0] * shape[1] * 4) % 2880)

    def write(path: Path, frame) -> None:
        with open(path, "wb") as fh:
            fh.write(header)
            fh.write(np.ascontiguousarray(frame, dtype=">f4").tobytes())
            fh.write(pad)

    return write


def generate_classic(folder: Path, n_frames: int, size: int, seed: int = 8, threads: int = 2) -> dict:
    """Write ``n_frames`` aligned mono frames ``frame_NNNNN.fits`` (size × size, float32 ADU) and ``truth.npy``.

    Frame i = gain_i·(truth + noise) + offset_i + cosmic rays, NaN box in every 50th
    frame; frame 0 has gain 1 and offset 0, so the stack should equal ``truth``.
    """
    import numpy as np

    from zemosaic_xp.synthetic import render_sky

    shape = (size, size)
    truth = render_sky(shape, rng=np.random.default_rng(seed), sky_level=SKY_LEVEL, gradient=200.0,
                       n_stars=max(4, size * size // 2500))
    np.save(folder / "truth.npy", truth)
    sigma = np.sqrt(np.maximum(truth, 0.0) + 25.0).astype(np.float32)
    write = _fits_writer(shape)
    box = max(2, size // 16)

    def one(i: int) -> None:
        rng = np.random.default_rng([seed, i])
        gain = 1.0 if i == 0 else 1.0 + 0.02 * rng.standard_normal()
        offset = 0.0 if i == 0 else rng.uniform(-20.0, 20.0)
        frame = truth + sigma * rng.standard_normal(shape, dtype=np.float32)
        flat = frame.reshape(-1)
        flat[rng.integers(0, flat.size, 10)] += np.exp(rng.uniform(np.log(3000.0), np.log(30000.0), 10))
        frame = np.float32(gain) * frame + np.float32(offset)
        if i % NAN_EVERY == NAN_EVERY - 1:
            y, x = rng.integers(0, size - box, 2)
            frame[y:y + box, x:x + box] = np.nan
        write(folder / f"frame_{i:05d}.fits", frame)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        list(pool.map(one, range(n_frames), chunksize=64))
    return {"truth_median": float(np.median(truth))}


def generate_survey(folder: Path, n_frames: int, size: int, pattern: tuple[int, int], seed: int = 8) -> dict:
    """:func:`zemosaic_xp.synthetic.make_survey` into ``folder`` (mono, size × size frames)."""
    from zemosaic_xp.synthetic import make_survey

    survey = make_survey(folder, n_frames=n_frames, frame_shape=(size, size), grid=pattern, seed=seed)
    import numpy as np

    covered = survey.coverage > 0
    level = float(np.median(survey.truth.reshape(covered.shape + (-1,))[covered]))
    # Grid mode normalises onto its best-connected frame, whose gain and offset are
    # unknown here: the mosaic's level is gain_ref·level + offset_ref for some frame.
    frame_levels = survey.gains * level + survey.offsets
    return {"sky_level": survey.sky_level, "noise_sigma": survey.noise_sigma,
            "max_coverage": int(survey.coverage.max()), "truth_median_covered": level,
            "level_range": [float(frame_levels.min()), float(frame_levels.max())]}


def evict_page_cache(folder: Path) -> None:
    """Drop ``folder``'s files from the page cache (clean pages; no root needed)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# ------------------------------------------------------------------------------------------
# child side
# ------------------------------------------------------------------------------------------

def _status_bytes(key: str) -> int | None:
    """``key`` (VmRSS, VmHWM, RssAnon, ...) of /proc/self/status in bytes; None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _child_classic(spec: dict) -> dict:
    import numpy as np

    from zemosaic_xp import StackConfig, stack_master_tile

    folder = Path(spec["folder"])
    paths = sorted(str(p) for p in folder.glob("frame_*.fits"))
    options = {name: spec[name] for name in ("reject", "normalize", "weighting") if spec.get(name)}
    config = StackConfig(**options)
    # Warm-up on a few frames: modules and numba kernels loaded, so that the baseline
    # holds the code and peak − baseline the data.
    stack_master_tile(paths[:8], config, memory_budget_bytes=spec["budget_mb"] * MiB, backend="numpy")
    baseline = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    result = stack_master_tile(paths, config, memory_budget_bytes=spec["budget_mb"] * MiB, backend="numpy")
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM")
    truth = np.load(folder / "truth.npy")
    residual = result.image - truth
    stats = result.stats
    return {"baseline_rss": baseline, "peak_rss": peak, "stack_sec": seconds, "n_frames": len(paths),
            "frames_used": int(stats["n_frames"]), "frames_per_tile": [len(paths)],
            "finite_fraction": float(np.isfinite(result.image).mean()),
            "median_abs_residual": float(np.nanmedian(np.abs(residual))),
            "p9999_abs_residual": float(np.nanpercentile(np.abs(residual), 99.99)),
            "level": float(np.nanmedian(result.image)), "expected_level": float(np.median(truth)),
            "expected_range": [0.98 * float(np.median(truth)), 1.02 * float(np.median(truth))],
            "rejected_pct": float(stats["rejected_pct"]), "band_rows": int(stats["band_rows"]),
            "n_bands": int(stats["n_bands"]), "stats_spilled": bool(stats["frame_stats_spilled"]),
            "reject": stats.get("reject", config.reject), "normalize": config.normalize,
            "weighting": config.weighting, "min_coverage": int(result.coverage.min())}


def _child_grid(spec: dict) -> dict:
    import numpy as np
    from astropy.io import fits

    from zemosaic_xp import run_grid_mode

    folder, out = Path(spec["folder"]), Path(spec["out"])
    manifest = json.loads((folder / "manifest.json").read_text())
    config = {"stack_chunk_budget_mb": spec["budget_mb"]}
    if spec.get("reject"):
        config["stacking_rejection_algorithm"] = spec["reject"]
    try:  # what the tiles and the setup load (modules, numba kernels): the baseline holds the code
        import reproject.mosaicking  # noqa: F401

        from zemosaic_xp.grid.config import GridConfig
        from zemosaic_xp.grid.worker import warm_up

        warm_up(GridConfig.from_dict(config).stack)
    except Exception as exc:  # noqa: BLE001 - warm-up only moves loading before the baseline
        print(f"warm-up failed: {exc!r}", file=sys.stderr)
    baseline = _status_bytes("VmRSS")
    phase_peaks: dict[str, int | None] = {}

    def progress(key: Any, *_: Any, **__: Any) -> None:
        # VmHWM only grows: its value at a phase's last message is the peak up to there.
        text = str(key)
        if text.startswith("[GRID] using "):  # setup and survey normalisation done (1 worker)
            phase_peaks["setup_normalise"] = _status_bytes("VmHWM")
        elif text.startswith("[GRID] tile ") and " processed" in text:
            phase_peaks["tiles"] = _status_bytes("VmHWM")

    t0 = time.perf_counter()
    result = run_grid_mode(folder, out, progress, grid_workers=1, resume=False, config=config)
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM")
    phase_peaks["assembly"] = peak
    per_tile = []
    for path in sorted((out / "tiles").glob("tile_*.fits")):
        per_tile.append(int(fits.getheader(path)["NFRAMES"]))
    with fits.open(result.mosaic_path) as hdul:
        image = np.asarray(hdul[0].data, dtype=np.float32)
    h, w = image.shape[-2:]
    with fits.open(result.coverage_path) as hdul:
        covered = np.asarray(hdul[0].data).reshape(-1, h, w).max(axis=0) > 0
    values = image.reshape(-1, h, w)[:, covered]  # CHW or 2-D on disk
    shutil.rmtree(out, ignore_errors=True)
    return {"baseline_rss": baseline, "peak_rss": peak, "stack_sec": seconds, "n_frames": int(result.n_frames),
            "frames_used": int(result.n_frames), "frames_per_tile": per_tile, "tiles": int(result.tiles_total),
            "failed_tiles": len(result.failed_tiles), "finite_fraction": float(np.isfinite(values).mean()),
            "level": float(np.nanmedian(values)), "expected_level": float(manifest["truth_median_covered"]),
            "expected_range": [0.99 * manifest["level_range"][0], 1.01 * manifest["level_range"][1]],
            "rejected_pct": float(result.rejected_pct) if result.rejected_pct is not None else None,
            "timings": result.timings, "peak_rss_through": phase_peaks, "reject": spec.get("reject") or "grid default",
            "mosaic_shape": list(result.mosaic_shape or ())}


def _child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    report = (_child_classic if spec["kind"] == "classic" else _child_grid)(spec)
    Path(spec["result"]).write_text(json.dumps(report))
    return 0


# ------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------

def _sample(pid: int, stop: threading.Event, peaks: dict) -> None:
    """Peak RSS and peak RSS − file/shared pages of ``pid``, sampled every 0.1 s (psutil)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        while not stop.is_set():
            info = proc.memory_info()
            peaks["rss"] = max(peaks.get("rss", 0), info.rss)
            peaks["anon"] = max(peaks.get("anon", 0), info.rss - getattr(info, "shared", 0))
            stop.wait(0.1)
    except Exception:  # noqa: BLE001, S110 - psutil missing or the child gone: sampling is a cross-check only
        pass


def run_child(spec: dict, workdir: Path, log_name: str) -> dict:
    """Run ``spec`` in a child of ``sys.executable``; its report plus wall_sec, ru_maxrss, sampled peaks."""
    spec_path = workdir / f"{log_name}.spec.json"
    result_path = workdir / f"{log_name}.result.json"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(dict(spec, result=str(result_path))))
    log_path = workdir / f"{log_name}.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", str(spec_path)],
                                stdout=log, stderr=subprocess.STDOUT)
    peaks: dict = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, stop, peaks), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text()[-3000:]
        msg = f"{log_name} child failed with status {proc.returncode}:\n{tail}"
        raise RuntimeError(msg)
    report = json.loads(result_path.read_text())
    report.update(wall_sec=wall, ru_maxrss=usage.ru_maxrss * 1024, sampled_peak_rss=peaks.get("rss"),
                  sampled_peak_anon=peaks.get("anon"))
    return report


def sanity_errors(row: dict) -> list[str]:
    """What is wrong with a case's result (empty when it looks like a correct stack)."""
    errors = []
    if row["frames_used"] != row["n_frames"]:
        errors.append(f"{row['frames_used']} of {row['n_frames']} frames used")
    if row["finite_fraction"] < (1.0 if row["case"] == "classic" else 0.99):
        errors.append(f"finite fraction {row['finite_fraction']:.4f}")
    low, high = row["expected_range"]
    if not low <= row["level"] <= high:
        errors.append(f"level {row['level']:.1f}, expected {low:.1f} to {high:.1f}")
    rejected = row.get("rejected_pct")
    if rejected is None or not 0.0 < rejected < 10.0:
        errors.append(f"rejected {rejected} %")
    if row["case"] == "classic":
        if row["median_abs_residual"] > 0.01 * row["expected_level"]:
            errors.append(f"median |stack - truth| {row['median_abs_residual']:.2f} ADU")
        if row["min_coverage"] < 1:
            errors.append("a pixel without coverage")
    elif row.get("failed_tiles"):
        errors.append(f"{row['failed_tiles']} failed tiles")
    return errors


def evaluate(rows: list[dict], slack_mb: float) -> bool:
    """Set each row's ``bound_rss`` (budget + slack, bytes) and ``rss_ok``; True when all pass."""
    ok = True
    for row in rows:
        row["bound_rss"] = int((row["budget_mb"] + slack_mb) * MiB)
        peak = row["peak_rss"] if row["peak_rss"] is not None else row["ru_maxrss"]
        row["rss_ok"] = bool(peak <= row["bound_rss"])
        ok &= row["rss_ok"]
    return ok


def markdown_table(rows: list[dict]) -> str:
    """The report as a markdown table (MiB, s, M frame-px/s)."""
    head = ("| case | frames | frame | input GB | frames/tile (max, median) | wall s | stack s | M frame-px/s "
            "| baseline RSS MiB | peak RSS MiB | peak − baseline MiB | ru_maxrss MiB | bound MiB | RSS ≤ bound |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def mib(x: Any) -> str:
        return "n/a" if x is None else f"{x / MiB:.0f}"

    for r in rows:
        per_tile = r["frames_per_tile"]
        depth = f"{max(per_tile)}, {statistics.median(per_tile):g}" if per_tile else "n/a"
        growth = None if r["peak_rss"] is None or r["baseline_rss"] is None else r["peak_rss"] - r["baseline_rss"]
        lines.append(f"| {r['case']} | {r['n_frames']} | {r['shape']}×{r['shape']} | {r['input_bytes'] / 1e9:.2f} "
                     f"| {depth} | {r['wall_sec']:.1f} | {r['stack_sec']:.2f} | {r['frame_px_per_sec'] / 1e6:.1f} "
                     f"| {mib(r['baseline_rss'])} | {mib(r['peak_rss'])} | {mib(growth)} | {mib(r['ru_maxrss'])} "
                     f"| {mib(r['bound_rss'])} | {'yes' if r['rss_ok'] else '**NO**'} |")
    return "\n".join(lines)


def _input_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def run_case(case: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Generate (or reuse) the data of ``case`` ("classic" or "grid"), run it in a child, return its row."""
    if case == "classic":
        n, size = args.frames, args.shape
        params = {"kind": "classic", "n_frames": n, "size": size, "seed": args.seed}
        folder, gen_sec, reused = _dataset(workdir, f"classic_{n}x{size}", params,
                                           lambda tmp: generate_classic(tmp, n, size, args.seed, args.threads))
        pattern = "frame_*.fits"
        spec = {"kind": "classic", "folder": str(folder), "budget_mb": args.budget_mb, "reject": args.reject,
                "normalize": args.normalize, "weighting": args.weighting}
    else:
        n, size = args.grid_frames, args.grid_shape or args.shape
        rows_cols = tuple(int(v) for v in args.grid_pattern.lower().split("x"))
        params = {"kind": "grid", "n_frames": n, "size": size, "pattern": list(rows_cols), "seed": args.seed}
        folder, gen_sec, reused = _dataset(workdir, f"grid_{n}x{size}", params,
                                           lambda tmp: generate_survey(tmp, n, size, rows_cols, args.seed))
        pattern = "survey_*.fits"
        spec = {"kind": "grid", "folder": str(folder), "out": str(workdir / "grid_out"),
                "budget_mb": args.budget_mb, "reject": args.grid_reject}
    if not args.warm_cache:
        evict_page_cache(folder)
    load_before = os.getloadavg()[0]
    row = run_child(spec, workdir, case)
    row.update(case=case, shape=size, budget_mb=args.budget_mb, input_bytes=_input_bytes(folder, pattern),
               generation_sec=gen_sec, data_reused=reused, cold_cache=not args.warm_cache,
               load_avg_before=load_before, load_avg_after=os.getloadavg()[0],
               frame_px_per_sec=row["n_frames"] * size * size / row["stack_sec"])
    row["sanity_errors"] = sanity_errors(row)
    return row


def _machine() -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy

    import zemosaic_xp

    return {"cpu": model, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__, "zemosaic_xp": zemosaic_xp.__version__, "platform": platform.platform()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=10000, help="classic frames (default 10000)")
    p.add_argument("--shape", type=int, default=256, help="frame side, px (default 256)")
    p.add_argument("--budget-mb", type=int, default=256, help="memory budget, MiB (default 256)")
    p.add_argument("--slack-mb", type=float, default=300.0, help="allowed peak RSS above the budget, MiB (300)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ooc"), help="frames and logs (default /tmp/ooc)")
    p.add_argument("--grid-frames", type=int, default=2000, help="grid survey frames; 0 skips grid (2000)")
    p.add_argument("--grid-shape", type=int, default=None, help="grid frame side, px (default --shape)")
    p.add_argument("--grid-pattern", default="2x2", help="grid pointing pattern ROWSxCOLS (default 2x2)")
    p.add_argument("--reject", default=None, help="classic rejection (default StackConfig's)")
    p.add_argument("--normalize", default=None, help="classic normalisation (default StackConfig's, linear_fit)")
    p.add_argument("--weighting", default=None, help="classic frame weighting (default StackConfig's, noise_variance)")
    p.add_argument("--grid-reject", default=None, help="grid rejection (default grid's, gesd)")
    p.add_argument("--skip-classic", action="store_true", help="run the grid case only")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--threads", type=int, default=2, help="threads writing the classic frames")
    p.add_argument("--warm-cache", action="store_true", help="do not evict the frames from the page cache")
    p.add_argument("--json", type=Path, default=None, help="write the report there")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 all pass, 1 an RSS bound violated, 2 a sanity check failed."""
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cases = ([] if args.skip_classic else ["classic"]) + (["grid"] if args.grid_frames > 0 else [])
    try:
        rows = [run_case(case, args, workdir) for case in cases]
    except RuntimeError as exc:  # a child failed: its log tail is in the message
        print(exc, file=sys.stderr)
        return 2
    rss_ok = evaluate(rows, args.slack_mb)
    print(markdown_table(rows))
    for row in rows:
        config = "".join(f"{k} {row[k]}, " for k in ("normalize", "weighting") if row.get(k))
        print(f"{row['case']}: {config}generation {row['generation_sec']:.1f} s (reused: {row['data_reused']}), "
              f"rejected {row['rejected_pct']:.3f} %, level {row['level']:.1f} (expected "
              f"{row['expected_level']:.1f}), load avg {row['load_avg_before']:.2f} -> {row['load_avg_after']:.2f}, "
              f"sampled peak RSS {(row['sampled_peak_rss'] or 0) / MiB:.0f} MiB "
              f"(minus shared/file pages {(row['sampled_peak_anon'] or 0) / MiB:.0f} MiB)"
              + "".join(f", peak RSS through {k} {v / MiB:.0f} MiB" for k, v in row.get("peak_rss_through", {}).items()
                        if v is not None)
              + (f"; SANITY: {'; '.join(row['sanity_errors'])}" if row["sanity_errors"] else ""))
    if args.json:
        report = {"machine": _machine(), "args": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in vars(args).items()},
                  "slack_mb": args.slack_mb, "results": rows}
        args.json.write_text(json.dumps(report, indent=1))
    if any(row["sanity_errors"] for row in rows):
        return 2
    return 0 if rss_ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    sys.exit(main())
