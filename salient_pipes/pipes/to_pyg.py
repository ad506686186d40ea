"""Stage: node-wise samples become PyG batches (``Data`` or ``HeteroData``,
as the input graph is; its attributes read as ``pyg_graphs.py`` says)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes.batch import EDGE_TYPE, NODE_TYPE, EdgeType, NodeWiseBatch
from salient_pipes.pipes.base import Stage
from salient_pipes.pipes.device_features import DeviceFeatures
from salient_pipes.pipes.pyg_graphs import (
    Edges,
    LocalGraph,
    RemoteGraph,
    Stores,
    is_remote,
    sliceable,
)
from salient_pipes.pipes.sample import SampleNeighbors

SUBGRAPH_TYPES = ("directional", "bidirectional", "induced")
# Where PyG's link loader puts each seed payload entry of a heterogeneous
# batch: on the input edge type, its source type or its destination type.
_ON_SRC, _ON_DST = ("src_index",), ("dst_pos_index", "dst_neg_index")


def subgraph_type_name(value: Any) -> str:
    """``value`` (a name, or PyG's ``SubgraphType`` enum) checked."""
    name = str(getattr(value, "value", value))
    if name not in SUBGRAPH_TYPES:
        raise ValueError(f"subgraph_type must be one of {SUBGRAPH_TYPES}, got {value!r}")
    return name


def _per_edge_type(value: Any, edge_types: List[EdgeType]) -> Dict[EdgeType, Any]:
    if value is None:
        return {}
    return dict(value) if isinstance(value, Mapping) else {edge_types[0]: value}


@functional_datapipe("to_pyg")
class ToPyG(Stage):
    """Turns each :class:`NodeWiseBatch` into the batch PyG's loaders build
    from ``data`` (a ``Data`` or a ``HeteroData``), with PyG's own node
    slicing: every node attribute sliced by ``n_id``; ``edge_index`` of the
    sampled subgraph in local ids (row 0 sources, row 1 targets) and every
    edge attribute sliced by ``e_id`` (ids of ``data``'s edges); ``n_id``,
    ``e_id``, ``num_sampled_nodes``, ``num_sampled_edges`` (per type for a
    ``HeteroData``) and the seeds' payload where PyG puts it (``input_id``
    and ``batch_size`` for node batches; ``edge_label_index``,
    ``edge_label`` or the triplet indices for link batches).

    Directly after node-wise sampling, the node attributes that are CPU
    tensors with a row per node (``x`` first) are gathered by the sampling
    workers.

    Args:
        source: yields :class:`NodeWiseBatch` (``return_e_id=True``).
        data: the graph the samples are of.
        perm: maps positions in the sampled CSR's ``col`` to edge ids (a
            tensor, or a dict per edge type), for a sampler that was not
            given ``edge_ids``; ``csc``'s by default.
        subgraph_type: ``"directional"`` (the sampled edges),
            ``"bidirectional"`` (each sampled edge in both directions, as
            PyG does it) or ``"induced"`` (every edge of ``data`` among the
            sampled nodes); PyG's ``SubgraphType`` works too.
        csc: the sampled CSR, for ``"induced"``: ``(rowptr, col)``, or the
            result of ``salient_pipes.pyg.csc_of``/``hetero_csc_of``/
            ``remote_csc_of`` (which also gives ``perm``).
        custom_cls: for ``data=(FeatureStore, GraphStore)``: the class of the
            batches (PyG's ``custom_cls``; ``Data``/``HeteroData`` by default).
        features: ``x`` kept on a device (a
            :class:`~salient_pipes.pipes.device_features.DeviceFeatures` with
            a cache of ``data``'s ``x``): the workers gather only the rows
            it lacks and each batch's ``x`` is put together on that device
            (the other attributes stay on the host, as PyG slices them).
        sampler_output: yield what PyG's sampler returns for each sample
            (its ``SamplerOutput`` or ``HeteroSamplerOutput``: ``node``,
            ``row``, ``col``, ``edge`` as positions in the sampled CSR that
            ``perm`` maps to ids, ``batch``, the counts, and ``metadata`` as
            PyG's loaders read it) instead of the batch, for code that
            builds batches from those (PyG's ``transform_sampler_output``
            and ``filter_fn``). Nothing is gathered.

    Example:
        >>> from torch_geometric.data import Data
        >>> from salient_pipes.pipes import NodeIndices
        >>> from salient_pipes.pyg import csc_of
        >>> data = Data(x=torch.randn(4, 2), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
        >>> csc = csc_of(data)
        >>> pipe = (NodeIndices(torch.arange(4)).batch_nodes(2).seed_nodes(torch.arange(4))
        ...         .sample_neighbors(csc, [-1], node_wise=True, return_e_id=True)
        ...         .to_pyg(data, csc=csc))
        >>> batch = next(iter(pipe)); batch.n_id.tolist(), batch.e_id.tolist()
        ([0, 1], [0])
    """

    def __init__(self, source: IterDataPipe, data: Any, perm: Any = None,
                 subgraph_type: Any = "directional", csc: Any = None,
                 custom_cls: Any = None, features: Optional[DeviceFeatures] = None,
                 sampler_output: bool = False) -> None:
        super().__init__(source)
        if sampler_output and features is not None:
            raise ValueError("sampler_output yields samples, not batches: features on the "
                             "device would never be used")
        self.features, self.sampler_output = features, bool(sampler_output)
        self.subgraph_type = subgraph_type_name(subgraph_type)
        self.data = data
        sampler = source if isinstance(source, SampleNeighbors) else None
        # Node attributes the sampling workers slice (x into NodeWiseBatch.x,
        # the others into NodeWiseBatch.attrs); PyG's node slicing does the rest.
        self.fused_x: Dict[str, Tensor] = {}
        self.fused_attrs: Dict[str, Dict[str, Tensor]] = {}
        self.graph: Any
        if is_remote(data):
            types = csc if hasattr(csc, "node_types") else getattr(sampler, "schema", None)
            if types is None:
                raise ValueError("to_pyg of a (FeatureStore, GraphStore) needs its graph: put it "
                                 "after sample_neighbors, or give csc=graph_of(data)")
            typed = list(types.node_types) != [NODE_TYPE]
            self.graph = RemoteGraph(data, list(types.node_types),
                                     [tuple(e) for e in types.edge_types], typed, custom_cls)
            self.num_nodes = {t: int(n) for t, n in types.num_nodes.items()}
        else:
            if sampler is not None and sampler.node_wise and not sampler_output:
                self._fuse(data)
            if features is not None and not (
                    sampler is not None and set(self.fused_x) >= set(features.slots)):
                raise ValueError("features on the device take a Data or HeteroData whose x "
                                 "the sampling workers gather: to_pyg right after "
                                 "sample_neighbors(..., node_wise=True)")
            self.graph = LocalGraph(data, {t: [*self.fused_attrs.get(t, {}),
                                               *(["x"] if t in self.fused_x else [])]
                                           for t in {*self.fused_x, *self.fused_attrs}})
            self.num_nodes = self.graph.num_nodes
        self.stores: Stores = self.graph.stores
        edge_types = self.stores.edge_types
        if hasattr(csc, "rowptr"):  # csc_of / hetero_csc_of / remote_csc_of
            if perm is None:
                perm = csc.perm
            rowptr, col = (_per_edge_type(a, edge_types) for a in (csc.rowptr, csc.col))
            csc = {e: (rowptr[e], col[e]) for e in rowptr}
        elif csc is not None:  # (rowptr, col)
            csc = {edge_types[0]: tuple(csc)}
        self.perm = _per_edge_type(perm, edge_types)
        self.csc = csc or {}
        # Edge types whose ids the sampler reports itself (it was given edge_ids).
        self.reported = set((sampler.edge_ids or {}) if sampler is not None else ())
        if self.subgraph_type == "induced":
            if sampler is not None and sampler.disjoint:
                raise NotImplementedError("subgraph_type='induced' with disjoint sampling is "
                                          "not supported")
            missing = [e for e in edge_types if e not in self.csc or e not in self.perm]
            if missing:
                raise ValueError("subgraph_type='induced' needs the sampled CSR and its "
                                 "positions' edge ids (csc=csc_of(data) or hetero_csc_of(data))")

    def _fuse(self, data: Any) -> None:
        typed = type(data).__name__ == "HeteroData"
        for t in (data.node_types if typed else [NODE_TYPE]):
            store = data.get_node_store(t) if typed else data._store
            for key, value in store.items():
                if not sliceable(data, store, key, value):
                    continue
                if key == "x" and value.dim() == 2:
                    self.fused_x[t] = value
                else:
                    self.fused_attrs.setdefault(t, {})[key] = value

    def settings(self) -> str:
        return f"subgraph_type='{self.subgraph_type}'"

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        fused = self.fused_x or self.fused_attrs
        on = self.features
        if on is not None and on.host_cache is not None:
            on.host_cache.reset_counts()
        items = self.source.with_features(self.fused_x, attrs=self.fused_attrs,
                                          cache=on and on.host_cache) if fused \
            else self.source
        for sub in items:
            if not isinstance(sub, NodeWiseBatch):
                raise TypeError("to_pyg takes node-wise samples (sample_neighbors(..., "
                                f"node_wise=True)), got {type(sub).__name__}")
            if on is not None:  # x put together on the device; the rest stays here
                moved = on.fill(dataclasses.replace(
                    sub, n_id={t: v.to(on.device) for t, v in sub.n_id.items()},
                    x={t: v.to(on.device) for t, v in sub.x.items()}))
                sub = dataclasses.replace(sub, x=moved.x)
            yield self._sample_output(sub) if self.sampler_output else self._batch(sub)

    # ------------------------------------------------------------- edges
    def extra_stats(self) -> Dict[str, Any]:
        rate = None if self.features is None else self.features.hit_rate
        return {} if rate is None else {"device_cache_hit_rate": rate}

    def _ids(self, e: EdgeType, sub: NodeWiseBatch) -> Tensor:
        """The ids in ``data`` of edge type ``e``'s sampled edges (with
        ``sampler_output``: their positions in the sampled CSR, as PyG's
        sampler reports them)."""
        if e in self.reported or self.sampler_output:
            return sub.e_id[e]
        if e not in self.perm:
            raise ValueError("to_pyg needs to map CSR positions to edge ids: give perm (or "
                             "csc), or sample with edge_ids")
        return self.perm[e][sub.e_id[e]]

    def _induced(self, e: EdgeType, sub: NodeWiseBatch) -> Tuple[Tensor, Tensor]:
        src, _, dst = e
        rowptr, col = self.csc[e]
        source, target, position = induced_edges(
            (rowptr, col), sub.n_id[dst], sub.n_id[src], self.num_nodes[src])
        return torch.stack([source, target]), \
            position if self.sampler_output else self.perm[e][position]

    def _edges(self, sub: NodeWiseBatch) -> Edges:
        """Per edge type: ``edge_index`` in local ids, and the edges' ids
        (``None`` where PyG keeps none: bidirectional heterogeneous edges)."""
        if sub.edge_index and not sub.e_id:
            raise ValueError("to_pyg needs edge ids: sample with return_e_id=True")
        types = self.stores.edge_types
        if self.subgraph_type == "induced":
            return {e: self._induced(e, sub) for e in types}
        directed: Edges = {e: (sub.edge_index[e], self._ids(e, sub)) for e in types}
        if self.subgraph_type == "directional":
            return directed
        return self._bidirectional(sub, directed)

    def _bidirectional(self, sub: NodeWiseBatch, directed: Edges) -> Edges:
        """PyG's ``to_bidirectional`` of its sampler output: a ``Data`` keeps
        the edge ids, a ``HeteroData`` pairs each edge type with its reverse
        and drops them."""
        from torch_geometric.sampler import HeteroSamplerOutput, SamplerOutput

        if not self.stores.typed:
            (edge_index, ids), = directed.values()
            out = SamplerOutput(node=sub.n_id[NODE_TYPE], row=edge_index[0], col=edge_index[1],
                                edge=ids).to_bidirectional()
            return {EDGE_TYPE: (torch.stack([out.row, out.col]), out.edge)}
        out = HeteroSamplerOutput(
            node=sub.n_id, row={e: ei[0] for e, (ei, _) in directed.items()},
            col={e: ei[1] for e, (ei, _) in directed.items()},
            edge={e: ids for e, (_, ids) in directed.items()}).to_bidirectional()
        return {e: (torch.stack([out.row[e], out.col[e]]), None) for e in directed}

    # ------------------------------------------------------------- batch
    def _batch(self, sub: NodeWiseBatch) -> Any:
        stores = self.stores
        counted = self.subgraph_type == "directional"
        edges = self._edges(sub)
        batch = self.graph.batch(sub, edges)
        # in PyG's order (a Data holds them all in one store, and prints them so)
        for t in stores.node_types:
            stores.node(batch, t).n_id = sub.n_id[t]
        kept = [e for e in stores.edge_types if edges[e][1] is not None]
        for e in kept:
            stores.edge(batch, e).e_id = edges[e][1]
        for t, seed_of in self._seed_of(sub).items():
            stores.node(batch, t).batch = seed_of
        if counted:
            for t in stores.node_types:
                stores.node(batch, t).num_sampled_nodes = sub.num_sampled_nodes[t]
            for e in kept:
                stores.edge(batch, e).num_sampled_edges = sub.num_sampled_edges[e]
        return self._payload(batch, sub)

    @staticmethod
    def _seed_of(sub: NodeWiseBatch) -> Dict[str, Tensor]:
        """Per node type, the seed each node of a disjoint sample belongs to
        (for link batches, the labelled edge: subgraphs are grouped by it)."""
        groups = sub.payload.get("disjoint_groups")
        return {t: b if groups is None else b % groups for t, b in (sub.batch or {}).items()}

    def _sample_output(self, sub: NodeWiseBatch) -> Any:
        """What PyG's sampler returns for ``sub``: a ``SamplerOutput`` (a
        ``HeteroSamplerOutput`` for typed graphs) whose ``metadata`` is what
        PyG's loaders read: ``(input_id, seed_time)`` for node batches,
        ``(input_id, edge_label_index, edge_label, edge_label_time)`` or,
        for triplets, ``(input_id, src_index, dst_pos_index, dst_neg_index,
        seed_time)`` for link batches."""
        from torch_geometric.sampler import HeteroSamplerOutput, SamplerOutput

        edges = self._edges(sub)
        counted = self.subgraph_type == "directional"
        payload = sub.payload
        batch = None if sub.batch is None else self._seed_of(sub)
        keys: Tuple[str, ...] = ("input_id", "seed_time")
        if "input_edge_type" in payload:
            keys = ("input_id", "src_index", "dst_pos_index", "dst_neg_index", "seed_time") \
                if "src_index" in payload else \
                ("input_id", "edge_label_index", "edge_label", "edge_label_time")
        metadata = tuple(payload.get(k) for k in keys)
        num_nodes = dict(sub.num_sampled_nodes) if counted else None
        num_edges = dict(sub.num_sampled_edges) if counted else None
        if self.stores.typed:
            return HeteroSamplerOutput(
                node=dict(sub.n_id), row={e: ei[0] for e, (ei, _) in edges.items()},
                col={e: ei[1] for e, (ei, _) in edges.items()},
                edge={e: ids for e, (_, ids) in edges.items()}, batch=batch,
                num_sampled_nodes=num_nodes, num_sampled_edges=num_edges, metadata=metadata)
        (edge_index, ids), = edges.values()
        return SamplerOutput(
            node=sub.n_id[NODE_TYPE], row=edge_index[0], col=edge_index[1], edge=ids,
            batch=None if batch is None else batch[NODE_TYPE],
            num_sampled_nodes=None if num_nodes is None else num_nodes[NODE_TYPE],
            num_sampled_edges=None if num_edges is None else num_edges[EDGE_TYPE],
            metadata=metadata)

    def _payload(self, batch: Any, sub: NodeWiseBatch) -> Any:
        """Puts the batch's payload where PyG's loaders put them."""
        stores = self.stores
        payload = {k: v for k, v in sorted(sub.payload.items(), key=_payload_rank)
                   if k not in ("subgraph_time", "disjoint_groups")}  # the sampler's, not PyG's
        edge_type: Optional[EdgeType] = payload.pop("input_edge_type", None)
        if edge_type is None:  # node batches, as PyG's NeighborLoader
            store = stores.node(batch, sub.input_type)
            for key, value in payload.items():
                store[key] = value
            store.batch_size = sub.batch_size
            return batch
        for key, value in payload.items():
            where: Callable[[Any, Any], Any] = stores.edge
            place: Any = edge_type
            if key == "seed_time":  # triplets' times: on both ends' node types, as PyG
                stores.node(batch, edge_type[0])[key] = value
                where, place = stores.node, edge_type[2]
            elif key in _ON_SRC or key in _ON_DST:
                where, place = stores.node, edge_type[0] if key in _ON_SRC else edge_type[2]
            where(batch, place)[key] = value
        return batch

    def __len__(self) -> int:
        return len(self.source)


# The order PyG's loaders set a batch's payload in (node and link batches).
_PAYLOAD_ORDER = ("input_id", "edge_label_index", "edge_label", "edge_label_time", "src_index",
                  "dst_pos_index", "dst_neg_index", "seed_time")


def _payload_rank(item: Tuple[str, Any]) -> int:
    key = item[0]
    return _PAYLOAD_ORDER.index(key) if key in _PAYLOAD_ORDER else len(_PAYLOAD_ORDER)


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
    elif num_src is None:
        raise ValueError("induced_edges needs num_src with src_n_id (the source node count)")
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


__all__ = ["SUBGRAPH_TYPES", "ToPyG", "induced_edges", "subgraph_type_name"]
