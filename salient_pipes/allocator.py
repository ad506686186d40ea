"""The host allocator for training on a CPU: keep freed memory for reuse.

A training step on a CPU allocates and frees tensors of tens of MiB
(activations, their gradients) every batch. glibc's ``malloc`` serves a
block that large with its own ``mmap`` and gives it back with ``munmap``
when freed, so the next step touches fresh pages again: a page fault per
4 KiB, which on the synthetic default graph cost as much kernel time as the
step's own arithmetic (docs/benchmarks.md, "The host allocator").
:func:`keep_freed_memory` asks glibc to serve every block from its heaps
and to keep up to 2 GiB of freed memory at their tops, so the blocks one
step frees serve the next one. The process then holds its peak working set
for the rest of its life, as a GPU's caching allocator does.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEPT_BYTES = 2**31 - 1  # freed memory at a heap's top kept, at most (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Makes glibc's ``malloc`` keep freed blocks for reuse instead of
    giving each large one back to the kernel (no ``mmap`` per block; up to
    2 GiB of free memory kept at a heap's top). Call it once, before a
    training loop on a CPU; the ``train`` command does so for a CPU device
    (``--system-malloc`` keeps glibc's defaults). Returns whether the
    settings took: ``False`` where the C library is not glibc.

    Example:
        >>> from salient_pipes.allocator import keep_freed_memory
        >>> keep_freed_memory()  # doctest: +SKIP
        True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_BYTES))


__all__ = ["keep_freed_memory"]
