"""What a PyG loader samples and how: the graph built from its arguments
(the CSC, with edge weights or times), or the one a ``neighbor_sampler``
stands for, and the ``node_sampler``/``link_sampler`` that describes it.

``neighbor_sampler`` takes another of our loaders' ``node_sampler`` or
``link_sampler`` (the graph it built is shared, not built again), or PyG's
own ``NeighborSampler`` (its settings are read; sampling stays native). As
in PyG, the sampler's settings win over the loader's ``num_neighbors``,
``replace``, ``subgraph_type``, ``disjoint`` and ``temporal_strategy``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from torch import Tensor
from torch.utils.data import DataLoader

from salient_pipes.adapters.pyg.arguments import num_neighbors_of
from salient_pipes.adapters.pyg.attributes import by_time, edge_weights, node_or_edge_times
from salient_pipes.adapters.pyg.graph import graph_of
from salient_pipes.batch import EdgeType
from salient_pipes.pipes.pyg_graphs import is_remote
from salient_pipes.pipes.to_pyg import subgraph_type_name


@dataclass
class SampledGraph:
    """A loader's graph in the form our sampler takes it, and how it is
    sampled: built once per loader, or shared through ``neighbor_sampler``."""

    data: Any
    csc: Any  # PygCsc or HeteroCsc; rows sorted by time when time_attr is set
    typed: bool
    num_neighbors: Dict[EdgeType, List[int]]
    subgraph_type: str
    replace: bool
    disjoint: bool
    temporal_strategy: str
    time_attr: Optional[str]
    weight_attr: Optional[str]
    weight: Optional[Dict[EdgeType, Tensor]]  # per CSR position
    time_kind: Optional[str]  # "node" or "edge"
    times: Optional[Dict[Any, Tensor]]  # per node type or edge type, as in data
    time: Optional[Dict[EdgeType, Tensor]]  # per CSR position

    @classmethod
    def build(cls, data: Any, num_neighbors: Any, replace: bool, subgraph_type: Any,
              disjoint: bool, temporal_strategy: str, time_attr: Optional[str],
              weight_attr: Optional[str]) -> SampledGraph:
        """The CSC of ``data`` (a ``Data`` is the one-type case), with
        ``weight_attr``'s weights or ``time_attr``'s times (rows re-sorted
        by time; temporal subgraphs are disjoint, as in PyG)."""
        if time_attr is not None and weight_attr is not None:
            raise NotImplementedError("time_attr and weight_attr together are not supported "
                                      "(nor by PyG): sample by time or by weight")
        csc: Any = graph_of(data)
        typed = type(data).__name__ == "HeteroData" or \
            (is_remote(data) and type(csc).__name__ == "HeteroCsc")
        graph = cls(data, csc, typed, num_neighbors_of(num_neighbors, csc.edge_types, typed),
                    subgraph_type_name(subgraph_type), bool(replace), bool(disjoint),
                    temporal_strategy, time_attr, weight_attr, None, None, None, None)
        if weight_attr is not None:
            graph.weight = edge_weights(data, csc, typed, weight_attr)
        if time_attr is not None:
            graph.time_kind, graph.times = node_or_edge_times(data, typed, time_attr)
            graph.csc, graph.time = by_time(csc, graph.time_kind, graph.times)
            graph.disjoint = True
        return graph


@dataclass
class SamplerSettings:
    """A loader's ``node_sampler`` / ``link_sampler``: what code that reads
    it sees (``BasicGNN.inference`` reads ``num_neighbors``), and the graph
    built for it, which another loader given it as ``neighbor_sampler``
    shares. The sampling itself runs in our native core."""

    num_neighbors: Any  # PyG's NumNeighbors
    subgraph_type: Any  # PyG's SubgraphType
    replace: bool
    disjoint: bool
    edge_permutation: Any = field(repr=False)
    is_hetero: bool
    graph: SampledGraph = field(repr=False, compare=False)

    @classmethod
    def of(cls, graph: SampledGraph) -> SamplerSettings:
        from torch_geometric.sampler import NumNeighbors
        from torch_geometric.sampler.base import SubgraphType

        values: Any = graph.num_neighbors
        if not graph.typed:
            values = next(iter(values.values()))
        return cls(NumNeighbors(values), SubgraphType(graph.subgraph_type), graph.replace,
                   graph.disjoint, graph.csc.perm, graph.typed, graph)


def sampled_graph(neighbor_sampler: Any, data: Any, num_neighbors: Any, replace: bool,
                  subgraph_type: Any, disjoint: bool, temporal_strategy: str,
                  time_attr: Optional[str], weight_attr: Optional[str]) -> SampledGraph:
    """The graph a loader samples: built from these arguments, or shared
    with the loader whose ``node_sampler``/``link_sampler`` is
    ``neighbor_sampler``, or built with the settings of PyG's
    ``NeighborSampler``. Anything else (a subclass that samples in its own
    code, say) raises ``NotImplementedError``."""
    if neighbor_sampler is None:
        return SampledGraph.build(data, num_neighbors, replace, subgraph_type, disjoint,
                                  temporal_strategy, time_attr, weight_attr)
    if isinstance(neighbor_sampler, SamplerSettings):
        graph = neighbor_sampler.graph
        if not _same_data(graph.data, data):
            raise ValueError("neighbor_sampler belongs to a loader over another graph: give "
                             "this loader the same data object")
        for name, given, own in (("time_attr", time_attr, graph.time_attr),
                                 ("weight_attr", weight_attr, graph.weight_attr)):
            if given is not None and given != own:
                raise ValueError(f"{name}={given!r}, but neighbor_sampler samples with "
                                 f"{name}={own!r}")
        return graph
    settings = _pyg_settings(neighbor_sampler, data, time_attr, weight_attr)
    return SampledGraph.build(data, **settings)


def samples_by_time(neighbor_sampler: Any, time_attr: Optional[str]) -> bool:
    """Whether a loader given these arguments samples by time (checked
    before anything is built)."""
    if isinstance(neighbor_sampler, SamplerSettings):
        return neighbor_sampler.graph.time_attr is not None
    return time_attr is not None


def _pyg_settings(sampler: Any, data: Any, time_attr: Optional[str],
                  weight_attr: Optional[str]) -> Dict[str, Any]:
    """The settings of PyG's ``NeighborSampler`` ``sampler``, checked
    against ``data`` and the loader's ``time_attr``/``weight_attr`` (which
    name the attributes that the sampler holds only as tensors)."""
    from torch_geometric.sampler import NeighborSampler

    if isinstance(sampler, DataLoader):
        raise ValueError(f"neighbor_sampler takes a sampler, not a loader (got "
                         f"{_name(sampler)}): PyG's torch_geometric.sampler.NeighborSampler "
                         "or another loader's node_sampler / link_sampler")
    if type(sampler) is not NeighborSampler:
        raise NotImplementedError(
            f"neighbor_sampler: a {_name(sampler)} is not supported by salient_pipes.pyg, "
            "which samples natively; give PyG's NeighborSampler or another loader's "
            "node_sampler, or use torch_geometric.loader for a sampler of your own")
    if getattr(sampler, "sample_direction", "forward") != "forward":
        raise NotImplementedError("neighbor_sampler samples backward (from sources to "
                                  "destinations), which salient_pipes.pyg does not")
    if not is_remote(data) and sampler.num_nodes != _num_nodes(data):
        raise ValueError(f"neighbor_sampler was built for a graph of {sampler.num_nodes} "
                         f"nodes; this loader's has {_num_nodes(data)}")
    timed = getattr(sampler, "node_time", None) is not None or \
        getattr(sampler, "edge_time", None) is not None
    weighted = getattr(sampler, "edge_weight", None) is not None
    for name, given, uses in (("time_attr", time_attr, timed),
                              ("weight_attr", weight_attr, weighted)):
        if uses and given is None:
            raise ValueError(f"neighbor_sampler samples by {name[:-5]}: name the attribute "
                             f"with {name}= too, so that this loader reads the same values")
        if given is not None and not uses:
            raise ValueError(f"{name}={given!r}, but neighbor_sampler does not sample by "
                             f"{name[:-5]}")
    return dict(num_neighbors=sampler.num_neighbors, replace=sampler.replace,
                subgraph_type=sampler.subgraph_type, disjoint=sampler.disjoint,
                temporal_strategy=sampler.temporal_strategy, time_attr=time_attr,
                weight_attr=weight_attr)


def _name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else \
        f"{cls.__module__}.{cls.__qualname__}"


def _num_nodes(data: Any) -> Any:
    if type(data).__name__ == "HeteroData":
        return {t: data[t].num_nodes for t in data.node_types}
    return data.num_nodes


def _same_data(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same graph object (or pair of
    stores, which may be two tuples of the same two objects)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    return a is b


__all__ = ["SampledGraph", "SamplerSettings", "sampled_graph", "samples_by_time"]
