"""Read a ``resource_telemetry.csv`` back: a text summary and a PNG of CPU, RAM and VRAM.

The summary follows upstream ZeMosaic's ``tools/analyze_resource_telemetry.py``: rows
grouped by phase, mean/max CPU %, max RAM fraction, mean/max VRAM used, the non-zero
means of the plan columns, and a warning where CPU, RAM or VRAM went above 90 %.
matplotlib (the ``plot`` extra) is imported only by :func:`plot_telemetry_csv`, and
without pyplot, so plotting never changes the caller's matplotlib backend.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from .csvlog import read_telemetry_csv

__all__ = ["summarize_telemetry_csv", "format_telemetry_summary", "plot_telemetry_csv"]

logger = logging.getLogger(__name__)

_WARN_FRACTION = 0.90
_PLAN_KEYS = ("cpu_workers", "rows_per_chunk", "gpu_rows_per_chunk", "max_chunk_bytes", "gpu_max_chunk_bytes")
_GIB_PER_MIB = 1.0 / 1024.0


def summarize_telemetry_csv(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Per-phase and overall resource statistics of a telemetry CSV.

    Parameters
    ----------
    path : str or os.PathLike
        A ``resource_telemetry.csv``.

    Returns
    -------
    dict
        ``path``, ``rows`` (int), ``duration_sec`` (first to last timestamp, None if
        fewer than two parse), ``overall`` and ``phases`` (a list in order of first
        appearance, each with ``phase_index`` and ``phase_name``). Each statistics dict
        has ``rows``, ``cpu_mean``/``cpu_max`` (%), ``ram_max_fraction`` (max of
        ram_used / ram_total, 0-1), ``ram_used_max_mb``, ``ram_total_mb``,
        ``gpu_used_mean_mb``, ``gpu_used_max_mb``, ``gpu_total_mb``,
        ``vram_max_fraction`` (0-1) and ``plan_means`` (mean of the non-zero values of
        ``cpu_workers``, ``rows_per_chunk``, ...). A value with no data is None.
        ``warnings`` lists one line per phase where CPU, RAM or VRAM exceeded 90 %.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ValueError
        If the file is not a telemetry CSV or has no complete row.
    """
    rows = read_telemetry_csv(path)
    if not rows:
        msg = f"telemetry CSV {str(path)!r} has a header but no complete row; was telemetry enabled?"
        raise ValueError(msg)
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("phase_index"), row.get("phase_name")), []).append(row)
    phases = [{"phase_index": idx, "phase_name": name, **_stats(group)}
              for (idx, name), group in groups.items()]
    times = [t for t in (_parse_time(r.get("timestamp_iso")) for r in rows) if t is not None]
    duration = (max(times) - min(times)).total_seconds() if len(times) >= 2 else None
    return {
        "path": str(path),
        "rows": len(rows),
        "duration_sec": duration,
        "overall": _stats(rows),
        "phases": phases,
        "warnings": _warnings(phases),
    }


def format_telemetry_summary(summary: dict[str, Any]) -> str:
    """Render :func:`summarize_telemetry_csv`'s result as a small text table.

    Parameters
    ----------
    summary : dict
        The summary to render.

    Returns
    -------
    str
        Lines without a trailing newline: a title, one row per phase, an ``overall``
        row, the plan means and the warnings (``!`` lines) if any.
    """
    duration = summary.get("duration_sec")
    span = f" over {timedelta(seconds=round(duration))}" if duration is not None else ""
    lines = [f"Telemetry summary: {summary['path']} ({summary['rows']} samples{span})",
             f"{'phase':<32} {'samples':>7} {'CPU mean':>8} {'CPU max':>8} {'RAM max':>8}  VRAM max"]
    named = [(_phase_label(p), p) for p in summary["phases"]] + [("overall", summary["overall"])]
    for label, st in named:
        lines.append(f"{label[:32]:<32} {st['rows']:>7} {_pct(st['cpu_mean']):>8} {_pct(st['cpu_max']):>8} "
                     f"{_pct(_times100(st['ram_max_fraction'])):>8}  {_vram(st)}")
    plans = [(label, st["plan_means"]) for label, st in named[:-1] if st["plan_means"]]
    if len(plans) > 1 and all(plan == plans[0][1] for _, plan in plans):
        plans = [("(all phases)", plans[0][1])]  # one line when the plan never changed
    for label, plan in plans:
        lines.append(f"plan {label}: " + ", ".join(f"{k} {v:g}" for k, v in plan.items()))
    lines.extend(f"! {w}" for w in summary["warnings"])
    return "\n".join(lines)


def plot_telemetry_csv(path: str | os.PathLike[str], output_path: str | os.PathLike[str] | None = None,
                       *, title: str | None = None, dpi: int = 110) -> Path:
    """Plot CPU %, RAM and GPU memory over time, with the phase changes marked.

    Parameters
    ----------
    path : str or os.PathLike
        A ``resource_telemetry.csv``.
    output_path : str or os.PathLike, optional
        Image to write; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        Default: `path` with the suffix ``.png``.
    title : str, optional
        Figure title; default the CSV's file name.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    pathlib.Path
        The image written. It is written to a temporary name and renamed, so a
        failure leaves no half-written image.

    Raises
    ------
    ImportError
        If matplotlib is missing (``pip install 'zemosaic-xp[plot]'``).
    FileNotFoundError
        If `path` or the folder of `output_path` does not exist.
    ValueError
        If `path` is not a telemetry CSV or no row has a valid timestamp.

    Notes
    -----
    Time is in seconds since the first sample. The axes are CPU % (0-100), RAM
    (GiB used, dashed total) and, when any row has GPU values, VRAM (GiB used, dashed
    total). Rows whose timestamp does not parse are skipped.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        msg = "plotting telemetry needs matplotlib: pip install 'zemosaic-xp[plot]'"
        raise ImportError(msg) from exc
    rows = read_telemetry_csv(path)
    timed = [(t, r) for t, r in ((_parse_time(r.get("timestamp_iso")), r) for r in rows) if t is not None]
    if not timed:
        msg = f"telemetry CSV {str(path)!r} has no row with a valid timestamp_iso; nothing to plot"
        raise ValueError(msg)
    out = Path(output_path) if output_path is not None else Path(path).with_suffix(".png")
    if not out.parent.is_dir():
        msg = f"output folder {str(out.parent)!r} of the plot does not exist; create it or pick another path"
        raise FileNotFoundError(msg)
    t0 = timed[0][0]
    secs = [(t - t0).total_seconds() for t, _ in timed]
    data = [r for _, r in timed]
    has_gpu = any(r.get("gpu_total_mb") is not None for r in data)
    fig = Figure(figsize=(10, 7 if has_gpu else 5), layout="constrained")
    axes = fig.subplots(3 if has_gpu else 2, 1, sharex=True)
    marker = "." if len(data) < 60 else None
    _draw_cpu(axes[0], secs, data, marker)
    _draw_memory(axes[1], secs, data, marker, "ram", "RAM (GiB)", "tab:green")
    if has_gpu:
        _draw_memory(axes[2], secs, data, marker, "gpu", "VRAM (GiB)", "tab:purple")
    _mark_phases(axes, secs, data)
    axes[-1].set_xlabel("time since first sample (s)")
    fig.suptitle(title if title is not None else Path(path).name)
    _save_atomically(fig, out, dpi)
    logger.info("[TELEMETRY] plot written to %s", out)
    return out


def _stats(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    cpu = _numbers(rows, "cpu_percent")
    ram_frac = [r["ram_used_mb"] / r["ram_total_mb"] for r in rows
                if _num(r.get("ram_used_mb")) and _num(r.get("ram_total_mb")) and r["ram_total_mb"] > 0]
    gpu_used = _numbers(rows, "gpu_used_mb")
    vram_frac = [r["gpu_used_mb"] / r["gpu_total_mb"] for r in rows
                 if _num(r.get("gpu_used_mb")) and _num(r.get("gpu_total_mb")) and r["gpu_total_mb"] > 0]
    plan = {k: _mean(v) for k in _PLAN_KEYS if (v := [x for x in _numbers(rows, k) if x != 0])}
    return {
        "rows": len(rows),
        "cpu_mean": _mean(cpu),
        "cpu_max": max(cpu, default=None),
        "ram_max_fraction": max(ram_frac, default=None),
        "ram_used_max_mb": max(_numbers(rows, "ram_used_mb"), default=None),
        "ram_total_mb": max(_numbers(rows, "ram_total_mb"), default=None),
        "gpu_used_mean_mb": _mean(gpu_used),
        "gpu_used_max_mb": max(gpu_used, default=None),
        "gpu_total_mb": max(_numbers(rows, "gpu_total_mb"), default=None),
        "vram_max_fraction": max(vram_frac, default=None),
        "plan_means": plan,
    }


def _warnings(phases: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for p in phases:
        label = _phase_label(p)
        if p["cpu_max"] is not None and p["cpu_max"] > 100 * _WARN_FRACTION:
            out.append(f"CPU reached {p['cpu_max']:.1f}% in {label!r}: CPU-bound there; "
                       "more workers will not speed it up")
        if p["ram_max_fraction"] is not None and p["ram_max_fraction"] > _WARN_FRACTION:
            out.append(f"RAM reached {100 * p['ram_max_fraction']:.1f}% in {label!r}: risk of swapping "
                       "or OOM; lower the workers or the chunk size")
        if p["vram_max_fraction"] is not None and p["vram_max_fraction"] > _WARN_FRACTION:
            out.append(f"VRAM reached {100 * p['vram_max_fraction']:.1f}% in {label!r}: risk of GPU OOM; "
                       "lower gpu_rows_per_chunk or gpu_max_chunk_bytes")
    return out


def _phase_label(phase: dict[str, Any]) -> str:
    name, idx = phase.get("phase_name"), phase.get("phase_index")
    if name is not None:
        return str(name)
    return f"phase {idx}" if idx is not None else "(no phase)"


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _numbers(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if _num(r.get(key))]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _times100(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _vram(st: dict[str, Any]) -> str:
    if st["gpu_used_max_mb"] is None:
        return "-"
    total = st["gpu_total_mb"]
    text = f"{st['gpu_used_max_mb'] * _GIB_PER_MIB:.1f}"
    if total:
        text += f" / {total * _GIB_PER_MIB:.1f} GiB ({100 * st['gpu_used_max_mb'] / total:.0f}%)"
    return text + ("" if total else " GiB")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Upstream wrote naive UTC stamps with a trailing "Z"; a stamp without offset is UTC too.
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=timezone.utc)


def _series(secs: Sequence[float], rows: Sequence[dict[str, Any]], key: str,
            scale: float = 1.0) -> tuple[list[float], list[float]]:
    pts = [(t, float(r[key]) * scale) for t, r in zip(secs, rows) if _num(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _draw_cpu(ax: Any, secs: Sequence[float], rows: Sequence[dict[str, Any]], marker: str | None) -> None:
    ax.plot(*_series(secs, rows, "cpu_percent"), color="tab:blue", marker=marker, label="CPU")
    ax.set_ylabel("CPU (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, alpha=0.3)


def _draw_memory(ax: Any, secs: Sequence[float], rows: Sequence[dict[str, Any]], marker: str | None,
                 prefix: str, ylabel: str, color: str) -> None:
    ax.plot(*_series(secs, rows, f"{prefix}_used_mb", _GIB_PER_MIB), color=color, marker=marker, label="used")
    ax.plot(*_series(secs, rows, f"{prefix}_total_mb", _GIB_PER_MIB), color=color, linestyle="--",
            alpha=0.6, label="total")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def _mark_phases(axes: Sequence[Any], secs: Sequence[float], rows: Sequence[dict[str, Any]]) -> None:
    previous: Any = object()
    for t, row in zip(secs, rows):
        key = (row.get("phase_index"), row.get("phase_name"))
        if key == previous:
            continue
        previous = key
        for ax in axes:
            ax.axvline(t, color="0.4", linestyle=":", linewidth=1)
        label = _phase_label({"phase_index": key[0], "phase_name": key[1]})
        axes[0].text(t, 0.98, f" {label}", transform=axes[0].get_xaxis_transform(), rotation=90,
                     va="top", ha="left", fontsize=7, color="0.3",
                     bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})


def _save_atomically(fig: Any, out: Path, dpi: int) -> None:
    fmt = out.suffix.lstrip(".").lower() or "png"
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
