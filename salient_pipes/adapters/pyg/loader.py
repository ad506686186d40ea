"""``NeighborLoader`` and ``LinkNeighborLoader``: PyG's loaders (subclasses
of them, and so of torch's ``DataLoader``) whose batches come from a chain
of our stages:

``seed positions → seed_nodes | seed_edges → sample_neighbors(node_wise=True)
→ to_pyg → [pin_memory] → [transform]``

With ``transform_sampler_output``, ``to_pyg`` yields what PyG's sampler
would (``SamplerOutput``) and PyG's own ``filter_fn`` builds each batch
from the transformed output, as in PyG.

The positions come from our seeded shuffle and batching, or from the torch
``sampler=``/``batch_sampler=`` the caller gives. Sampling runs on our native
threads in the main process; nothing is forked. ``collate_fn(index)`` builds
one batch synchronously from positions, as PyG's does (``ZipLoader`` and
``loader(index)`` use it). Arguments are read in ``arguments.py``.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterDataPipe
from torch_geometric.loader import LinkNeighborLoader as PygLinkNeighborLoader
from torch_geometric.loader import NeighborLoader as PygNeighborLoader
from torch_geometric.sampler import EdgeSamplerInput, NegativeSampling, NodeSamplerInput

from salient_pipes._checks import usable_device
from salient_pipes.adapters.pyg.arguments import (
    edge_label_index_of,
    input_nodes_of,
    loader_options,
    negative_sampling,
)
from salient_pipes.adapters.pyg.attributes import seed_times
from salient_pipes.adapters.pyg.sampler import (
    SampledGraph,
    SamplerSettings,
    sampled_graph,
    samples_by_time,
)
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE
from salient_pipes.data.feature_cache import FeatureCaches, source_counts
from salient_pipes.pipes import IndexBatches, NodeIndices, Stage
from salient_pipes.pipes.device_features import (
    DeviceFeatures,
    choose_placement,
    target_device,
)
from salient_pipes.pipes.pyg_graphs import is_remote


def _of_graph(name: str) -> Any:
    """A loader attribute read from its :class:`SampledGraph` (``self.graph``),
    the one place where what it samples is kept."""
    return property(lambda self: getattr(self.graph, name),
                    doc=f"``{name}`` of the graph this loader samples (``self.graph``).")


class _Native:
    """What the loaders share: the DataLoader they are, the chain of our
    stages behind them, ``collate_fn``/``filter_fn`` and the iteration
    (``NeighborSampler`` in legacy.py keeps the last)."""

    data: Any
    transform: Optional[Callable]
    filter_per_worker: bool
    input_type: Any  # set by each loader
    pipe: Stage
    dataset: Any  # DataLoader's, once _start made it one
    batch_sampler: Any
    graph: SampledGraph  # what the loader samples: built, or neighbor_sampler's
    csc, typed, num_neighbors = _of_graph("csc"), _of_graph("typed"), _of_graph("num_neighbors")
    subgraph_type, replace = _of_graph("subgraph_type"), _of_graph("replace")
    disjoint, weight, time = _of_graph("disjoint"), _of_graph("weight"), _of_graph("time")
    time_attr, temporal_strategy = _of_graph("time_attr"), _of_graph("temporal_strategy")
    time_kind, times = _of_graph("time_kind"), _of_graph("times")  # set with time_attr

    def _setup(self, data: Any, neighbor_sampler: Any, num_neighbors: Any, replace: bool,
               subgraph_type: Any, disjoint: bool, transform: Optional[Callable],
               transform_sampler_output: Optional[Callable], filter_per_worker: Optional[bool],
               custom_cls: Any, time_attr: Optional[str], temporal_strategy: str,
               weight_attr: Optional[str], kwargs: Dict[str, Any]) -> None:
        if kwargs.pop("directed", True) is False:  # PyG's older spelling of induced
            warnings.warn("directed=False is deprecated in PyG; use subgraph_type='induced'",
                          DeprecationWarning, stacklevel=3)
            subgraph_type = "induced"
        for name, fn in (("transform", transform),
                         ("transform_sampler_output", transform_sampler_output)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{name} must be callable, got {type(fn).__name__}")
        self.data, self.transform, self.custom_cls = data, transform, custom_cls
        # When set, PyG's filter_fn builds each batch from our sampler outputs.
        self.transform_sampler_output = transform_sampler_output
        self.graph = sampled_graph(neighbor_sampler, data, num_neighbors, replace,
                                   subgraph_type, disjoint, temporal_strategy, time_attr,
                                   weight_attr)
        self.options = loader_options(kwargs)
        if transform_sampler_output is not None and (
                self.options.features_on not in (None, "host") or self.options.device_cache):
            raise ValueError("features_on and device_cache need batches that salient_pipes "
                             "builds; with transform_sampler_output PyG's filter_fn builds them")
        self.on_device = self._device_features()
        # A batch built here is complete: filtering is the transform alone.
        self.filter_per_worker = bool(filter_per_worker) if filter_per_worker is not None \
            else not getattr(data, "is_cuda", False)

    def _device_features(self) -> Optional[DeviceFeatures]:
        """``x`` on the device as ``features_on``/``device_cache`` ask
        (ours; None: on the host, as PyG keeps it): every row, or the rows
        that are sources of the most edges, in a cache of every node type's
        ``x`` within the budget."""
        o = self.options
        self.placement = "features on the host"
        if o.features_on in (None, "host") and o.device_cache is None:
            return None
        if is_remote(self.data):
            raise ValueError("features_on and device_cache take a Data or HeteroData; a "
                             "FeatureStore keeps its features itself")
        stores = {t: self.data[t] for t in self.data.node_types} if self.typed \
            else {NODE_TYPE: self.data}
        x = {t: s.x for t, s in stores.items() if isinstance(getattr(s, "x", None), Tensor)
             and s.x.dim() == 2 and s.x.device.type == "cpu"}
        if not x:
            raise ValueError("features_on and device_cache keep x on the device: the graph "
                             "has no 2-D x on the CPU")
        device = target_device(o.features_on,
                               torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        table = sum(v.numel() * v.element_size() for v in x.values())
        rows = sum(v.size(0) for v in x.values())
        placement = choose_placement(o.features_on, device, table,
                                     device_cache=o.device_cache, num_rows=rows)
        self.placement = placement.why
        if placement.device is None:
            return None
        try:
            usable_device(placement.device)
        except ValueError as exc:
            raise ValueError(f"features_on={o.features_on!r}: {exc}") from None
        priority = source_counts(self.csc.col if self.typed else {EDGE_TYPE: self.csc.col},
                                 {t: v.size(0) for t, v in x.items()})
        budget = table + 4 * rows if placement.cache is None else placement.cache
        caches = FeatureCaches.by_priority(x, priority, budget, pin=False,
                                           device=placement.device)
        return DeviceFeatures(x, placement.device, cache=caches)

    def _start(self, count: int) -> None:
        """Becomes the DataLoader over ``range(count)`` seed positions."""
        o = self.options
        # self is a DataLoader subclass (the loaders derive from PyG's); a
        # range is a map-style dataset of positions.
        DataLoader.__init__(self, range(count),  # type: ignore[arg-type]
                            batch_size=o.batch_size, shuffle=o.shuffle,
                            sampler=o.sampler, batch_sampler=o.batch_sampler,
                            drop_last=o.drop_last, collate_fn=self.collate_fn,
                            pin_memory=o.pin_memory, generator=o.generator)
        self._one: Optional[Stage] = None
        self._feed: List[Any] = [None]

    def _positions(self) -> Stage:
        """This epoch's seed positions in batches: a torch sampler's, or our
        seeded shuffle's (reproducible, resumable)."""
        o = self.options
        if o.sampler is not None or o.batch_sampler is not None:
            return IndexBatches(self.batch_sampler)
        return (NodeIndices(torch.arange(len(self.dataset)))
                .shuffle_nodes(seed=o.seed, shuffle=o.shuffle)
                .batch_nodes(o.batch_size, drop_last=o.drop_last))

    def _seeds(self, positions: IterDataPipe) -> IterDataPipe:
        raise NotImplementedError

    def _chain(self, positions: IterDataPipe, sync: bool = False) -> Stage:
        o = self.options
        # PyG's sampler outputs carry CSR positions, which filter_fn maps to ids.
        samples = self.transform_sampler_output is not None
        pipe = (self._seeds(positions)
                .sample_neighbors(self.csc, self.num_neighbors, input_type=self.input_type,
                                  replace=self.replace,
                                  num_threads=1 if sync else o.num_threads,
                                  max_in_flight=1 if sync else o.max_in_flight, seed=o.seed,
                                  return_e_id=True, node_wise=True,
                                  edge_ids=None if samples else self.csc.perm,
                                  disjoint=self.disjoint, duplicate_seeds=True,
                                  weight=self.weight, time=self.time,
                                  temporal_strategy=self.temporal_strategy,
                                  overlap_epochs=not sync and isinstance(positions, Stage)
                                  and o.shuffle and o.sampler is None)
                .to_pyg(self.data, subgraph_type=self.subgraph_type, csc=self.csc,
                        custom_cls=self.custom_cls, features=self.on_device,
                        sampler_output=samples))
        if o.pin_memory and not sync and not samples:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe = pipe.pin_memory()
        return pipe

    # -------------------------------------------------------- PyG's hooks
    def collate_fn(self, index: Union[Tensor, Sequence[int]]) -> Any:
        """One batch, built now, from seed positions ``index`` (as PyG's
        loaders do; its ``__call__`` and ``ZipLoader`` call this). The
        transform runs here when ``filter_per_worker``, else in
        :meth:`filter_fn`."""
        if self._one is None:
            self._one = self._chain(IndexBatches(self._feed), sync=True)
        self._feed[0] = index
        batch, = list(self._one)
        return self.filter_fn(batch) if self.filter_per_worker else batch

    def filter_fn(self, out: Any) -> Any:
        """The transform, applied to a batch :meth:`collate_fn` built; with
        ``transform_sampler_output``, PyG's own ``filter_fn``: that
        function, then the batch from ``data``, then the transform."""
        if self.transform_sampler_output is not None:
            batch = cast(Any, super()).filter_fn(out)  # PyG's loader's
            if self.options.pin_memory and torch.cuda.is_available():
                batch = batch.pin_memory()
            return batch
        return out if self.transform is None else self.transform(out)

    # ---------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Any]:
        """One epoch; iterating again starts the next (reshuffled) epoch."""
        for out in self.pipe:
            yield self.filter_fn(out)

    def __len__(self) -> int:
        return len(self.pipe)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration epoch ``epoch`` (its order and samples)."""
        self.pipe.set_epoch(epoch)

    def state_dict(self) -> Dict[str, Any]:
        return self.pipe.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.pipe.load_state_dict(state)


class NeighborLoader(_Native, PygNeighborLoader):
    """PyG's ``torch_geometric.loader.NeighborLoader`` on our native sampler:
    change the import, keep the code.

    Takes PyG's arguments and yields ``Data`` (or ``HeteroData``) batches as
    PyG's do: node attributes sliced by ``n_id``, ``edge_index`` (or
    ``adj_t``) in local ids, edge attributes sliced by ``e_id``, ``n_id``,
    ``e_id``, ``input_id``, ``batch_size``, ``num_sampled_nodes``,
    ``num_sampled_edges``. ``data`` is a ``Data``, a ``HeteroData`` or a
    ``(FeatureStore, GraphStore)`` pair; ``input_nodes`` ids, a bool mask
    or ``None`` (all), or for typed graphs a node type or ``(node_type,
    ids | mask | None)``; ``num_neighbors`` a list, a dict per edge type or
    PyG's ``NumNeighbors`` (``[]``: the seeds alone); ``subgraph_type`` a
    name or PyG's ``SubgraphType``. It is a ``DataLoader``: ``sampler=`` or
    ``batch_sampler=`` pick the seeds (say, ``ImbalancedSampler``).

    ``num_workers`` sets our sampling threads (0: the process's cores) and
    ``prefetch_factor`` the batches each runs ahead; ``seed`` (ours) fixes
    shuffling and sampling, by default drawn from torch's RNG.
    ``features_on="cuda"`` (ours) keeps ``x`` on that GPU, copied once, and
    ``device_cache="25%"`` only the rows that are sources of the most edges:
    batches then carry ``x`` on the device, put together there (the other
    attributes stay on the host, as PyG leaves them for a graph whose
    ``x`` is on the GPU); the loader's ``placement`` says what was chosen.
    ``disjoint=True`` gives every seed its own subgraph (``batch`` maps
    nodes to seeds). ``time_attr`` (with ``input_time`` and
    ``temporal_strategy``) samples by time, ``weight_attr`` by edge weight,
    natively (docs/pyg.md). ``transform_sampler_output`` gets what PyG's
    sampler returns for each batch, and PyG's ``filter_fn`` builds the batch
    from its result, as in PyG. ``neighbor_sampler`` takes another loader's
    ``node_sampler``/``link_sampler`` (sharing what it built) or PyG's
    ``NeighborSampler``; its settings win over the loader's, as in PyG.

    Example:
        >>> from torch_geometric.data import Data
        >>> data = Data(x=torch.randn(6, 3), y=torch.arange(6),
        ...             edge_index=torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]]))
        >>> loader = NeighborLoader(data, num_neighbors=[2, 2], batch_size=4, seed=0)
        >>> batch = next(iter(loader))
        >>> batch.batch_size, batch.n_id[:4].tolist(), batch.x.dtype
        (4, [0, 1, 2, 3], torch.float32)
        >>> loader([5]).n_id[:1].tolist()  # one batch from seed positions, now
        [5]
    """

    def __init__(self, data: Any, num_neighbors: Any, input_nodes: Any = None,
                 input_time: Optional[Tensor] = None, replace: bool = False,
                 subgraph_type: Any = "directional", disjoint: bool = False,
                 temporal_strategy: str = "uniform", time_attr: Optional[str] = None,
                 weight_attr: Optional[str] = None, transform: Optional[Callable] = None,
                 transform_sampler_output: Optional[Callable] = None,
                 is_sorted: bool = False, filter_per_worker: Optional[bool] = None,
                 neighbor_sampler: Any = None, custom_cls: Any = None,
                 input_id: Optional[Tensor] = None, **kwargs: Any) -> None:
        if input_time is not None and not samples_by_time(neighbor_sampler, time_attr):
            raise ValueError("input_time is for temporal sampling: give time_attr too")
        self._setup(data, neighbor_sampler, num_neighbors, replace, subgraph_type, disjoint,
                    transform, transform_sampler_output, filter_per_worker, custom_cls,
                    time_attr, temporal_strategy, weight_attr, kwargs)
        self.input_type, self.input_nodes, self.input_id = input_nodes_of(
            input_nodes, input_id, self.csc, self.typed)
        # The bound of each seed's subgraph: input_time, else (node times)
        # the seeds' own times, which PyG neither reports nor keeps.
        self._subgraph_time = None if self.time_attr is None else seed_times(
            self.time_kind, self.times, self.input_type, self.input_nodes, input_time)
        self.input_time = None if input_time is None else self._subgraph_time
        self.input_data = NodeSamplerInput(
            input_id=self.input_id, node=self.input_nodes, time=self.input_time,
            input_type=self.input_type if self.typed else None)
        self.node_sampler = SamplerSettings.of(self.graph)
        self._start(self.input_nodes.numel())
        self.pipe = self._chain(self._positions())

    def _seeds(self, positions: IterDataPipe) -> IterDataPipe:
        return positions.seed_nodes(self.input_nodes, input_id=self.input_id,
                                    input_time=self._subgraph_time,
                                    report_time=self.input_time is not None)


class LinkNeighborLoader(_Native, PygLinkNeighborLoader):
    """PyG's ``torch_geometric.loader.LinkNeighborLoader`` on our native
    sampler: batches of labelled edges (``edge_label_index``, default all of
    the graph's edges; for typed graphs an edge type, ``(src, dst)`` or
    ``(edge_type, [2, L] | None)``; ``edge_label``) with negatives
    (``neg_sampling`` ``"binary"`` or ``"triplet"``, a dict or PyG's
    ``NegativeSampling``, with ``amount``; or the older
    ``neg_sampling_ratio``), the neighborhoods of their endpoints sampled
    node-wise. Batches carry PyG's attributes: ``edge_label_index`` (local
    ids) and ``edge_label``, or ``src_index``, ``dst_pos_index`` and
    ``dst_neg_index`` for triplets; ``input_id``; ``n_id``, ``e_id``,
    ``num_sampled_nodes``, ``num_sampled_edges``. Negatives are drawn by the
    native core, seeded like sampling. The rest is as :class:`NeighborLoader`.

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

    def __init__(self, data: Any, num_neighbors: Any, edge_label_index: Any = None,
                 edge_label: Optional[Tensor] = None, edge_label_time: Optional[Tensor] = None,
                 replace: bool = False, subgraph_type: Any = "directional",
                 disjoint: bool = False, temporal_strategy: str = "uniform",
                 neg_sampling: Any = None, neg_sampling_ratio: Optional[float] = None,
                 time_attr: Optional[str] = None, weight_attr: Optional[str] = None,
                 transform: Optional[Callable] = None,
                 transform_sampler_output: Optional[Callable] = None, is_sorted: bool = False,
                 filter_per_worker: Optional[bool] = None, neighbor_sampler: Any = None,
                 custom_cls: Any = None, input_id: Optional[Tensor] = None,
                 **kwargs: Any) -> None:
        timed = samples_by_time(neighbor_sampler, time_attr)
        if timed and edge_label_time is None:
            raise ValueError("temporal link batches need each labelled edge's time, but "
                             "'edge_label_time' is not set")
        if edge_label_time is not None and not timed:
            raise ValueError("edge_label_time is for temporal sampling: give time_attr too")
        self._setup(data, neighbor_sampler, num_neighbors, replace, subgraph_type, disjoint,
                    transform, transform_sampler_output, filter_per_worker, custom_cls,
                    time_attr, temporal_strategy, weight_attr, kwargs)
        self.edge_label_time = edge_label_time
        self.mode, self.amount, self.src_weight, self.dst_weight = negative_sampling(
            neg_sampling, neg_sampling_ratio)
        self.neg_sampling = None if self.mode is None else \
            NegativeSampling(self.mode, self.amount, self.src_weight, self.dst_weight)
        self.edge_type, self.edge_label_index = edge_label_index_of(
            edge_label_index, self.csc, self.typed)
        self.input_type = self.edge_type[0]
        self.edge_label, self.input_id = edge_label, input_id
        count = self.edge_label_index.size(1)
        self.input_data = EdgeSamplerInput(
            input_id=input_id, row=self.edge_label_index[0], col=self.edge_label_index[1],
            label=edge_label, time=edge_label_time,
            input_type=self.edge_type if self.typed else None)
        self.link_sampler = SamplerSettings.of(self.graph)
        self._start(count)
        self.pipe = self._chain(self._positions())

    def _seeds(self, positions: IterDataPipe) -> IterDataPipe:
        num_nodes = self.csc.num_nodes
        return positions.seed_edges(self.edge_label_index, num_nodes[self.edge_type[0]],
                                    edge_label=self.edge_label, neg_sampling=self.mode,
                                    amount=self.amount, seed=self.options.seed,
                                    disjoint=self.disjoint, edge_type=self.edge_type,
                                    num_dst_nodes=num_nodes[self.edge_type[2]],
                                    input_id=self.input_id,
                                    edge_label_time=self.edge_label_time,
                                    src_node_time=self._node_time(self.edge_type[0]),
                                    dst_node_time=self._node_time(self.edge_type[2]),
                                    src_weight=self.src_weight, dst_weight=self.dst_weight)

    def _node_time(self, node_type: str) -> Optional[Tensor]:
        """A node type's times, which negatives are filtered by (node-level
        temporal sampling)."""
        if self.time_attr is None or self.time_kind != "node":
            return None
        return self.times.get(node_type if self.typed else NODE_TYPE)


__all__: List[str] = ["LinkNeighborLoader", "NeighborLoader", "negative_sampling"]
