"""The pipeline's stages, one module each, in the order they usually run:

``NodeIndices → shuffle_nodes → batch_nodes → sample_neighbors →
slice_features → pin_memory → prefetch_to_device``

and for PyG batches ``... → batch_nodes → seed_nodes | seed_edges →
sample_neighbors(node_wise=True) → to_pyg``; a heterogeneous graph's
``sample_neighbors`` is ``sample_hetero_neighbors`` (``to_pyg`` builds
``HeteroData``).

Importing this package registers each stage's functional name on
``IterDataPipe``.
"""

from salient_pipes.pipes.base import Stage, StageStats, pipeline_stats, upstream
from salient_pipes.pipes.batch_nodes import BatchNodes
from salient_pipes.pipes.indices import NodeIndices
from salient_pipes.pipes.pin import PinMemory
from salient_pipes.pipes.pinned_pool import PinnedPool
from salient_pipes.pipes.prefetch import PrefetchToDevice
from salient_pipes.pipes.sample import SampleNeighbors, default_num_threads
from salient_pipes.pipes.sample_hetero import SampleHeteroNeighbors, hetero_fanouts
from salient_pipes.pipes.seed_edges import SeedEdges
from salient_pipes.pipes.seed_nodes import SeedNodes
from salient_pipes.pipes.shuffle import ShuffleNodes
from salient_pipes.pipes.slice import SliceFeatures, gather
from salient_pipes.pipes.to_pyg import ToPyG

__all__ = [
    "BatchNodes",
    "NodeIndices",
    "PinMemory",
    "PinnedPool",
    "PrefetchToDevice",
    "SampleHeteroNeighbors",
    "SampleNeighbors",
    "SeedEdges",
    "SeedNodes",
    "ShuffleNodes",
    "SliceFeatures",
    "Stage",
    "StageStats",
    "ToPyG",
    "default_num_threads",
    "gather",
    "hetero_fanouts",
    "pipeline_stats",
    "upstream",
]
