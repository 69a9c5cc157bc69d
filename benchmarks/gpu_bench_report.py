"""The report of ``benchmarks/gpu_bench.py``: ratios to NumPy and the markdown table."""

from __future__ import annotations

from typing import Any

from peers_data import NOISE_SIGMA_ADU

MODE_LABELS = {"host": "in memory, host input", "device": "in memory, device input", "fits": "FITS files"}
MiB = 2**20
COLUMNS = ("backend", "mode", "rejection", "best s", "M frame-px/s", "× NumPy", "peak dev MiB",
           "max abs Δ / σ", "coverage", "rejection maps", "note")


def add_ratios(rows: list[dict]) -> None:
    """Set ``ratio_numpy`` of each row: its speed over NumPy's in the same mode and rejection.

    Parameters
    ----------
    rows : list of dict
        All measured rows (NumPy's among them, or no ratio).
    """
    numpy_best = {(r["mode"], r["rejection"]): r["best_sec"] for r in rows
                  if r["backend"] == "numpy" and "best_sec" in r}
    for row in rows:
        base = numpy_best.get((row["mode"], row["rejection"]))
        row["ratio_numpy"] = base / row["best_sec"] if base and "best_sec" in row else None


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------

def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _count_cell(value: int | None, missing: str) -> str:
    if value is None:
        return missing
    return "identical" if value == 0 else f"{value} px differ"


def table(rows: list[dict], backends: dict) -> str:
    """The markdown table: one row per measured case, one per skipped backend.

    Parameters
    ----------
    rows : list of dict
        Measured rows (:func:`run_backend`, :func:`add_ratios`).
    backends : dict
        Backend name -> :func:`open_backend` info.

    Returns
    -------
    str
        The table.
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if i < 3 or i > 7 else "---:"
                                                              for i in range(len(COLUMNS))) + "|"]
    for name, info in backends.items():
        if not info["available"]:
            cells = [name, "—", "—", "skipped", "", "", "", "", "", "", f"skipped: {info['reason']}"]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            continue
        for row in (r for r in rows if r["backend"] == name):
            if "best_sec" not in row:
                cells = [name, row["mode"], row["rejection"], "failed", "", "", "", "", "", "", row["error"]]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
                continue
            par = row["parity"]
            delta = f"{par['max_abs_diff_over_sigma']:.2g}"
            if par["nonfinite_mismatch_px"]:
                delta += f" (NaN differs at {par['nonfinite_mismatch_px']} px)"
            peak = row["peak_device_bytes"]
            cells = [name, row["mode"], row["rejection"], f"{row['best_sec']:.3g}", f"{row['mfps']:.4g}",
                     "—" if row["ratio_numpy"] is None else f"{row['ratio_numpy']:.3g}×",
                     "—" if peak is None else f"{peak / MiB:.0f}", delta,
                     _count_cell(par["coverage_diff_px"], "n/a"),
                     _count_cell(par["rejection_maps_diff_px"], "n/a (FITS path)"), row.get("error", "")]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def report(machine: dict, rows: list[dict], backends: dict) -> str:
    """The whole markdown report: heading, machine, backends, table, how to read it.

    Parameters
    ----------
    machine : dict
        From :func:`machine_info`.
    rows : list of dict
        Measured rows.
    backends : dict
        Backend name -> :func:`open_backend` info.

    Returns
    -------
    str
        The report.
    """
    n, h, w = machine["shape"]
    lines = [f"### GPU check: {n} × {h} × {w} (uint16, σ = {NOISE_SIGMA_ADU:g} ADU), "
             f"best of up to {machine['repeat']} runs after one warm-up", "",
             f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs, Python {machine['python']}, "
             f"NumPy {machine['numpy']}, zemosaic-xp {machine['zemosaic_xp']}."]
    for name, info in backends.items():
        if info["available"]:
            lines.append(f"- `{name}`: {info['device']} (library {info['version']})")
        else:
            lines.append(f"- `{name}`: skipped: {info['reason']}")
    lines += ["", table(rows, backends), "",
              "Modes: " + "; ".join(f"`{m}` = {MODE_LABELS[m]}" for m in machine["modes"]) + ". "
              f"Timed runs stop once a case's took {machine['case_budget_sec']:g} s. "
              "× NumPy: the NumPy backend's best time in the same mode over this one's. Peak dev MiB: "
              "CuPy pool high-water / torch max_memory_allocated, input on the device included. "
              "Parity against `zx.stack` on NumPy of the same frames: max abs Δ / σ over pixels finite in "
              "both; coverage and rejection maps: pixels that differ."]
    return "\n".join(lines)
