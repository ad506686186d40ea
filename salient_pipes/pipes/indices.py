"""Source stage: the node index of a split, once per epoch."""

from __future__ import annotations

from typing import Any, Iterator

import torch  # noqa: F401 - the doctests use it
from torch import Tensor

from salient_pipes._checks import as_node_ids
from salient_pipes.pipes.base import Stage


class NodeIndices(Stage):
    """Yields the int64 node-index tensor ``idx`` once per epoch. ``idx``
    holds node ids or is a bool mask over the nodes (PyG's ``train_mask``).

    Example:
        >>> [t.tolist() for t in NodeIndices(torch.tensor([3, 1, 2]))]
        [[3, 1, 2]]
        >>> [t.tolist() for t in NodeIndices(torch.tensor([False, True, True]))]
        [[1, 2]]
    """

    def __init__(self, idx: Tensor) -> None:
        super().__init__()
        self.idx = as_node_ids("idx", idx).contiguous()

    def num_nodes_per_epoch(self) -> int:
        return self.idx.numel()

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        yield self.idx

    def __len__(self) -> int:
        return 1
