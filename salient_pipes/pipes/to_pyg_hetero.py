"""Stage: heterogeneous samples become PyG ``HeteroData`` batches."""

from __future__ import annotations

import copy
from typing import Any, Dict, Iterator, Optional

import torch
from torch.utils.data import IterDataPipe

from salient_pipes.batch import HeteroBatch
from salient_pipes.pipes.base import Stage
from salient_pipes.pipes.sample_hetero import SampleHeteroNeighbors
from salient_pipes.pipes.to_pyg import SUBGRAPH_TYPES, induced_edges

# Where PyG's link loader puts each seed payload entry: on the edge type,
# its source type or its destination type.
_ON_SRC, _ON_DST = ("src_index",), ("dst_pos_index", "dst_neg_index")


def _row_per_node(data: Any, t: str, key: str, value: Any) -> bool:
    """Whether node type ``t``'s attribute ``key`` is a CPU tensor with one
    row per node along dim 0, which the sampling workers can slice."""
    store = data[t]
    return (isinstance(value, torch.Tensor) and value.device.type == "cpu"
            and value.dim() >= 1 and store.is_node_attr(key)
            and data.__cat_dim__(key, value, store) == 0
            and value.size(0) == store.num_nodes)


class ToHeteroPyG(Stage):
    """Turns each :class:`HeteroBatch` into a ``torch_geometric.data.HeteroData``
    as PyG's loaders build theirs (PyG's own node slicing): every
    node type's attributes sliced by its ``n_id``, every edge type's
    ``edge_index`` in local ids and its edge attributes sliced by ``e_id``;
    ``n_id``, ``e_id``, ``num_sampled_nodes``, ``num_sampled_edges`` per
    type, and on the input type ``input_id`` and ``batch_size`` (node
    batches) or, on the input edge type, ``edge_label_index`` and
    ``edge_label`` (link batches). ``pipe.to_pyg(hetero_data)`` builds this
    stage.

    The sampler must report edge ids of ``data`` (``return_e_id=True`` with
    the CSCs' ``perm`` as ``edge_ids``, as the loaders set it up). Directly
    after sampling, ``x`` of every node type is gathered by the sampling
    workers.

    ``subgraph_type="bidirectional"`` turns the sampled edges of every edge
    type and its reverse type into both directions, as PyG does (its own
    ``HeteroSamplerOutput.to_bidirectional``): edge stores then hold
    ``edge_index`` only, and no ``num_sampled_*`` counts. ``"induced"``
    takes, per edge type, every edge of ``data`` between the sampled nodes
    of its two types, with ``e_id`` and edge attributes, and no counts.
    """

    def __init__(self, source: IterDataPipe, data: Any,
                 subgraph_type: str = "directional") -> None:
        super().__init__(source)
        if subgraph_type not in SUBGRAPH_TYPES:
            raise ValueError(f"subgraph_type must be one of {SUBGRAPH_TYPES}, got "
                             f"{subgraph_type!r}")
        self.subgraph_type = subgraph_type
        self.csc = getattr(source, "hetero", None)
        if subgraph_type == "induced" and getattr(source, "disjoint", False):
            raise NotImplementedError("subgraph_type='induced' with disjoint sampling is not "
                                      "supported")
        if subgraph_type == "induced" and getattr(self.csc, "perm", None) is None:
            raise ValueError("subgraph_type='induced' needs the sampler to read a HeteroData's "
                             "CSCs (hetero_csc_of(data)), which map positions to edge ids")
        self.data = data
        # Node attributes the sampling workers slice (x into HeteroBatch.x,
        # the others into HeteroBatch.attrs); PyG's node slicing does the rest.
        self.fused_x: Dict[str, torch.Tensor] = {}
        self.fused_attrs: Dict[str, Dict[str, torch.Tensor]] = {}
        if isinstance(source, SampleHeteroNeighbors) and not source.disjoint:
            for t in data.node_types:
                x = getattr(data[t], "x", None)
                if isinstance(x, torch.Tensor) and x.dim() == 2 and x.device.type == "cpu":
                    self.fused_x[t] = x
                named = {key: value for key, value in data[t].items()
                         if key != "x" and _row_per_node(data, t, key, value)}
                if named:
                    self.fused_attrs[t] = named
        self._rest = copy.copy(data)
        for t in {*self.fused_x, *self.fused_attrs}:
            self._rest[t].num_nodes = data[t].num_nodes  # stated: not inferred from x
            fused = list(self.fused_attrs.get(t, {})) + (["x"] if t in self.fused_x else [])
            for key in fused:
                delattr(self._rest[t], key)

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        fused = self.fused_x or self.fused_attrs
        items = self.source._prepared(self.fused_x, None, attrs=self.fused_attrs) if fused \
            else self.source
        for sub in items:
            if not isinstance(sub, HeteroBatch):
                raise TypeError(f"to_pyg(HeteroData) takes heterogeneous samples, got "
                                f"{type(sub).__name__}")
            yield self._batch(sub)

    def _batch(self, sub: HeteroBatch) -> Any:
        from torch_geometric.loader.utils import filter_node_store_

        if not sub.e_id and sub.edge_index:
            raise ValueError("to_pyg needs edge ids: sample with return_e_id=True")
        if self.subgraph_type == "bidirectional":
            return self._bidirectional(sub)
        counted = self.subgraph_type == "directional"
        edges = {e: (sub.edge_index[e], sub.e_id[e]) for e in self._rest.edge_types} \
            if counted else {e: self._induced(e, sub) for e in self._rest.edge_types}
        batch = copy.copy(self._rest)
        for t in self._rest.node_types:  # PyG's node slicing
            filter_node_store_(self._rest[t], batch[t], sub.n_id[t])
            batch[t].n_id = sub.n_id[t]
            if counted:
                batch[t].num_sampled_nodes = sub.num_sampled_nodes[t]
        self._fill_nodes(batch, sub)
        # Edge stores as PyG's filter_edge_store_ builds them, without copying
        # the sampler's [2, E] edge_index again.
        for e in self._rest.edge_types:
            store, (edge_index, e_id) = self._rest[e], edges[e]
            for key, value in store.items():
                if key == "edge_index":
                    batch[e].edge_index = edge_index
                elif store.is_edge_attr(key):
                    dim = self._rest.__cat_dim__(key, value, store)
                    batch[e][key] = value.index_select(dim, e_id.to(value.device))
            batch[e].e_id = e_id
            if counted:
                batch[e].num_sampled_edges = sub.num_sampled_edges[e]
        return self._payload(batch, sub)

    @staticmethod
    def _fill_nodes(batch: Any, sub: HeteroBatch) -> None:
        """Puts the node attributes the workers sliced into ``batch``."""
        for t, x in sub.x.items():
            batch[t].x = x
        for t, named in sub.attrs.items():
            for key, value in named.items():
                batch[t][key] = value

    @staticmethod
    def _payload(batch: Any, sub: HeteroBatch) -> Any:
        """Puts the batch's payload (and disjoint ``batch`` vectors) where
        PyG's loaders put them."""
        payload = dict(sub.payload)
        groups = payload.pop("disjoint_groups", None)  # link batches: subgraph -> its edge
        for t, seed_of in (sub.batch or {}).items():
            batch[t].batch = seed_of if groups is None else seed_of % groups
        edge_type: Optional[tuple] = payload.pop("input_edge_type", None)
        if edge_type is None:  # node batches, as PyG's NeighborLoader
            for key, value in payload.items():
                batch[sub.input_type][key] = value
            batch[sub.input_type].batch_size = sub.batch_size
            return batch
        for key, value in payload.items():
            store = edge_type[0] if key in _ON_SRC else edge_type[2] if key in _ON_DST \
                else edge_type
            batch[store][key] = value
        return batch

    def _induced(self, e: tuple, sub: HeteroBatch) -> tuple:
        """Edge type ``e``'s edges between the batch's nodes: ``edge_index``
        in local ids and their edge ids."""
        src, _, dst = e
        source, target, position = induced_edges(
            (self.csc.rowptr[e], self.csc.col[e]), sub.n_id[dst], sub.n_id[src],
            self.csc.num_nodes[src])
        return torch.stack([source, target]), self.csc.perm[e][position]

    def _bidirectional(self, sub: HeteroBatch) -> Any:
        from torch_geometric.loader.utils import filter_node_store_
        from torch_geometric.sampler import HeteroSamplerOutput

        out = HeteroSamplerOutput(
            node=sub.n_id, row={e: ei[0] for e, ei in sub.edge_index.items()},
            col={e: ei[1] for e, ei in sub.edge_index.items()}, edge=dict(sub.e_id),
        ).to_bidirectional()
        batch = copy.copy(self._rest)
        for t in self._rest.node_types:
            filter_node_store_(self._rest[t], batch[t], sub.n_id[t])
            batch[t].n_id = sub.n_id[t]
        self._fill_nodes(batch, sub)
        for e in self._rest.edge_types:
            store = batch[e]
            for key in list(store.keys()):
                del store[key]
            store.edge_index = torch.stack([out.row[e], out.col[e]])
        return self._payload(batch, sub)

    def __len__(self) -> int:
        return len(self.source)


__all__ = ["ToHeteroPyG"]
