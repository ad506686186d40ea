"""The compiled core (``_core``): CSR validation, sampling sessions, row gathers.

It works on raw buffers (numpy arrays; torch tensors cross through
``Tensor.numpy()`` without a copy) and does not link against torch.
"""

from salient_pipes._native._core import (
    CSRGraph,
    HeteroGraph,
    HeteroSession,
    PinnedSlots,
    RowCache,
    Session,
    advise_huge_pages,
    csr_count,
    csr_fill,
    gather,
    random_nodes,
    sample,
)

__all__ = ["CSRGraph", "HeteroGraph", "HeteroSession", "PinnedSlots", "RowCache",
           "Session", "advise_huge_pages", "csr_count", "csr_fill", "gather", "random_nodes",
           "sample"]
