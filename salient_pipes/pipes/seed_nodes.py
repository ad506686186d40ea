"""Stage: positions in a seed set become seeds that remember their positions."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import as_node_ids, check_input_id
from salient_pipes.batch import SeedBatch
from salient_pipes.pipes.base import Stage


@functional_datapipe("seed_nodes")
class SeedNodes(Stage):
    """Turns each batch of positions into ``input_nodes[positions]`` with
    ``{"input_id": positions}`` as payload (PyG's ``input_id``;
    ``input_id[positions]`` when ``input_id`` is given, one per input node):
    put it after ``batch_nodes`` over ``arange(len(input_nodes))``. With
    ``input_time`` (one per input node), each seed also brings its time
    (``seed_time``, PyG's, and ``subgraph_time``, which temporal
    ``sample_neighbors`` bounds its subgraph by); ``report_time=False``
    keeps only the bound (PyG's loaders attach no ``seed_time`` when the
    seeds' times are their own node times).

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(3)).batch_nodes(2).seed_nodes(torch.tensor([7, 8, 9]))
        >>> [(b.seeds.tolist(), b.payload["input_id"].tolist()) for b in pipe]
        [([7, 8], [0, 1]), ([9], [2])]
    """

    def __init__(self, source: IterDataPipe, input_nodes: Tensor,
                 input_id: Optional[Tensor] = None, input_time: Optional[Tensor] = None,
                 report_time: bool = True) -> None:
        super().__init__(source)
        self.report_time = report_time
        self.input_nodes = as_node_ids("input_nodes", input_nodes)
        self.input_id = None if input_id is None else \
            check_input_id(input_id, self.input_nodes.numel(), "input_nodes")
        self.input_time = None
        if input_time is not None:
            self.input_time = torch.as_tensor(input_time)
            if self.input_time.shape != self.input_nodes.shape or \
                    self.input_time.is_floating_point() or self.input_time.dtype == torch.bool:
                raise ValueError(f"input_time must hold one integer time per input node "
                                 f"({self.input_nodes.numel()}), got {self.input_time.dtype} "
                                 f"of shape {tuple(self.input_time.shape)}")
            self.input_time = self.input_time.to(torch.int64)

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[SeedBatch]:
        for positions in self.source:
            ids = positions if self.input_id is None else self.input_id[positions]
            payload = {"input_id": ids}
            if self.input_time is not None:  # each seed's subgraph is bounded by its time
                payload["subgraph_time"] = self.input_time[positions]
                if self.report_time:
                    payload["seed_time"] = payload["subgraph_time"]
            yield SeedBatch(self.input_nodes[positions], payload)

    def __len__(self) -> int:
        return len(self.source)
