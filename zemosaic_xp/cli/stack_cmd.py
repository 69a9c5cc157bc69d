"""``zemosaic-xp stack FILES... -o master.fits``: stack FITS frames into a master tile."""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["register", "parse_bytes"]

_BACKENDS = ("auto", "numpy", "torch", "torch:cpu", "cupy", "torch:cuda")
_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_bytes(text: str) -> int:
    """Parse a memory size such as ``"512MB"``, ``"64 MiB"``, ``"1.5G"`` or ``"1048576"``.

    Parameters
    ----------
    text : str
        A number with an optional unit: B, K, KB, KiB, M, MB, MiB, G, GB, GiB (any
        case; K, M and G are powers of 1024).

    Returns
    -------
    int
        The size in bytes, rounded down.

    Raises
    ------
    ValueError
        Not a positive size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        msg = f"`--memory-budget` must be a size such as 512MB, 2GB or 1048576, got {text!r}"
        raise ValueError(msg)
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        msg = f"`--memory-budget` must be positive, got {text!r}"
        raise ValueError(msg)
    return value


def register(subparsers: Any) -> None:
    """Add the ``stack`` sub-command to `subparsers`.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The ``zemosaic-xp`` parser's sub-command group.
    """
    parser = subparsers.add_parser(
        "stack",
        help="stack aligned FITS frames into a master tile (streamed, GPU auto mode C)",
        description=("Stack aligned FITS frames into one master tile: row bands are streamed from "
                     "the files, so any number of frames fits the memory budget. Writes float32 "
                     "CHW FITS with an ALPHA extension and provenance keys."),
    )
    parser.add_argument("files", nargs="+", metavar="FILES", help="aligned FITS frames of one shape")
    parser.add_argument("-o", "--output", required=True, metavar="MASTER", help="master tile FITS to write")
    parser.add_argument("--config", metavar="JSON", default=None,
                        help="zemosaic_config.json (ZeMosaic keys) or a JSON of StackConfig fields; "
                             "options given here override it")
    parser.add_argument("--backend", choices=_BACKENDS, default=None,
                        help="where to stack (default: auto = GPU when healthy, else NumPy)")
    parser.add_argument("--normalize", default=None, help="normalisation method (e.g. linear_fit, none)")
    parser.add_argument("--weighting", default=None, help="weighting method (e.g. noise_variance, none)")
    parser.add_argument("--reject", default=None, help="rejection algorithm (e.g. winsorized_sigma_clip)")
    parser.add_argument("--combine", default=None, help="final combine (e.g. mean, median)")
    parser.add_argument("--cosmic", choices=("off", "auto", "always"), default=None,
                        help="per-frame cosmic-ray masks before the stack: auto = where fewer than "
                             "cosmic_min_depth (7) frames cover a pixel (default: the config's, else off)")
    parser.add_argument("--kappa-low", type=float, default=None, help="low rejection threshold")
    parser.add_argument("--kappa-high", type=float, default=None, help="high rejection threshold")
    parser.add_argument("--memory-budget", default=None, metavar="SIZE",
                        help="working memory of one band, e.g. 512MB (default: 25%% of free memory)")
    parser.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bar")
    parser.set_defaults(func=_run_locked)


def _build_config(args: argparse.Namespace) -> tuple[Any, str]:
    from zemosaic_xp import StackConfig
    from zemosaic_xp.compat.zemosaic import gpu_flag, load_config_file, naming_keys

    data = load_config_file(args.config) if args.config else {}
    config = StackConfig.from_dict(data)  # names the key and the file in its errors
    with naming_keys(data):
        use_gpu = gpu_flag(data)
    changes = {name: getattr(args, name) for name in
               ("normalize", "weighting", "reject", "combine", "kappa_low", "kappa_high", "cosmic")
               if getattr(args, name) is not None}
    if changes:
        config = config.replace(**changes)
    # ZeMosaic's stacking GPU switch (use_gpu_phase5, then its aliases); unset or "auto": allowed.
    backend = args.backend or ("numpy" if use_gpu is False else "auto")
    return config, backend


def _wcs_of(source: Any) -> Any:
    """The celestial WCS of the first frame (a ``FitsSource``), or None."""
    if not any(str(source.card(f"CTYPE{i}", "")).strip() for i in (1, 2)):
        return None  # no WCS: skip importing astropy (a third of a second) and parsing the header
    from astropy.wcs import WCS

    header = source.header
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-standard cards in camera headers
            wcs = WCS(header, naxis=2)
        return wcs if wcs.has_celestial else None
    except Exception:  # noqa: BLE001 - a broken WCS only means "no WCS in the output"
        return None


def _check_output(output: str, files: list[str]) -> None:
    """Refuse an output that is one of the inputs (the same file after resolving links)."""
    from zemosaic_xp.cli import CliError

    try:
        target = os.stat(output)
    except OSError:
        return  # no such file yet: no input is it (every input must exist)
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            continue  # a missing input is reported when it is opened
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):  # links and hard links too
            raise CliError(f"-o/--output '{output}' is the input frame '{name}': writing the master tile "
                           f"would overwrite it; choose another output name")


def _run(args: argparse.Namespace) -> int:
    from zemosaic_xp import stack_master_tile, write_master_tile
    from zemosaic_xp.cli.progress import ProgressBar
    from zemosaic_xp.io.bands import FitsSource

    _check_output(args.output, args.files)  # before any work: nothing is read, nothing lost
    config, backend = _build_config(args)
    budget = parse_bytes(args.memory_budget) if args.memory_budget else None
    bar = ProgressBar(enabled=not getattr(args, "quiet", False))
    try:
        result = stack_master_tile(args.files, config, backend=backend, memory_budget_bytes=budget,
                                   progress_callback=bar)
    finally:
        bar.close()
    reference = next(f for f in args.files if f not in result.stats["skipped_frames"])
    out = write_master_tile(result, args.output, wcs=_wcs_of(FitsSource(reference)))
    s = result.stats
    print(f"master tile written to {Path(out)}")
    print(f"frames {s['n_frames']} used, {len(s['skipped_frames'])} skipped | rejected "
          f"{s['rejected_pct']:.2f}% | {s['reject']}/{s['combine']} | backend {s['backend']} | "
          f"used_gpu {result.used_gpu} | {s['time_total_sec']:.1f} s")
    sys.stdout.flush()
    return 0


def _run_locked(args: argparse.Namespace) -> int:
    """:func:`_run` while holding the output folder's run lock: a second run into it stops at once."""
    from zemosaic_xp.compute_threads import one_compute_thread

    # Before NumPy loads its OpenBLAS: one thread, not one spinning per core (torch's CPU
    # backend keeps its OpenMP threads: only OpenBLAS's variable is set).
    one_compute_thread(("OPENBLAS_NUM_THREADS",))
    from zemosaic_xp.io.runlock import FolderLock

    with FolderLock(Path(args.output).absolute().parent, what="zemosaic-xp stack", tag="[P3]"):
        return _run(args)
