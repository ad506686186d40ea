"""Stage: node-wise samples become PyG ``Data`` batches."""

from __future__ import annotations

import copy
from typing import Any, Iterator, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes.batch import SampledUnion
from salient_pipes.pipes.base import Stage
from salient_pipes.pipes.sample import SampleNeighbors

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

    def __new__(cls, source: Any = None, data: Any = None, *args: Any, **kwargs: Any) -> Any:
        # A HeteroData gets the heterogeneous stage.
        if type(data).__name__ == "HeteroData":
            from salient_pipes.pipes.to_pyg_hetero import ToHeteroPyG

            kwargs.pop("perm", None)
            kwargs.pop("csc", None)
            return ToHeteroPyG(source, data, **kwargs)
        return super().__new__(cls)

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
        # Directly after node-wise sampling, x[n_id] is gathered by the sampling
        # workers (as slice_features does for per-hop samples); the rest of
        # the attributes are sliced here.
        x = getattr(data, "x", None)
        self.fused = (isinstance(source, SampleNeighbors) and source.node_wise
                      and not source.disjoint and isinstance(x, Tensor) and x.dim() == 2
                      and x.device.type == "cpu")
        self._rest = data
        if self.fused:
            self._rest = copy.copy(data)
            self._rest.num_nodes = data.num_nodes  # stated: no inference from x's rows
            del self._rest.x

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        items = self.source._prepared(self.data.x, None) if self.fused else self.source
        for sub in items:
            if not isinstance(sub, SampledUnion):
                raise TypeError("to_pyg takes node-wise samples (sample_neighbors(..., "
                                f"node_wise=True)), got {type(sub).__name__}")
            yield self._batch(sub)

    def _edges(self, sub: SampledUnion) -> Tuple[Tensor, Tensor]:
        """The batch's edge_index and the ids in ``data.edge_index`` of its edges."""
        # A sampler given edge_ids reports ids; otherwise positions in col.
        e_id = sub.e_id if getattr(self.source, "edge_ids", None) is not None \
            else self.perm[sub.e_id]
        if self.subgraph_type == "directional":
            return sub.edge_index, e_id
        if self.subgraph_type == "bidirectional":
            from torch_geometric.sampler.utils import to_bidirectional

            row, col = sub.edge_index
            row, col, e_id = to_bidirectional(row, col, row, col, e_id, e_id)
            return torch.stack([row, col]), e_id
        row, col, position = induced_edges(self.csc, sub.n_id)
        return torch.stack([row, col]), self.perm[position]

    def _batch(self, sub: SampledUnion) -> Any:
        from torch_geometric.loader.utils import filter_node_store_

        edge_index, e_id = self._edges(sub)
        batch = copy.copy(self._rest)
        filter_node_store_(self._rest._store, batch._store, sub.n_id)  # PyG's node slicing
        for key, value in self._rest._store.items():
            if key == "edge_index":
                batch.edge_index = edge_index
            elif self._rest._store.is_edge_attr(key):
                dim = self._rest.__cat_dim__(key, value)
                batch[key] = value.index_select(dim, e_id.to(value.device))
        if sub.x is not None:
            batch.x = sub.x
        batch.n_id = sub.n_id
        batch.e_id = e_id
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


def induced_edges(csc: Tuple[Tensor, Tensor], n_id: Tensor, src_n_id: Optional[Tensor] = None,
                  num_src: Optional[int] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Every edge of the CSR among ``n_id``: (source local ids, target local
    ids, positions in ``col``), grouped by target in ``n_id`` order. For a
    bipartite CSR (an edge type), the sources are ``src_n_id`` out of
    ``num_src`` source nodes.

    Example:
        >>> rowptr, col = torch.tensor([0, 1, 3, 3]), torch.tensor([1, 0, 2])
        >>> [t.tolist() for t in induced_edges((rowptr, col), torch.tensor([1, 0]))]
        [[1, 0], [0, 1], [1, 0]]
    """
    rowptr, col = csc
    if src_n_id is None:
        src_n_id, num_src = n_id, rowptr.numel() - 1
    local = torch.full((int(num_src),), -1, dtype=torch.int64)
    local[src_n_id] = torch.arange(src_n_id.numel())
    begin, end = rowptr[n_id], rowptr[n_id + 1]
    counts = end - begin
    target = torch.repeat_interleave(torch.arange(n_id.numel()), counts)
    offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    position = torch.repeat_interleave(begin, counts) + offsets
    source = local[col[position].to(torch.int64)]
    keep = source >= 0
    return source[keep], target[keep], position[keep]
