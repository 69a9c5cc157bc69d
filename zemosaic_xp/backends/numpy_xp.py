"""The array-API NumPy namespace (array-api-compat's) without NumPy's unused submodules: ~0.1 s off a start.

Importing ``array_api_compat.numpy`` copies NumPy's namespace (``from numpy import *``
and every name of ``dir(numpy)``), and NumPy imports its lazy submodules on that first
access: ``numpy.f2py``, ``numpy.testing``, ``numpy.ma``, ``numpy.random``,
``numpy.polynomial``, ``numpy.ctypeslib``. They cost more than NumPy itself (~0.1-0.2 s
on a 2-core machine, a third of ``zemosaic-xp stack``'s start-up on a small job), and
the array API uses none of them.

:func:`numpy_namespace` imports ``array_api_compat.numpy`` with those names left out of
the copy, then serves them through the module's ``__getattr__`` (PEP 562) on first
access: the namespace has the same attributes holding the same objects as before, only
their import is deferred (``dir()`` and ``__all__`` list them too). Nothing changes when
the module is already imported or a submodule already is: that one is copied as usual.
NumPy's own ``__all__`` and ``__dir__`` are patched only during that import, under a
lock, and restored whatever happens.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from types import ModuleType

__all__ = ["DEFERRED_SUBMODULES", "numpy_namespace", "scipy_numpy_namespace"]

#: NumPy submodules whose import the copy defers (none is part of the array API).
DEFERRED_SUBMODULES = ("f2py", "testing", "ma", "random", "polynomial", "ctypeslib")

_COMPAT = "array_api_compat.numpy"
#: SciPy's vendored copy of the same module: scipy.ndimage and scipy.sparse import it.
_SCIPY_COMPAT = "scipy._lib.array_api_compat.numpy"
_lock = threading.Lock()


def numpy_namespace() -> ModuleType:
    """Return ``array_api_compat.numpy``, imported without NumPy's unused submodules.

    Returns
    -------
    module
        The array-API-compatible NumPy namespace (the module itself, so
        ``array_namespace(numpy_array) is numpy_namespace()``).
    """
    return _namespace(_COMPAT)


def scipy_numpy_namespace() -> ModuleType | None:
    """Import SciPy's vendored ``array_api_compat.numpy`` the same way (grid mode, before scipy.ndimage).

    SciPy's ``ndimage`` and ``sparse`` import it, and its copy of NumPy's namespace
    imports ``numpy.f2py`` and ``numpy.testing`` (with ``unittest``): ~5 MiB of
    resident memory in every grid process, for nothing grid mode uses.

    Returns
    -------
    module or None
        The vendored module; None without SciPy (or a SciPy without it).
    """
    try:
        return _namespace(_SCIPY_COMPAT)
    except ImportError:
        return None


def _namespace(name: str) -> ModuleType:
    """Import module ``name`` (an array-api-compat NumPy namespace) without the deferred submodules."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        import numpy

        deferred = tuple(sub for sub in DEFERRED_SUBMODULES
                         if f"numpy.{sub}" not in sys.modules and sub in getattr(numpy, "__all__", ()))
        if not deferred:
            return importlib.import_module(name)
        return _import_without(numpy, deferred, name)


def _import_without(numpy: ModuleType, deferred: tuple[str, ...], name: str = _COMPAT) -> ModuleType:
    """Import module ``name`` with ``deferred`` hidden from NumPy's listings."""
    saved_all = numpy.__all__
    saved_dir = vars(numpy).get("__dir__")
    numpy.__all__ = [sub for sub in saved_all if sub not in deferred]
    if callable(saved_dir):
        numpy.__dir__ = _listing_without(saved_dir, deferred)
    try:
        module = importlib.import_module(name)
    finally:
        numpy.__all__ = saved_all
        if saved_dir is not None:
            numpy.__dir__ = saved_dir
    _serve_lazily(module, numpy, deferred)
    return module


def _listing_without(listing: Callable[[], list[str]], deferred: tuple[str, ...]) -> Callable[[], list[str]]:
    """``listing`` (a module's ``__dir__``) without the names in ``deferred``."""
    def reduced() -> list[str]:
        """NumPy's ``dir()`` less the deferred submodules."""
        return [name for name in listing() if name not in deferred]

    return reduced


def _serve_lazily(module: ModuleType, numpy: ModuleType, deferred: tuple[str, ...]) -> None:
    """Give ``module`` the deferred names through a PEP 562 ``__getattr__``, and list them."""
    missing = tuple(name for name in deferred if name not in vars(module))
    if not missing:
        return
    previous = vars(module).get("__getattr__")

    def __getattr__(name: str) -> object:  # noqa: N807 - the PEP 562 hook
        """NumPy's submodule ``name``, imported now and kept in the namespace."""
        if name in missing:
            value = getattr(numpy, name)
            setattr(module, name, value)
            return value
        if previous is not None:
            return previous(name)
        msg = f"module {module.__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)

    module.__getattr__ = __getattr__
    names = getattr(module, "__all__", None)
    if isinstance(names, list):
        module.__all__ = sorted(set(names) | set(missing))
