#!/usr/bin/env python
"""Whole-process peer benchmark: ``zemosaic-xp stack`` against ``siril-cli`` on the same 16-bit FITS frames.

::

    python benchmarks/peers.py [--cases 32x1024,48x2048,500x512] [--rejections kappa_sigma,median]
        [--repeat 3] [--workdir DIR] [--backend numpy] [--cold] [--json out.json] [-o table.md]

    zemosaic-xp bench --peers [the same options]

For each case ``NxS`` (N frames of S × S pixels, any N and S) the script writes its own
camera-like frames (``benchmarks/peers_data.py``: uint16 with BZERO 32768, cosmic rays,
one satellite trail, truth kept beside them), then for each rejection runs both tools
as a user runs them (``benchmarks/peers_tools.py``), interleaved (ours, Siril, ours,
Siril, ...), ``--repeat`` times each. It reports the best wall time of each tool, its
peak RSS (the child's ``ru_maxrss``), the rejected % each tool reports, and the quality
of each output against the clean mean (``benchmarks/peers_quality.py``).

The frames are read once before a case (warm page cache); ``--cold`` drops the page
cache before every run instead (root only). The script installs nothing: without
``siril-cli`` on PATH (or ``--siril``) it says how to get it and reports ours alone.
Timings are only meaningful on a quiet machine (nothing else using the cores).
Exit status: 0 done, 2 bad options or a tool failed (the table says which, with its log).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # the siblings peers_*.py and outofcore.py, however this script is started
    sys.path.insert(0, _HERE)

from peers_data import NOISE_SIGMA_ADU, CaseData, parse_case, prepare_case  # noqa: E402
from peers_quality import quality, read_stack  # noqa: E402
from peers_tools import (  # noqa: E402
    REJECTIONS,
    ProcessRun,
    Tool,
    compile_ours,
    drop_page_cache,
    find_ours,
    find_siril,
    kernels_state,
    ours_command,
    run_process,
    siril_rejected_pct,
    siril_script,
    tool_version,
    warm_read,
    write_ours_config,
)
from proc_tree import run_failure  # noqa: E402

DEFAULT_CASES = "32x1024,48x2048,500x512"
MiB = 2**20
SIRIL_MISSING = ("siril-cli not found: install it with `apt-get install siril` (Debian/Ubuntu; the package "
                 "provides /usr/bin/siril-cli) or see https://siril.org/download/, or pass --siril PATH. "
                 "Running ours only.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="peers.py", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--cases", default=DEFAULT_CASES, help=f"comma-separated NxS cases (default {DEFAULT_CASES})")
    p.add_argument("--rejections", default=",".join(REJECTIONS),
                   help=f"comma-separated, of {', '.join(REJECTIONS)} (default: all)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each tool per rejection; best time kept (3)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/zemosaic_peers"),
                   help="frames, outputs and logs (default /tmp/zemosaic_peers); frames are reused")
    p.add_argument("--backend", default=None, help="pass --backend X to zemosaic-xp stack (default: not passed)")
    p.add_argument("--siril", default=None, help="siril-cli executable (default: siril-cli from PATH)")
    p.add_argument("--cold", action="store_true", help="drop the page cache before every run (needs root)")
    p.add_argument("--seed", type=int, default=13, help="seed of the generated frames (13)")
    p.add_argument("--json", type=Path, default=None, help="write the raw numbers here")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the markdown report here")
    args = p.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    args.rejection_list = [r.strip() for r in args.rejections.split(",") if r.strip()]
    for case in args.case_list:
        parse_case(case)
    if not args.case_list:
        msg = f"`--cases` names no case; e.g. {DEFAULT_CASES}"
        raise ValueError(msg)
    if not args.rejection_list or any(r not in REJECTIONS for r in args.rejection_list):
        msg = f"`--rejections` must name some of {', '.join(REJECTIONS)}; got {args.rejections!r}"
        raise ValueError(msg)
    if args.repeat < 1:
        msg = f"`--repeat` must be >= 1, got {args.repeat}"
        raise ValueError(msg)
    return args


def _tools(args: argparse.Namespace, siril_env: dict) -> tuple[Tool, Tool | None]:
    """Our tool and Siril's (None when siril-cli is not found), with their versions."""
    ours_cmd = find_ours()
    ours = Tool("ours", ours_cmd, tool_version(ours_cmd))
    siril_path = find_siril(args.siril)
    if siril_path is None:
        print(SIRIL_MISSING, file=sys.stderr)
        return ours, None
    return ours, Tool("siril", (siril_path,), tool_version((siril_path,), env=siril_env))


def _output(tool: Tool, case: CaseData, rejection: str) -> Path:
    """Where ``tool`` writes its stack of ``rejection``."""
    return case.folder / f"{tool.name}_{rejection}.fits"


def _run_once(tool: Tool, case: CaseData, rejection: str, attempt: int, args: argparse.Namespace,
              siril_env: dict) -> ProcessRun:
    """One timed run of ``tool`` (its output deleted first)."""
    logs = case.folder / "logs"
    logs.mkdir(exist_ok=True)
    log = logs / f"{tool.name}_{rejection}_{attempt}.log"
    out = _output(tool, case, rejection)
    out.unlink(missing_ok=True)
    if tool.name == "ours":
        config = write_ours_config(case.folder / f"ours_{rejection}.json", rejection)
        argv, env = ours_command(tool, case.frames, out, config, args.backend), None
    else:
        shutil.rmtree(case.folder / "sirilwork", ignore_errors=True)
        script = case.folder / f"siril_{rejection}.ssf"
        script.write_text(siril_script(rejection, out.stem))
        argv, env = [*tool.command, "-d", str(case.folder), "-s", str(script)], siril_env
    if args.cold:
        drop_page_cache()
    return run_process(argv, log, env=env, cwd=case.folder)


def _summarise(tool: Tool, runs: list[ProcessRun], case: CaseData, rejection: str, truth: tuple) -> dict:
    """Best time, peak RSS, rejected % and quality of one tool on one rejection."""
    out = _output(tool, case, rejection)
    error = run_failure(runs, out)
    if error:
        return {"error": error}
    image, scale, cards = read_stack(out)
    row = {"times_sec": [run.wall_sec for run in runs], "best_sec": min(run.wall_sec for run in runs),
           "peak_rss_mib": max(run.peak_rss_kib for run in runs) / 1024, "output_scale": scale,
           "output": str(out), "log": str(runs[-1].log)}
    if tool.name == "ours":
        row["rejected_pct"] = float(cards["ZMT_REJP"]) if "ZMT_REJP" in cards else None
        row["backend"] = cards.get("ZMT_BACK")
    else:
        low_high = siril_rejected_pct(runs[-1].log.read_text(errors="replace"))
        row["rejected_pct"] = None if low_high is None else sum(low_high)
        row["rejected_low_high_pct"] = low_high
    row.update(quality(image, *truth, sigma_adu=NOISE_SIGMA_ADU, n_frames=case.n_frames))
    return row


def measure(case: CaseData, rejection: str, tools: list[Tool], args: argparse.Namespace, siril_env: dict,
            truth: tuple) -> dict:
    """Run every tool ``--repeat`` times on one rejection, interleaved; one result row.

    Parameters
    ----------
    case : CaseData
        The frames.
    rejection : str
        A key of ``REJECTIONS``.
    tools : list of Tool
        Ours, then Siril when present.
    args : argparse.Namespace
        The options.
    siril_env : dict
        Siril's environment (its own settings folder).
    truth : (ndarray, ndarray)
        Clean mean and outlier count of the case.

    Returns
    -------
    dict
        ``rejection``, one entry per tool name, and ``ratio`` (Siril's best time over ours).
    """
    runs: dict[str, list[ProcessRun]] = {tool.name: [] for tool in tools}
    for attempt in range(args.repeat):
        for tool in tools:  # interleaved: a slow spell of the machine hits both tools alike
            runs[tool.name].append(_run_once(tool, case, rejection, attempt, args, siril_env))
    row: dict = {"rejection": rejection, "ours": None, "siril": None}
    for tool in tools:
        row[tool.name] = _summarise(tool, runs[tool.name], case, rejection, truth)
    ours, siril = row["ours"], row["siril"]
    both = siril is not None and "best_sec" in ours and "best_sec" in siril
    row["ratio"] = siril["best_sec"] / ours["best_sec"] if both else None
    return row


def run_case(spec: str, tools: list[Tool], args: argparse.Namespace, workdir: Path, siril_env: dict) -> dict:
    """Generate or reuse case ``spec`` and measure every rejection on it."""
    import numpy as np

    case = prepare_case(workdir, spec, seed=args.seed)
    truth = (np.load(case.folder / "clean_mean.npy"), np.load(case.folder / "outlier_count.npy"))
    if not args.cold:
        warm_read(case.frames)
    load_before = os.getloadavg()[0]
    rows = [measure(case, rejection, tools, args, siril_env, truth) for rejection in args.rejection_list]
    return {"case": case.name, "n_frames": case.n_frames, "size": case.size, "input_mib": case.input_bytes / MiB,
            "generation_sec": case.generation_sec, "data_reused": case.reused,
            "outlier_pixels": int(np.count_nonzero(truth[1])), "load_avg_before": load_before,
            "load_avg_after": os.getloadavg()[0], "rows": rows}


def machine_info(ours: Tool, siril: Tool | None, args: argparse.Namespace) -> dict:
    """CPU, core count, load, tool versions and the backend asked for."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cpu_count": os.cpu_count(), "platform": platform.platform(), "bytecode": compile_ours(),
            "kernels": kernels_state(), "python": platform.python_version(), "ours": ours.version,
            "ours_command": " ".join(ours.command),
            "backend_requested": args.backend or "not passed (zemosaic-xp's default)",
            "siril": siril.version if siril else None, "cold_cache": args.cold, "repeat": args.repeat}


def _cell(entry: dict | None, key: str, fmt: str) -> str:
    if entry is None:
        return "—"
    if "error" in entry:
        return "failed"
    value = entry.get(key)
    return "n/a" if value is None else format(value, fmt)


def case_table(case: dict) -> str:
    """Markdown table of one case (both tools side by side)."""
    head = ("| rejection | ours s | Siril s | Siril / ours | peak RSS ours / Siril (MiB) | rejected % ours / Siril "
            "| outliers left ours / Siril | noise ours / Siril (ADU) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in case["rows"]:
        o, s = r["ours"], r["siril"]
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        lines.append(
            f"| {r['rejection']} | {_cell(o, 'best_sec', '.2f')} | {_cell(s, 'best_sec', '.2f')} | {ratio} "
            f"| {_cell(o, 'peak_rss_mib', '.0f')} / {_cell(s, 'peak_rss_mib', '.0f')} "
            f"| {_cell(o, 'rejected_pct', '.3f')} / {_cell(s, 'rejected_pct', '.3f')} "
            f"| {_cell(o, 'outliers_left', 'd')} / {_cell(s, 'outliers_left', 'd')} "
            f"| {_cell(o, 'noise_adu', '.3f')} / {_cell(s, 'noise_adu', '.3f')} |")
    return "\n".join(lines)


def report(machine: dict, cases: list[dict]) -> str:
    """The whole markdown report: machine, one table per case, notes and failures."""
    out = [f"Machine: {machine['cpu']}, {machine['cpu_count']} CPUs; {machine['ours']} (backend: "
           f"{machine['backend_requested']}); Siril: {machine['siril'] or 'not found (apt-get install siril)'}; "
           f"{'cold' if machine['cold_cache'] else 'warm'} page cache; best of {machine['repeat']}; ours: "
           f"{machine.get('bytecode', 'bytecode not checked')}; {machine.get('kernels', 'kernels not checked')}."]
    for case in cases:
        n, size = case["n_frames"], case["size"]
        threshold = 5.0 * NOISE_SIGMA_ADU / n**0.5
        backends = sorted({r["ours"].get("backend") or "?" for r in case["rows"] if "error" not in r["ours"]})
        out += ["", f"### {n} × {size}² ({case['input_mib']:.1f} MiB of 16-bit FITS; {case['outlier_pixels']} "
                    f"pixels with an outlier; threshold 5σ/√N = {threshold:.2f} ADU; our backend "
                    f"{', '.join(backends) or 'n/a'}; load average {case['load_avg_before']:.2f} → "
                    f"{case['load_avg_after']:.2f})", "", case_table(case)]
    scaled = any((r["siril"] or {}).get("output_scale", 1.0) != 1.0 for c in cases for r in c["rows"])
    if scaled:
        out += ["", "Siril wrote its stacks as float32 in [0, 1] (ADU / 65535): rescaled by 65535 before the "
                    "quality metrics."]
    errors = [f"- {c['case']} {r['rejection']} {name}: {r[name]['error']}" for c in cases for r in c["rows"]
              for name in ("ours", "siril") if r[name] and "error" in r[name]]
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
        if args.cold and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
            msg = "--cold needs root (it writes /proc/sys/vm/drop_caches); run as root or drop --cold"
            raise PermissionError(msg)
    except (ValueError, PermissionError) as exc:
        print(f"peers.py: error: {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    siril_env = dict(os.environ, XDG_CONFIG_HOME=str(workdir / ".siril-config"))
    compile_ours()  # before the runs: they time what an installed copy does (machine_info reports it)
    ours, siril = _tools(args, siril_env)
    tools = [ours] + ([siril] if siril else [])
    cases = [run_case(spec, tools, args, workdir, siril_env) for spec in args.case_list]
    machine = machine_info(ours, siril, args)
    text = report(machine, cases)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "cases": cases}, indent=1))
    failed = any(r[name] and "error" in r[name] for c in cases for r in c["rows"] for name in ("ours", "siril"))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
