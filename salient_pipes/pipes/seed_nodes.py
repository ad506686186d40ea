"""Stage: positions in a seed set become seeds that remember their positions."""

from __future__ import annotations

from typing import Any, Iterator, Optional

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
    put it after ``batch_nodes`` over ``arange(len(input_nodes))``.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(3)).batch_nodes(2).seed_nodes(torch.tensor([7, 8, 9]))
        >>> [(b.seeds.tolist(), b.payload["input_id"].tolist()) for b in pipe]
        [([7, 8], [0, 1]), ([9], [2])]
    """

    def __init__(self, source: IterDataPipe, input_nodes: Tensor,
                 input_id: Optional[Tensor] = None) -> None:
        super().__init__(source)
        self.input_nodes = as_node_ids("input_nodes", input_nodes)
        self.input_id = None if input_id is None else \
            check_input_id(input_id, self.input_nodes.numel(), "input_nodes")

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[SeedBatch]:
        for positions in self.source:
            ids = positions if self.input_id is None else self.input_id[positions]
            yield SeedBatch(self.input_nodes[positions], {"input_id": ids})

    def __len__(self) -> int:
        return len(self.source)
