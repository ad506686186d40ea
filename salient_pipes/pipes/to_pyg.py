"""Stage: node-wise samples become PyG ``Data`` batches."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes.batch import SampledUnion
from salient_pipes.pipes.base import Stage

SUBGRAPH_TYPES = ("directional", "bidirectional", "induced")


@functional_datapipe("to_pyg")
class ToPyG(Stage):
    """Turns each :class:`SampledUnion` into a ``torch_geometric.data.Data``
    the way PyG's loaders build theirs: every node-level attribute of
    ``data`` sliced by ``n_id`` (in its own dtype), ``edge_index`` of the
    sampled subgraph in local ids (row 0 sources, row 1 targets),
    edge-level attributes sliced by ``e_id`` (ids of ``data.edge_index``),
    and ``n_id``, ``e_id``, ``batch_size``, ``num_sampled_nodes``,
    ``num_sampled_edges`` plus the seeds' payload (``input_id``,
    ``edge_label_index``, ...).

    ``perm`` maps positions in the sampled CSR's ``col`` to edge ids
    (:func:`salient_pipes.pyg.csc_of` builds both). ``subgraph_type``:
    ``"directional"`` (the sampled edges), ``"bidirectional"`` (each sampled
    edge in both directions) or ``"induced"`` (every edge of ``data`` among
    the sampled nodes; needs ``csc``).

    Example:
        >>> from torch_geometric.data import Data
        >>> from salient_pipes.pipes import NodeIndices
        >>> from salient_pipes.pyg import csc_of
        >>> data = Data(x=torch.randn(4, 2), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
        >>> csc = csc_of(data)
        >>> pipe = (NodeIndices(torch.arange(4)).batch_nodes(2).seed_nodes(torch.arange(4))
        ...         .sample_neighbors(csc.graph, [-1], node_wise=True, return_e_id=True)
        ...         .to_pyg(data, csc.perm))
        >>> batch = next(iter(pipe)); batch.n_id.tolist(), batch.e_id.tolist()
        ([0, 1], [0])
    """

    def __init__(self, source: IterDataPipe, data: Any, perm: Tensor,
                 subgraph_type: str = "directional",
                 csc: Optional[Tuple[Tensor, Tensor]] = None) -> None:
        super().__init__(source)
        if subgraph_type not in SUBGRAPH_TYPES:
            raise ValueError(f"subgraph_type must be one of {SUBGRAPH_TYPES}, "
                             f"got {subgraph_type!r}")
        if subgraph_type == "induced" and getattr(source, "disjoint", False):
            raise NotImplementedError("subgraph_type='induced' with disjoint sampling is not "
                                      "supported yet")
        if subgraph_type == "induced" and csc is None:
            raise ValueError("subgraph_type='induced' needs the CSR (rowptr, col) as csc")
        self.data, self.perm, self.subgraph_type, self.csc = data, perm, subgraph_type, csc

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        for sub in self.source:
            if not isinstance(sub, SampledUnion):
                raise TypeError("to_pyg takes node-wise samples (sample_neighbors(..., "
                                f"node_wise=True)), got {type(sub).__name__}")
            yield self._batch(sub)

    def _edges(self, sub: SampledUnion) -> Tuple[Tensor, Tensor, Tensor]:
        row, col = sub.edge_index
        edge = sub.e_id
        if self.subgraph_type == "bidirectional":
            from torch_geometric.sampler.utils import to_bidirectional

            row, col, edge = to_bidirectional(row, col, row, col, edge, edge)
        elif self.subgraph_type == "induced":
            row, col, edge = induced_edges(self.csc, sub.n_id)
        return row, col, edge

    def _batch(self, sub: SampledUnion) -> Any:
        from torch_geometric.loader.utils import filter_data

        row, col, edge = self._edges(sub)
        batch = filter_data(self.data, sub.n_id, row, col, edge, self.perm)
        batch.n_id = sub.n_id
        batch.e_id = self.perm[edge]
        batch.num_sampled_nodes = sub.num_sampled_nodes
        batch.num_sampled_edges = sub.num_sampled_edges
        groups = sub.payload.get("disjoint_groups")
        if sub.batch is not None:  # each node's seed; for links, the seed's edge (as PyG)
            batch.batch = sub.batch if groups is None else sub.batch % groups
        for key, value in sub.payload.items():
            if key != "disjoint_groups":
                batch[key] = value
        if "edge_label_index" not in sub.payload and "src_index" not in sub.payload:
            batch.batch_size = sub.batch_size  # node batches, as PyG's NeighborLoader
        return batch

    def __len__(self) -> int:
        return len(self.source)


def induced_edges(csc: Tuple[Tensor, Tensor], n_id: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Every edge of the CSR among ``n_id``: (source local ids, target local
    ids, positions in ``col``), grouped by target in ``n_id`` order."""
    rowptr, col = csc
    local = torch.full((rowptr.numel() - 1,), -1, dtype=torch.int64)
    local[n_id] = torch.arange(n_id.numel())
    begin, end = rowptr[n_id], rowptr[n_id + 1]
    counts = end - begin
    target = torch.repeat_interleave(torch.arange(n_id.numel()), counts)
    offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    position = torch.repeat_interleave(begin, counts) + offsets
    source = local[col[position].to(torch.int64)]
    keep = source >= 0
    return source[keep], target[keep], position[keep]
