"""Stage: cut a node-index tensor into seed batches by slicing."""

from __future__ import annotations

import math
from typing import Any, Iterator, List

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes.base import Stage


@functional_datapipe("batch_nodes")
class BatchNodes(Stage):
    """Yields seed tensors of ``batch_size`` nodes (the last one smaller unless
    ``drop_last``), as views of the input: nothing is iterated node by node.

    When the upstream shards across ranks, every rank yields the same number
    of batches (that of the largest shard): a shard one node short of it is
    cut into that many slightly smaller batches, so no rank waits for another.
    Batches of one node cannot be smaller: there, as torch's
    ``DistributedSampler`` does, a shorter shard repeats its first node.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> [b.tolist() for b in NodeIndices(torch.arange(5)).batch_nodes(2)]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(self, source: IterDataPipe, batch_size: int, drop_last: bool = False) -> None:
        super().__init__(source)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.drop_last = bool(drop_last)

    def _num_batches(self, num_nodes: int) -> int:
        if self.drop_last:
            return num_nodes // self.batch_size
        return math.ceil(num_nodes / self.batch_size)

    def _split(self, idx: Tensor) -> List[Tensor]:
        planned = getattr(self.source, "num_nodes_per_epoch", None)
        count = self._num_batches(planned() if planned else idx.numel())
        if count == 0:
            return []
        if self._num_batches(idx.numel()) == count:
            return list(torch.split(idx[: count * self.batch_size], self.batch_size))
        # A shard shorter than the largest: same count, batches a little smaller.
        if idx.numel() < count:  # batches of one node: repeat from the shard's start
            idx = torch.cat([idx, idx[torch.arange(count - idx.numel()) % idx.numel()]])
        return list(torch.tensor_split(idx[: count * self.batch_size], count))

    def settings(self) -> str:
        return f"batch_size={self.batch_size}" + (", drop_last=True" if self.drop_last else "")

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        for idx in self.source:
            yield from self._split(idx)[start:]
            start = 0

    def __len__(self) -> int:
        planned = getattr(self.source, "num_nodes_per_epoch", None)
        if planned is None:
            raise TypeError("len() needs a source that knows its nodes per epoch")
        return self._num_batches(planned()) * len(self.source)
