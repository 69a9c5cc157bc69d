"""Turn a pytest-benchmark JSON of ``benchmarks/`` into markdown tables.

Usage::

    python benchmarks/report.py bench.json [-o table.md] [--stat min|median]

Throughput is frame-pixels per second (N·H·W·C / seconds). Ratios compare timings
of the same case in the same run: "× astropy" is astropy's time over ours (> 1 means
we are faster). "memory pass" is the time of one read of the whole stack
(``sum(axis=0)`` on the same backend) over ours: the fraction of the run that a pure
memory-bandwidth pass would take. "peak / stack" is the peak of traced NumPy
allocations during one call (inputs excluded) over the bytes of the stack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REFERENCE_FOR = {
    "kappa_sigma": "astropy_sigma_clip",
    "winsorized_sigma_clip": "astropy_sigma_clip",
    "median": "numpy_nanmedian",
}
REFERENCE_LABEL = {
    "astropy_sigma_clip": "astropy sigma_clip",
    "numpy_nanmedian": "np.nanmedian",
    "ccdproc_combiner": "ccdproc Combiner",
}


def _load(path: Path, stat: str) -> list[dict]:
    data = json.loads(path.read_text())
    rows = []
    for bench in data.get("benchmarks", []):
        info = dict(bench.get("extra_info", {}))
        if "kind" not in info:
            continue
        info["seconds"] = float(bench["stats"][stat])
        info["rounds"] = int(bench["stats"]["rounds"])
        rows.append(info)
    return rows


def _mfps(row: dict) -> float:
    return row["frame_pixels"] / row["seconds"] / 1e6


def _fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}×"


def _shape(row: dict) -> str:
    base = f"{row['n_frames']}×{row['height']}×{row['width']}"
    return base if row["channels"] == 1 else f"{base}×{row['channels']}"


def _index(rows: list[dict]) -> dict:
    by_case: dict[str, dict] = defaultdict(lambda: {"ours": {}, "reference": {}, "memory_pass": {},
                                                    "ours_no_uncertainty": {}})
    for row in rows:
        kind = row["kind"]
        if kind == "ours":
            by_case[row["case"]]["ours"][(row["name"], row["backend"])] = row
        elif kind == "reference":
            by_case[row["case"]]["reference"][row["name"]] = row
        elif kind == "memory_pass":
            by_case[row["case"]]["memory_pass"][row["backend"]] = row
        elif kind == "ours_no_uncertainty":
            by_case[row["case"]]["ours_no_uncertainty"][row["name"]] = row
    return by_case


def uncertainty_table(rows: list[dict]) -> str:
    """The cost of the uncertainty map: our NumPy stack with it over the same stack without."""
    out = ["| case | algorithm | ops | time with / without | interleaved: CPU / wall | peak with / without |",
           "|---|---|---|---:|---:|---:|"]
    found = False
    for case, entry in _index(rows).items():
        for name, off in sorted(entry["ours_no_uncertainty"].items()):
            on = entry["ours"].get((name, "numpy"))
            if on is None:
                continue
            found = True
            peaks = on.get("peak_bytes"), off.get("peak_bytes")
            both = off.get("interleaved")
            alternated = "–"
            if both:
                alternated = (f"{both['cpu_with'] / both['cpu_without']:.3f} / "
                              f"{both['wall_with'] / both['wall_without']:.3f}")
            out.append(f"| {case} | {name} | {on.get('ops', '?')} | {on['seconds'] / off['seconds']:.3f} | "
                       f"{alternated} | " + (f"{peaks[0] / peaks[1]:.3f} |" if all(peaks) else "– |"))
    return "\n".join(out) if found else "No uncertainty benchmark in this run."


def cpu_table(rows: list[dict]) -> str:
    """One line per case and algorithm: our NumPy path against the references."""
    out = [
        "| case | N×H×W[×C] | algorithm | ours NumPy (M fpx/s) | reference | reference (M fpx/s) "
        "| ours vs reference | ours vs ccdproc | torch CPU time / NumPy | memory pass | peak / stack |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, entry in _index(rows).items():
        for (name, backend), ours in sorted(entry["ours"].items()):
            if backend != "numpy":
                continue
            ref_name = REFERENCE_FOR.get(name)
            ref = entry["reference"].get(ref_name)
            ccd = entry["reference"].get("ccdproc_combiner") if name == "kappa_sigma" else None
            torch_row = entry["ours"].get((name, "torch:cpu"))
            mem = entry["memory_pass"].get("numpy")
            peak = ours.get("peak_bytes")
            out.append("| " + " | ".join([
                case, _shape(ours), name, f"{_mfps(ours):.1f}",
                REFERENCE_LABEL.get(ref_name, "–") if ref else "–",
                f"{_mfps(ref):.1f}" if ref else "–",
                _fmt_ratio(ref["seconds"] / ours["seconds"] if ref else None),
                _fmt_ratio(ccd["seconds"] / ours["seconds"] if ccd else None),
                f"{torch_row['seconds'] / ours['seconds']:.2f}" if torch_row else "–",
                f"{mem['seconds'] / ours['seconds']:.3f}" if mem else "–",
                f"{peak / ours['stack_bytes']:.2f}" if peak else "–",
            ]) + " |")
    return "\n".join(out)


def reference_table(rows: list[dict]) -> str:
    """The references themselves: throughput, peak memory, agreement of our result."""
    out = ["| case | reference | M fpx/s | seconds | peak / stack | ours agrees (1e-4 rel.) |",
           "|---|---|---:|---:|---:|---:|"]
    for case, entry in _index(rows).items():
        for name, ref in sorted(entry["reference"].items()):
            peak = ref.get("peak_bytes")
            agree = ref.get("agreement")
            cells = [case, REFERENCE_LABEL.get(name, name), f"{_mfps(ref):.1f}", f"{ref['seconds']:.3f}",
                     f"{peak / ref['stack_bytes']:.2f}" if peak else "–",
                     f"{100 * agree:.4f} %" if agree is not None else "–"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def gpu_table(rows: list[dict]) -> str:
    """GPU backends: throughput, speed-up over our NumPy path, fraction of one HBM pass."""
    out = ["| case | algorithm | backend | G fpx/s | × our NumPy | HBM pass fraction |",
           "|---|---|---|---:|---:|---:|"]
    found = False
    for case, entry in _index(rows).items():
        for (name, backend), ours in sorted(entry["ours"].items()):
            if ours.get("device_kind") != "gpu":
                continue
            found = True
            cpu = entry["ours"].get((name, "numpy"))
            mem = entry["memory_pass"].get(backend)
            out.append(f"| {case} | {name} | {backend} | {_mfps(ours) / 1e3:.2f} | "
                       f"{_fmt_ratio(cpu['seconds'] / ours['seconds'] if cpu else None)} | "
                       f"{mem['seconds'] / ours['seconds']:.3f} |" if mem else
                       f"| {case} | {name} | {backend} | {_mfps(ours) / 1e3:.2f} | "
                       f"{_fmt_ratio(cpu['seconds'] / ours['seconds'] if cpu else None)} | – |")
    return "\n".join(out) if found else "No GPU benchmark in this run (no GPU was available)."


def _ops_names(rows: list[dict]) -> str:
    """The ops of our NumPy runs (``numpy+numba`` when the numba kernels ran)."""
    names = sorted({r.get("ops", "?") for r in rows if r["kind"] == "ours" and r.get("backend") == "numpy"})
    return ", ".join(names) if names else "–"


def render(rows: list[dict], machine: str = "", stat: str = "min") -> str:
    parts = [
        f"Timings: {stat} over the rounds of each benchmark{'; ' + machine if machine else ''}.",
        f"Our NumPy ops: {_ops_names(rows)}.",
        "",
        "### Our NumPy path against the references",
        "",
        cpu_table(rows),
        "",
        "### Cost of the uncertainty map",
        "",
        uncertainty_table(rows),
        "",
        "### References",
        "",
        reference_table(rows),
        "",
        "### GPU",
        "",
        gpu_table(rows),
        "",
    ]
    return "\n".join(parts)


def _machine(path: Path) -> str:
    info = json.loads(path.read_text()).get("machine_info", {})
    cpu = info.get("cpu", {})
    brand = cpu.get("brand_raw") or info.get("processor") or ""
    count = cpu.get("count")
    return f"{brand} ({count} CPUs)" if count else brand


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("-o", "--output", type=Path, help="write the markdown here (default stdout)")
    parser.add_argument("--stat", choices=("min", "median", "mean"), default="min")
    args = parser.parse_args(argv)
    rows = _load(args.json, args.stat)
    if not rows:
        print(f"{args.json}: no zemosaic_xp benchmark found", file=sys.stderr)
        return 1
    text = render(rows, _machine(args.json), args.stat)
    if args.output:
        args.output.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
