"""Training over ``torch.distributed``: joining and leaving the process
group (``process_group.py``), and datasets whose feature rows are
partitioned across ranks: the writer (``partition.py``, :func:`partition`),
the reader (``dataset.py``, :class:`PartitionedDataset`), the row exchange
between ranks (``exchange.py``) and the ``fetch_features`` stage
(``fetch.py``)."""

from salient_pipes.distributed.dataset import PartitionedDataset, PartitionLoadError
from salient_pipes.distributed.exchange import FeatureExchange, FetchError, FetchStats
from salient_pipes.distributed.fetch import FetchFeatures
from salient_pipes.distributed.partition import partition
from salient_pipes.distributed.process_group import init_distributed, process_group

__all__ = ["FeatureExchange", "FetchError", "FetchFeatures", "FetchStats", "PartitionLoadError",
           "PartitionedDataset", "init_distributed", "partition", "process_group"]
