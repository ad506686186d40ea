"""Training over ``torch.distributed``: joining and leaving the process
group, and datasets whose feature rows are partitioned across ranks
(:func:`partition`, :class:`PartitionedDataset`, the ``fetch_features``
stage)."""

from salient_pipes.distributed.fetch import FeatureExchange, FetchError, FetchFeatures
from salient_pipes.distributed.partition import partition
from salient_pipes.distributed.partitioned import (
    PartitionedDataset,
    PartitionLoadError,
    RemoteCache,
    expected_access,
)
from salient_pipes.distributed.process_group import init_distributed, process_group

__all__ = ["FeatureExchange", "FetchError", "FetchFeatures", "PartitionLoadError",
           "PartitionedDataset", "RemoteCache", "expected_access", "init_distributed",
           "partition", "process_group"]
