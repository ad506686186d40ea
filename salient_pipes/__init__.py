"""salient_pipes: SALIENT's fast GNN mini-batch preparation as composable
torch ``IterDataPipe`` stages.

Example:
    >>> from salient_pipes import FastDataset, salient_pipeline
    >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
    >>> for batch in salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cpu"):
    ...     out = batch.x[: batch.batch_size]
"""

from typing import Any

from salient_pipes.batch import Adj, NodeWiseBatch, PreparedBatch, SampledSubgraph
from salient_pipes.data import (
    DatasetCacheError,
    FastDataset,
    FeatureCache,
    FeatureCaches,
    HeteroDataset,
    csr_from_edge_index,
)
from salient_pipes.distributed import PartitionedDataset, partition
from salient_pipes.models import SAGE, HeteroSAGE, StaticShapes, compile_model
from salient_pipes.pipeline import salient_pipeline
from salient_pipes.pipes import (
    BatchNodes,
    NodeIndices,
    PinMemory,
    PinnedPool,
    PrefetchToDevice,
    SampleNeighbors,
    ShuffleNodes,
    SliceFeatures,
    pipeline_stats,
)
from salient_pipes.train import CapturedStep, EpochResult, batchwise_test, train_epoch

__version__ = "0.1.0"

__all__ = [
    "Adj",
    "BatchNodes",
    "CapturedStep",
    "DatasetCacheError",
    "FastDataset",
    "FeatureCache",
    "FeatureCaches",
    "HeteroDataset",
    "HeteroSAGE",
    "NodeIndices",
    "NodeWiseBatch",
    "PartitionedDataset",
    "PinMemory",
    "PinnedPool",
    "PrefetchToDevice",
    "SAGE",
    "EpochResult",
    "batchwise_test",
    "train_epoch",
    "PreparedBatch",
    "SampleNeighbors",
    "SampledSubgraph",
    "ShuffleNodes",
    "SliceFeatures",
    "StaticShapes",
    "compile_model",
    "csr_from_edge_index",
    "partition",
    "pipeline_stats",
    "salient_pipeline",
]


def __getattr__(name: str) -> Any:
    if name == "HeteroBatch":  # the node-wise batch's name before it served every graph
        import warnings

        warnings.warn("salient_pipes.HeteroBatch is now NodeWiseBatch; the old name goes in "
                      "the next release", DeprecationWarning, stacklevel=2)
        return NodeWiseBatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
