"""The fast engine's allocator setting: keep the memory a CPU training step frees.
Note: notes/performance.md#the-allocator.
"""

from __future__ import annotations

__all__ = ["keep_freed_memory"]


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for the next allocation instead of returning it
    to the system, as jemalloc and tcmalloc (which torch's CPU tuning guide recommends) do.

    By default glibc serves a block of at least its "mmap threshold" with fresh pages from
    the system, and it sets that threshold to the largest block freed so far: a tensor the
    same size every step (a window matrix, an MLP activation) then comes back as fresh pages
    every step, and each page costs a page fault on first touch (a microsecond or more on a
    virtual machine). ``python -m zerotoml run`` calls this; the process then keeps its peak
    memory. Returns False where there is no glibc ``mallopt`` (macOS, Windows, musl)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
        return bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 25))
    except (OSError, AttributeError, TypeError):
        return False
