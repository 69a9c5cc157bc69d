#!/usr/bin/env python
"""Whole-process grid peer benchmark: ``zemosaic-xp grid`` against SWarp and reproject on the same survey.

::

    python benchmarks/peers_grid.py [--surveys small,large] [--workers 1,2] [--repeat 3]
        [--tools swarp,ours,reproject] [--workdir DIR] [--swarp PATH] [--json out.json] [-o table.md]

    zemosaic-xp bench --peers-grid [the same options]

For each survey (``benchmarks/peers_grid_data.py``: plate-solved float32 FITS with a
``stack_plan.csv``, per-frame gain and offset, cosmic rays, one trail, the truth kept
beside them) the script runs, as whole processes (``benchmarks/peers_grid_tools.py``),
interleaved, ``--repeat`` times each: SWarp (``COMBINE_TYPE CLIPPED``, ``RESAMPLING_TYPE
BILINEAR``, ``SUBTRACT_BACK N``) with ``NTHREADS`` = each ``--workers`` value, ``zemosaic-xp
grid --workers N`` for each value, and reproject's ``reproject_and_coadd(match_background=True)``
(one process, ``reproject_interp``, mean). It reports the best wall time, the peak RSS (the
largest process, and the whole process tree), the speed ratio against SWarp (SWarp's best
time over the tool's, with SWarp's ``NTHREADS`` equal to the tool's workers; reproject, one
core, against SWarp's smallest thread count: above 1 the tool is faster), and the quality of
each mosaic against the known sky on the tool's own output grid
(``benchmarks/peers_grid_quality.py``: seam in per-frame σ, outlier pixels, coverage).
Our rows add the per-phase split that the grid logs (``GridResult.timings``).

The frames are read once before a survey (warm page cache). The script installs nothing: a
missing SWarp (``apt-get install swarp``; the binary is ``SWarp``) or reproject is said on
stderr and its rows are left out. Timings are only meaningful on a quiet machine.
Exit status: 0 done, 2 bad options or a tool failed (the report says which, with its log).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the sibling peers_*.py and outofcore.py, however this script is started
    sys.path.insert(0, _HERE)

from peers import machine_info as _machine_basics  # noqa: E402
from peers_grid_data import NAMED_SURVEYS, SurveyData, parse_survey, prepare_survey  # noqa: E402
from peers_grid_quality import frame_footprints, load_truth, mosaic_quality, read_mosaic, truth_on_grid  # noqa: E402
from peers_grid_tools import (  # noqa: E402
    REPROJECT_SCRIPT,
    find_swarp,
    ours_argv,
    parse_grid_elapsed,
    parse_grid_timings,
    swarp_version,
    write_swarp_config,
)
from peers_tools import Tool, compile_ours, find_ours, kernels_state, tool_version, warm_read  # noqa: E402
from proc_tree import TreeRun, run_failure, run_tree  # noqa: E402

DEFAULT_SURVEYS = "small,large"
TOOLS = ("swarp", "ours", "reproject")
MiB = 2**20
SWARP_MISSING = ("SWarp not found: install it with `apt-get install swarp` (Debian/Ubuntu; the binary is "
                 "/usr/bin/SWarp) or see https://www.astromatic.net/software/swarp, or pass --swarp PATH. "
                 "Its rows are left out.")
REPROJECT_MISSING = "reproject is not installed (pip install reproject): its row is left out."


class Entry(NamedTuple):
    """One row of a survey's table: a tool at one worker/thread count.

    A named tuple, not a dataclass: ``zemosaic-xp bench`` loads this script without
    registering it in ``sys.modules``, which a dataclass needs.

    Parameters
    ----------
    label : str
        ``swarp-t2``, ``ours-w1``, ``reproject``.
    tool : str
        One of :data:`TOOLS`.
    workers : int
        SWarp's ``NTHREADS``, our ``--workers``; 1 for reproject.
    """

    label: str
    tool: str
    workers: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="peers_grid.py", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--surveys", default=DEFAULT_SURVEYS,
                   help=f"comma-separated: {', '.join(f'{k} ({v})' for k, v in NAMED_SURVEYS.items())} or RxCxE@S "
                        f"(R x C pointings, E exposures each, S px frames); default {DEFAULT_SURVEYS}")
    p.add_argument("--workers", default="1,2", help="comma-separated worker (SWarp: thread) counts (default 1,2)")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)} (default all)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each row, interleaved; best time kept (3)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/zemosaic_peers_grid"),
                   help="surveys, outputs and logs (default /tmp/zemosaic_peers_grid); surveys are reused")
    p.add_argument("--swarp", default=None, help="SWarp executable (default: SWarp from PATH)")
    p.add_argument("--seed", type=int, default=14, help="seed of the generated surveys (14)")
    p.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the markdown report here")
    args = p.parse_args(argv)
    args.survey_list = [s.strip() for s in args.surveys.split(",") if s.strip()]
    args.tool_list = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not args.survey_list:
        msg = f"`--surveys` names no survey; e.g. {DEFAULT_SURVEYS}"
        raise ValueError(msg)
    for spec in args.survey_list:
        parse_survey(spec)
    if not args.tool_list or any(t not in TOOLS for t in args.tool_list):
        msg = f"`--tools` must name some of {', '.join(TOOLS)}; got {args.tools!r}"
        raise ValueError(msg)
    try:
        args.worker_list = sorted({int(w) for w in args.workers.split(",") if w.strip()})
    except ValueError:
        args.worker_list = []
    if not args.worker_list or min(args.worker_list) < 1:
        msg = f"`--workers` must be comma-separated counts >= 1, e.g. 1,2; got {args.workers!r}"
        raise ValueError(msg)
    if args.repeat < 1:
        msg = f"`--repeat` must be >= 1, got {args.repeat}"
        raise ValueError(msg)
    return args


def _available(args: argparse.Namespace) -> dict[str, str | None]:
    """Each asked-for tool's version (None: missing, said on stderr)."""
    found: dict[str, str | None] = {}
    if "swarp" in args.tool_list:
        args.swarp_path = find_swarp(args.swarp)
        if args.swarp_path is None:
            print(SWARP_MISSING, file=sys.stderr)
        found["swarp"] = swarp_version(args.swarp_path) if args.swarp_path else None
    if "ours" in args.tool_list:
        found["ours"] = tool_version(find_ours())
    if "reproject" in args.tool_list:
        if importlib.util.find_spec("reproject") is None:
            print(REPROJECT_MISSING, file=sys.stderr)
            found["reproject"] = None
        else:
            from importlib.metadata import version

            found["reproject"] = f"reproject {version('reproject')}"
    return found


def _entries(args: argparse.Namespace, found: dict[str, str | None]) -> list[Entry]:
    out = [Entry(f"swarp-t{w}", "swarp", w) for w in args.worker_list if found.get("swarp")]
    out += [Entry(f"ours-w{w}", "ours", w) for w in args.worker_list if found.get("ours")]
    return out + ([Entry("reproject", "reproject", 1)] if found.get("reproject") else [])


def _paths(folder: Path, entry: Entry) -> dict[str, Path]:
    """The run folder of an entry and its output files."""
    run = folder / entry.label
    return {"run": run, "image": run / ("out/mosaic_grid.fits" if entry.tool == "ours" else "coadd.fits"),
            "weight": run / "coadd.weight.fits"}


def _run_once(entry: Entry, survey: SurveyData, folder: Path, attempt: int, args: argparse.Namespace) -> TreeRun:
    """One timed run of ``entry`` (its outputs deleted first)."""
    paths = _paths(folder, entry)
    run = paths["run"]
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    log = folder / "logs" / f"{entry.label}_{attempt}.log"
    log.parent.mkdir(exist_ok=True)
    frames_list = folder / "frames.list"
    if entry.tool == "swarp":
        config = write_swarp_config(run / "run.swarp", threads=entry.workers, image=paths["image"],
                                    weight=paths["weight"], resample_dir=run)
        argv = [args.swarp_path, f"@{frames_list}", "-c", str(config)]
    elif entry.tool == "ours":
        argv = ours_argv(survey.folder, run / "out", entry.workers)
    else:
        script = folder / "reproject_coadd.py"
        argv = [sys.executable, str(script), str(frames_list), str(paths["image"])]
    return run_tree(argv, log, cwd=run)


def _summarise(entry: Entry, runs: list[TreeRun], folder: Path, truth, frames: _Frames) -> dict:
    """Best time, memory, quality (and our phases) of one entry."""
    paths = _paths(folder, entry)
    error = run_failure(runs, paths["image"])
    row: dict = {"label": entry.label, "tool": entry.tool, "workers": entry.workers}
    if error:
        return dict(row, error=error)
    best = min(runs, key=lambda r: r.wall_sec)
    row.update({"times_sec": [r.wall_sec for r in runs], "best_sec": best.wall_sec,
                "cpu_sec": [r.cpu_sec for r in runs], "best_cpu_sec": min(r.cpu_sec for r in runs),
                "largest_rss_mib": max(r.largest_rss_kib for r in runs) / 1024,
                "tree_rss_mib": max(r.tree_rss_kib for r in runs) / 1024,
                "wait4_maxrss_mib": max(r.wait4_maxrss_kib for r in runs) / 1024, "output": str(paths["image"]),
                "log": str(best.log)})
    if entry.tool == "ours":
        text = best.log.read_text(errors="replace")
        row["phases"] = parse_grid_timings(text)
        row["in_process_sec"] = parse_grid_elapsed(text)
    weights = {"swarp": {"weight_path": paths["weight"]}, "ours": {"weight_hdu": "WEIGHT"},
               "reproject": {"weight_hdu": "FOOTPRINT"}}[entry.tool]
    image, has_data, wcs = read_mosaic(paths["image"], **weights)
    sky, coverage, source = truth_on_grid(truth, wcs, image.shape)
    key = (image.shape, wcs.to_header_string())  # SWarp's or our rows at 1 and 2 workers share a grid
    if key not in frames.footprints:
        frames.footprints[key] = frame_footprints(frames.wcs, frames.shape, wcs, image.shape)
    row["mosaic_shape"] = list(image.shape)
    row.update(mosaic_quality(image, has_data, sky, coverage, source, truth.noise_sigma, frames.footprints[key]))
    return row


class _Frames:
    """The frames' celestial WCS and shape, and their footprints on each output grid met."""

    def __init__(self, survey: SurveyData) -> None:
        from astropy.io import fits
        from astropy.wcs import WCS

        self.wcs = [WCS(fits.getheader(path)).celestial for path in survey.frames]
        self.shape = (survey.size, survey.size)
        self.footprints: dict = {}


def _ratios(rows: list[dict]) -> None:
    """Add ``speed_vs_swarp`` (SWarp's best time / the row's) to every row that has a reference."""
    swarp = {r["workers"]: r["best_sec"] for r in rows if r["tool"] == "swarp" and "best_sec" in r}
    for row in rows:
        ref = swarp.get(row["workers"]) if row["tool"] != "reproject" else (swarp[min(swarp)] if swarp else None)
        row["speed_vs_swarp"] = ref / row["best_sec"] if ref is not None and "best_sec" in row else None


def run_survey(spec: str, entries: list[Entry], args: argparse.Namespace, workdir: Path) -> dict:
    """Generate or reuse survey ``spec``, run every entry ``--repeat`` times interleaved, measure the outputs."""
    survey = prepare_survey(workdir, spec, seed=args.seed)
    folder = workdir / "runs" / survey.spec
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "frames.list").write_text("".join(f"{p}\n" for p in survey.frames))
    (folder / "reproject_coadd.py").write_text(REPROJECT_SCRIPT)
    warm_read(survey.frames)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[TreeRun]] = {e.label: [] for e in entries}
    for attempt in range(args.repeat):
        for entry in entries:  # interleaved: a slow spell of the machine hits every tool alike
            runs[entry.label].append(_run_once(entry, survey, folder, attempt, args))
    load_after = os.getloadavg()[0]
    truth, frames = load_truth(survey.folder, survey.noise_sigma), _Frames(survey)
    rows = [_summarise(e, runs[e.label], folder, truth, frames) for e in entries]
    _ratios(rows)
    return {"survey": survey.name, "spec": survey.spec, "n_frames": survey.n_frames, "size": survey.size,
            "grid": list(survey.grid), "exposures": survey.exposures, "input_mib": survey.input_bytes / MiB,
            "noise_sigma": survey.noise_sigma, "generation_sec": survey.generation_sec,
            "data_reused": survey.reused, "load_avg_before": load_before, "load_avg_after": load_after,
            "rows": rows}


def _cell(row: dict, key: str, fmt: str) -> str:
    if "error" in row:
        return "failed"
    value = row.get(key)
    return "n/a" if value is None or value != value else format(value, fmt)


def survey_table(survey: dict) -> str:
    """Markdown table of one survey (one row per tool and worker count)."""
    lines = ["| tool | workers | best s | speed vs SWarp | CPU s | peak RSS largest / tree (MiB) | seam (σ) "
             "| frame-edge step median / max (σ) | outlier px | coverage |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"swarp": "SWarp `CLIPPED` `BILINEAR`", "ours": "`zemosaic-xp grid`",
             "reproject": "`reproject_and_coadd(match_background=True)`"}
    for r in survey["rows"]:
        ratio = "—" if r.get("speed_vs_swarp") is None else f"{r['speed_vs_swarp']:.2f}×"
        workers = "1 (one process)" if r["tool"] == "reproject" else str(r["workers"])
        lines.append(f"| {names[r['tool']]} | {workers} | {_cell(r, 'best_sec', '.2f')} | {ratio} "
                     f"| {_cell(r, 'best_cpu_sec', '.1f')} "
                     f"| {_cell(r, 'largest_rss_mib', '.0f')} / {_cell(r, 'tree_rss_mib', '.0f')} "
                     f"| {_cell(r, 'seam_sigma', '.3f')} | {_cell(r, 'edge_step_median_sigma', '.3f')} / "
                     f"{_cell(r, 'edge_step_max_sigma', '.3f')} | {_cell(r, 'outlier_pixels', ',d')} "
                     f"| {_cell(r, 'coverage', '.4f')} |")
    return "\n".join(lines)


def phase_lines(survey: dict) -> list[str]:
    """One line per run of ours: the grid's phases in its best run, and the process start-up around them."""
    out = []
    for r in survey["rows"]:
        p = r.get("phases")
        if r["tool"] != "ours" or not p:
            continue
        during = " (during the tiles)" if p["normalise_during_tiles"] else ""
        total = r.get("in_process_sec")
        outside = f", outside the run (start-up, imports, exit) {r['best_sec'] - total:.1f} s" if total else ""
        out.append(f"- ours, {r['workers']} worker(s): setup {p['setup_sec']:.1f} s, frame normalisation "
                   f"{p['normalise_sec']:.1f} s{during}, tiles {p['tiles_sec']:.1f} s, assembly "
                   f"{p['assembly_sec']:.1f} s{outside}; wall {r['best_sec']:.1f} s")
    return out


def report(machine: dict, surveys: list[dict]) -> str:
    """The whole markdown report: machine, one table per survey, phases and failures."""
    tools = machine["tools"]
    out = [f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs; {tools.get('ours') or 'ours not run'}; "
           f"SWarp: {tools.get('swarp') or 'not run/found'}; reproject: {tools.get('reproject') or 'not run/found'}; "
           f"warm page cache; best of {machine['repeat']}; speed = SWarp's time / the tool's (same thread count); "
           f"CPU s = user + system of the whole process tree (lowest run); ours: "
           f"{machine.get('bytecode', 'bytecode not checked')}; {machine.get('kernels', 'kernels not checked')}."]
    for s in surveys:
        out += ["", f"### {s['survey']}: {s['grid'][0]}×{s['grid'][1]} pointings × {s['exposures']} exposures = "
                    f"{s['n_frames']} frames of {s['size']}² ({s['input_mib']:.0f} MiB of float32 FITS; σ = "
                    f"{s['noise_sigma']:.1f} ADU; load average {s['load_avg_before']:.2f} → {s['load_avg_after']:.2f})",
                "", survey_table(s)]
        phases = phase_lines(s)
        if phases:
            out += ["", *phases]
    errors = [f"- {s['survey']} {r['label']}: {r['error']}" for s in surveys for r in s["rows"] if "error" in r]
    if errors:
        out += ["", "Failed runs:", *errors]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the report.

    Parameters
    ----------
    argv : list of str, optional
        Options (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when every run succeeded, 2 for bad options or a failed run.
    """
    try:
        args = parse_args(argv)
    except ValueError as exc:
        print(f"peers_grid.py: error: {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    found = _available(args)
    entries = _entries(args, found)
    if not entries:
        print("peers_grid.py: error: none of the tools asked for is available", file=sys.stderr)
        return 2
    bytecode = compile_ours()  # before the runs: they time what an installed copy does
    surveys = [run_survey(spec, entries, args, workdir) for spec in args.survey_list]
    basics = _machine_basics(Tool("ours", find_ours(), found.get("ours") or ""), None, argparse.Namespace(
        backend=None, cold=False, repeat=args.repeat))
    machine = {key: basics[key] for key in ("cpu", "cpu_count", "platform", "python", "repeat")}
    machine.update(tools=found, workers=args.worker_list, bytecode=bytecode, kernels=kernels_state())
    text = report(machine, surveys)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "surveys": surveys}, indent=1))
    return 2 if any("error" in r for s in surveys for r in s["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
