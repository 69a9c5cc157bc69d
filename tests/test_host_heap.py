"""``release_free_heap``: what a phase freed leaves the process."""

from __future__ import annotations

from zemosaic_xp.host_heap import release_free_heap


def test_release_free_heap_gives_freed_memory_back():
    import sys

    import numpy as np

    if not sys.platform.startswith("linux"):
        assert isinstance(release_free_heap(), bool)
        return

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    # 64 kB blocks live in the heap (below glibc's mmap threshold); the last one stays
    # alive, so freeing the others cannot shrink the heap from its top by itself.
    blocks = [np.ones(8_000, np.float64) for _ in range(2000)]  # 128 MB
    keep = blocks[-1]
    before = rss_kib()
    blocks.clear()
    after_free = rss_kib()
    assert after_free > before - 50_000  # freed, but still resident
    assert release_free_heap() is True
    assert rss_kib() < after_free - 80_000  # most of the 128 MB handed back
    assert keep.sum() == 8_000
