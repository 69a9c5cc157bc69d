"""The kernels the glue calls, compiled ahead of time when built for this install.

A process that stacks with numba's JIT imports numba and LLVM and loads each kernel
from numba's cache: 0.4–0.6 s of CPU and ~100 MiB of memory before its first band,
more than a small stack takes. ``zemosaic-xp build-kernels``
(:func:`~.aot_build.build`) compiles every kernel of :data:`ENTRY_POINTS` with the
signatures real stacks call them with into one extension module, and checks that it
stacks to the same bits as the JIT. Where that module exists for this install (same
kernel sources, Python, NumPy, numba and CPU: :func:`build_key`), :func:`entry` hands
out its functions, and the process never imports numba.

Everything else is the JIT's: a call with argument types the module was not built for
runs the JIT kernel (numba imported then; the same results), and without a built module
:func:`entry` is the JIT kernel itself. ``ZEMOSAIC_XP_AOT=0`` (``false``, ``no``,
``off``) ignores built modules. They live in ``$ZEMOSAIC_XP_KERNEL_DIR``, by default
``$XDG_CACHE_HOME/zemosaic_xp/kernels`` (``~/.cache/zemosaic_xp/kernels``), one folder
per :func:`build_key`. This module imports neither numba nor the kernel modules.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AOT_ENV", "DIR_ENV", "ENTRY_POINTS", "INDEX", "build_key", "built_folder", "entry", "kernel_root",
           "module_name", "status", "use", "type_key"]

logger = logging.getLogger(__name__)

#: Environment variable that makes :func:`entry` ignore built modules ("0", "false", "no", "off").
AOT_ENV = "ZEMOSAIC_XP_AOT"
#: Environment variable naming the folder of built modules.
DIR_ENV = "ZEMOSAIC_XP_KERNEL_DIR"
#: The file of a built folder that lists each kernel's compiled signatures.
INDEX = "index.json"
_OFF = ("0", "false", "no", "off")

#: Every kernel called from Python (the band glue and the NumPy ops), and its module.
ENTRY_POINTS: dict[str, str] = {
    **dict.fromkeys(("gather_sorted", "count_sorted", "count_sorted_sums", "count_valid"), "gather"),
    **dict.fromkeys(("combine_ranges", "median_of_gather"), "combine"),
    "bilinear_sample": "bilinear",
    "kappa_sigma_rows": "kappa_sigma",
    "wsc_pixinsight_rows": "wsc_pixinsight",
    "wsc_rows": "wsc_zemosaic",
    "wsc_weighted_rows": "wsc_zemosaic",
    "percentile_rows": "percentile",
    "mad_rows": "mad",
    "minmax_rows": "minmax",
    "gesd_rows": "gesd",
    "linear_fit_clip_rows": "linear_fit_clip",
    "winsorized_quantile_rows": "winsorized_quantile",
    **dict.fromkeys(("gather_keys", "gather_key_rows", "unpack_keys", "combine_weighted"), "weighted"),
    **dict.fromkeys(("nan_to_inf_rows", "sort_network_rows"), "sorting"),
    **dict.fromkeys(("residuals_kept", "deviations_kept", "bright_kept", "clip_weights", "deming_sums"), "pairfit"),
    "split_row": "select",
}

# built folder -> {kernel name: {argument types: function}}
_tables: dict[Path, dict[str, dict[tuple, Callable[..., Any]]]] = {}
_forced: list[Path | None | str] = ["auto"]
_entries: dict[tuple, Callable[..., Any]] = {}


def kernel_root() -> Path:
    """The folder that holds the built modules, one sub-folder per :func:`build_key`.

    Returns
    -------
    Path
        ``$ZEMOSAIC_XP_KERNEL_DIR``, else ``$XDG_CACHE_HOME/zemosaic_xp/kernels``, else
        ``~/.cache/zemosaic_xp/kernels``.
    """
    env = os.environ.get(DIR_ENV, "").strip()
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "zemosaic_xp" / "kernels"


def _cpu() -> str:
    """The CPU's model and instruction set: a module built with ``-march=host`` runs only there."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
                     for line in f.read().split("\n\n", 1)[0].splitlines() if ":" in line}
        return f"{lines.get('model name', '')}|{lines.get('flags', lines.get('Features', ''))}"
    except OSError:
        return platform.processor()


@functools.cache
def build_key() -> str:
    """The name of this install's built folder: what a built module must match.

    Returns
    -------
    str
        20 hex digits of a SHA-256 over the sources of this package's modules, the
        Python, NumPy and numba versions, the machine and the CPU; empty when numba
        is not installed (nothing can be built, nothing is loaded).
    """
    spec = importlib.util.find_spec("numba")
    if spec is None or spec.origin is None:
        return ""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    numba_version = Path(spec.origin).with_name("_version.py")
    h.update(numba_version.read_bytes() if numba_version.exists() else spec.origin.encode())
    h.update(f"|{sys.version}|{np.__version__}|{platform.machine()}|{_cpu()}".encode())
    return h.hexdigest()[:20]


def module_name(key: str) -> str:
    """The extension module's name in the built folder of ``key``.

    Parameters
    ----------
    key : str
        A :func:`build_key`.

    Returns
    -------
    str
        A Python identifier, unique per key (two builds never share an init symbol).
    """
    return f"_zx_kernels_{key}"


def built_folder() -> Path | None:
    """The built folder this process uses, if any.

    Returns
    -------
    Path or None
        The folder forced by :func:`use`, else ``kernel_root() / build_key()`` when it
        holds a complete build; None when there is none, numba is not installed or
        ``ZEMOSAIC_XP_AOT`` switches built modules off.
    """
    forced = _forced[0]
    if forced != "auto":
        return forced  # type: ignore[return-value]
    if os.environ.get(AOT_ENV, "").strip().lower() in _OFF:
        return None
    key = build_key()
    folder = kernel_root() / key if key else None
    return folder if folder is not None and (folder / INDEX).is_file() else None


def use(folder: str | os.PathLike | None = "auto") -> None:
    """Choose the built folder of this process (tests and benchmarks).

    Parameters
    ----------
    folder : path, None or "auto"
        A built folder (its module is used whatever its key), None for the JIT only,
        ``"auto"`` (default) for :func:`built_folder`'s rule.
    """
    _forced[0] = folder if folder in (None, "auto") else Path(folder)  # type: ignore[arg-type]
    _entries.clear()


def type_key(value: Any) -> Any:
    """The numba type of a kernel argument, as the index of a built module records it.

    Parameters
    ----------
    value : ndarray or scalar
        An argument.

    Returns
    -------
    tuple or str or None
        ``(dtype name, ndim, layout, readonly, aligned)`` for an array (numba's layout
        rule: ``C`` if C-contiguous, else ``F`` if Fortran-contiguous, else ``A``);
        the scalar type's name (``bool``, ``int64``, ``float64``, a NumPy scalar's
        dtype); None for anything else (no compiled function takes it).
    """
    if isinstance(value, np.ndarray):
        flags = value.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return (value.dtype.name, value.ndim, layout, not flags.writeable, bool(flags.aligned))
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, np.generic):
        return value.dtype.name
    return None


def _load(folder: Path) -> dict[str, dict[tuple, Callable[..., Any]]]:
    """The functions of the module built in ``folder``, by kernel name and argument types."""
    index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    name = index["module"]
    path = folder / index["file"]
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        msg = f"cannot load the built kernels {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    table: dict[str, dict[tuple, Callable[..., Any]]] = {}
    for kernel, exports in index["kernels"].items():
        table[kernel] = {_tupled(args): getattr(module, symbol) for symbol, args in exports}
    return table


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _table() -> dict[str, dict[tuple, Callable[..., Any]]]:
    folder = built_folder()
    if folder is None:
        return {}
    table = _tables.get(folder)
    if table is None:
        try:
            table = _load(folder)
            logger.debug("[AOT] kernels compiled ahead of time: %s", folder)
        except (OSError, ImportError, ValueError, KeyError, AttributeError) as exc:
            logger.warning("[AOT] the built kernels in %s do not load (%s); using numba's JIT", folder, exc)
            table = {}
        _tables[folder] = table
    return table


def _jit(name: str) -> Callable[..., Any]:
    return getattr(importlib.import_module(f"{__package__}.{ENTRY_POINTS[name]}"), name)


class _Compiled:
    """A kernel of a built module: its compiled functions by argument types, else the JIT's."""

    __slots__ = ("name", "functions", "misses")

    def __init__(self, name: str, functions: dict[tuple, Callable[..., Any]]) -> None:
        self.name = name
        self.functions = functions
        self.misses = 0

    def __call__(self, *args: Any) -> Any:
        key = tuple(map(type_key, args))
        function = self.functions.get(key)
        if function is None:
            if not self.misses:
                logger.debug("[AOT] %s: not built for %s; numba's JIT runs it", self.name, key)
            self.misses += 1
            function = _jit(self.name)
        return function(*args)


def entry(name: str) -> Callable[..., Any]:
    """The kernel ``name`` of :data:`ENTRY_POINTS`: compiled ahead of time where built, else the JIT's.

    Parameters
    ----------
    name : str
        A key of :data:`ENTRY_POINTS`.

    Returns
    -------
    callable
        Called as the JIT kernel is, with the same results; a built module's function
        for the argument types it was built for, the numba dispatcher otherwise.
    """
    token = (_forced[0], os.environ.get(AOT_ENV), name)
    kernel = _entries.get(token)
    if kernel is None:
        functions = _table().get(name)
        kernel = _Compiled(name, functions) if functions else _jit(name)
        _entries[token] = kernel
    return kernel


def status() -> dict[str, Any]:
    """What :func:`entry` uses in this process, for reports.

    Returns
    -------
    dict
        ``compiled`` (bool: a built module is in use), ``folder`` (str or None),
        ``key`` (this install's :func:`build_key`), ``misses`` (calls that fell back to
        the JIT, by kernel).
    """
    folder = built_folder()
    table = _table() if folder is not None else {}
    misses = {k.name: k.misses for k in _entries.values() if isinstance(k, _Compiled) and k.misses}
    return {"compiled": bool(table), "folder": None if folder is None else str(folder), "key": build_key(),
            "misses": misses}
