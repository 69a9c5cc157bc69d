"""The tools of the grid peer benchmark, run as whole processes on the survey's FITS files.

- **SWarp** (``SWarp @frames.list -c run.swarp``): a configuration file written from
  :data:`SWARP_SETTINGS` (``COMBINE_TYPE CLIPPED``, ``RESAMPLING_TYPE BILINEAR``,
  ``SUBTRACT_BACK N``, ``NTHREADS`` = the workers of the row); everything else is SWarp's
  default (TAN, centre and size from all frames, median pixel scale). Its resampled
  temporary files go to the run folder and are deleted by SWarp.
- **ours** (``zemosaic-xp --quiet grid SURVEY OUT --workers N --no-resume``), started
  through the same ``main`` as the ``zemosaic-xp`` entry point, with the
  ``zemosaic_xp.grid`` logger at INFO so the log keeps the ``[GRID] timings`` line (the
  per-phase split); ``OUT`` is deleted before each run.
- **reproject** (:data:`REPROJECT_SCRIPT` in a fresh interpreter):
  ``find_optimal_celestial_wcs`` of the frames, then ``reproject_and_coadd(...,
  reproject_function=reproject_interp, combine_function="mean", match_background=True)``.

Every run is timed from spawn to exit (``proc_tree.run_tree``), and its CPU time (user +
system, of the child and of the descendants it waited for: the grid's worker processes,
SWarp's threads) is read from ``os.wait4``; on a machine shared with other jobs the CPU
time moves much less than the wall time. Memory is sampled every 20 ms
on the child and all its live descendants (psutil for the tree, ``/proc/PID/status`` for
each process): ``largest`` is the largest ``VmHWM`` (the kernel's own peak RSS of one
process, so a spike between two samples is not missed, only one in a process's last
20 ms), ``tree`` the peak over the samples of the summed RSS of the live processes (what
the machine must hold at once: with N grid workers, the parent plus the workers).
``ru_maxrss`` of ``os.wait4`` is kept in the JSON (``wait4_maxrss_kib``) but not used:
on Linux a child inherits the benchmark process's peak RSS at its fork, so it is only an
upper bound.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SWARP_SETTINGS", "REPROJECT_SCRIPT", "OURS_LAUNCHER", "find_swarp",
           "swarp_version", "write_swarp_config", "parse_grid_timings", "parse_grid_elapsed", "ours_argv"]

#: SWarp settings of the benchmark; the rest are SWarp's defaults.
SWARP_SETTINGS = {"COMBINE_TYPE": "CLIPPED", "RESAMPLING_TYPE": "BILINEAR", "SUBTRACT_BACK": "N",
                  "WRITE_XML": "N", "DELETE_TMPFILES": "Y", "VERBOSE_TYPE": "NORMAL"}

#: ``python -c`` launcher of ours: the CLI's ``main`` with the grid's INFO log kept.
OURS_LAUNCHER = ("import logging, sys\n"
                 "handler = logging.StreamHandler(sys.stderr)\n"
                 "handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))\n"
                 "grid_log = logging.getLogger('zemosaic_xp.grid')\n"
                 "grid_log.setLevel(logging.INFO); grid_log.addHandler(handler); grid_log.propagate = False\n"
                 "from zemosaic_xp.cli import main\n"
                 "sys.exit(main())\n")

#: The reproject run: ``python SCRIPT FRAMES_LIST OUT.fits``.
REPROJECT_SCRIPT = '''\
"""reproject_and_coadd of the frames listed in argv[1] into argv[2] (image, then footprint HDU)."""
import sys

from astropy.io import fits
from reproject import reproject_interp
from reproject.mosaicking import find_optimal_celestial_wcs, reproject_and_coadd

paths = [line.strip() for line in open(sys.argv[1]) if line.strip()]
hdus = [fits.open(p, memmap=False)[0] for p in paths]
wcs_out, shape_out = find_optimal_celestial_wcs(hdus)
image, footprint = reproject_and_coadd(hdus, wcs_out, shape_out=shape_out, reproject_function=reproject_interp,
                                       combine_function="mean", match_background=True)
header = wcs_out.to_header()
fits.HDUList([fits.PrimaryHDU(image.astype("float32"), header=header),
              fits.ImageHDU(footprint.astype("float32"), header=header, name="FOOTPRINT")]).writeto(
    sys.argv[2], overwrite=True)
'''

_TIMINGS = re.compile(r"\[GRID\] timings: setup ([0-9.]+) s, frame normalisation ([0-9.]+) s( \(during the tiles\))?"
                      r", tiles ([0-9.]+) s, assembly ([0-9.]+) s")
_ELAPSED = re.compile(r"^tiles: .*; ([0-9.]+) s$", re.MULTILINE)


def find_swarp(explicit: str | None = None) -> str | None:
    """Path of SWarp (``explicit`` if given, else ``SWarp`` or ``swarp`` from PATH), or None."""
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return shutil.which("SWarp") or shutil.which("swarp")


def swarp_version(binary: str) -> str:
    """What ``SWarp -v`` prints (first line), or what went wrong."""
    try:
        proc = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"unknown (exit {proc.returncode})"


def write_swarp_config(path: Path, *, threads: int, image: Path, weight: Path, resample_dir: Path) -> Path:
    """Write a SWarp configuration file: :data:`SWARP_SETTINGS` plus the run's files and threads.

    Parameters
    ----------
    path : Path
        Where to write it.
    threads : int
        ``NTHREADS``.
    image, weight : Path
        ``IMAGEOUT_NAME`` and ``WEIGHTOUT_NAME``.
    resample_dir : Path
        ``RESAMPLE_DIR`` and ``VMEM_DIR`` (SWarp's temporary files).

    Returns
    -------
    Path
        ``path``.
    """
    settings = dict(SWARP_SETTINGS, NTHREADS=str(threads), IMAGEOUT_NAME=str(image), WEIGHTOUT_NAME=str(weight),
                    RESAMPLE_DIR=str(resample_dir), VMEM_DIR=str(resample_dir))
    path.write_text("".join(f"{key:<20} {value}\n" for key, value in settings.items()))
    return path


def parse_grid_timings(log_text: str) -> dict | None:
    """The ``[GRID] timings`` line of our log as a dict of seconds, or None.

    Parameters
    ----------
    log_text : str
        Our run's stdout and stderr.

    Returns
    -------
    dict or None
        ``setup_sec``, ``normalise_sec``, ``tiles_sec``, ``assembly_sec`` and
        ``normalise_during_tiles`` (bool: the normalisation overlapped the tiles).
    """
    match = _TIMINGS.search(log_text)
    if match is None:
        return None
    setup, norm, during, tiles, assembly = match.groups()
    return {"setup_sec": float(setup), "normalise_sec": float(norm), "normalise_during_tiles": during is not None,
            "tiles_sec": float(tiles), "assembly_sec": float(assembly)}


def parse_grid_elapsed(log_text: str) -> float | None:
    """``GridResult.elapsed_sec`` as the summary line of ``zemosaic-xp grid`` prints it, or None."""
    match = _ELAPSED.search(log_text)
    return float(match.group(1)) if match else None


def ours_argv(survey_folder: Path, out: Path, workers: int) -> list[str]:
    """The command line of one run of ours (see the module docstring)."""
    return [sys.executable, "-c", OURS_LAUNCHER, "--quiet", "grid", str(survey_folder), str(out),
            "--workers", str(workers), "--no-resume"]
