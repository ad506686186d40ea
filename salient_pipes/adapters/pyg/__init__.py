"""PyG's loaders on our native core: change one import.

    from salient_pipes.pyg import NeighborLoader, LinkNeighborLoader, NeighborSampler

``NeighborLoader`` and ``LinkNeighborLoader`` take PyG's arguments and yield
``torch_geometric.data.Data`` (or ``HeteroData``) batches as PyG's loaders
do (docs/pyg.md says what is supported); they are PyG's loader classes, so
PyG code that takes a loader takes them. They are thin: argument handling
(``arguments.py``), the CSC of the input graph (``graph.py``) with its
weights or times (``attributes.py``), what a loader samples (``sampler.py``:
built, or shared through ``neighbor_sampler``) and a chain of
our stages (``seed_nodes``/``seed_edges`` → ``sample_neighbors(node_wise=True)``
→ ``to_pyg``). ``NeighborSampler``, PyG's older loader of ``(batch_size,
n_id, adjs)``, is per-hop sampling (``legacy.py``).
"""

from salient_pipes.adapters.pyg.graph import (
    HeteroCsc,
    PygCsc,
    csc_of,
    graph_of,
    hetero_csc_of,
    remote_csc_of,
)
from salient_pipes.adapters.pyg.legacy import NeighborSampler
from salient_pipes.adapters.pyg.loader import LinkNeighborLoader, NeighborLoader

__all__ = ["HeteroCsc", "LinkNeighborLoader", "NeighborLoader", "NeighborSampler", "PygCsc",
           "csc_of", "graph_of", "hetero_csc_of", "remote_csc_of"]
