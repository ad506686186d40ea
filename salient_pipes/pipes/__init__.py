"""The pipeline's stages, one module each, in the order they usually run:

``NodeIndices → shuffle_nodes → [shard_nodes] → batch_nodes →
sample_neighbors → slice_features → pin_memory → prefetch_to_device``

and for PyG batches ``... → batch_nodes → seed_nodes | seed_edges →
sample_neighbors(node_wise=True) → to_pyg``. Every stage serves graphs of
one node type and of several alike (``schema.py``).

Importing this package registers each stage's functional name on
``IterDataPipe``.
"""

from typing import Any, Dict

from salient_pipes.pipes.base import Stage, StageStats, pipeline_stats, upstream
from salient_pipes.pipes.batch_nodes import BatchNodes
from salient_pipes.pipes.indices import IndexBatches, NodeIndices
from salient_pipes.pipes.pin import PinMemory
from salient_pipes.pipes.pinned_pool import PinnedPool
from salient_pipes.pipes.prefetch import PrefetchToDevice
from salient_pipes.pipes.sample import SampleNeighbors, default_num_threads
from salient_pipes.pipes.schema import fanouts_per_edge_type
from salient_pipes.pipes.seed_edges import SeedEdges
from salient_pipes.pipes.seed_nodes import SeedNodes
from salient_pipes.pipes.shard import ShardNodes
from salient_pipes.pipes.shuffle import ShuffleNodes
from salient_pipes.pipes.slice import SliceFeatures, gather
from salient_pipes.pipes.to_pyg import ToPyG

__all__ = [
    "BatchNodes",
    "IndexBatches",
    "NodeIndices",
    "PinMemory",
    "PinnedPool",
    "PrefetchToDevice",
    "SampleNeighbors",
    "SeedEdges",
    "SeedNodes",
    "ShardNodes",
    "ShuffleNodes",
    "SliceFeatures",
    "Stage",
    "StageStats",
    "ToPyG",
    "default_num_threads",
    "fanouts_per_edge_type",
    "gather",
    "pipeline_stats",
    "upstream",
]


def __getattr__(name: str) -> Any:
    # Names of the heterogeneous twins before one stage served every graph.
    renamed: Dict[str, Any] = {"SampleHeteroNeighbors": SampleNeighbors,
                               "hetero_fanouts": fanouts_per_edge_type}
    if name in renamed:
        import warnings

        warnings.warn(f"salient_pipes.pipes.{name} is now {renamed[name].__name__}; the old "
                      "name goes in the next release", DeprecationWarning, stacklevel=2)
        return renamed[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
