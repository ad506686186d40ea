"""What the stages need to know of a graph: its native form and its node and
edge types. A graph without types (a FastDataset, a CSRGraph, ``(rowptr,
col)``) has one node type, :data:`~salient_pipes.batch.NODE_TYPE`, and one
edge type, :data:`~salient_pipes.batch.EDGE_TYPE`: the same stages then serve
it and a heterogeneous graph alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union, overload

import torch

from salient_pipes import _native
from salient_pipes._checks import check_int
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE, EdgeType
from salient_pipes.pipes._arrays import as_buffer

Fanouts = Union[Sequence[int], Mapping[EdgeType, Sequence[int]]]


@dataclass(frozen=True)
class Schema:
    """A graph as the sampling stage reads it. (Not a tuple: torch's pipe
    traversal pickles a stage's collections, and the native graph cannot
    be pickled.)"""

    graph: Any  # _native.TypedGraph (a CSRGraph for one type)
    node_types: List[str]
    edge_types: List[EdgeType]
    num_nodes: Dict[str, int]
    label_type: str  # the seeds' default node type

    @property
    def single_type(self) -> bool:
        return len(self.node_types) == 1 and len(self.edge_types) == 1


def schema_of(graph: Any) -> Schema:
    """The schema of a FastDataset, HeteroDataset, PartitionedDataset, a PyG
    graph's CSC (``salient_pipes.pyg.csc_of`` / ``hetero_csc_of``), a
    ``CSRGraph`` or ``(rowptr, col)``.

    Example:
        >>> rowptr, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
        >>> schema_of((rowptr, col)).node_types, schema_of((rowptr, col)).num_nodes
        (['_N'], {'_N': 2})
    """
    native = getattr(graph, "graph", graph)
    if isinstance(graph, tuple) and len(graph) == 2:
        rowptr, col = (torch.as_tensor(a) for a in graph)
        native = _native.CSRGraph(as_buffer(rowptr), as_buffer(col))
    if isinstance(native, _native.CSRGraph):
        return Schema(native, [NODE_TYPE], [EDGE_TYPE], {NODE_TYPE: native.num_nodes},
                      NODE_TYPE)
    if isinstance(native, _native.TypedGraph) and hasattr(graph, "node_types"):
        node_types = list(graph.node_types)
        return Schema(native, node_types, [tuple(e) for e in graph.edge_types],
                      {t: int(graph.num_nodes[t]) for t in node_types},
                      getattr(graph, "label_type", None) or node_types[0])
    raise TypeError(f"expected a FastDataset, HeteroDataset, CSRGraph or (rowptr, col), got "
                    f"{type(graph).__name__}")


def fanouts_per_edge_type(fanouts: Fanouts, edge_types: Sequence[EdgeType],
                          name: str = "fanouts", zero: bool = True) -> List[List[int]]:
    """One list of per-hop fanouts per edge type: a list applies to every
    edge type; a dict names edge types (one that is missing is not sampled,
    as if its fanouts were 0). ``-1`` takes every neighbor; ``0`` none
    (refused unless ``zero``: per-hop sampling needs a positive count).

    Example:
        >>> fanouts_per_edge_type({("a", "to", "b"): [5, 2]}, [("a", "to", "b"), ("b", "to", "a")])
        [[5, 2], [0, 0]]
    """
    def hops(value: Any, where: str) -> List[int]:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValueError(f"{where} must be a sequence of ints (one per hop), got {value!r}")
        out = [check_int(f"{where}[{i}]", f) for i, f in enumerate(value)]
        for i, f in enumerate(out):
            if f < -1 or (f == 0 and not zero):
                kind = "a count >= 0" if zero else "a positive count"
                raise ValueError(f"{where}[{i}] = {f}: each fanout must be {kind}, or -1 for "
                                 "all neighbors")
        return out

    if isinstance(fanouts, Mapping):
        known = set(edge_types)
        unknown = [e for e in fanouts if e not in known]
        if unknown:
            raise ValueError(f"{name} names edge type {unknown[0]!r}, which the graph does not "
                             f"have; its edge types: {list(edge_types)}")
        given = {e: hops(v, f"{name}[{e!r}]") for e, v in fanouts.items()}
        if not given:
            if not edge_types:  # a graph without edges: nothing to sample
                return []
            raise ValueError(f"{name} must name at least one edge type")
        depth = {len(v) for v in given.values()}
        if len(depth) != 1:
            raise ValueError(f"{name}: the number of hops must be the same across all edge "
                             f"types, got {sorted(depth)}")
        num_hops = depth.pop()
        return [given.get(e, [0] * num_hops) for e in edge_types]
    same = hops(fanouts, name)
    return [list(same) for _ in edge_types]


@overload
def per_type(value: None, schema: Schema, what: str) -> None: ...
@overload
def per_type(value: Any, schema: Schema, what: str) -> Dict[str, Any]: ...
def per_type(value: Union[None, Any, Mapping[str, Any]], schema: Schema, what: str
             ) -> Optional[Dict[str, Any]]:
    """``value`` per node type: a mapping as it is (checked against the
    types), a single value for the only type of a one-type graph."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = [t for t in value if t not in schema.num_nodes]
        if unknown:
            raise ValueError(f"{what} names node type {unknown[0]!r}; the graph's node types "
                             f"are {schema.node_types}")
        return dict(value)
    if len(schema.node_types) != 1:
        raise ValueError(f"{what} of a graph with node types {schema.node_types} must be a "
                         "dict per node type")
    return {schema.node_types[0]: value}


__all__ = ["Fanouts", "Schema", "fanouts_per_edge_type", "per_type", "schema_of"]
