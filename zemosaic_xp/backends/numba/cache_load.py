"""Cached kernels loaded without numba's compiler set-up: ~0.2 s off a process's first kernel.

Before it loads a compiled kernel from its on-disk cache, numba's ``Cache.load_overload``
refreshes the CPU target: it imports numba's implementation modules and installs every
typing and lowering registry into the target's contexts (0.2–0.3 s on the benchmark
machine, once per process). That is what *compiling* needs; a cached kernel's machine
code needs none of it. Loading links the object code and registers the entry point;
only numba's runtime (NRT, the allocator of the kernels' scratch arrays) must be up.
Compiling still refreshes first (numba's compiler does so itself), so a cache miss
compiles as before (with :func:`~.blas_probe.import_arraymath` first, so that the refresh's
import of ``numba.np.arraymath`` does not import ``scipy.linalg``). A process whose kernels
all come from the cache imports neither.

:func:`fast_cache_load` gives one dispatcher a cache whose ``load_overload`` initialises
the runtime and loads, nothing more; :func:`~.common.jit` applies it to every kernel of
this package, and no other numba function of the process is touched. Applied only to
the numba versions it was checked on (``tests/backends/test_numba_cache_load.py``:
every kernel family loaded so in a fresh process gives the results it gave the process
that compiled or refreshed); other versions load as numba does.
"""

from __future__ import annotations

import functools
from typing import Any

import numba

from .blas_probe import import_arraymath

__all__ = ["fast_cache_load", "CHECKED_VERSIONS"]

#: numba versions ``[first, last)`` whose cache loading this was checked against.
CHECKED_VERSIONS = ((0, 60), (0, 69))


def _version() -> tuple[int, ...]:
    parts = []
    for part in numba.__version__.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@functools.cache
def _fast_class(cls: type) -> type:
    from numba.core.runtime import rtsys

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        rtsys.initialize(target_context)  # what the skipped refresh did that loading needs
        with self._guard_against_spurious_io_errors():
            cres = self._load_overload(sig, target_context)
        if cres is None:  # a cache miss: numba compiles next, its refresh imports numba.np.arraymath
            import_arraymath()  # ... with the BLAS probe that spares scipy.linalg
        return cres

    load_overload.__doc__ = "Load ``sig`` from the cache with the runtime initialised and no target refresh."
    return type(f"FastLoad{cls.__name__}", (cls,), {"load_overload": load_overload, "__module__": __name__})


def fast_cache_load(dispatcher: Any) -> Any:
    """Make ``dispatcher`` load its cached overloads without refreshing numba's target.

    Parameters
    ----------
    dispatcher : numba dispatcher
        A function compiled with ``cache=True``.

    Returns
    -------
    numba dispatcher
        ``dispatcher`` itself; unchanged when it has no on-disk cache, when numba's
        version is outside :data:`CHECKED_VERSIONS` or its cache lacks the expected
        methods.
    """
    cache = getattr(dispatcher, "_cache", None)
    cls = type(cache)
    if not (CHECKED_VERSIONS[0] <= _version() < CHECKED_VERSIONS[1]):
        return dispatcher
    if not all(hasattr(cls, name) for name in ("load_overload", "_load_overload",
                                                "_guard_against_spurious_io_errors")):
        return dispatcher  # NullCache (no caching) or another numba's internals
    cache.__class__ = _fast_class(cls)
    return dispatcher
