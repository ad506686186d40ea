"""A PyG graph in the form our sampler reads: the CSC of its edges (of every
edge type's, for ``HeteroData``), from ``edge_index``, from a sparse
``adj_t`` (``torch_sparse.SparseTensor`` or a torch sparse tensor) or from a
``GraphStore`` (PyG's remote backends)."""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, NamedTuple, Tuple

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE
from salient_pipes.data.memory import huge_pages
from salient_pipes.pipes.pyg_graphs import is_remote, sparse_csr


class PygCsc(NamedTuple):
    """``data.edge_index`` grouped by target: row ``v`` of ``(rowptr, col)``
    lists the sources of the edges into ``v`` in edge-id order (duplicates
    and self loops kept, nothing added), and ``perm[p]`` is the edge id of
    position ``p`` in ``col``. ``graph`` is the validated native CSR."""

    rowptr: Tensor
    col: Tensor
    perm: Tensor
    graph: _native.CSRGraph

    # A Data is the one-type case of a typed graph (see salient_pipes.batch).
    @property
    def node_types(self) -> List[str]:
        return [NODE_TYPE]

    @property
    def edge_types(self) -> List[Tuple[str, str, str]]:
        return [EDGE_TYPE]

    @property
    def num_nodes(self) -> Dict[str, int]:
        return {NODE_TYPE: self.rowptr.numel() - 1}


# id(edge_index) -> (a weak reference to it, its CSC); an entry goes when
# its tensor does. (Tensors compare elementwise, so they cannot be the keys
# of a WeakKeyDictionary.)
_converted: Dict[int, Tuple[weakref.ref, PygCsc]] = {}


def csc_of(data: Any) -> PygCsc:
    """The CSC of ``data``'s edges (``data.num_nodes`` nodes): from
    ``edge_index``, or from ``adj_t`` (a ``SparseTensor`` or torch sparse
    tensor, rows the targets), built once per such tensor and reused by
    every loader over it.

    Example:
        >>> from torch_geometric.data import Data
        >>> csc = csc_of(Data(edge_index=torch.tensor([[0, 2, 1], [1, 1, 0]]), num_nodes=3))
        >>> csc.rowptr.tolist(), csc.col.tolist(), csc.perm.tolist()
        ([0, 1, 3, 3], [1, 0, 2], [2, 0, 1])
    """
    if type(data).__name__ == "HeteroData":
        raise ValueError("csc_of takes a Data; for a HeteroData use hetero_csc_of")
    edges = _edges_of(data._store if hasattr(data, "_store") else data)
    num_nodes = int(data.num_nodes)
    entry = _converted.get(id(edges))
    if entry is not None and entry[0]() is edges and \
            entry[1].rowptr.numel() == num_nodes + 1:
        return entry[1]
    rowptr, col, perm = _csc(edges, num_nodes, num_nodes, "data")
    csc = PygCsc(rowptr, col, perm, _native.CSRGraph(rowptr.numpy(), col.numpy()))
    key = id(edges)
    _converted[key] = (weakref.ref(edges), csc)
    weakref.finalize(edges, _converted.pop, key, None)
    return csc


class HeteroCsc(NamedTuple):
    """A ``HeteroData``'s edge types as CSCs (rows: the destination type's
    nodes), each as :class:`PygCsc` builds it (duplicates kept, ``perm``
    mapping positions to edge ids), plus the native graph the
    heterogeneous sampler reads."""

    node_types: List[str]
    edge_types: List[Tuple[str, str, str]]
    num_nodes: Dict[str, int]
    rowptr: Dict[Tuple[str, str, str], Tensor]
    col: Dict[Tuple[str, str, str], Tensor]
    perm: Dict[Tuple[str, str, str], Tensor]
    graph: _native.TypedGraph


def graph_of(data: Any) -> Any:
    """The CSC of a ``Data`` (:func:`csc_of`), of a ``HeteroData``
    (:func:`hetero_csc_of`) or of a ``(FeatureStore, GraphStore)`` pair
    (:func:`remote_csc_of`): node types, edge types, node counts and the
    native graph, alike for all."""
    if is_remote(data):
        return remote_csc_of(*data)
    return hetero_csc_of(data) if type(data).__name__ == "HeteroData" else csc_of(data)


def remote_csc_of(feature_store: Any, graph_store: Any) -> Any:
    """The CSC of the edges a PyG ``GraphStore`` holds (read once through
    its ``csc()``, in whatever layout it stores them): a :class:`PygCsc` when
    its edges have no type, else a :class:`HeteroCsc` whose node types are
    those of the feature store's groups and of the edge types, counted by
    PyG's ``remote_backend_utils``. ``perm`` maps positions to the ids of
    the edges in the store's own order.

    Example:
        >>> from torch_geometric.testing import MyFeatureStore, MyGraphStore
        >>> fs, gs = MyFeatureStore(), MyGraphStore()
        >>> fs.put_tensor(torch.arange(3), group_name=None, attr_name="x", index=None)
        True
        >>> gs.put_edge_index((torch.tensor([0, 2]), torch.tensor([1, 1])), edge_type=None,
        ...                   layout="coo", size=(3, 3))
        True
        >>> csc = remote_csc_of(fs, gs); csc.rowptr.tolist(), csc.col.tolist()
        ([0, 0, 2, 2], [0, 2])
    """
    from torch_geometric.data import remote_backend_utils

    attrs = graph_store.get_all_edge_attrs()
    if not attrs:
        raise ValueError("the GraphStore holds no edges (put_edge_index first)")
    if any(a.edge_type is None for a in attrs):  # one untyped edge set
        row, colptr, perm = graph_store.csc()
        size = attrs[0].size
        if size is not None:
            num_nodes = int(max(size))
        else:  # as many as the feature store's rows, or the edges name
            rows = [feature_store.get_tensor_size(a) for a in feature_store.get_all_tensor_attrs()]
            num_nodes = max([colptr.numel() - 1, int(row.max()) + 1 if row.numel() else 0] +
                            [int(r[0]) for r in rows if r])
        rowptr, col, perm = _from_store(row, colptr, perm, num_nodes, num_nodes, "the GraphStore")
        return PygCsc(rowptr, col, perm, _native.CSRGraph(rowptr.numpy(), col.numpy()))
    row, colptr, perms = graph_store.csc()
    edge_types = [tuple(e) for e in row]
    node_types = list(dict.fromkeys(
        [a.group_name for a in feature_store.get_all_tensor_attrs()
         if isinstance(a.group_name, str)] + [t for e in edge_types for t in (e[0], e[2])]))
    counts = {t: int(remote_backend_utils.num_nodes(feature_store, graph_store, t))
              for t in node_types}
    rowptrs, cols, perm = {}, {}, {}
    for e in edge_types:
        rowptrs[e], cols[e], perm[e] = _from_store(row[e], colptr[e], perms.get(e),
                                                   counts[e[0]], counts[e[2]],
                                                   f"the GraphStore's {e!r}")
    return _hetero_csc(node_types, edge_types, counts, rowptrs, cols, perm)


def _from_store(row: Tensor, colptr: Tensor, perm: Any, num_src: int, num_dst: int,
                where: str) -> Tuple[Tensor, Tensor, Tensor]:
    """A GraphStore's CSC as ours: ``colptr`` padded to ``num_dst`` rows (a
    store infers fewer from the largest id), ``perm`` the identity when the
    store kept its edges in CSC order."""
    colptr = colptr.to(torch.int64)
    if colptr.numel() > num_dst + 1:
        raise ValueError(f"{where} has edges into node {colptr.numel() - 2}, but the node "
                         f"type has {num_dst} nodes")
    if colptr.numel() < num_dst + 1:
        last = colptr[-1:] if colptr.numel() else torch.zeros(1, dtype=torch.int64)
        colptr = torch.cat([colptr, last.expand(num_dst + 1 - colptr.numel())])
    col = row.to(torch.int32 if num_src < 2**31 else torch.int64)
    perm = torch.arange(col.numel()) if perm is None else perm.to(torch.int64)
    return huge_pages(colptr.contiguous()), huge_pages(col.contiguous()), huge_pages(perm)


def _edges_of(store: Any) -> Any:
    """A store's edges: its ``edge_index``, else its ``adj_t``; a graph
    without either has no edges (as PyG takes it: link prediction on nodes
    alone)."""
    for key in ("edge_index", "adj_t"):
        value = store.get(key) if hasattr(store, "get") else getattr(store, key, None)
        if key == "adj_t" and isinstance(value, Tensor) and value.layout == torch.strided:
            raise ValueError("adj_t must be a torch_sparse.SparseTensor or a torch sparse "
                             "tensor, got a dense tensor")
        if value is not None:
            return value
    return _NO_EDGES


_NO_EDGES = torch.empty(2, 0, dtype=torch.int64)


def _csc(edges: Any, num_src: int, num_dst: int, where: str) -> Tuple[Tensor, Tensor, Tensor]:
    """(rowptr, col, perm) of ``edge_index`` or of ``adj_t``: rows the
    ``num_dst`` targets, ``perm`` the edge id of each position in ``col``
    (an ``adj_t``'s edges are numbered in its CSR order, as PyG does)."""
    if not isinstance(edges, Tensor) or edges.layout != torch.strided:
        rowptr, col = _adj_t_csr(edges, num_src, num_dst, f"{where}.adj_t")
        col = col.to(torch.int32 if num_src < 2**31 else torch.int64)
        perm = torch.arange(col.numel())
        return huge_pages(rowptr), huge_pages(col), huge_pages(perm)
    edge_index = edges
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
        raise ValueError(f"{where}.edge_index must be an integer tensor of shape [2, E]")
    src, dst = edge_index.to(torch.int64)
    if src.numel() and (int(src.min()) < 0 or int(src.max()) >= num_src):
        raise ValueError(f"{where}.edge_index[0] holds ids outside [0, {num_src}) (the source "
                         "type's node count)")
    if dst.numel() and (int(dst.min()) < 0 or int(dst.max()) >= num_dst):
        raise ValueError(f"{where}.edge_index[1] holds ids outside [0, {num_dst}) (the "
                         "destination type's node count)")
    perm = torch.sort(dst, stable=True).indices
    col = src[perm].to(torch.int32 if num_src < 2**31 else torch.int64)
    rowptr = torch.zeros(num_dst + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(dst, minlength=num_dst), 0, out=rowptr[1:])
    return huge_pages(rowptr), huge_pages(col), huge_pages(perm)  # all read at random


def _adj_t_csr(adj_t: Any, num_src: int, num_dst: int, where: str) -> Tuple[Tensor, Tensor]:
    """``(rowptr, col)`` of a transposed adjacency (``[num_dst, num_src]``):
    a ``torch_sparse.SparseTensor`` or a torch sparse tensor of any layout
    (a COO one is coalesced, which merges repeated edges)."""
    if type(adj_t).__name__ == "SparseTensor" and hasattr(adj_t, "csr"):
        size = tuple(adj_t.sparse_sizes())
        rowptr, col, _ = adj_t.csr()
    elif isinstance(adj_t, Tensor) and adj_t.layout in (torch.sparse_coo, torch.sparse_csr,
                                                        torch.sparse_csc):
        if adj_t.dim() != 2:
            raise ValueError(f"{where} must be a 2-D sparse tensor, got {adj_t.dim()}-D")
        size = tuple(adj_t.shape)
        csr = sparse_csr(adj_t)
        rowptr, col = csr.crow_indices(), csr.col_indices()
    else:
        raise ValueError(f"{where} must be a torch_sparse.SparseTensor or a torch sparse tensor, "
                         f"got {type(adj_t).__name__}")
    if size != (num_dst, num_src):
        raise ValueError(f"{where} has size {size}; a transposed adjacency of these node "
                         f"counts is ({num_dst}, {num_src})")
    return rowptr.to(torch.int64).contiguous(), col.to(torch.int64).contiguous()


_hetero_converted: Dict[int, Tuple[weakref.ref, Tuple[int, ...], HeteroCsc]] = {}


def hetero_csc_of(data: Any) -> HeteroCsc:
    """The CSCs of every edge type of a ``HeteroData``, built once per graph
    (while its ``edge_index`` tensors stay the same) and reused.

    Example:
        >>> from torch_geometric.data import HeteroData
        >>> data = HeteroData()
        >>> data["p"].num_nodes = 2; data["a"].num_nodes = 3
        >>> data["a", "writes", "p"].edge_index = torch.tensor([[2, 0, 1], [1, 1, 0]])
        >>> csc = hetero_csc_of(data)
        >>> csc.rowptr[("a", "writes", "p")].tolist(), csc.col[("a", "writes", "p")].tolist()
        ([0, 1, 3], [1, 2, 0])
    """
    if type(data).__name__ != "HeteroData":
        raise ValueError(f"expected a HeteroData, got {type(data).__name__}")
    edge_types = list(data.edge_types)
    fingerprint = tuple(id(_edges_of(data[e])) for e in edge_types) + \
        tuple(int(data[t].num_nodes or 0) for t in data.node_types)
    entry = _hetero_converted.get(id(data))
    if entry is not None and entry[0]() is data and entry[1] == fingerprint:
        return entry[2]
    node_types = list(data.node_types)
    num_nodes = {}
    for t in node_types:
        n = data[t].num_nodes
        if n is None:
            raise ValueError(f"data[{t!r}] has no nodes count (set num_nodes or x)")
        num_nodes[t] = int(n)
    rowptr, col, perm = {}, {}, {}
    for e in edge_types:
        for end in (e[0], e[2]):
            if end not in num_nodes:
                raise ValueError(f"data[{e!r}] joins node type {end!r}, which data does not "
                                 f"have (set data[{end!r}].num_nodes or x)")
        rowptr[e], col[e], perm[e] = _csc(_edges_of(data[e]),
                                          num_nodes[e[0]], num_nodes[e[2]], f"data[{e!r}]")
    csc = _hetero_csc(node_types, edge_types, num_nodes, rowptr, col, perm)
    key = id(data)
    _hetero_converted[key] = (weakref.ref(data), fingerprint, csc)
    weakref.finalize(data, _hetero_converted.pop, key, None)
    return csc


def _hetero_csc(node_types: List[str], edge_types: List[Tuple[str, str, str]],
                num_nodes: Dict[str, int], rowptr: Dict[Any, Tensor], col: Dict[Any, Tensor],
                perm: Dict[Any, Tensor]) -> HeteroCsc:
    index = {t: i for i, t in enumerate(node_types)}
    graph = _native.TypedGraph([num_nodes[t] for t in node_types],
                                [index[e[0]] for e in edge_types],
                                [index[e[2]] for e in edge_types],
                                [rowptr[e].numpy() for e in edge_types],
                                [col[e].numpy() for e in edge_types], False,
                                [str(e) for e in edge_types])
    return HeteroCsc(node_types, edge_types, num_nodes, rowptr, col, perm, graph)
