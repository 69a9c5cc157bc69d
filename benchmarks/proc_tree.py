"""Run a benchmark's tool as a whole process: wall time, CPU time and the peak RSS of its process tree.

Memory is sampled every 20 ms on the child and all its live descendants (psutil for the
tree, ``/proc/PID/status`` for each process): ``largest`` is the largest ``VmHWM`` (the
kernel's own peak RSS of one process, so a spike between two samples is not missed, only
one in a process's last 20 ms), ``tree`` the peak over the samples of the summed RSS of
the live processes. ``ru_maxrss`` of ``os.wait4`` is kept (``wait4_maxrss_kib``) but not
used: on Linux a child started by ``vfork`` + ``exec`` records the benchmark process's own
peak RSS at its exec, so it is only an upper bound. Used by ``peers.py`` (Siril) and
``peers_grid.py`` (SWarp, reproject).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TreeRun", "run_tree", "run_failure"]

_POLL_SEC = 0.02


@dataclass(frozen=True)
class TreeRun:
    """One finished child process and its descendants.

    Parameters
    ----------
    wall_sec : float
        Spawn to exit, seconds.
    largest_rss_kib : int
        The largest ``VmHWM`` (peak RSS) of one process of the tree, KiB.
    tree_rss_kib : int
        Peak of the summed RSS of the live tree, sampled every 20 ms, KiB.
    wait4_maxrss_kib : int
        ``ru_maxrss`` of ``os.wait4`` (an upper bound: see the module docstring), KiB.
    cpu_sec : float
        User + system CPU seconds of the tree: the larger of ``os.wait4``'s (the child
        and the descendants it waited for) and the sum over every process seen of its
        own CPU time at its last sample (descendants that nobody in the tree waited for,
        such as the workers of a fork server stopped in the background, count too;
        each loses at most its last 20 ms).
    returncode : int
        Exit status (negative: killed by that signal).
    log : Path
        Its stdout and stderr.
    """

    wall_sec: float
    largest_rss_kib: int
    tree_rss_kib: int
    wait4_maxrss_kib: int
    cpu_sec: float
    returncode: int
    log: Path


def _peak_rss_kib(pid: int, fallback: int) -> int:
    """``VmHWM`` of process ``pid`` from ``/proc`` (KiB), or ``fallback`` where unreadable."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return fallback


def _poll_tree(pid: int, done: threading.Event, peaks: dict[str, int], cpu: dict[int, float]) -> None:
    """Sample the tree of process ``pid`` until ``done``.

    Into ``peaks``: ``largest``, ``tree`` (KiB); into ``cpu``: each process's own user +
    system seconds at its last sample, by pid.
    """
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not done.is_set():
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for proc in procs:
            try:
                rss = proc.memory_info().rss // 1024
                times = proc.cpu_times()
            except psutil.Error:  # exited between the listing and the read
                continue
            cpu[proc.pid] = times.user + times.system
            total += rss
            peaks["largest"] = max(peaks["largest"], _peak_rss_kib(proc.pid, rss))
        peaks["tree"] = max(peaks["tree"], total)
        done.wait(_POLL_SEC)


def run_tree(argv: list[str], log: Path, *, env: dict | None = None, cwd: Path | None = None) -> TreeRun:
    """Run ``argv`` to completion; time it and measure the memory of its process tree.

    Parameters
    ----------
    argv : list of str
        The command line.
    log : Path
        Receives the child's stdout and stderr.
    env : dict, optional
        The child's environment (default: ours).
    cwd : Path, optional
        The child's working directory.

    Returns
    -------
    TreeRun
        Wall time, largest process peak, tree peak and exit status.
    """
    peaks = {"largest": 0, "tree": 0}
    cpu: dict[int, float] = {}
    done = threading.Event()
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    poller = threading.Thread(target=_poll_tree, args=(proc.pid, done, peaks, cpu), daemon=True)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    largest = peaks["largest"]
    waited = usage.ru_utime + usage.ru_stime
    return TreeRun(wall, largest, max(peaks["tree"], largest), int(usage.ru_maxrss),
                   max(waited, sum(cpu.values())), proc.returncode, log)


def run_failure(runs: list, out: Path) -> str | None:
    """What went wrong with a tool's runs (exit status and last log line), or None.

    Parameters
    ----------
    runs : list of TreeRun (or anything with ``returncode`` and ``log``)
        The tool's runs of one row.
    out : Path
        The output each run must leave.

    Returns
    -------
    str or None
        None when every run exited 0 and ``out`` exists.
    """
    failed = [run for run in runs if run.returncode != 0]
    if not failed and out.is_file():
        return None
    run = failed[0] if failed else runs[-1]
    tail = run.log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    what = f"exit {run.returncode}" if failed else f"exit 0 but no {out.name}"
    return f"{what}: {tail[0][:200]} (log: {run.log})"
