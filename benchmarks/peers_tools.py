"""The two tools of the peer benchmark, run as a user runs them: whole processes, files on disk.

- **ours**: ``zemosaic-xp stack FRAMES... -o OUT.fits --config CFG.json --quiet`` (plus
  ``--backend X`` only when the benchmark is given one). CFG.json holds ZeMosaic's keys
  (:mod:`zemosaic_xp.compat.zemosaic`) and, for the percentile and GESD parameters that
  have no ZeMosaic key, the :class:`zemosaic_xp.StackConfig` field names.
- **Siril**: ``siril-cli -d CASE -s SCRIPT`` with ``link`` then ``stack ... -nonorm``
  (Siril 1.0 syntax, see :func:`siril_script`). Its user settings are kept in a folder
  of the benchmark's own (``XDG_CONFIG_HOME``), so every run sees Siril's defaults
  whatever the user configured.

Each run is one child process; its wall time is measured around the spawn and the wait,
and its peak RSS is its own ``VmHWM``, sampled by ``proc_tree.run_tree`` (``ru_maxrss``
of ``os.wait4`` is not used: a child records the benchmark's own peak RSS at its exec).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from proc_tree import run_tree

__all__ = ["REJECTIONS", "ProcessRun", "Tool", "run_process", "find_siril", "ours_command",
           "find_ours", "kernels_state", "tool_version", "siril_script", "siril_rejected_pct", "write_ours_config",
           "drop_page_cache", "warm_read"]

# Rejection name -> (our StackConfig settings, Siril's stack arguments). Same thresholds on
# both sides; normalisation and weighting are off on both sides (-nonorm, none/none).
REJECTIONS: dict[str, tuple[dict, str]] = {
    "kappa_sigma": ({"stacking_rejection_algorithm": "kappa_sigma", "stacking_kappa_low": 3.0,
                     "stacking_kappa_high": 3.0, "stacking_final_combine_method": "mean"}, "rej s 3 3"),
    "winsorized_sigma_clip": ({"stacking_rejection_algorithm": "winsorized_sigma_clip", "stacking_kappa_low": 3.0,
                               "stacking_kappa_high": 3.0, "stacking_final_combine_method": "mean"}, "rej w 3 3"),
    "linear_fit_clip": ({"stacking_rejection_algorithm": "linear_fit_clip", "stacking_kappa_low": 3.0,
                         "stacking_kappa_high": 3.0, "stacking_final_combine_method": "mean"}, "rej l 3 3"),
    # No ZeMosaic key for these parameters: StackConfig field names (from_dict takes both).
    "percentile": ({"stacking_rejection_algorithm": "percentile", "percentile_low": 0.2, "percentile_high": 0.1,
                    "stacking_final_combine_method": "mean"}, "rej p 0.2 0.1"),
    "gesd": ({"stacking_rejection_algorithm": "gesd", "gesd_outlier_fraction": 0.3, "gesd_alpha": 0.05,
              "stacking_final_combine_method": "mean"}, "rej g 0.3 0.05"),
    "median": ({"stacking_rejection_algorithm": "none", "stacking_final_combine_method": "median"}, "med"),
}

_SIRIL_REJECTION = re.compile(r"Pixel rejection in channel #(\d+):\s*([0-9.]+)%\s*-\s*([0-9.]+)%")


@dataclass(frozen=True)
class ProcessRun:
    """One finished child process.

    Parameters
    ----------
    wall_sec : float
        Spawn to exit, seconds.
    peak_rss_kib : int
        The child's peak RSS, its ``VmHWM`` (KiB; ``proc_tree.run_tree``).
    returncode : int
        Exit status (negative: killed by that signal).
    log : Path
        Its stdout and stderr.
    """

    wall_sec: float
    peak_rss_kib: int
    returncode: int
    log: Path


@dataclass(frozen=True)
class Tool:
    """A tool of the benchmark: a label and the command that starts it.

    Parameters
    ----------
    name : {"ours", "siril"}
        Which tool.
    command : tuple of str
        The executable (and, for ours without an entry point, the interpreter and ``-c``).
    version : str
        What ``--version`` printed.
    """

    name: str
    command: tuple[str, ...]
    version: str


def run_process(argv: list[str], log: Path, *, env: dict | None = None, cwd: Path | None = None) -> ProcessRun:
    """Run ``argv`` to completion; time it and read its peak RSS.

    Parameters
    ----------
    argv : list of str
        The command line.
    log : Path
        Receives the child's stdout and stderr (a file, so no pipe can fill up).
    env : dict, optional
        The child's environment (default: ours).
    cwd : Path, optional
        The child's working directory.

    Returns
    -------
    ProcessRun
        Wall time, peak RSS and exit status.
    """
    run = run_tree(argv, log, env=env, cwd=cwd)
    return ProcessRun(run.wall_sec, run.largest_rss_kib, run.returncode, log)


def find_siril(explicit: str | None = None) -> str | None:
    """Path of ``siril-cli`` (``explicit`` if given, else from PATH), or None."""
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    return shutil.which("siril-cli")


def find_ours() -> tuple[str, ...]:
    """How to start ``zemosaic-xp``: the entry point of this interpreter's environment, else PATH's.

    Returns
    -------
    tuple of str
        ``("/venv/bin/zemosaic-xp",)``, or, where no entry point is installed (a bare
        checkout), this interpreter running the same ``main`` the entry point calls.
    """
    beside = Path(sys.executable).parent / "zemosaic-xp"
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside),)
    found = shutil.which("zemosaic-xp")
    if found:
        return (found,)
    return (sys.executable, "-c", "import sys; from zemosaic_xp.cli import main; sys.exit(main())")


def compile_ours() -> str:
    """Write zemosaic_xp's bytecode where it is missing, as ``pip install`` does; say what was done.

    A wheel installed by pip comes with its modules compiled. An editable checkout gets
    them on its first import, unless ``PYTHONDONTWRITEBYTECODE`` is set (as on the
    benchmark VM): then every start compiles ~120 modules from source, ~0.25 s of CPU
    that no installed copy pays. The benchmark times the installed case.

    Returns
    -------
    str
        "bytecode compiled", or why not (the package not found, a folder not writable).
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("zemosaic_xp")
    if spec is None or spec.origin is None:
        return "bytecode not compiled (zemosaic_xp not found)"
    folder = Path(spec.origin).parent
    ok = compileall.compile_dir(str(folder), quiet=2)
    return "bytecode compiled" if ok else f"bytecode not compiled (could not write under {folder})"


def kernels_state() -> str:
    """Whether ``zemosaic-xp`` loads its kernels compiled ahead of time, as its processes will.

    Returns
    -------
    str
        "kernels compiled ahead of time: yes" (``zemosaic-xp build-kernels`` was run for
        this install: no numba at start-up) or "...: no" (numba's JIT cache), or why
        it is unknown.
    """
    try:
        proc = subprocess.run([*find_ours(), "build-kernels", "--status"], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"kernels compiled ahead of time: unknown ({exc})"
    lines = proc.stdout.strip().splitlines()
    return lines[0].split(";")[0] if lines else f"kernels compiled ahead of time: unknown (exit {proc.returncode})"


def tool_version(command: tuple[str, ...], *, env: dict | None = None) -> str:
    """First line that ``COMMAND --version`` prints, or what went wrong."""
    try:
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"unknown (exit {proc.returncode})"


def write_ours_config(path: Path, rejection: str) -> Path:
    """Write the ``--config`` JSON of ``rejection`` for ``zemosaic-xp stack``.

    Parameters
    ----------
    path : Path
        Where to write it.
    rejection : str
        A key of :data:`REJECTIONS`.

    Returns
    -------
    Path
        ``path``.
    """
    settings = {"stacking_normalize_method": "none", "stacking_weighting_method": "none",
                **REJECTIONS[rejection][0]}
    path.write_text(json.dumps(settings, indent=1))
    return path


def ours_command(tool: Tool, frames: tuple[Path, ...], out: Path, config: Path, backend: str | None) -> list[str]:
    """The ``zemosaic-xp stack`` command line of one run."""
    argv = [*tool.command, "stack", *map(str, frames), "-o", str(out), "--config", str(config), "--quiet"]
    return argv + (["--backend", backend] if backend else [])


def siril_script(rejection: str, out_name: str) -> str:
    """Siril 1.0 script stacking ``CASE/frames`` into ``CASE/<out_name>.fits``.

    Parameters
    ----------
    rejection : str
        A key of :data:`REJECTIONS`.
    out_name : str
        Output file name without extension, relative to the case folder.

    Returns
    -------
    str
        The script; run it with ``siril-cli -d CASE -s SCRIPT``.

    Notes
    -----
    ``link lnk`` makes the sequence ``lnk_`` (Siril appends the underscore); stacking
    ``lnk_`` by that name spares Siril a failed lookup of ``lnk.seq``.
    """
    method = REJECTIONS[rejection][1]
    return ("requires 1.0.0\nsetext fits\ncd frames\nlink lnk -out=../sirilwork\ncd ../sirilwork\n"
            f"stack lnk_ {method} -nonorm -out=../{out_name}\n")


def siril_rejected_pct(log_text: str) -> tuple[float, float] | None:
    """Low and high rejected % that Siril's log reports (summed over channels), or None.

    Parameters
    ----------
    log_text : str
        Siril's stdout, with lines such as
        ``log: Pixel rejection in channel #0: 0.614% - 0.537%``.

    Returns
    -------
    (float, float) or None
        None when the log has no such line (Siril prints none for ``med``).
    """
    found = _SIRIL_REJECTION.findall(log_text)
    if not found:
        return None
    return sum(float(low) for _, low, _ in found), sum(float(high) for _, _, high in found)


def drop_page_cache() -> None:
    """``sync; echo 3 > /proc/sys/vm/drop_caches`` (root only).

    Raises
    ------
    PermissionError
        Not root: ``--cold`` cannot be honoured.
    """
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
    except OSError as exc:
        msg = (f"--cold needs root to write /proc/sys/vm/drop_caches ({exc.strerror or exc}); "
               f"run as root or drop --cold")
        raise PermissionError(msg) from exc


def warm_read(frames: tuple[Path, ...]) -> None:
    """Read every frame file once, so both tools start with the frames in the page cache."""
    for path in frames:
        with open(path, "rb") as fh:
            while fh.read(1 << 22):
                pass
