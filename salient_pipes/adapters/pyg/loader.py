"""``NeighborLoader`` and ``LinkNeighborLoader`` with PyG's arguments and
batches, composed from our stages:

``NodeIndices(positions) → shuffle_nodes → batch_nodes → seed_nodes | seed_edges →
sample_neighbors(node_wise=True) → to_pyg → [pin_memory] → [transform]``

Sampling runs on our native threads in the main process; nothing is forked.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe

from salient_pipes._checks import as_node_ids, check_int
from salient_pipes.adapters.pyg.graph import graph_of
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE
from salient_pipes.pipes import NodeIndices, Stage, default_num_threads, fanouts_per_edge_type

# DataLoader keywords PyG's loaders accept that mean nothing without worker
# processes: accepted so that code runs unchanged, and documented as such.
_NO_EFFECT = ("persistent_workers", "timeout", "worker_init_fn", "multiprocessing_context",
              "in_order", "pin_memory_device", "filter_per_worker", "is_sorted", "directed")
_NOT_APPLICABLE = ("collate_fn", "sampler", "batch_sampler")


def _not_yet(name: str, value: Any, default: Any = None) -> None:
    if value is not default:
        raise NotImplementedError(f"{name} is not supported yet by salient_pipes.pyg; "
                                  "use torch_geometric.loader for it")


class _Loader:
    """What both loaders share: DataLoader keywords, the iteration, ``len``."""

    def __init__(self, data: Any, num_neighbors: Any, replace: bool, subgraph_type: str,
                 disjoint: bool, temporal_strategy: str, time_attr: Optional[str],
                 weight_attr: Optional[str], transform: Optional[Callable],
                 transform_sampler_output: Optional[Callable], neighbor_sampler: Any,
                 loader_kwargs: Dict[str, Any]) -> None:
        self.csc: Any = graph_of(data)  # a Data is the one-type case
        self.typed = type(data).__name__ == "HeteroData"  # PyG's argument forms differ
        if isinstance(num_neighbors, dict) and not self.typed:
            raise ValueError("num_neighbors per edge type (a dict) is for HeteroData; a Data "
                             "takes a list")
        _not_yet("temporal sampling (time_attr)", time_attr)
        _not_yet("weight_attr (biased sampling)", weight_attr)
        _not_yet("transform_sampler_output", transform_sampler_output)
        _not_yet("a custom neighbor_sampler", neighbor_sampler)
        if temporal_strategy != "uniform":
            _not_yet("temporal_strategy", temporal_strategy, "uniform")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        self.data, self.transform = data, transform
        self.replace, self.subgraph_type = bool(replace), subgraph_type
        self.disjoint = bool(disjoint)
        self.num_neighbors = dict(zip(self.csc.edge_types, fanouts_per_edge_type(
            num_neighbors, self.csc.edge_types, "num_neighbors")))
        options = dict(loader_kwargs)
        for key in _NOT_APPLICABLE:
            if options.pop(key, None) is not None:
                raise ValueError(f"{key} does not apply: the loader batches and collates "
                                 "with its own stages")
        for key in _NO_EFFECT:
            options.pop(key, None)
        self.batch_size = check_int("batch_size", options.pop("batch_size", 1), minimum=1)
        self.shuffle = bool(options.pop("shuffle", False))
        self.drop_last = bool(options.pop("drop_last", False))
        workers = check_int("num_workers", options.pop("num_workers", 0), minimum=0)
        self.num_threads = workers or default_num_threads()
        prefetch = options.pop("prefetch_factor", None)
        self.max_in_flight = None if prefetch is None else \
            check_int("prefetch_factor", prefetch, minimum=1) * self.num_threads
        self.pin_memory = bool(options.pop("pin_memory", False))
        generator = options.pop("generator", None)
        seed = options.pop("seed", None)
        if options:
            raise TypeError(f"unexpected keyword arguments: {sorted(options)}")
        if seed is None:  # reproducible under torch.manual_seed, like PyG's shuffling
            seed = int(torch.randint(0, 2**62, (), generator=generator))
        self.seed = check_int("seed", seed, minimum=0)

    def _chain(self, seeds: IterDataPipe, input_type: str) -> Stage:
        pipe = (seeds.sample_neighbors(self.csc, self.num_neighbors, input_type=input_type,
                                       replace=self.replace, num_threads=self.num_threads,
                                       max_in_flight=self.max_in_flight, seed=self.seed,
                                       return_e_id=True, node_wise=True, edge_ids=self.csc.perm,
                                       disjoint=self.disjoint, overlap_epochs=self.shuffle)
                .to_pyg(self.data, subgraph_type=self.subgraph_type, csc=self.csc))
        if self.pin_memory:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe = pipe.pin_memory()
        return pipe

    def _positions(self, count: int) -> Stage:
        return (NodeIndices(torch.arange(count))
                .shuffle_nodes(seed=self.seed, shuffle=self.shuffle)
                .batch_nodes(self.batch_size, drop_last=self.drop_last))

    def __iter__(self) -> Iterator[Any]:
        """One epoch; iterating again starts the next (reshuffled) epoch."""
        for batch in self.pipe:
            yield batch if self.transform is None else self.transform(batch)

    def __len__(self) -> int:
        return len(self.pipe)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration epoch ``epoch`` (its order and samples)."""
        self.pipe.set_epoch(epoch)

    def state_dict(self) -> Dict[str, Any]:
        return self.pipe.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.pipe.load_state_dict(state)


class NeighborLoader(_Loader):
    """PyG's ``torch_geometric.loader.NeighborLoader`` on our native sampler:
    change the import, keep the code.

    Takes PyG's arguments (``num_neighbors``, ``input_nodes`` as ids, a bool
    mask or ``None`` for all nodes, ``replace``, ``subgraph_type``,
    ``transform``, ``batch_size``, ``shuffle``, ``drop_last`` and the
    DataLoader keywords) and yields ``Data`` batches as PyG's do: node
    attributes sliced by ``n_id``, ``edge_index`` in local ids, edge
    attributes sliced by ``e_id``, ``n_id``, ``e_id``, ``input_id``,
    ``batch_size``, ``num_sampled_nodes``, ``num_sampled_edges``.

    ``num_workers`` sets our sampling threads (0: the process's cores) and
    ``prefetch_factor`` the batches each runs ahead; ``seed`` (ours) fixes
    shuffling and sampling, by default drawn from torch's RNG.
    ``disjoint=True`` gives every seed its own subgraph (``batch`` maps
    nodes to seeds). Temporal sampling and heterogeneous graphs raise
    ``NotImplementedError`` (see docs/pyg.md).

    Example:
        >>> from torch_geometric.data import Data
        >>> data = Data(x=torch.randn(6, 3), y=torch.arange(6),
        ...             edge_index=torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]]))
        >>> loader = NeighborLoader(data, num_neighbors=[2, 2], batch_size=4, seed=0)
        >>> batch = next(iter(loader))
        >>> batch.batch_size, batch.n_id[:4].tolist(), batch.x.dtype
        (4, [0, 1, 2, 3], torch.float32)
    """

    def __init__(self, data: Any, num_neighbors: Sequence[int], input_nodes: Any = None,
                 input_time: Optional[Tensor] = None, replace: bool = False,
                 subgraph_type: str = "directional", disjoint: bool = False,
                 temporal_strategy: str = "uniform", time_attr: Optional[str] = None,
                 weight_attr: Optional[str] = None, transform: Optional[Callable] = None,
                 transform_sampler_output: Optional[Callable] = None,
                 neighbor_sampler: Any = None, **kwargs: Any) -> None:
        _not_yet("temporal sampling (input_time)", input_time)
        super().__init__(data, num_neighbors, replace, subgraph_type, disjoint, temporal_strategy,
                         time_attr, weight_attr, transform, transform_sampler_output,
                         neighbor_sampler, kwargs)
        if self.typed:
            input_type, input_nodes = _typed_input(input_nodes, self.csc.node_types)
        elif isinstance(input_nodes, (tuple, str)):
            raise ValueError("input_nodes as (node_type, ids) is for HeteroData; a Data takes "
                             "ids, a mask or None")
        else:
            input_type = NODE_TYPE
        num_nodes = self.csc.num_nodes[input_type]
        self.input_nodes = torch.arange(num_nodes) if input_nodes is None else \
            as_node_ids("input_nodes", input_nodes, num_nodes)
        if not self.disjoint and self.input_nodes.unique().numel() != self.input_nodes.numel():
            raise ValueError("input_nodes holds a node twice; a batch samples each seed once "
                             "(disjoint=True gives every seed its own subgraph)")
        self.pipe = self._chain(self._positions(self.input_nodes.numel())
                                .seed_nodes(self.input_nodes), input_type)


class LinkNeighborLoader(_Loader):
    """PyG's ``torch_geometric.loader.LinkNeighborLoader`` on our native
    sampler: batches of labelled edges (``edge_label_index``, default all of
    ``data.edge_index``; ``edge_label``) with negatives (``neg_sampling``
    ``"binary"`` or ``"triplet"``, a dict or PyG's ``NegativeSampling``, with
    ``amount``; or the older ``neg_sampling_ratio``), the neighborhoods of
    their endpoints sampled node-wise. Batches carry PyG's attributes:
    ``edge_label_index`` (local ids) and ``edge_label``, or ``src_index``,
    ``dst_pos_index`` and ``dst_neg_index`` for triplets; ``input_id``;
    ``n_id``, ``e_id``, ``num_sampled_nodes``, ``num_sampled_edges``.
    Negatives are drawn by the native core, seeded like sampling.

    Example:
        >>> from torch_geometric.data import Data
        >>> data = Data(x=torch.randn(6, 3),
        ...             edge_index=torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]]))
        >>> loader = LinkNeighborLoader(data, num_neighbors=[2], batch_size=3,
        ...                             neg_sampling="binary", seed=0)
        >>> batch = next(iter(loader))
        >>> batch.edge_label.tolist(), batch.edge_label_index.shape
        ([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], torch.Size([2, 6]))
    """

    def __init__(self, data: Any, num_neighbors: Sequence[int],
                 edge_label_index: Any = None, edge_label: Optional[Tensor] = None,
                 edge_label_time: Optional[Tensor] = None, replace: bool = False,
                 subgraph_type: str = "directional", disjoint: bool = False,
                 temporal_strategy: str = "uniform", neg_sampling: Any = None,
                 neg_sampling_ratio: Optional[float] = None, time_attr: Optional[str] = None,
                 weight_attr: Optional[str] = None, transform: Optional[Callable] = None,
                 transform_sampler_output: Optional[Callable] = None,
                 neighbor_sampler: Any = None, **kwargs: Any) -> None:
        _not_yet("temporal sampling (edge_label_time)", edge_label_time)
        super().__init__(data, num_neighbors, replace, subgraph_type, disjoint, temporal_strategy,
                         time_attr, weight_attr, transform, transform_sampler_output,
                         neighbor_sampler, kwargs)
        mode, amount = negative_sampling(neg_sampling, neg_sampling_ratio)
        if self.typed:
            edge_type, edge_label_index = _typed_edges(edge_label_index, self.csc.edge_types)
            if edge_label_index is None:
                edge_label_index = data[edge_type].edge_index
        elif isinstance(edge_label_index, tuple):
            raise ValueError("edge_label_index as (edge_type, index) is for HeteroData; a Data "
                             "takes a [2, L] tensor or None")
        else:
            edge_type = EDGE_TYPE
            if edge_label_index is None:
                edge_label_index = data.edge_index
        num_src = self.csc.num_nodes[edge_type[0]]
        num_dst = self.csc.num_nodes[edge_type[2]]
        edge_label_index = torch.as_tensor(edge_label_index)
        count = edge_label_index.size(-1) if edge_label_index.dim() == 2 else 0
        self.pipe = self._chain(
            self._positions(count).seed_edges(edge_label_index, num_src,
                                              edge_label=edge_label, neg_sampling=mode,
                                              amount=amount, seed=self.seed,
                                              disjoint=self.disjoint, edge_type=edge_type,
                                              num_dst_nodes=num_dst),
            edge_type[0])


def _typed_input(input_nodes: Any, node_types: Sequence[str]) -> Tuple[str, Any]:
    """``(node_type, ids or mask or None)`` from PyG's heterogeneous
    ``input_nodes``: a node type, or ``(node_type, ids | mask | None)``."""
    if isinstance(input_nodes, str):
        input_nodes = (input_nodes, None)
    if not (isinstance(input_nodes, tuple) and len(input_nodes) == 2
            and isinstance(input_nodes[0], str)):
        raise ValueError("for HeteroData, input_nodes must be a node type or "
                         f"(node_type, ids | mask | None), got {type(input_nodes).__name__}")
    if input_nodes[0] not in node_types:
        raise ValueError(f"input_nodes names node type {input_nodes[0]!r}, which the graph "
                         f"does not have; its node types: {list(node_types)}")
    return input_nodes


def _typed_edges(edge_label_index: Any, edge_types: Sequence[Tuple[str, str, str]]
                 ) -> Tuple[Tuple[str, str, str], Any]:
    """``(edge_type, index or None)`` from PyG's heterogeneous
    ``edge_label_index``: an edge type, or ``(edge_type, [2, L] | None)``."""
    if isinstance(edge_label_index, tuple) and len(edge_label_index) == 3 and \
            all(isinstance(v, str) for v in edge_label_index):
        edge_label_index = (edge_label_index, None)
    if not (isinstance(edge_label_index, tuple) and len(edge_label_index) == 2
            and isinstance(edge_label_index[0], tuple)):
        raise ValueError("for HeteroData, edge_label_index must be an edge type or "
                         "(edge_type, [2, L] index | None)")
    edge_type = tuple(edge_label_index[0])
    if edge_type not in edge_types:
        raise ValueError(f"edge_label_index names edge type {edge_type!r}, which the graph does "
                         f"not have; its edge types: {list(edge_types)}")
    return edge_type, edge_label_index[1]


def negative_sampling(neg_sampling: Any, ratio: Optional[float]) -> Tuple[Optional[str], float]:
    """``(mode, amount)`` from what PyG accepts: None, ``"binary"``,
    ``"triplet"``, ``{"mode": ..., "amount": ...}`` or a ``NegativeSampling``;
    ``neg_sampling_ratio`` alone means binary with that amount.

    Example:
        >>> negative_sampling({"mode": "triplet", "amount": 3}, None)
        ('triplet', 3.0)
    """
    if neg_sampling is None:
        if ratio is None or ratio == 0:
            return None, 1.0
        return "binary", float(ratio)
    if isinstance(neg_sampling, str):
        mode, amount = neg_sampling, 1.0
    elif isinstance(neg_sampling, dict):
        mode, amount = neg_sampling.get("mode"), neg_sampling.get("amount", 1.0)
    elif hasattr(neg_sampling, "mode"):  # torch_geometric.sampler.NegativeSampling
        mode = getattr(neg_sampling.mode, "value", neg_sampling.mode)
        amount = neg_sampling.amount
        if getattr(neg_sampling, "weight", None) is not None:
            _not_yet("weighted negative sampling", neg_sampling.weight)
    else:
        raise ValueError(f"neg_sampling must be None, 'binary', 'triplet', a dict or a "
                         f"NegativeSampling, got {type(neg_sampling).__name__}")
    if mode not in ("binary", "triplet"):
        raise ValueError(f"neg_sampling mode must be 'binary' or 'triplet', got {mode!r}")
    return mode, float(amount)


__all__: List[str] = ["LinkNeighborLoader", "NeighborLoader", "negative_sampling"]
