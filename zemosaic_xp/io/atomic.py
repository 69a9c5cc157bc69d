"""Atomic file replacement: write to a temporary name beside the target, then rename.

A crash or an exception while writing never leaves a half-written file under the
final name, and an older file there stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it to ``path`` on success.

    The directory is created if needed. On an exception the temporary file is removed
    and the exception propagates. The new file gets the permissions a plain ``open``
    would give it (``0o666`` minus the umask), not ``mkstemp``'s 0600.

    Parameters
    ----------
    path : str or os.PathLike
        Final name of the file. An existing file there is replaced only when the
        ``with`` block completes without an exception.

    Yields
    ------
    pathlib.Path
        An empty temporary file beside ``path`` (hidden name
        ``.<name>.<random>.tmp``) for the caller to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
