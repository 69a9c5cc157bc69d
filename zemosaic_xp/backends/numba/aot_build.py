"""Build the kernels ahead of time for this install: ``zemosaic-xp build-kernels``.

:func:`build` does three things, in a temporary folder renamed into place only at the end
(a build that fails or is interrupted leaves nothing a process would load):

1. runs representative stacks (``zemosaic_xp.aot_workloads.run_all``) with numba's JIT, which
   compiles every kernel of :data:`~.aot.ENTRY_POINTS` for the argument types real
   stacks pass (16-bit and float32 frames, short and long stacks, every rejection and
   combine, weights, the grid's cells, the paired fit of the normalisation);
2. compiles each of those signatures with numba's ahead-of-time compiler
   (``numba.pycc``) into one extension module for this CPU (``-march`` of the host),
   its CPython wrappers releasing the GIL as the JIT's ``nogil=True`` does, and writes
   the index :func:`~.aot.entry` reads (each function's argument types);
3. runs the same stacks with the built module and compares every output with the
   JIT's, bit for bit; a difference, or a call the module was not built for, fails
   the build.

Needs numba (with ``numba.pycc``, deprecated but still shipped by numba 0.68) and a C
compiler with Python's headers; imports numba.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import aot

__all__ = ["build", "BuildError"]

logger = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """The kernels could not be built, or the built module does not stack as the JIT."""


def _arg_key(t: Any) -> Any:
    """:func:`~.aot.type_key` of a numba type (None: not a type a built function takes)."""
    from numba.core import types

    if isinstance(t, types.Array):
        return [str(t.dtype), t.ndim, t.layout, not t.mutable, bool(t.aligned)]
    if isinstance(t, types.Boolean):
        return "bool"
    if isinstance(t, (types.Integer, types.Float)):
        return str(t)
    return None


def _pycc() -> Any:
    """``numba.pycc`` (deprecated, still shipped: its pending-deprecation warning is expected)."""
    from numba.core.errors import NumbaPendingDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaPendingDeprecationWarning)
        import numba.pycc
        import numba.pycc.compiler  # noqa: F401 - the module whose Flags _aot_flags swaps
    return numba.pycc


@contextlib.contextmanager
def _aot_flags() -> Iterator[None]:
    """numba.pycc's compile flags with the JIT kernels' options: GIL released, NumPy's error model."""
    pycc_compiler = _pycc().compiler

    base = pycc_compiler.Flags

    class Flags(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True
            self.error_model = "numpy"

    pycc_compiler.Flags = Flags
    try:
        yield
    finally:
        pycc_compiler.Flags = base


def _signatures(names: list[str]) -> dict[str, list[Any]]:
    """Each kernel's signatures the JIT compiled, those a built function can take."""
    import importlib

    found: dict[str, list[Any]] = {}
    for name in names:
        dispatcher = getattr(importlib.import_module(f"{__package__}.{aot.ENTRY_POINTS[name]}"), name)
        options = set(dispatcher.targetoptions) - {"nopython", "nogil", "error_model", "cache", "boundscheck"}
        if options:
            msg = f"{name}: jit options {sorted(options)} are not carried over by the ahead-of-time build"
            raise BuildError(msg)
        sigs = [sig for sig in dispatcher.nopython_signatures if all(_arg_key(t) is not None for t in sig.args)]
        if sigs:
            found[name] = sigs
    return found


def _compile(folder: Path, key: str, signatures: dict[str, list[Any]]) -> dict[str, Any]:
    """Compile the signatures into ``folder``; return the index."""
    import importlib

    name = aot.module_name(key)
    cc = _pycc().CC(name)
    cc.output_dir = str(folder)
    cc.target_cpu = "host"
    cc.verbose = False
    kernels: dict[str, list] = {}
    for kernel, sigs in signatures.items():
        func = getattr(importlib.import_module(f"{__package__}.{aot.ENTRY_POINTS[kernel]}"), kernel).py_func
        for i, sig in enumerate(sigs):
            symbol = f"{kernel}__{i}"
            cc.export(symbol, sig)(func)
            kernels.setdefault(kernel, []).append([symbol, [_arg_key(t) for t in sig.args]])
    with _aot_flags():
        try:
            cc.compile()
        except Exception as exc:  # distutils/setuptools: no compiler, no Python headers, ...
            msg = f"numba.pycc could not build the kernels ({type(exc).__name__}: {exc})"
            raise BuildError(msg) from exc
    built = [p.name for p in folder.iterdir() if p.name.startswith(name) and p.is_file()]
    if len(built) != 1:
        msg = f"expected one extension module {name}* in {folder}, found {built}"
        raise BuildError(msg)
    import numba

    return {"module": name, "file": built[0], "key": key, "numba": numba.__version__, "kernels": kernels}


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
        for x, y in zip(a, b))


def build(run_stacks: Callable[[Path], dict[str, list[np.ndarray]]], root: str | os.PathLike | None = None, *,
          force: bool = False, report: Callable[[str], None] = logger.info) -> Path:
    """Build the kernels ahead of time into ``root / build_key()``.

    Parameters
    ----------
    run_stacks : callable
        ``run_stacks(folder) -> {case: arrays}``: the representative stacks
        (``zemosaic_xp.aot_workloads.run_all``), run with the JIT and then with the
        built module; ``folder`` is scratch for their files.
    root : path, optional
        Folder of built modules; default :func:`~.aot.kernel_root`.
    force : bool
        Build again even when this install's folder exists.
    report : callable
        Receives one line per step (default: this module's logger, INFO).

    Returns
    -------
    Path
        The built folder (its module is what :func:`~.aot.entry` loads in later
        processes of this install).

    Raises
    ------
    BuildError
        numba is not installed, the compiler failed, or the built module does not
        give the JIT's results (nothing is installed then).
    """
    key = aot.build_key()
    if not key:
        msg = "numba is not installed: nothing to build (pip install 'zemosaic-xp[fast]')"
        raise BuildError(msg)
    root = Path(root) if root is not None else aot.kernel_root()
    target = root / key
    if (target / aot.INDEX).is_file() and not force:
        report(f"kernels already built for this install: {target}")
        return target
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    previous = aot._forced[0]
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.partial-", dir=root))
    try:
        with tempfile.TemporaryDirectory(prefix="zx-aot-data-") as data:
            aot.use(None)
            report("running the representative stacks with numba's JIT (compiles what is not cached)")
            expected = run_stacks(Path(data))
            signatures = _signatures(list(aot.ENTRY_POINTS))
            n = sum(len(v) for v in signatures.values())
            report(f"compiling {n} signatures of {len(signatures)} kernels ahead of time (numba.pycc, host CPU)")
            t1 = time.perf_counter()
            index = _compile(tmp, key, signatures)
            index["compile_seconds"] = round(time.perf_counter() - t1, 1)
            (tmp / aot.INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
            report("checking the built kernels against the JIT, bit for bit")
            aot.use(tmp)
            got = run_stacks(Path(data))
            misses = aot.status()["misses"]
        if misses:
            msg = f"the built module lacks signatures that the stacks called: {misses}"
            raise BuildError(msg)
        bad = [name for name in expected if not _same(expected[name], got.get(name, []))]
        if bad:
            msg = f"the built kernels do not give the JIT's results in: {', '.join(bad)}"
            raise BuildError(msg)
        tmp.chmod(0o755)  # mkdtemp made it private; the built module is for every user of the install
        if force and target.exists():
            old = root / f".{key}.old-{os.getpid()}"
            os.replace(target, old)  # a process that loaded it keeps its mapping
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / aot.INDEX).is_file():
                raise
            report(f"another build of this install finished first: {target}")  # the same key: the same kernels
    finally:
        aot.use(previous)
        shutil.rmtree(tmp, ignore_errors=True)
    report(f"built {target} in {time.perf_counter() - t0:.0f} s")
    return target
