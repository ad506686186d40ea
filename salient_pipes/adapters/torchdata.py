"""torchdata.nodes adapters, both ways (also ``salient_pipes.nodes``, its
name before it moved here).

- :class:`PipeNode` puts any of our pipes (``salient_pipeline()`` or a chain
  of stages) into a ``torchdata.nodes`` graph: under ``Loader``,
  ``Prefetcher``, ``PinMemory`` and the like, with torchdata's
  ``state_dict``/``load_state_dict`` resuming mid-epoch exactly.
- :class:`SeedsFromNode` goes the other way: a user's ``BaseNode`` of seed
  tensors becomes the source of our stages.

Example:
    >>> from torchdata.nodes import Loader, Prefetcher
    >>> from salient_pipes import FastDataset, salient_pipeline
    >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
    >>> loader = Loader(Prefetcher(PipeNode(salient_pipeline(ds, batch_size=256,
    ...                                                      fanouts=(5,), device="cpu")), 2))
    >>> sum(batch.batch_size for batch in loader) == ds.split_idx["train"].numel()
    True
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

from torch import Tensor
from torch.utils.data import IterDataPipe

try:
    from torchdata.nodes import BaseNode
except ImportError as exc:  # an optional dependency: only these adapters need it
    raise ImportError("salient_pipes.adapters.torchdata needs torchdata >= 0.10 (its "
                      "torchdata.nodes): pip install 'torchdata>=0.10'") from exc

from salient_pipes.pipes.base import Stage, close_iterator, upstream


class PipeNode(BaseNode):
    """A ``torchdata.nodes.BaseNode`` over one of our pipes: a stage, or a
    chain with our stages in it and torch DataPipes on top (``pipe.map(fn)``).

    Each ``reset()`` starts the pipe's next epoch; ``reset(state)`` continues
    the epoch recorded in ``state`` after its ``batches_done`` batches.
    ``get_state()`` is the ``state_dict()`` of the last of our stages in the
    chain: the epoch and how many batches of it have been handed on. Resume
    is exact when what runs after that stage yields one item per batch (a
    ``map``; a ``filter`` would shift the count).
    """

    def __init__(self, pipe: IterDataPipe) -> None:
        super().__init__()
        stages = [s for s in upstream(pipe) if isinstance(s, Stage)] \
            if isinstance(pipe, IterDataPipe) else []
        if not stages:
            raise TypeError("PipeNode wraps a salient_pipes pipe (a stage or a chain holding "
                            f"one), got {type(pipe).__name__}")
        self.pipe = pipe
        self._stage = stages[0]  # the last of our stages: it carries the chain's state
        self._it: Optional[Iterator[Any]] = None

    def reset(self, initial_state: Optional[Dict[str, Any]] = None) -> None:
        super().reset(initial_state)
        self._close()
        if initial_state is not None:
            self._stage.load_state_dict(initial_state)
        self._it = iter(self.pipe)

    def next(self) -> Any:
        if self._it is None:
            raise RuntimeError("PipeNode.next() before reset()")
        return next(self._it)

    def get_state(self) -> Dict[str, Any]:
        return self._stage.state_dict()

    def _close(self) -> None:
        if self._it is not None:
            close_iterator(self._it)
        self._it = None

    def __repr__(self) -> str:
        return f"PipeNode({self.pipe!r})"


class SeedsFromNode(Stage):
    """Our source stage over a user's ``BaseNode`` that yields seed tensors:
    chain ``.sample_neighbors(...)`` and the rest on it.

    Each epoch resets the node and reads it to exhaustion. A resumed epoch
    (``load_state_dict``) skips its first ``batches_done`` seed tensors, so
    the node must yield the same seeds each time it is reset for an epoch.

    Example:
        >>> import torch
        >>> from torchdata.nodes import IterableWrapper
        >>> node = IterableWrapper([torch.tensor([0, 1]), torch.tensor([2])])
        >>> [t.tolist() for t in SeedsFromNode(node)]
        [[0, 1], [2]]
    """

    def __init__(self, node: BaseNode) -> None:
        super().__init__()
        if not isinstance(node, BaseNode):
            raise TypeError("SeedsFromNode reads a torchdata.nodes.BaseNode, "
                            f"got {type(node).__name__}")
        self.node = node

    def settings(self) -> str:
        return type(self.node).__name__

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Tensor]:
        self.node.reset()
        for position, seeds in enumerate(self.node):
            if position >= start:
                yield seeds


__all__ = ["PipeNode", "SeedsFromNode"]
