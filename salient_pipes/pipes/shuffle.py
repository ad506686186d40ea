"""Stage: a seeded permutation per epoch."""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes.base import Stage
from salient_pipes.pipes.shard import check_sharding, largest_shard, shard


@functional_datapipe("shuffle_nodes")
class ShuffleNodes(Stage):
    """Permutes each node-index tensor with a generator seeded by
    ``(seed, epoch)``, so every rank and every rerun sees the same order;
    ``shuffle=False`` passes the index as it is (evaluation). Put
    ``shard_nodes`` after it for several ranks.

    (``rank``, ``world_size`` and ``pad_to`` are accepted for one more
    release and shard as ``shard_nodes`` does.)

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> sorted(next(iter(NodeIndices(torch.arange(6)).shuffle_nodes(seed=0))).tolist())
        [0, 1, 2, 3, 4, 5]
    """

    def __init__(self, source: IterDataPipe, seed: int = 0, shuffle: bool = True,
                 **sharding: Any) -> None:
        super().__init__(source)
        self.seed = check_int("seed", seed, minimum=0)
        self.permute = bool(shuffle)
        self._sharding = None
        if sharding:
            warnings.warn("shuffle_nodes(rank=, world_size=, pad_to=) now belongs to "
                          "shard_nodes: .shuffle_nodes(seed).shard_nodes(rank, world_size, "
                          "pad_to); the old form goes in the next release", DeprecationWarning,
                          stacklevel=2)
            options = {"rank": 0, "world_size": 1, "pad_to": 0, **sharding}
            self._sharding = check_sharding(**options)

    def settings(self) -> str:
        return f"seed={self.seed}" if self.permute else "shuffle=False"

    def num_nodes_per_epoch(self) -> int:
        nodes = self.source.num_nodes_per_epoch()
        return nodes if self._sharding is None else largest_shard(nodes, *self._sharding[1:])

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        for idx in self.source:
            if self.permute:
                gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
                idx = idx[torch.randperm(idx.numel(), generator=gen)]
            if self._sharding is not None:
                idx = shard(idx, *self._sharding)
            yield idx.contiguous()

    def __len__(self) -> int:
        return len(self.source)
