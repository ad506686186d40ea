"""What biased and temporal sampling read of a PyG graph, in the form our
sampler takes it: ``weight_attr``'s edge weights per CSR position, and
``time_attr``'s node or edge times per CSR position, with each row of the
CSC re-sorted by time so that a seed's valid neighbors are a prefix of the
row (done once per loader)."""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.adapters.pyg.graph import HeteroCsc, PygCsc, _hetero_csc
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE, EdgeType
from salient_pipes.data.csr import first_bad_weight, sort_rows_by_time
from salient_pipes.pipes.pyg_graphs import is_remote


def _node_stores(data: Any, typed: bool) -> Dict[str, Any]:
    return {t: data[t] for t in data.node_types} if typed else {NODE_TYPE: data._store}


def _edge_stores(data: Any, typed: bool) -> Dict[EdgeType, Any]:
    return {e: data[e] for e in data.edge_types} if typed else {EDGE_TYPE: data._store}


def edge_weights(data: Any, csc: Any, typed: bool, weight_attr: str) -> Dict[EdgeType, Tensor]:
    """``weight_attr`` of every edge type that has it, as float64 weights
    per CSR position (an edge type without it is sampled uniformly).

    Example:
        >>> from torch_geometric.data import Data
        >>> from salient_pipes.pyg import csc_of
        >>> data = Data(edge_index=torch.tensor([[0, 2, 1], [1, 1, 0]]), num_nodes=3,
        ...             w=torch.tensor([1.0, 2.0, 3.0]))
        >>> edge_weights(data, csc_of(data), False, "w")[("_N", "_E", "_N")].tolist()
        [3.0, 1.0, 2.0]
    """
    if is_remote(data):
        raise NotImplementedError("weight_attr with a (FeatureStore, GraphStore) is not "
                                  "supported (PyG does not support it either)")
    out = {}
    for e, store in _edge_stores(data, typed).items():
        if weight_attr not in store:
            continue
        w = torch.as_tensor(store[weight_attr])
        where = f"{weight_attr!r}" + (f" of {e!r}" if typed else "")
        if w.dim() != 1 or w.numel() != _perm(csc, e).numel():
            raise ValueError(f"weight_attr {where} must hold one weight per edge "
                             f"({_perm(csc, e).numel()}), got shape {tuple(w.shape)}")
        w = w.to(torch.float64)
        i = first_bad_weight(w)
        if i is not None:
            raise ValueError(f"weight_attr {where} holds {float(w[i])} at edge {i}: weights "
                             "must be finite and >= 0")
        out[e] = w[_perm(csc, e)].contiguous()
    if not out:
        raise ValueError(f"weight_attr {weight_attr!r} is not an edge attribute of the graph")
    return out


def node_or_edge_times(data: Any, typed: bool, time_attr: str
                       ) -> Tuple[str, Dict[Any, Tensor]]:
    """``("node", {node type: time})`` or ``("edge", {edge type: time})``:
    where ``time_attr`` lives, as PyG decides it."""
    if is_remote(data):
        feature_store = data[0]
        attrs = [a for a in feature_store.get_all_tensor_attrs() if a.attr_name == time_attr]
        if not attrs:
            raise ValueError(f"time_attr {time_attr!r} is not in the feature store")
        out = {}
        for attr in attrs:
            attr = copy.copy(attr)
            attr.index = None
            out[attr.group_name if typed else NODE_TYPE] = feature_store.get_tensor(attr)
        return "node", out
    nodes = {t: s[time_attr] for t, s in _node_stores(data, typed).items() if time_attr in s
             and s.is_node_attr(time_attr)}
    edges = {e: s[time_attr] for e, s in _edge_stores(data, typed).items() if time_attr in s
             and s.is_edge_attr(time_attr)}
    if nodes and edges:
        raise ValueError(f"time_attr {time_attr!r} holds both node-level and edge-level times")
    if not nodes and not edges:
        raise ValueError(f"time_attr {time_attr!r} is neither a node-level nor an edge-level "
                         "attribute")
    kind = "node" if nodes else "edge"
    times: Dict[Any, Tensor] = nodes if nodes else edges
    for key, t in times.items():
        t = torch.as_tensor(t)
        if t.dim() != 1 or t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(f"time_attr {time_attr!r} of {key!r} must be a 1-D tensor of "
                             f"integer times, got {t.dtype} of shape {tuple(t.shape)}")
        times[key] = t.to(torch.int64)
    return kind, times


def by_time(csc: Any, kind: str, times: Dict[Any, Tensor]) -> Tuple[Any, Dict[EdgeType, Tensor]]:
    """``csc`` with each row's neighbors in ascending time (the source
    node's time, or the edge's), and those times per CSR position: what
    temporal sampling reads. Edge types whose ends have no times keep their
    order and are not sampled by time."""
    typed = isinstance(csc, HeteroCsc)
    rowptrs, cols, perms, out = {}, {}, {}, {}
    for e in csc.edge_types:
        rowptr, col, perm = (getattr(csc, name)[e] if typed else getattr(csc, name)
                             for name in ("rowptr", "col", "perm"))
        if kind == "node":
            node_time = times.get(e[0] if typed else NODE_TYPE)
            t = None if node_time is None else node_time[col.to(torch.int64)]
        else:
            edge_time = times.get(e if typed else EDGE_TYPE)
            t = None if edge_time is None else edge_time[perm]
        if t is not None:
            order = sort_rows_by_time(rowptr, t)
            col, perm, t = col[order], perm[order], t[order].contiguous()
            out[e] = t
        rowptrs[e], cols[e], perms[e] = rowptr, col.contiguous(), perm.contiguous()
    if typed:
        return _hetero_csc(csc.node_types, csc.edge_types, csc.num_nodes, rowptrs, cols,
                           perms), out
    (rowptr,), (col,), (perm,) = rowptrs.values(), cols.values(), perms.values()
    return PygCsc(rowptr, col, perm, _native.CSRGraph(rowptr.numpy(), col.numpy())), out


def seed_times(kind: str, times: Dict[Any, Tensor], input_type: str, input_nodes: Tensor,
               input_time: Optional[Tensor]) -> Tensor:
    """The seeds' times: ``input_time``, else (node-level times) the seed
    nodes' own times, as PyG takes them."""
    if input_time is not None:
        input_time = torch.as_tensor(input_time)
        if input_time.shape != input_nodes.shape:
            raise ValueError(f"input_time must hold one time per input node "
                             f"({input_nodes.numel()}), got shape {tuple(input_time.shape)}")
        return input_time.to(torch.int64)
    if kind == "node" and input_type in times:
        return times[input_type][input_nodes]
    raise ValueError("temporal sampling by edge times needs input_time (a time per input node)")


def _perm(csc: Any, e: EdgeType) -> Tensor:
    return csc.perm[e] if isinstance(csc.perm, dict) else csc.perm


__all__: List[str] = ["by_time", "edge_weights", "node_or_edge_times", "seed_times"]
