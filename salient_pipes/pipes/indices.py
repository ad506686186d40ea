"""Source stages: the node index of a split once per epoch, or the index
batches a torch sampler picks."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Sequence

import torch
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

    def settings(self) -> str:
        return f"{self.idx.numel():,} nodes"

    def num_nodes_per_epoch(self) -> int:
        return self.idx.numel()

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        yield self.idx

    def __len__(self) -> int:
        return 1


class IndexBatches(Stage):
    """Yields the index batches of ``batches`` as int64 tensors, iterating it
    once per epoch: a torch ``BatchSampler`` (over any ``Sampler``, say one
    that draws by class weight) or any re-iterable of index lists. It takes
    the place of ``NodeIndices → shuffle_nodes → batch_nodes`` when such a
    sampler picks the batches. An exact resume needs a sampler that repeats
    its order; the first ``start`` batches of the epoch are skipped.

    Example:
        >>> from torch.utils.data import BatchSampler, SequentialSampler
        >>> sampler = BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False)
        >>> [b.tolist() for b in IndexBatches(sampler)]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(self, batches: Iterable[Sequence[int]]) -> None:
        super().__init__()
        if not isinstance(batches, Iterable) or isinstance(batches, Tensor):
            raise TypeError("batches must be a BatchSampler or an iterable of index lists, "
                            f"got {type(batches).__name__}")
        self.batches = batches

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        for position, index in enumerate(self.batches):
            if position >= start:
                yield _index_tensor(index)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def _index_tensor(index: Any) -> Tensor:
    """One batch of indices as a 1-D int64 tensor."""
    if isinstance(index, Tensor):
        out = index
    else:
        values = list(index)  # as given: floats are refused below, not truncated
        out = torch.as_tensor(values, dtype=torch.int64 if not values else None)
    if out.dim() != 1 or out.is_floating_point() or out.dtype == torch.bool:
        raise ValueError(f"an index batch must be a 1-D list or tensor of integers, got "
                         f"{out.dtype} of shape {tuple(out.shape)}")
    return out.to(torch.int64)


__all__: List[str] = ["IndexBatches", "NodeIndices"]
