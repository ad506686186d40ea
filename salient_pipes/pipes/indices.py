"""Source stage: the node index of a split, once per epoch."""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor

from salient_pipes.pipes.base import Stage


class NodeIndices(Stage):
    """Yields the int64 node-index tensor ``idx`` once per epoch.

    Example:
        >>> [t.tolist() for t in NodeIndices(torch.tensor([3, 1, 2]))]
        [[3, 1, 2]]
    """

    def __init__(self, idx: Tensor) -> None:
        super().__init__()
        idx = torch.as_tensor(idx)
        if idx.dim() != 1 or idx.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"idx must be a 1-D integer tensor, got {idx.dtype} {tuple(idx.shape)}")
        self.idx = idx.to(torch.int64).contiguous()

    def num_nodes_per_epoch(self) -> int:
        return self.idx.numel()

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        yield self.idx

    def __len__(self) -> int:
        return 1
