"""The process's C heap: hand its free memory back to the system between the phases of a run.

glibc keeps what a phase freed in its heap (and in each thread's arena; blocks past its
mmap threshold go back at once, but the threshold rises to the largest block freed, up
to 32 MiB), where it counts in the process's resident size while the next phase
allocates its own. :func:`release_free_heap` returns it. Imports nothing of ours and
not NumPy: any layer may call it.
"""

from __future__ import annotations

__all__ = ["release_free_heap"]


def release_free_heap() -> bool:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim(0)``, every arena).

    Returns
    -------
    bool
        True when memory was released; False where glibc is not the C library (macOS,
        Windows, musl) or there was nothing to release.
    """
    # No gc.collect(): arrays go with their last reference, and a full collection holds
    # the GIL for ~50 ms (other threads, the telemetry sampler among them, would wait).
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
