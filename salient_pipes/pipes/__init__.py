"""The pipeline's stages, one module each, in the order they usually run:

``NodeIndices → shuffle_nodes → batch_nodes → sample_neighbors →
slice_features → pin_memory → prefetch_to_device``

Importing this package registers each stage's functional name on
``IterDataPipe``.
"""

from salient_pipes.pipes.base import Stage, StageStats, pipeline_stats, upstream
from salient_pipes.pipes.batch_nodes import BatchNodes
from salient_pipes.pipes.indices import NodeIndices
from salient_pipes.pipes.pin import PinMemory
from salient_pipes.pipes.prefetch import PrefetchToDevice
from salient_pipes.pipes.sample import SampleNeighbors, default_num_threads
from salient_pipes.pipes.shuffle import ShuffleNodes
from salient_pipes.pipes.slice import SliceFeatures, gather

__all__ = [
    "BatchNodes",
    "NodeIndices",
    "PinMemory",
    "PrefetchToDevice",
    "SampleNeighbors",
    "ShuffleNodes",
    "SliceFeatures",
    "Stage",
    "StageStats",
    "default_num_threads",
    "gather",
    "pipeline_stats",
    "upstream",
]
