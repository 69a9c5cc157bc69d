"""Real processes for the signal tests: start a run in its own session, find its process
tree, wait for its tiles to run, check that nothing of it survives.

The process tree is read with psutil when it is installed, else from ``/proc`` (Linux);
:data:`CAN_INSPECT` says whether either works here. A zombie counts as gone: after its
parent is killed, a worker is re-parented to a process that may never reap it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from zemosaic_xp.grid.worker import RUNNING_DIR, TEST_HOLD_ENV, TEST_RELEASE_FILE

ROOT = Path(__file__).resolve().parents[2]


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


CAN_INSPECT = hasattr(signal, "SIGKILL") and (Path("/proc/self/stat").exists() or _has_psutil())


def run_env(**extra: str) -> dict[str, str]:
    """The environment of a child run: this checkout first on the path, one BLAS thread."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", **extra)


def hold_tiles(n_tiles: int = 64) -> dict[str, str]:
    """Environment that keeps every tile running until :func:`release` (test hook)."""
    return {TEST_HOLD_ENV: ",".join(str(i) for i in range(1, n_tiles + 1))}


def release(out: Path) -> None:
    """Let the held tiles of the run writing into ``out`` finish."""
    (out / "tiles").mkdir(parents=True, exist_ok=True)
    (out / "tiles" / TEST_RELEASE_FILE).write_text("go", encoding="utf-8")


def wait_running_tiles(out: Path, count: int, proc: subprocess.Popen, timeout: float = 180.0) -> list[str]:
    """Wait until ``count`` tiles of the run are running (their markers exist); their names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = sorted(p.name for p in (out / "tiles" / RUNNING_DIR).glob("tile_*"))
        if len(running) >= count:
            return running
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before {count} tiles ran: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{count} running tiles not seen within {timeout:.0f} s")


def _table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, command line) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry)] = (int(fields[1]), fields[0], cmd)
    return table


def descendants(pid: int) -> dict[int, str]:
    """The live descendants of ``pid``: pid -> command line."""
    try:
        import psutil
    except ImportError:
        table = _table()
        found: dict[int, str] = {}
        todo = [pid]
        while todo:
            parent = todo.pop()
            for child, (ppid, state, cmd) in table.items():
                if ppid == parent and child not in found and state != "Z":
                    found[child] = cmd
                    todo.append(child)
        return found
    out = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            out[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            continue
    return out


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies excluded)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            if Path("/proc/self/stat").exists():
                continue
            import psutil

            try:
                state = "Z" if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else "R"
            except psutil.Error:
                continue
        if state != "Z":
            out.append(pid)
    return out


def wait_gone(pids: list[int], timeout: float = 60.0) -> list[int]:
    """Wait until none of ``pids`` runs; the survivors after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def kill_all(pids: list[int]) -> None:
    """SIGKILL what is left (clean-up of a failed test)."""
    for pid in alive(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def start(args: list[str], out: Path, **env: str) -> subprocess.Popen:
    """Start ``python ARGS`` in a session of its own (as a terminal would start a command)."""
    with open(out.parent / f"{out.name}.stderr", "w", encoding="utf-8") as err:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, *args], env=run_env(**env), cwd=str(out.parent),
                                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)


def stderr_of(out: Path) -> str:
    """What the run started by :func:`start` wrote on stderr so far."""
    return (out.parent / f"{out.name}.stderr").read_text(encoding="utf-8")
