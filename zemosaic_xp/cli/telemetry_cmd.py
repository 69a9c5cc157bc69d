"""``zemosaic-xp telemetry-plot CSV``: summarise a ``resource_telemetry.csv`` and plot it."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``telemetry-plot`` sub-command to `subparsers`.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``zemosaic-xp`` parser's sub-command group.
    """
    parser = subparsers.add_parser(
        "telemetry-plot",
        help="summarise a resource_telemetry.csv and plot CPU / RAM / VRAM over time",
        description=("Print per-phase CPU, RAM and VRAM statistics of a telemetry CSV (with a warning "
                     "where one exceeded 90%%) and plot them over time, phase changes marked. "
                     "The plot needs matplotlib: pip install 'zemosaic-xp[plot]'."),
    )
    parser.add_argument("csv", metavar="CSV", help="resource_telemetry.csv written by a run")
    parser.add_argument("-o", "--output", metavar="IMAGE", default=None,
                        help="image to write (.png, .svg, .pdf); default: CSV with the suffix .png")
    parser.add_argument("--title", default=None, help="figure title (default: the CSV's file name)")
    parser.add_argument("--no-plot", action="store_true", help="print the summary only")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from zemosaic_xp.cli import CliError
    from zemosaic_xp.telemetry import format_telemetry_summary, plot_telemetry_csv, summarize_telemetry_csv

    summary = summarize_telemetry_csv(args.csv)
    print(format_telemetry_summary(summary))
    if args.no_plot:
        return 0
    try:
        out = plot_telemetry_csv(args.csv, args.output, title=args.title)
    except ImportError as exc:
        raise CliError(f"{exc} (or pass --no-plot)") from exc
    print(f"plot written to {out}")
    return 0
