"""Where the arrays the sampler reads at random live: transparent huge pages.

Sampling reads ``rowptr`` and ``col`` at random; on a graph of hundreds of
megabytes nearly every read misses the TLB as well as the cache. Backed by
2 MiB pages instead of 4 KiB ones, the same arrays need 512 times fewer TLB
entries (measured in docs/benchmarks.md, ``huge_pages``). In-memory builds
and ``FastDataset.load(graph_in_memory=True)`` put the CSR there; a file
mapping gets the page cache's pages, which map the file in small pages.
"""

from __future__ import annotations

import mmap

import numpy as np
import torch
from torch import Tensor

from salient_pipes import _native

HUGE_PAGE = 2 << 20


def huge_pages(t: Tensor) -> Tensor:
    """``t`` copied into private anonymous memory, 2 MiB aligned and advised
    for transparent huge pages before the copy touches it. Returns ``t``
    itself when it is smaller than a huge page or the system cannot advise.

    Example:
        >>> col = torch.arange(1 << 20, dtype=torch.int32)
        >>> moved = huge_pages(col)
        >>> torch.equal(moved, col), moved.data_ptr() % HUGE_PAGE
        (True, 0)
    """
    nbytes = t.numel() * t.element_size()
    if nbytes < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE") or t.device.type != "cpu":
        return t
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = np.frombuffer(region, dtype=np.uint8)  # keeps the mapping alive
    start = -raw.ctypes.data % HUGE_PAGE
    view = raw[start:start + nbytes]
    _native.advise_huge_pages(view)
    out = torch.from_numpy(view).view(t.dtype).view(t.shape)
    out.copy_(t)
    return out


__all__ = ["HUGE_PAGE", "huge_pages"]
