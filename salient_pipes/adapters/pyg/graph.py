"""A PyG graph in the form our sampler reads: the CSC of ``edge_index``
(of every edge type's, for ``HeteroData``)."""

from __future__ import annotations

import weakref
from typing import Any, Dict, List, NamedTuple, Tuple

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE
from salient_pipes.data.memory import huge_pages


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
    """The CSC of ``data.edge_index`` (``data.num_nodes`` nodes), built once
    per ``edge_index`` tensor and reused by every loader over it.

    Example:
        >>> from torch_geometric.data import Data
        >>> csc = csc_of(Data(edge_index=torch.tensor([[0, 2, 1], [1, 1, 0]]), num_nodes=3))
        >>> csc.rowptr.tolist(), csc.col.tolist(), csc.perm.tolist()
        ([0, 1, 3, 3], [1, 0, 2], [2, 0, 1])
    """
    if type(data).__name__ == "HeteroData":
        raise ValueError("csc_of takes a Data; for a HeteroData use hetero_csc_of")
    edge_index = getattr(data, "edge_index", None)
    if not isinstance(edge_index, Tensor):
        raise ValueError("data needs an edge_index tensor (a torch_geometric Data); "
                         "SparseTensor adj_t is not supported")
    num_nodes = int(data.num_nodes)
    entry = _converted.get(id(edge_index))
    if entry is not None and entry[0]() is edge_index and \
            entry[1].rowptr.numel() == num_nodes + 1:
        return entry[1]
    rowptr, col, perm = _csc(edge_index, num_nodes, num_nodes, "data")
    csc = PygCsc(rowptr, col, perm, _native.CSRGraph(rowptr.numpy(), col.numpy()))
    key = id(edge_index)
    _converted[key] = (weakref.ref(edge_index), csc)
    weakref.finalize(edge_index, _converted.pop, key, None)
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
    """The CSC of a ``Data`` (:func:`csc_of`) or of a ``HeteroData``
    (:func:`hetero_csc_of`): node types, edge types, node counts and the
    native graph, alike for both."""
    return hetero_csc_of(data) if type(data).__name__ == "HeteroData" else csc_of(data)


def _csc(edge_index: Any, num_src: int, num_dst: int, where: str) -> Tuple[Tensor, Tensor, Tensor]:
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or \
            edge_index.size(0) != 2 or edge_index.is_floating_point():
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
    fingerprint = tuple(id(getattr(data[e], "edge_index", None)) for e in edge_types) + \
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
        rowptr[e], col[e], perm[e] = _csc(getattr(data[e], "edge_index", None),
                                          num_nodes[e[0]], num_nodes[e[2]], f"data[{e!r}]")
    index = {t: i for i, t in enumerate(node_types)}
    graph = _native.TypedGraph([num_nodes[t] for t in node_types],
                                [index[e[0]] for e in edge_types],
                                [index[e[2]] for e in edge_types],
                                [rowptr[e].numpy() for e in edge_types],
                                [col[e].numpy() for e in edge_types], False,
                                [str(e) for e in edge_types])
    csc = HeteroCsc(node_types, edge_types, num_nodes, rowptr, col, perm, graph)
    key = id(data)
    _hetero_converted[key] = (weakref.ref(data), fingerprint, csc)
    weakref.finalize(data, _hetero_converted.pop, key, None)
    return csc
