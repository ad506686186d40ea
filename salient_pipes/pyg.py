"""PyG's loaders on our native core: change one import.

    from salient_pipes.pyg import NeighborLoader, LinkNeighborLoader

The loaders live in :mod:`salient_pipes.adapters.pyg`; this module is the
short path PyG users import (docs/pyg.md).
"""

from salient_pipes.adapters.pyg import (
    HeteroCsc,
    LinkNeighborLoader,
    NeighborLoader,
    PygCsc,
    csc_of,
    graph_of,
    hetero_csc_of,
    remote_csc_of,
)

__all__ = ["HeteroCsc", "LinkNeighborLoader", "NeighborLoader", "PygCsc", "csc_of", "graph_of",
           "hetero_csc_of", "remote_csc_of"]
