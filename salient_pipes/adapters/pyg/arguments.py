"""PyG's loader arguments, read in every form PyG takes them (with clear
errors for the rest): ``num_neighbors``, ``input_nodes``,
``edge_label_index``, ``neg_sampling`` and the ``DataLoader`` keywords."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from salient_pipes._checks import as_node_ids, check_input_id, check_int
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE, EdgeType
from salient_pipes.pipes import default_num_threads, fanouts_per_edge_type

# DataLoader and PyG keywords that mean nothing without worker processes or
# for our sampler: accepted so that code runs unchanged (docs/pyg.md).
NO_EFFECT = ("persistent_workers", "timeout", "worker_init_fn", "multiprocessing_context",
             "in_order", "pin_memory_device", "share_memory", "dataset", "collate_fn")


@dataclass
class LoaderOptions:
    """The ``DataLoader`` keywords, as our chain uses them."""

    batch_size: int
    shuffle: bool
    drop_last: bool
    sampler: Any
    batch_sampler: Any
    num_threads: int
    max_in_flight: Optional[int]
    pin_memory: bool
    generator: Optional[torch.Generator]
    seed: int
    features_on: Optional[str] = None
    device_cache: Any = None


def loader_options(kwargs: Dict[str, Any]) -> LoaderOptions:
    """The ``DataLoader`` keywords of a PyG loader call: ``num_workers``
    sets our sampling threads (0: the process's cores), ``prefetch_factor``
    the batches each runs ahead, ``seed`` (ours) the shuffling and sampling
    (default: drawn from torch's RNG, so ``torch.manual_seed`` repeats a
    run), ``features_on`` and ``device_cache`` (ours) where ``x`` is kept
    (see :func:`salient_pipes.salient_pipeline`). Unknown keywords raise
    ``TypeError``, as ``DataLoader`` does.

    Example:
        >>> o = loader_options({"batch_size": 8, "num_workers": 2, "seed": 1})
        >>> o.batch_size, o.num_threads, o.seed
        (8, 2, 1)
    """
    options = dict(kwargs)
    for key in NO_EFFECT:
        options.pop(key, None)
    workers = check_int("num_workers", options.pop("num_workers", 0), minimum=0)
    num_threads = workers or default_num_threads()
    prefetch = options.pop("prefetch_factor", None)
    generator = options.pop("generator", None)
    seed = options.pop("seed", None)
    out = LoaderOptions(
        batch_size=check_int("batch_size", options.pop("batch_size", 1), minimum=1),
        shuffle=bool(options.pop("shuffle", False)),
        drop_last=bool(options.pop("drop_last", False)),
        sampler=options.pop("sampler", None), batch_sampler=options.pop("batch_sampler", None),
        num_threads=num_threads,
        max_in_flight=None if prefetch is None else
        check_int("prefetch_factor", prefetch, minimum=1) * num_threads,
        pin_memory=bool(options.pop("pin_memory", False)), generator=generator,
        seed=check_int("seed", int(torch.randint(0, 2**62, (), generator=generator))
                       if seed is None else seed, minimum=0),
        features_on=options.pop("features_on", None),
        device_cache=options.pop("device_cache", None))
    if options:
        raise TypeError(f"unexpected keyword arguments: {sorted(options)}")
    return out


def num_neighbors_of(value: Any, edge_types: Sequence[EdgeType], typed: bool
                     ) -> Dict[EdgeType, List[int]]:
    """Per edge type, the fanout of each hop, from a list (every edge type),
    a dict per edge type (typed graphs; a missing one is not sampled) or
    PyG's ``NumNeighbors``. ``[]`` samples no hop: the seeds alone.

    Example:
        >>> num_neighbors_of([5, -1], [("_N", "_E", "_N")], False)
        {('_N', '_E', '_N'): [5, -1]}
    """
    if type(value).__name__ == "NumNeighbors":  # PyG's, with its default for missing types
        value = value.get_values(list(edge_types)) if typed else value.values
    if isinstance(value, dict) and not typed:
        raise ValueError("num_neighbors per edge type (a dict) is for HeteroData; a Data "
                         "takes a list")
    if isinstance(value, dict):
        value = {_canonical(e, edge_types): v for e, v in value.items()}
    return dict(zip(edge_types, fanouts_per_edge_type(value, edge_types, "num_neighbors")))


def input_nodes_of(input_nodes: Any, input_id: Any, csc: Any, typed: bool
                   ) -> Tuple[str, Tensor, Optional[Tensor]]:
    """``(node type, seed ids, input_id)`` from PyG's ``input_nodes``: ids,
    a bool mask or ``None`` (all nodes); for typed graphs a node type or
    ``(node_type, ids | mask | None)``. As in PyG, a mask's ``input_id`` is
    the ids it selects, and given ``input_id`` must match the seeds."""
    if typed:
        if isinstance(input_nodes, str):
            input_nodes = (input_nodes, None)
        if not (isinstance(input_nodes, (tuple, list)) and len(input_nodes) == 2
                and isinstance(input_nodes[0], str)):
            raise ValueError("for typed graphs, input_nodes must be a node type or "
                             f"(node_type, ids | mask | None), got {type(input_nodes).__name__}")
        input_type, nodes = input_nodes
        if input_type not in csc.num_nodes:
            raise ValueError(f"input_nodes names node type {input_type!r}, which the graph "
                             f"does not have; its node types: {list(csc.node_types)}")
    elif isinstance(input_nodes, (tuple, str)):
        raise ValueError("input_nodes as (node_type, ids) is for typed graphs; a Data takes "
                         "ids, a mask or None")
    else:
        input_type, nodes = NODE_TYPE, input_nodes
    num_nodes = csc.num_nodes[input_type]
    if nodes is None:
        ids = torch.arange(num_nodes)
    else:
        ids = as_node_ids("input_nodes", nodes, num_nodes)
        if input_id is None and isinstance(nodes, Tensor) and nodes.dtype == torch.bool:
            input_id = ids
    if input_id is not None:
        input_id = check_input_id(input_id, ids.numel(), "input_nodes")
    return input_type, ids, input_id


def edge_label_index_of(edge_label_index: Any, csc: Any, typed: bool
                        ) -> Tuple[EdgeType, Tensor]:
    """``(edge type, [2, L] node ids)`` from PyG's ``edge_label_index``:
    ``None`` (every edge of the graph) or a ``[2, L]`` tensor; for typed
    graphs an edge type (three names, or ``(src, dst)`` when one relation
    joins them), alone (all its edges) or as ``(edge_type, [2, L] | None)``.
    An edge type the graph has no edges of may be named (link prediction
    on nodes alone)."""
    if not typed:
        if isinstance(edge_label_index, tuple):
            raise ValueError("edge_label_index as (edge_type, index) is for typed graphs; a "
                             "Data takes a [2, L] tensor or None")
        edge_type, index = EDGE_TYPE, edge_label_index
    else:
        if isinstance(edge_label_index, (tuple, list)) and edge_label_index and \
                all(isinstance(v, str) for v in edge_label_index):
            edge_label_index = (tuple(edge_label_index), None)
        if not (isinstance(edge_label_index, (tuple, list)) and len(edge_label_index) == 2
                and isinstance(edge_label_index[0], (tuple, list))):
            raise ValueError("for typed graphs, edge_label_index must be an edge type or "
                             "(edge_type, [2, L] index | None)")
        edge_type = _canonical(tuple(edge_label_index[0]), csc.edge_types)
        index = edge_label_index[1]
        for t in (edge_type[0], edge_type[2]):
            if t not in csc.num_nodes:
                raise ValueError(f"edge_label_index names node type {t!r}, which the graph "
                                 f"does not have; its node types: {list(csc.node_types)}")
    if index is None:
        index = all_edges(csc, edge_type)
    index = torch.as_tensor(index)
    if index.dim() != 2 or index.size(0) != 2:
        raise ValueError(f"edge_label_index must be a [2, L] tensor, got shape "
                         f"{tuple(index.shape)}")
    return edge_type, index


def all_edges(csc: Any, edge_type: EdgeType) -> Tensor:
    """The ``[2, E]`` edges of one edge type, in edge-id order (none for
    an edge type the graph lacks)."""
    if edge_type not in csc.edge_types:
        return torch.empty(2, 0, dtype=torch.int64)
    rowptr, col, perm = (a if not isinstance(a, dict) else a[edge_type]
                         for a in (csc.rowptr, csc.col, csc.perm))
    dst = torch.repeat_interleave(torch.arange(rowptr.numel() - 1), rowptr[1:] - rowptr[:-1])
    out = torch.empty(2, col.numel(), dtype=torch.int64)
    out[0, perm], out[1, perm] = col.to(torch.int64), dst
    return out


def _canonical(edge_type: Any, edge_types: Sequence[EdgeType]) -> EdgeType:
    """An edge type of three names; ``(src, dst)`` names the one relation
    from ``src`` to ``dst`` (PyG's ``"to"`` when there is none)."""
    if isinstance(edge_type, str) or len(edge_type) not in (2, 3):
        raise ValueError(f"an edge type is (src, relation, dst) or (src, dst), got {edge_type!r}")
    if len(edge_type) == 3:
        return tuple(edge_type)
    src, dst = edge_type
    matches = [e for e in edge_types if e[0] == src and e[2] == dst]
    if len(matches) > 1:
        raise ValueError(f"({src!r}, {dst!r}) matches several edge types {matches}; name the "
                         "relation too")
    return matches[0] if matches else (src, "to", dst)


def negative_sampling(neg_sampling: Any, ratio: Optional[float]) -> Tuple[
        Optional[str], float, Optional[Tensor], Optional[Tensor]]:
    """``(mode, amount, src_weight, dst_weight)`` from what PyG accepts:
    None, ``"binary"``, ``"triplet"``, ``{"mode": ..., "amount": ...,
    "src_weight": ..., "dst_weight": ...}`` or a ``NegativeSampling``;
    ``neg_sampling_ratio`` alone means binary with that amount. The weights
    (one per node of the source / destination type) make negatives drawn
    in proportion to them.

    Example:
        >>> negative_sampling({"mode": "triplet", "amount": 3}, None)
        ('triplet', 3.0, None, None)
    """
    if neg_sampling is None:
        if ratio is None or ratio == 0:
            return None, 1.0, None, None
        return "binary", float(ratio), None, None
    mode: Any
    if isinstance(neg_sampling, str):
        mode, amount, src_weight, dst_weight = neg_sampling, 1.0, None, None
    elif isinstance(neg_sampling, dict):
        mode, amount = neg_sampling.get("mode"), neg_sampling.get("amount", 1.0)
        src_weight, dst_weight = neg_sampling.get("src_weight"), neg_sampling.get("dst_weight")
    elif hasattr(neg_sampling, "mode"):  # torch_geometric.sampler.NegativeSampling
        mode = getattr(neg_sampling.mode, "value", neg_sampling.mode)
        amount = neg_sampling.amount
        src_weight = getattr(neg_sampling, "src_weight", None)
        dst_weight = getattr(neg_sampling, "dst_weight", None)
        if getattr(neg_sampling, "weight", None) is not None:  # older PyG: one for both ends
            src_weight = dst_weight = neg_sampling.weight
    else:
        raise ValueError(f"neg_sampling must be None, 'binary', 'triplet', a dict or a "
                         f"NegativeSampling, got {type(neg_sampling).__name__}")
    if mode not in ("binary", "triplet"):
        raise ValueError(f"neg_sampling mode must be 'binary' or 'triplet', got {mode!r}")
    if not isinstance(amount, (int, float)) or isinstance(amount, bool) or \
            not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"the negative sampling amount must be a number > 0, got {amount!r}")
    return mode, float(amount), src_weight, dst_weight


__all__ = ["LoaderOptions", "NO_EFFECT", "all_edges", "edge_label_index_of", "input_nodes_of",
           "loader_options", "negative_sampling", "num_neighbors_of"]
