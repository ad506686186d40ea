"""salient_pipeline(): the whole chain with good defaults, in one call."""

from __future__ import annotations

import logging
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from salient_pipes._checks import as_node_ids, usable_device
from salient_pipes.batch import EDGE_TYPE, NODE_TYPE
from salient_pipes.data import (
    FastDataset,
    FeatureCache,
    FeatureCaches,
    HeteroDataset,
    iter_splits,
)
from salient_pipes.data.feature_cache import cache_budget, check_policy
from salient_pipes.data.feature_file import FeatureFile
from salient_pipes.data.format import physical_memory
from salient_pipes.distributed.dataset import PartitionedDataset
from salient_pipes.distributed.fetch import FetchFeatures
from salient_pipes.pipes import NodeIndices, Stage
from salient_pipes.pipes.device_features import DeviceFeatures, choose_placement
from salient_pipes.pipes.lookahead import LookAhead
from salient_pipes.pipes.pinned_pool import PinnedPool
from salient_pipes.pipes.sample import default_num_threads
from salient_pipes.pipes.schema import Fanouts, fanouts_per_edge_type


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``device``, or CUDA (this process's current device) when available,
    else CPU. A device that is not one, or a CUDA device this process cannot
    use, is a ``ValueError`` that says why.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    return usable_device(device)


def resolve_rank(rank: Optional[int], world_size: Optional[int]) -> Tuple[int, int]:
    """``(rank, world_size)``: as given, else from the initialized default
    process group, else ``(0, 1)``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    return (0 if rank is None else rank), (1 if world_size is None else world_size)


def salient_pipeline(
    dataset: Union[FastDataset, HeteroDataset, PartitionedDataset],
    split: Union[str, Tensor] = "train",
    *,
    batch_size: int = 1024,
    fanouts: Fanouts = (15, 10, 5),
    replace: bool = False,
    return_e_id: bool = False,
    shuffle: bool = True,
    drop_last: bool = False,
    device: Union[str, torch.device, None] = None,
    num_threads: Optional[int] = None,
    max_in_flight: Optional[int] = None,
    seed: int = 0,
    pin_memory: Optional[bool] = None,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    feature_cache: Union[int, str, FeatureCache, FeatureCaches, None] = None,
    cache_policy: str = "degree",
    fetch_depth: int = 2,
    x_dtype: Optional[torch.dtype] = None,
    overlap_epochs: Optional[bool] = None,
    weighted: bool = False,
    temporal: Optional[str] = None,
    out_of_core: Optional[bool] = None,
    features_on: Optional[str] = None,
    device_cache: Union[int, str, None] = None,
) -> Stage:
    """SALIENT's batch preparation for one split of ``dataset``:

    ``NodeIndices(split) → shuffle_nodes → batch_nodes → sample_neighbors →
    slice_features (fused into sampling) → [pin_memory] → prefetch_to_device``

    A :class:`FastDataset` is sampled per hop (SALIENT) and yields
    :class:`~salient_pipes.batch.PreparedBatch` items; a
    :class:`HeteroDataset` is sampled node-wise from seeds of its
    ``label_type`` and yields :class:`~salient_pipes.batch.NodeWiseBatch`
    items. The returned pipe has ``len()`` (batches per epoch),
    ``set_epoch()`` and ``state_dict()``; iterating it again starts the
    next epoch.

    Args:
        dataset: the graph. A
            :class:`~salient_pipes.distributed.PartitionedDataset` (feature
            rows cut across ranks) replaces ``slice_features`` by
            ``fetch_features``: each rank's seeds are its part's nodes of the
            split, its local rows, cached rows and rows fetched from their
            owners make ``x``; when shuffling, every rank pads its seeds
            with repeats to the largest part's count, so all ranks run the
            same number of batches.
        split: a name in ``dataset.split_idx``, or the seeds themselves
            (node ids or a bool mask over the nodes).
        batch_size: seeds per batch.
        fanouts: neighbors per hop, the seeds' hop first (``-1``: all); for
            a heterogeneous graph a list for every edge type or a dict per
            edge type.
        replace: sample neighbors with replacement.
        return_e_id: fill each ``Adj.e_id`` (``NodeWiseBatch.e_id``).
        shuffle: a new permutation per epoch (training); ``False`` for
            evaluation.
        drop_last: drop a last batch smaller than ``batch_size``.
        device: where batches go (default: CUDA when available, else CPU).
        num_threads: native sampling threads (default: cores / local
            processes).
        max_in_flight: batches sampled ahead (default: ``2 * num_threads``).
        seed: the seed of the permutations and of sampling.
        pin_memory: default: on for a CUDA device. The workers then place
            each batch straight in a page-locked slot of a pool
            (:class:`PinnedPool`), so it is copied once on its way to the
            device, and the prefetch stage's thread issues the copies.
        rank: this process's rank (default: the process group's).
        world_size: ranks in all (default: the process group's): each rank
            gets a disjoint shard of every epoch and the same number of
            batches.
        feature_cache: keep a byte budget of feature rows in memory (an
            int, ``"4GiB"``, ``"10%"`` of the features, or a
            :class:`FeatureCache`), for features read from a file larger
            than memory; ``pipeline_stats`` reports its hit rate. A
            heterogeneous dataset's budget is shared by its node types.
        cache_policy: which rows the cache keeps (``POLICIES``: ``degree``,
            ``sampled`` or ``vip``; a heterogeneous dataset's: degree).
        fetch_depth: batches fetched ahead (partitioned datasets).
        x_dtype: cast the features on the device after the copy (say
            ``torch.float32``).
        overlap_epochs: sample the next epoch's first batches while this
            epoch's last ones are consumed, so that an epoch does not begin
            with the device waiting (default: when shuffling).
        weighted: draw neighbors in proportion to ``dataset.edge_weight``
            (a dataset that carries it; zero-weight edges never).
        temporal: ``"uniform"`` or ``"last"``: sample only neighbors whose
            ``dataset.edge_time`` is at most the seed's ``dataset.node_time``
            (uniformly among them, or the latest). Batches are then
            node-wise and disjoint, one subgraph per seed, as PyG's temporal
            sampling makes them (:class:`~salient_pipes.batch.NodeWiseBatch`
            with ``batch``).
        out_of_core: read the features from disk a window of batches
            ahead (:class:`~salient_pipes.pipes.lookahead.LookAhead`): the
            union of a window's rows in file order, many reads in flight,
            past the page cache; the same batches. Default: when the
            dataset was loaded from disk (``FastDataset.load``) and its
            features exceed half of physical memory. Its memory is
            ``feature_cache`` (bytes or a share of the features; default a
            third of physical memory).
        features_on: ``"cuda"`` (a device name) keeps the features (``x``)
            on that device, copied there once: the sampling workers gather
            only the labels, each batch crosses with its ids and adjacency,
            and its rows are gathered on the device on the copy stream.
            ``"auto"``: on ``device`` when it is a GPU whose free memory
            holds them with 1 GiB to spare; the returned stage's
            ``placement`` says what was chosen and why (also logged).
            When they do not fit, ``"auto"`` keeps a device cache of what
            is free beyond that. Default: gathered on the host.
        device_cache: keep only the hottest rows on the device (bytes such
            as ``"20GiB"`` or a share of the features such as ``"25%"``,
            counting a 4-byte slot per row; chosen by ``cache_policy``):
            the sampling workers gather the other rows, a batch crosses
            with those alone, and its ``x`` is put together on the device.
            ``pipeline_stats`` reports the hit rate
            (``device_cache_hit_rate``). A budget of the whole features
            keeps them all there.

    Example:
        >>> from salient_pipes import FastDataset, salient_pipeline
        >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
        >>> pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cpu")
        >>> len(pipe), next(iter(pipe)).batch_size
        (3, 256)
    """
    if overlap_epochs is None:
        overlap_epochs = shuffle
    check_policy(cache_policy)  # checked even without a cache to use it
    if isinstance(dataset, PartitionedDataset):
        if weighted:
            raise NotImplementedError("weighted sampling of a PartitionedDataset is not "
                                      "supported")
        if features_on not in (None, "host") or out_of_core or device_cache is not None:
            raise ValueError("a PartitionedDataset's features are cut across ranks and fetched "
                             "from their owners: features_on, device_cache and out_of_core do "
                             "not apply")
        return _partitioned_pipeline(dataset, split, batch_size=batch_size,
                                     fanouts=_one_edge_type(fanouts),
                                     replace=replace, return_e_id=return_e_id,
                                     shuffle=shuffle, drop_last=drop_last, device=device,
                                     num_threads=num_threads, max_in_flight=max_in_flight,
                                     seed=seed, pin_memory=pin_memory, depth=fetch_depth,
                                     feature_cache=feature_cache, x_dtype=x_dtype,
                                     overlap_epochs=overlap_epochs)
    if not isinstance(dataset, (FastDataset, HeteroDataset)):
        hint = (" (a PyG Data: convert it once with FastDataset.from_pyg(data))"
                if hasattr(dataset, "edge_index") else "")
        raise TypeError(f"dataset must be a FastDataset or HeteroDataset, got "
                        f"{type(dataset).__name__}{hint}")
    weight = getattr(dataset, "edge_weight", None) if weighted else None
    if weighted and _absent(weight):
        kind = type(dataset).__name__
        raise ValueError(f"weighted=True needs a dataset with edge_weight ({kind}(..., "
                         f"edge_weight=...), {kind}.from_edges(..., edge_weight=...) or "
                         f"{kind}.from_pyg(data, weight_attr=...))")
    time = _temporal(dataset, temporal, weighted)
    index = _seeds(dataset, split)
    device = resolve_device(device)
    rank, world_size = resolve_rank(rank, world_size)
    if pin_memory is None:
        pin_memory = device.type == "cuda"
    features = _features(dataset, device, features_on, device_cache, out_of_core,
                         feature_cache, cache_policy, fanouts, batch_size, index, seed,
                         num_threads)
    sampled = (
        NodeIndices(index)
        .shuffle_nodes(seed=seed, shuffle=shuffle)
        .shard_nodes(rank, world_size)
        .batch_nodes(batch_size, drop_last=drop_last)
        .sample_neighbors(dataset, fanouts, replace=replace, num_threads=num_threads,
                          max_in_flight=max_in_flight, seed=seed, return_e_id=return_e_id,
                          overlap_epochs=overlap_epochs, weight=weight, time=time,
                          temporal_strategy=temporal or "uniform",
                          **({} if time is None else dict(node_wise=True, disjoint=True)))
    )
    # A slot per batch in flight, in the prefetch queue and its thread's hand,
    # in use, and waiting for its copy to finish (a graph without features
    # has nothing to gather there).
    pinned = PinnedPool(num_slots=sampled.max_in_flight + 6) \
        if pin_memory and features.host_bytes and not features.lookahead else None
    on_device = features.on_device
    host_x = {} if on_device is not None and features.cache is None else dataset.x
    pipe = sampled.slice_features(host_x, dataset.y, cache=features.cache,
                                  pinned=pinned, lookahead=features.lookahead)
    if pin_memory and (pinned is None or not pinned.pin):
        pipe = pipe.pin_memory()
    # With the pool the batches are placed in pinned memory already: the
    # prefetch stage's thread takes them from the workers and copies them.
    last = pipe.prefetch_to_device(device, x_dtype=x_dtype, features=on_device)
    last.placement = features.why
    return last


class _Features(NamedTuple):
    """Where a pipeline's feature rows come from: read from disk a window
    ahead (``lookahead``), a host cache in front of the table (``cache``;
    with features on the device, the rows the device lacks), the device
    (``on_device``); ``host_bytes``: the host table's size; ``why``: the
    placement, in words."""

    lookahead: Optional[LookAhead]
    cache: Union[FeatureCache, FeatureCaches, None]
    on_device: Optional[DeviceFeatures]
    host_bytes: int
    why: str


def _features(dataset: Union[FastDataset, HeteroDataset], device: torch.device,
              features_on: Optional[str], device_cache: Union[int, str, None],
              out_of_core: Optional[bool], feature_cache: Any, cache_policy: str,
              fanouts: Fanouts, batch_size: int, index: Tensor, seed: int,
              num_threads: Optional[int]) -> _Features:
    """salient_pipeline's choice of where the feature rows live and come
    from, its arguments checked against each other."""
    tables = dataset.x if isinstance(dataset.x, dict) else {NODE_TYPE: dataset.x}
    table_bytes = sum(t.numel() * t.element_size() for t in tables.values())
    placement = choose_placement(features_on, device, table_bytes, device_cache=device_cache,
                                 num_rows=sum(t.size(0) for t in tables.values() if t.numel()))
    placed = placement.device
    if placed is not None and placed.type == device.type and placed.index is None:
        placed = device  # "cuda": this process's device
    if placed is not None and out_of_core:
        raise ValueError("features_on/device_cache put features on the device; out_of_core=True "
                         "reads them from disk on the host: choose one")
    if placed is not None and placed != device:
        raise ValueError(f"features_on={features_on!r} puts the features on {placed}, but the "
                         f"batches go to {device}: name the same device")
    if placement.cache is not None and feature_cache is not None:
        raise ValueError("a device cache and feature_cache (a cache in host memory) cannot be "
                         "combined: choose one")
    logging.getLogger(__name__).info(placement.why)
    if placed is not None:  # the hottest rows, gathered straight to the device
        hot = None if placement.cache is None else \
            _feature_cache(dataset, placement.cache, cache_policy, fanouts, batch_size, index,
                           seed, pin=False, device=placed)
        on_device = DeviceFeatures(dataset.x, placed, cache=hot)
        return _Features(None, on_device.host_cache, on_device, table_bytes, placement.why)
    lookahead = _lookahead(dataset, tables, table_bytes, out_of_core, feature_cache,
                           num_threads)
    cache = None if lookahead else \
        _feature_cache(dataset, feature_cache, cache_policy, fanouts, batch_size, index, seed,
                       pin=device.type == "cuda")
    return _Features(lookahead, cache, None, table_bytes, placement.why)


def _one_edge_type(fanouts: Fanouts) -> Sequence[int]:
    """A graph of one edge type's fanouts as a list (given as one or as a
    dict naming its edge type)."""
    return fanouts_per_edge_type(fanouts, [EDGE_TYPE])[0]


def _absent(values: Any) -> bool:
    """No per-edge values: None, or an empty dict of them per edge type."""
    return values is None or (isinstance(values, dict) and not values)


def _temporal(dataset: Union[FastDataset, HeteroDataset], temporal: Optional[str],
              weighted: bool) -> Any:
    """The edge times that ``temporal`` samples by (None when not temporal)."""
    if temporal is None:
        return None
    if temporal not in ("uniform", "last"):
        raise ValueError(f"temporal must be 'uniform', 'last' or None, got {temporal!r}")
    if weighted:
        raise ValueError("weighted and temporal sampling cannot be combined")
    time = getattr(dataset, "edge_time", None)
    node_time = getattr(dataset, "node_time", None)
    if isinstance(dataset, HeteroDataset):
        node_time = dataset.node_time.get(dataset.label_type)
    if _absent(time) or node_time is None:
        pyg = ("HeteroDataset.from_pyg(data, time_attr=...) of an attribute of the edge types "
               "and of the seeds' node type" if isinstance(dataset, HeteroDataset) else
               "FastDataset.from_pyg(data, time_attr=...) of an edge attribute, plus "
               "node_time=...")
        raise ValueError("temporal sampling needs a dataset with edge_time (the edges' times) "
                         f"and node_time (the seeds' times): {pyg}, or "
                         f"{type(dataset).__name__}.from_edges(..., edge_time=..., "
                         "node_time=...)")
    return time


def _seeds(dataset: Union[FastDataset, HeteroDataset], split: Union[str, Tensor]) -> Tensor:
    """The seed ids ``split`` names (a split's name, ids or a mask)."""
    if isinstance(split, str):
        (_, index), = iter_splits(dataset, [split])
        return index
    num_nodes = dataset.num_nodes[dataset.label_type] if isinstance(dataset, HeteroDataset) \
        else dataset.num_nodes
    return as_node_ids("split", split, num_nodes)


def _lookahead(dataset: Union[FastDataset, HeteroDataset], x: Dict[str, Tensor], table: int,
               out_of_core: Optional[bool], budget: Any,
               num_threads: Optional[int]) -> Optional[LookAhead]:
    """The look-ahead reading ``out_of_core`` asks for (None: in memory)
    of the features ``x`` per node type (``table`` bytes in all)."""
    files = getattr(dataset, "x_files", {})
    if out_of_core is None:
        out_of_core = bool(files) and table > physical_memory() // 2
    if not out_of_core:
        return None
    if not files:
        raise ValueError("out_of_core=True reads the features from their files: open the "
                         "dataset with FastDataset.load(path) (or HeteroDataset.load)")
    if isinstance(budget, (FeatureCache, FeatureCaches)):
        raise ValueError("out_of_core reading takes a budget (bytes or a share), not a built "
                         "FeatureCache: pass feature_cache='8GiB' or '25%'")
    memory = physical_memory() // 3 if budget is None else cache_budget(budget, table)
    return LookAhead({t: FeatureFile(p, dtype=x[t].dtype) for t, p in files.items()}, memory,
                     num_threads=num_threads or default_num_threads())


def _feature_cache(dataset: Union[FastDataset, HeteroDataset], budget: Any, policy: str,
                   fanouts: Fanouts, batch_size: int, seeds: Tensor, seed: int,
                   pin: bool, device: Optional[torch.device] = None
                   ) -> Union[FeatureCache, FeatureCaches, None]:
    """The cache ``budget`` asks for (or the one given), its rows on
    ``device`` when given (a device cache)."""
    if budget is None or isinstance(budget, (FeatureCache, FeatureCaches)):
        return budget
    if isinstance(dataset, HeteroDataset):
        if policy != "degree":
            raise NotImplementedError("a heterogeneous dataset's feature cache takes the "
                                      "'degree' policy only")
        return FeatureCaches.for_dataset(dataset, budget, pin=pin, device=device)
    return FeatureCache.for_dataset(dataset, budget, policy=policy,
                                    fanouts=_one_edge_type(fanouts),
                                    batch_size=batch_size, seeds=seeds, seed=seed, pin=pin,
                                    device=device)


def _partitioned_pipeline(dataset: PartitionedDataset, split: Union[str, Tensor], *,
                          batch_size: int, fanouts: Sequence[int], replace: bool,
                          return_e_id: bool, shuffle: bool, drop_last: bool,
                          device: Union[str, torch.device, None], num_threads: Optional[int],
                          max_in_flight: Optional[int], seed: int,
                          pin_memory: Optional[bool], depth: int,
                          feature_cache: object, x_dtype: Optional[torch.dtype],
                          overlap_epochs: bool) -> Stage:
    """``salient_pipeline`` for one rank of a partitioned dataset."""
    if feature_cache is not None:
        raise ValueError("a partitioned dataset's cache is chosen when it is loaded: "
                         "PartitionedDataset.load(path, cache=...)")
    if isinstance(split, str):
        (_, index), = iter_splits(dataset, [split])
        largest, smallest = dataset.max_split_size(split), min(dataset.split_sizes[split])
    else:
        index = as_node_ids("split", split, dataset.num_nodes)
        index = index[dataset.owner[index] == dataset.rank]
        largest = smallest = index.numel()
        if shuffle and dataset.fetch_group is not None:  # the largest and smallest shares
            size = torch.tensor([index.numel(), -index.numel()])
            torch.distributed.all_reduce(size, torch.distributed.ReduceOp.MAX,
                                         group=dataset.fetch_group)
            largest, smallest = int(size[0]), -int(size[1])
    if shuffle and smallest == 0 and largest > 0:
        # Training runs every rank in step; a rank without seeds has nothing to
        # pad with, so every rank says so now rather than one of them mid-epoch.
        raise ValueError("a part of this partitioned dataset holds none of the split's "
                         "nodes, so its rank has no seeds to train on: partition into fewer "
                         "parts (at most the split's size), or iterate with shuffle=False")
    pad_to = largest if shuffle else 0
    device = resolve_device(device)
    if pin_memory is None:
        pin_memory = device.type == "cuda"
    pipe = (
        NodeIndices(index)
        .shuffle_nodes(seed=seed, shuffle=shuffle)
        .shard_nodes(pad_to=pad_to)
        .batch_nodes(batch_size, drop_last=drop_last)
        .sample_neighbors(dataset, fanouts, replace=replace, num_threads=num_threads,
                          max_in_flight=max_in_flight, seed=seed, return_e_id=return_e_id,
                          overlap_epochs=overlap_epochs)
    )
    pipe = FetchFeatures(pipe, dataset, depth=depth, num_threads=num_threads)
    if pin_memory:
        pipe = pipe.pin_memory()
    last = pipe.prefetch_to_device(device, x_dtype=x_dtype)
    last.placement = "features partitioned across ranks, fetched from their owners"
    return last
