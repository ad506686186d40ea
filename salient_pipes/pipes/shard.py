"""Stage: each rank's share of an epoch's nodes, padded to equal counts."""

from __future__ import annotations

import math
from typing import Any, Iterator, Tuple

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes.base import Stage


def shard(idx: Tensor, rank: int, world_size: int, pad_to: int = 0) -> Tensor:
    """Rank ``rank``'s part of ``idx`` (parts differ in size by at most one
    node), then nodes repeated from its start until it holds ``pad_to``.

    Example:
        >>> shard(torch.arange(5), rank=1, world_size=2).tolist()
        [3, 4]
    """
    if world_size > 1:
        if idx.numel() < world_size:
            raise ValueError(f"cannot shard {idx.numel()} nodes over {world_size} ranks: "
                             "every rank needs a seed")
        idx = torch.tensor_split(idx, world_size)[rank]
    if idx.numel() < pad_to:
        if idx.numel() == 0:
            raise ValueError(f"cannot pad an empty seed set to {pad_to} nodes")
        repeats = torch.arange(pad_to - idx.numel()) % idx.numel()
        idx = torch.cat([idx, idx[repeats]])
    return idx.contiguous()


def check_sharding(rank: Any, world_size: Any, pad_to: Any) -> Tuple[int, int, int]:
    """``(rank, world_size, pad_to)`` checked."""
    rank = check_int("rank", rank, minimum=0)
    world_size = check_int("world_size", world_size, minimum=1)
    if not rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")
    return rank, world_size, check_int("pad_to", pad_to, minimum=0)


def largest_shard(num_nodes: int, world_size: int, pad_to: int) -> int:
    """The largest shard's size: what every rank's batch count is based on."""
    return max(pad_to, math.ceil(num_nodes / world_size))


@functional_datapipe("shard_nodes")
class ShardNodes(Stage):
    """Yields rank ``rank``'s shard of each node-index tensor: shards are
    disjoint, cover the index together and differ in size by at most one
    node, so with ``batch_nodes`` every rank gets the same number of batches
    (the largest shard's count). ``pad_to`` repeats nodes from the start of
    the shard until it holds ``pad_to``: ranks whose seed sets differ in size
    (a partitioned dataset's parts) then run equal batch counts.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(6)).shuffle_nodes(seed=0).shard_nodes(1, 2)
        >>> len(next(iter(pipe)))
        3
    """

    def __init__(self, source: IterDataPipe, rank: int = 0, world_size: int = 1,
                 pad_to: int = 0) -> None:
        super().__init__(source)
        self.rank, self.world_size, self.pad_to = check_sharding(rank, world_size, pad_to)

    def settings(self) -> str:
        return f"rank={self.rank}, world_size={self.world_size}" + (
            f", pad_to={self.pad_to}" if self.pad_to else "")

    def num_nodes_per_epoch(self) -> int:
        return largest_shard(self.source.num_nodes_per_epoch(), self.world_size, self.pad_to)

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        for idx in self.source:
            yield shard(idx, self.rank, self.world_size, self.pad_to)

    def __len__(self) -> int:
        return len(self.source)


__all__ = ["ShardNodes", "check_sharding", "largest_shard", "shard"]
