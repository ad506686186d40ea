"""A PyG graph in the form our sampler reads: the CSC of ``edge_index``."""

from __future__ import annotations

import weakref
from typing import Any, Dict, NamedTuple, Tuple

import torch
from torch import Tensor

from salient_pipes import _native


class PygCsc(NamedTuple):
    """``data.edge_index`` grouped by target: row ``v`` of ``(rowptr, col)``
    lists the sources of the edges into ``v`` in edge-id order (duplicates
    and self loops kept, nothing added), and ``perm[p]`` is the edge id of
    position ``p`` in ``col``. ``graph`` is the validated native CSR."""

    rowptr: Tensor
    col: Tensor
    perm: Tensor
    graph: _native.CSRGraph


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
        raise NotImplementedError("heterogeneous graphs (HeteroData) are not supported yet")
    edge_index = getattr(data, "edge_index", None)
    if not isinstance(edge_index, Tensor):
        raise ValueError("data needs an edge_index tensor (a torch_geometric Data); "
                         "SparseTensor adj_t is not supported")
    num_nodes = int(data.num_nodes)
    entry = _converted.get(id(edge_index))
    if entry is not None and entry[0]() is edge_index and \
            entry[1].rowptr.numel() == num_nodes + 1:
        return entry[1]
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
        raise ValueError(f"data.edge_index must be an integer tensor of shape [2, E], "
                         f"got {edge_index.dtype} {tuple(edge_index.shape)}")
    src, dst = edge_index.to(torch.int64)
    if src.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"data.edge_index holds node ids outside [0, {num_nodes})")
    perm = torch.sort(dst, stable=True).indices
    col = src[perm].to(torch.int32 if num_nodes < 2**31 else torch.int64)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0, out=rowptr[1:])
    csc = PygCsc(rowptr, col, perm, _native.CSRGraph(rowptr.numpy(), col.numpy()))
    key = id(edge_index)
    _converted[key] = (weakref.ref(edge_index), csc)
    weakref.finalize(edge_index, _converted.pop, key, None)
    return csc
