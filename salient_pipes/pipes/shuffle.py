"""Stage: a seeded permutation per epoch, optionally sharded across ranks."""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes.base import Stage


@functional_datapipe("shuffle_nodes")
class ShuffleNodes(Stage):
    """Permutes each node-index tensor with a generator seeded by
    ``(seed, epoch)``, so every rank and every rerun sees the same order.

    With ``world_size > 1`` it yields rank ``rank``'s shard of the permuted
    index: shards are disjoint, cover the index together and differ in size by
    at most one node (``batch_nodes`` then gives every rank the same number of
    batches). ``shuffle=False`` shards without permuting (evaluation).

    ``pad_to`` repeats nodes from the start of the (permuted) index until the
    epoch holds at least ``pad_to`` nodes: ranks whose seed sets differ in
    size (a partitioned dataset's parts) then run equal batch counts.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(6)).shuffle_nodes(seed=0, rank=1, world_size=2)
        >>> len(next(iter(pipe)))
        3
    """

    def __init__(self, source: IterDataPipe, seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, pad_to: int = 0) -> None:
        super().__init__(source)
        seed = check_int("seed", seed, minimum=0)
        rank = check_int("rank", rank, minimum=0)
        world_size = check_int("world_size", world_size, minimum=1)
        if not rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.pad_to = check_int("pad_to", pad_to, minimum=0)

    def num_nodes_per_epoch(self) -> int:
        """The largest shard's size: what every rank's batch count is based on."""
        return max(self.pad_to,
                   math.ceil(self.source.num_nodes_per_epoch() / self.world_size))

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        for idx in self.source:
            if self.shuffle:
                gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
                idx = idx[torch.randperm(idx.numel(), generator=gen)]
            if self.world_size > 1:
                if idx.numel() < self.world_size:
                    raise ValueError(f"cannot shard {idx.numel()} nodes over "
                                     f"{self.world_size} ranks: every rank needs a seed")
                idx = torch.tensor_split(idx, self.world_size)[self.rank]
            if idx.numel() < self.pad_to:
                if idx.numel() == 0:
                    raise ValueError(f"cannot pad an empty seed set to {self.pad_to} nodes")
                repeats = torch.arange(self.pad_to - idx.numel()) % idx.numel()
                idx = torch.cat([idx, idx[repeats]])
            yield idx.contiguous()

    def __len__(self) -> int:
        return len(self.source)
