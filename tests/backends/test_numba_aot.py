"""Kernels compiled ahead of time (backends/numba/aot.py, aot_build.py).

The build itself runs the representative stacks with the JIT and with the built module
and fails on any bit of difference (``aot_build.build``); here: the dispatch rule agrees
with numba's typing, nothing is loaded that was built for another install, a process
with a built module stacks without importing numba and gets the JIT's bits, a call the
module was not built for runs the JIT, and the built functions release the GIL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from zemosaic_xp.aot_workloads import run_all  # noqa: E402
from zemosaic_xp.backends.numba import aot, aot_build  # noqa: E402


def _values() -> list:
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    readonly = np.zeros((5, 2), np.int64)
    readonly.flags.writeable = False
    return [base, base[:, 1:], np.asfortranarray(base), base.astype(np.uint16), np.zeros(7, np.bool_),
            np.zeros((0, 2), np.float64), readonly, np.zeros((3,), np.int32)[::2], np.float32(1.5),
            np.int64(3), np.bool_(True), True, 3, 2.5]


@pytest.mark.parametrize("value", _values(), ids=lambda v: f"{type(v).__name__}-{getattr(v, 'dtype', '')}"
                         f"-{getattr(v, 'shape', '')}")
def test_type_key_is_numbas_type(value):
    # What the built module's index records (from numba's signature) and what a call
    # computes (from the argument) must agree, or every call would miss.
    recorded = aot_build._arg_key(numba.typeof(value))
    assert aot.type_key(value) == aot._tupled(recorded)


def test_anything_else_has_no_type_key():
    assert aot.type_key(None) is None and aot.type_key((1, 2)) is None


def test_kernel_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(aot.DIR_ENV, str(tmp_path / "k"))
    assert aot.kernel_root() == tmp_path / "k"
    monkeypatch.delenv(aot.DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert aot.kernel_root() == tmp_path / "zemosaic_xp" / "kernels"


def test_without_a_build_entry_is_the_jit(monkeypatch, tmp_path):
    from zemosaic_xp.backends.numba import kappa_sigma

    monkeypatch.setenv(aot.DIR_ENV, str(tmp_path))
    (tmp_path / "0123456789abcdef0123").mkdir()  # another install's build: not ours
    (tmp_path / "0123456789abcdef0123" / aot.INDEX).write_text("{}")
    aot.use("auto")
    try:
        assert aot.built_folder() is None
        assert aot.entry("kappa_sigma_rows") is kappa_sigma.kappa_sigma_rows
        assert aot.status()["compiled"] is False
    finally:
        aot.use("auto")


def test_build_key_is_stable_and_names_a_module():
    key = aot.build_key()
    assert len(key) == 20 and key == aot.build_key()
    assert aot.module_name(key).isidentifier()


def _can_compile() -> str | None:
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        return "no C compiler (cc/gcc) on PATH"
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").exists():
        return f"no Python.h in {include}"
    try:
        aot_build._pycc()
    except ImportError:
        return "this numba has no numba.pycc"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """This install's kernels built into a temporary root (about 1-2 min)."""
    reason = _can_compile()
    if reason:
        pytest.skip(f"cannot build kernels ahead of time here: {reason}")
    root = tmp_path_factory.mktemp("kernels")
    lines: list[str] = []
    folder = aot_build.build(run_all, root, report=lines.append)  # raises if any stack differs from the JIT's
    assert any("bit for bit" in line for line in lines)
    return root, folder


def test_build_installs_one_complete_folder(built):
    root, folder = built
    assert folder == root / aot.build_key()
    assert [p.name for p in root.iterdir()] == [folder.name]  # no partial folder left
    index = json.loads((folder / aot.INDEX).read_text())
    assert (folder / index["file"]).is_file()
    # The kernels of every unweighted and weighted band, the grid's cells and the paired fit.
    for name in ("gather_sorted", "combine_ranges", "kappa_sigma_rows", "gesd_rows", "percentile_rows",
                 "linear_fit_clip_rows", "wsc_pixinsight_rows", "gather_keys", "gather_key_rows",
                 "combine_weighted", "deming_sums"):
        assert index["kernels"].get(name), name
    again: list[str] = []
    assert aot_build.build(run_all, root, report=again.append) == folder
    assert "already built" in again[0]


_PROCESS = textwrap.dedent("""
    import sys
    from zemosaic_xp.cli import main
    code = main(sys.argv[1:])
    from zemosaic_xp.backends.numba import aot
    print("NUMBA", "numba" in sys.modules, "COMPILED", aot.status()["compiled"])
    sys.exit(code)
""")


def test_a_process_with_built_kernels_stacks_without_numba(built, tmp_path):
    from astropy.io import fits

    root, _ = built
    rng = np.random.default_rng(5)
    paths = []
    for k in range(20):
        frame = rng.normal(1000, 10, (40, 64))
        frame[rng.random(frame.shape) < 0.01] = 20000
        path = tmp_path / f"f{k}.fits"
        hdu = fits.PrimaryHDU((np.round(frame) - 32768).astype(np.int16))
        hdu.header["BZERO"] = 32768
        hdu.writeto(path)
        paths.append(str(path))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"reject": "kappa_sigma", "normalize": "none", "weighting": "none"}))
    images = {}
    for mode in ("1", "0"):
        env = {**os.environ, aot.DIR_ENV: str(root), aot.AOT_ENV: mode}
        out = tmp_path / f"out{mode}.fits"
        run = subprocess.run([sys.executable, "-c", _PROCESS, "stack", *paths, "-o", str(out), "--config",
                              str(config), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        expect = "NUMBA False COMPILED True" if mode == "1" else "NUMBA True COMPILED False"
        assert expect in run.stdout, run.stdout
        images[mode] = fits.getdata(out)
    assert images["1"].tobytes() == images["0"].tobytes()


def test_a_call_it_was_not_built_for_runs_the_jit(built):
    from zemosaic_xp.backends.numba import gather

    _, folder = built
    s = np.sort(np.random.default_rng(2).normal(size=(50, 9)), axis=1)  # float64: built for float32 only
    s[::7, -3:] = np.inf
    aot.use(folder)
    try:
        kernel = aot.entry("count_sorted")
        assert kernel is not gather.count_sorted  # the built module's
        got = np.empty(50, np.int64)
        kernel(s, got)
        assert aot.status()["misses"] == {"count_sorted": 1}
    finally:
        aot.use("auto")
    want = np.empty(50, np.int64)
    gather.count_sorted(s, want)
    np.testing.assert_array_equal(got, want)
    assert want[0] == 6 and want[1] == 9


def _spin_rate(stop: threading.Event) -> float:
    """Loops per second of this Python thread until ``stop`` is set."""
    count, t0 = 0, time.perf_counter()
    while not stop.is_set():
        count += 1
    return count / (time.perf_counter() - t0)


def test_built_kernels_release_the_gil(built):
    # A Python thread keeps running while a built kernel runs in another: the GIL is
    # released around the call, as numba's nogil=True does (the band threads need it).
    _, folder = built
    rng = np.random.default_rng(0)
    s = np.sort(rng.normal(size=(400_000, 16)).astype(np.float32), axis=1)
    n_valid = np.full(s.shape[0], 16, np.int64)
    centre, outs = np.empty(s.shape[0], np.float32), [np.empty(s.shape[0], np.int64) for _ in range(3)]
    kept_sum = np.empty(s.shape[0], np.float64)
    aot.use(folder)
    try:
        kernel = aot.entry("kappa_sigma_rows")
        args = (s, n_valid, np.float32(3), np.float32(3), 0, 10, 3, *outs, centre, kept_sum, np.zeros((0, 2)))
        kernel(*args)
        assert not aot.status()["misses"]
        done = threading.Event()

        def work() -> None:
            t_end = time.perf_counter() + 0.6
            while time.perf_counter() < t_end:
                kernel(*args)
            done.set()

        worker = threading.Thread(target=work)
        worker.start()
        busy_rate = _spin_rate(done)
        worker.join()
    finally:
        aot.use("auto")
    idle = threading.Event()
    threading.Timer(0.3, idle.set).start()
    idle_rate = _spin_rate(idle)
    assert busy_rate > 0.25 * idle_rate, (busy_rate, idle_rate)


def test_status_command_without_a_build(monkeypatch, tmp_path, capsys):
    from zemosaic_xp.cli import main

    monkeypatch.setenv(aot.DIR_ENV, str(tmp_path))
    assert main(["build-kernels", "--status"]) == 1
    out = capsys.readouterr().out
    assert "kernels compiled ahead of time: no" in out and str(tmp_path / aot.build_key()) in out


def test_build_command_on_a_built_install(built, monkeypatch, capsys):
    from zemosaic_xp.cli import main

    root, folder = built
    monkeypatch.setenv(aot.DIR_ENV, str(root))  # restored after the test; --dir sets it too
    try:
        assert main(["build-kernels", "--status"]) == 0
        assert f"kernels compiled ahead of time: yes; {folder}" in capsys.readouterr().out
        assert main(["build-kernels", "--dir", str(root)]) == 0
        out = capsys.readouterr().out
        assert "already built" in out and str(folder) in out
    finally:
        aot.use("auto")
