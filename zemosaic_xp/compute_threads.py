"""How many threads the BLAS and OpenMP libraries of our own processes start: one.

NumPy's and SciPy's OpenBLAS (each wheel loads its own) start one thread per core when
they load, and those threads spin ~0.1 s after loading and after every call before they
sleep. Our stacks thread their own bands and tiles and make no BLAS call worth a
thread, so on a 2-core machine the spinning only takes a core from them: a
``zemosaic-xp stack`` of 48 × 2048² 16-bit frames (median) spent 0.87–1.02 s of CPU
and 0.64–0.77 s of wall time with OpenBLAS's default threads, 0.76–0.81 s and
0.58–0.60 s with one (docs/performance.md, "Stop 32"); in a small one-worker grid run the
spinning was 0.4 s of CPU (issue 14).

The variables only act on a library loaded after they are set: the command line sets
them before NumPy loads; a user's own process (``import zemosaic_xp``) is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["THREAD_ENV", "one_compute_thread"]

#: The thread-count variables of the BLAS and OpenMP libraries NumPy, SciPy and friends load.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def one_compute_thread(names: Sequence[str] = THREAD_ENV) -> None:
    """Make the libraries loaded from now on use one thread, unless the user chose.

    Parameters
    ----------
    names : sequence of str
        The variables to set (default :data:`THREAD_ENV`); one already set (an explicit
        ``OPENBLAS_NUM_THREADS=4``) is kept.

    Notes
    -----
    No effect on a library already loaded. ``zemosaic-xp stack`` sets
    ``OPENBLAS_NUM_THREADS`` only: its torch CPU backend runs its operations on OpenMP
    threads.
    """
    for name in names:
        os.environ.setdefault(name, "1")
