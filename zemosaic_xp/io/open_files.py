"""How many FITS files a stack may hold open at once, and holding them.

A stack reads every frame once per band: holding the files open saves an ``open`` per frame
and band (positioned reads at explicit offsets). :func:`files_kept_open` holds them when the
process's file-descriptor limit allows (raising its soft limit towards the hard one), and
otherwise leaves each read to open its own file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Iterator

__all__ = ["files_kept_open"]


@contextlib.contextmanager
def files_kept_open(sources: Sequence[Any]) -> Iterator[bool]:
    """Hold every FITS source's file open inside the block, when the process may.

    Parameters
    ----------
    sources : sequence of FitsSource or ArraySource
        The frames of a stack.

    Yields
    ------
    bool
        Whether the files are held: the soft file-descriptor limit is raised towards
        the hard one when needed; beyond half of it each read opens its file.
    """
    files = [s for s in sources if hasattr(s, "keep_open")]
    held = bool(files) and len(files) <= _fd_allowance(len(files))
    try:
        if held:
            for source in files:
                source.keep_open()
        yield held
    finally:
        if held:
            for source in files:
                source.close()


def _fd_allowance(needed: int) -> int:
    """File descriptors this process may hold for a stack (raising its soft limit if needed)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 2 * needed + 64
        if 0 < soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    except (ImportError, OSError, ValueError):
        return 256
    return max(0, (soft if soft > 0 else 1024) // 2 - 16)
