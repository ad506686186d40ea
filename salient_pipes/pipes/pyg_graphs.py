"""What ``to_pyg`` reads a batch's attributes from: a ``Data`` (one store for
everything), a ``HeteroData`` (a store per type) or PyG's remote backends,
``(FeatureStore, GraphStore)``, whose node attributes are fetched per batch
with ``FeatureStore.multi_get_tensor``. Each fills the nodes and edges of a
batch the way PyG's loaders do for that input."""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

from salient_pipes.batch import EDGE_TYPE, NODE_TYPE, EdgeType, NodeWiseBatch

# Per edge type: edge_index in local ids, and the edges' ids in the input
# graph (None where PyG keeps none: bidirectional heterogeneous edges).
Edges = Dict[EdgeType, Tuple[Tensor, Optional[Tensor]]]


class Stores:
    """Where a PyG batch keeps the attributes of a node type and of an edge
    type: per type in a ``HeteroData``; all in one store in a ``Data``
    (whose one node type is :data:`NODE_TYPE`, its edge type
    :data:`EDGE_TYPE`)."""

    def __init__(self, typed: bool, node_types: List[str], edge_types: List[EdgeType]) -> None:
        self.typed = typed
        self.node_types = node_types if typed else [NODE_TYPE]
        self.edge_types = edge_types if typed else [EDGE_TYPE]

    # get_*_store, not batch[t]: a node type may share its name with a
    # relation, which batch[name] would find first.
    def node(self, batch: Any, t: str) -> Any:
        return batch.get_node_store(t) if self.typed else batch._store

    def edge(self, batch: Any, e: EdgeType) -> Any:
        return batch.get_edge_store(*e) if self.typed else batch._store

    def new(self) -> Any:
        """An empty batch of the right kind."""
        from torch_geometric.data import Data, HeteroData

        return HeteroData() if self.typed else Data()


def is_remote(data: Any) -> bool:
    """Whether ``data`` is PyG's remote-backend pair ``(FeatureStore, GraphStore)``."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        return False
    from torch_geometric.data import FeatureStore, GraphStore

    return isinstance(data[0], FeatureStore) and isinstance(data[1], GraphStore)


def sliceable(data: Any, store: Any, key: str, value: Any) -> bool:
    """Whether a node attribute is a CPU tensor with one row per node along
    dim 0, which the sampling workers can slice."""
    return (isinstance(value, Tensor) and value.device.type == "cpu" and value.dim() >= 1
            and store.is_node_attr(key) and data.__cat_dim__(key, value, store) == 0
            and value.size(0) == store.num_nodes)


class LocalGraph:
    """A ``Data`` or ``HeteroData`` in memory: a batch is a shallow copy
    with every node attribute sliced by ``n_id`` (PyG's own node slicing)
    and every edge attribute by the edges' ids; a sparse ``adj_t`` becomes
    the batch's own, in the same container. Node attributes the sampling
    workers already sliced (``fused``, per node type) come from the sample."""

    def __init__(self, data: Any, fused: Dict[str, List[str]]) -> None:
        typed = type(data).__name__ == "HeteroData"
        self.stores = stores = Stores(typed, list(data.node_types) if typed else [],
                                      list(data.edge_types) if typed else [])
        self.num_nodes = {t: int(stores.node(data, t).num_nodes) for t in stores.node_types}
        self.rest = copy.copy(data)  # without the fused attributes
        # Each node store's keys in the input's order, which a batch keeps
        # (as PyG's does) though its fused attributes are put back last.
        self.order = {t: list(stores.node(data, t).keys()) for t in fused}
        # Node types whose count a batch states only because it was fused
        # (PyG's batch states it where the input does).
        self.unstated = {t for t in fused if "num_nodes" not in stores.node(data, t)}
        for t, keys in fused.items():
            store = stores.node(self.rest, t)
            store.num_nodes = self.num_nodes[t]  # stated: not inferred from what is left
            for key in keys:
                del store[key]
        # An adj_t's values in the CSR order its edges are numbered in.
        self.adj_values: Dict[EdgeType, Optional[Tensor]] = {}
        for e in stores.edge_types:
            adj_t = stores.edge(data, e).get("adj_t")
            if adj_t is not None and stores.edge(data, e).get("edge_index") is None:
                self.adj_values[e] = _csr_values(adj_t)

    def batch(self, sub: NodeWiseBatch, edges: Edges) -> Any:
        from torch_geometric.loader.utils import filter_node_store_

        stores, rest = self.stores, self.rest
        batch = copy.copy(rest)
        for t in stores.node_types:
            store = stores.node(batch, t)
            filter_node_store_(stores.node(rest, t), store, sub.n_id[t])
            if t in self.unstated:
                del store["num_nodes"]
            if t in sub.x:
                store.x = sub.x[t]
            for key, value in sub.attrs.get(t, {}).items():
                store[key] = value
            if t in self.order:
                _reorder(store, self.order[t])
        for e in stores.edge_types:
            source, store = stores.edge(rest, e), stores.edge(batch, e)
            edge_index, ids = edges[e]
            if ids is None:  # bidirectional, heterogeneous: edge_index only, as PyG
                for key in list(store.keys()):
                    del store[key]
                store.edge_index = edge_index
                continue
            for key, value in source.items():
                if key == "edge_index":
                    store.edge_index = edge_index
                elif key == "adj_t" and e in self.adj_values:
                    store.adj_t = _adj_t(value, self.adj_values[e], edge_index, ids,
                                         store.size())
                elif source.is_edge_attr(key):
                    dim = rest.__cat_dim__(key, value, source)
                    store[key] = value.index_select(dim, ids.to(value.device))
        return batch


def _reorder(store: Any, keys: List[str]) -> None:
    """Puts ``keys`` (those the store holds) first in ``store``, in that
    order: the order a PyG store iterates and prints its attributes in."""
    mapping = store._mapping
    ordered = {key: mapping.pop(key) for key in keys if key in mapping}
    ordered.update(mapping)
    mapping.clear()
    mapping.update(ordered)


@contextlib.contextmanager
def _no_csr_beta_notice() -> Iterator[None]:
    """Silences torch's one-time notice that sparse CSR is in beta: the CSR
    tensors made here are ours, not the user's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        yield


def sparse_csr(adj_t: Tensor) -> Tensor:
    """A torch sparse tensor of any layout in CSR (a COO one coalesced,
    which merges repeated entries)."""
    if adj_t.layout == torch.sparse_csr:
        return adj_t
    with _no_csr_beta_notice():
        return (adj_t.coalesce() if adj_t.layout == torch.sparse_coo else adj_t).to_sparse_csr()


def _csr_values(adj_t: Any) -> Optional[Tensor]:
    if isinstance(adj_t, Tensor):
        return sparse_csr(adj_t).values()
    return adj_t.storage.value()  # a SparseTensor's storage is in CSR order


def _adj_t(like: Any, values: Optional[Tensor], edge_index: Tensor, ids: Tensor,
           size: Tuple[int, int]) -> Any:
    """The batch's transposed adjacency (rows its targets) in the input's
    container, its values sliced by ``ids``: a ``SparseTensor`` as PyG
    builds it, or a torch sparse CSR tensor."""
    num_src, num_dst = size
    value = None if values is None else values.index_select(0, ids.to(values.device))
    if not isinstance(like, Tensor):
        return type(like)(row=edge_index[1], col=edge_index[0], value=value,
                          sparse_sizes=(num_dst, num_src), is_sorted=False, trust_data=True)
    assert value is not None  # a torch sparse tensor always has values
    order = torch.argsort(edge_index[1] * max(num_src, 1) + edge_index[0])
    dst, src = edge_index[1][order], edge_index[0][order]
    crow = torch.zeros(num_dst + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(dst, minlength=num_dst), 0, out=crow[1:])
    with _no_csr_beta_notice():
        return torch.sparse_csr_tensor(crow, src, value[order], (num_dst, num_src))


class RemoteGraph:
    """PyG's remote backends: a batch is a new ``Data``/``HeteroData`` with
    ``edge_index`` per edge type and every tensor of the feature store
    fetched for ``n_id`` in one ``multi_get_tensor`` call (the store decides
    how), as PyG's ``filter_custom_store`` builds it."""

    def __init__(self, data: Any, node_types: List[str], edge_types: List[EdgeType],
                 typed: bool, custom_cls: Any = None) -> None:
        self.feature_store, self.graph_store = data
        self.custom_cls = custom_cls
        self.stores = Stores(typed, node_types, edge_types)
        self.attrs = list(self.feature_store.get_all_tensor_attrs())
        if typed:
            self.attrs = [a for a in self.attrs if a.group_name in node_types]

    def batch(self, sub: NodeWiseBatch, edges: Edges) -> Any:
        stores = self.stores
        batch = stores.new() if self.custom_cls is None else self.custom_cls()
        wanted = []
        for attr in self.attrs:
            attr = copy.copy(attr)
            attr.index = sub.n_id[attr.group_name if stores.typed else NODE_TYPE]
            wanted.append(attr)
        for e in stores.edge_types:  # in the order PyG's filter_custom_store sets them
            stores.edge(batch, e).edge_index = edges[e][0]
        for t in stores.node_types:
            stores.node(batch, t).num_nodes = sub.n_id[t].numel()
        for attr, value in zip(wanted, self.feature_store.multi_get_tensor(wanted)):
            stores.node(batch, attr.group_name)[attr.attr_name] = value
        return batch


__all__ = ["Edges", "LocalGraph", "RemoteGraph", "Stores", "is_remote", "sliceable"]
