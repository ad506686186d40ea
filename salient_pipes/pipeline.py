"""salient_pipeline(): the whole chain with good defaults, in one call."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from salient_pipes._checks import as_node_ids
from salient_pipes.data import (
    FastDataset,
    FeatureCache,
    HeteroDataset,
    HeteroFeatureCache,
    iter_splits,
)
from salient_pipes.distributed.partitioned import PartitionedDataset
from salient_pipes.pipes import NodeIndices, Stage
from salient_pipes.pipes.pinned_pool import PinnedPool


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``device``, or CUDA (this process's current device) when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
        else torch.device("cpu")


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
    fanouts: Sequence[int] = (15, 10, 5),
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
    feature_cache: Union[int, str, FeatureCache, HeteroFeatureCache, None] = None,
    cache_policy: str = "degree",
    fetch_depth: int = 2,
    x_dtype: Optional[torch.dtype] = None,
    overlap_epochs: Optional[bool] = None,
) -> Stage:
    """SALIENT's batch preparation for one split of ``dataset``:

    ``NodeIndices(split) → shuffle_nodes → batch_nodes → sample_neighbors →
    slice_features (fused into sampling) → [pin_memory] → prefetch_to_device``

    ``split`` names one of ``dataset.split_idx`` or is the seed set itself
    (node ids or a bool mask over the nodes). A :class:`HeteroDataset` is
    sampled node-wise per edge type (``fanouts`` a list for every edge type
    or a dict per edge type) from seeds of its ``label_type``, and yields
    :class:`~salient_pipes.batch.HeteroBatch` items. ``replace`` samples neighbors
    with replacement; ``return_e_id`` fills each ``Adj.e_id``.

    ``feature_cache`` keeps a byte budget of feature rows in memory (an int,
    a string like ``"4GiB"``, or a :class:`FeatureCache`), chosen by
    ``cache_policy`` (``"degree"`` or ``"sampled"``): for features read from
    a file larger than memory. ``pipeline_stats`` reports its hit rate. A
    heterogeneous dataset's budget is shared by its node types
    (:class:`HeteroFeatureCache`, by degree).

    A :class:`~salient_pipes.distributed.PartitionedDataset` (feature rows
    cut across ranks) replaces ``slice_features`` by ``fetch_features``:
    each rank's seeds are its part's nodes of the split, the local rows,
    cached rows and rows fetched from their owners make ``x``, up to
    ``fetch_depth`` batches ahead. When shuffling (training) every rank pads
    its seeds with repeats to the largest part's count, so all ranks run
    the same number of batches; evaluation (``shuffle=False``) takes each
    seed once. Its cache is chosen when the dataset is loaded.

    ``device`` defaults to CUDA when available, else CPU; ``pin_memory``
    defaults to on for a CUDA device, and then the workers place each batch
    straight in a page-locked slot of a pool (:class:`PinnedPool`), so it is
    copied once on its way to the device; the pin stage is then left out,
    and the prefetch stage's thread takes batches from the workers and issues
    their copies. ``x_dtype`` (say
    ``torch.float32``) casts the features on the device after the copy.
    ``overlap_epochs`` (default: when shuffling, i.e. for training) samples
    the next epoch's first batches while this epoch's last ones are
    consumed, so that an epoch does not begin with the device waiting for
    its first batch; the batches are the same.
    ``rank``/``world_size`` default to the initialized ``torch.distributed``
    process group: each rank then gets a disjoint shard of every epoch and
    the same number of batches. The
    returned pipe has ``len()`` (batches per epoch), ``set_epoch()`` and
    ``state_dict()``; iterating it again starts the next epoch.

    Example:
        >>> from salient_pipes import FastDataset, salient_pipeline
        >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
        >>> pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cpu")
        >>> len(pipe), next(iter(pipe)).batch_size
        (3, 256)
    """
    if overlap_epochs is None:
        overlap_epochs = shuffle
    if isinstance(dataset, PartitionedDataset):
        return _partitioned_pipeline(dataset, split, batch_size=batch_size, fanouts=fanouts,
                                     replace=replace, return_e_id=return_e_id,
                                     shuffle=shuffle, drop_last=drop_last, device=device,
                                     num_threads=num_threads, max_in_flight=max_in_flight,
                                     seed=seed, pin_memory=pin_memory, depth=fetch_depth,
                                     feature_cache=feature_cache, x_dtype=x_dtype,
                                     overlap_epochs=overlap_epochs)
    if isinstance(dataset, HeteroDataset):
        if feature_cache is not None and cache_policy != "degree":
            raise NotImplementedError("a heterogeneous dataset's feature cache takes the "
                                      "'degree' policy only")
    elif not isinstance(dataset, FastDataset):
        hint = (" (a PyG Data: convert it once with FastDataset.from_pyg(data))"
                if hasattr(dataset, "edge_index") else "")
        raise TypeError(f"dataset must be a FastDataset, got {type(dataset).__name__}{hint}")
    if isinstance(split, str):
        (_, index), = iter_splits(dataset, [split])
    else:
        index = as_node_ids("split", split, dataset.num_nodes[dataset.label_type]
                            if isinstance(dataset, HeteroDataset) else dataset.num_nodes)
    device = resolve_device(device)
    rank, world_size = resolve_rank(rank, world_size)
    if pin_memory is None:
        pin_memory = device.type == "cuda"
    if isinstance(dataset, HeteroDataset):
        if feature_cache is not None and not isinstance(feature_cache, HeteroFeatureCache):
            feature_cache = HeteroFeatureCache.for_dataset(dataset, feature_cache,
                                                           pin=device.type == "cuda")
    elif feature_cache is not None and not isinstance(feature_cache, FeatureCache):
        feature_cache = FeatureCache.for_dataset(
            dataset, feature_cache, policy=cache_policy, fanouts=fanouts, batch_size=batch_size,
            seeds=index, seed=seed, pin=device.type == "cuda")
    sampled = (
        NodeIndices(index)
        .shuffle_nodes(seed=seed, rank=rank, world_size=world_size, shuffle=shuffle)
        .batch_nodes(batch_size, drop_last=drop_last)
        .sample_neighbors(dataset, fanouts, replace=replace, num_threads=num_threads,
                          max_in_flight=max_in_flight, seed=seed, return_e_id=return_e_id,
                          overlap_epochs=overlap_epochs)
    )
    pinned = None
    # A slot per batch in flight, in the prefetch queue and its thread's hand,
    # in use, and waiting for its copy to finish (a heterogeneous graph
    # without features has nothing to gather there).
    if pin_memory and (isinstance(dataset, FastDataset) or dataset.x):
        pinned = PinnedPool(num_slots=sampled.max_in_flight + 6)
    pipe = sampled.slice_features(dataset.x, dataset.y, cache=feature_cache, pinned=pinned)
    if pin_memory and (pinned is None or not pinned.pin):
        pipe = pipe.pin_memory()
    # With the pool the batches are placed in pinned memory already: the
    # prefetch stage's thread takes them from the workers and copies them.
    return pipe.prefetch_to_device(device, x_dtype=x_dtype)


def _partitioned_pipeline(dataset: PartitionedDataset, split: Union[str, Tensor], *,
                          batch_size: int, fanouts: Sequence[int], replace: bool,
                          return_e_id: bool, shuffle: bool, drop_last: bool,
                          device: Union[str, torch.device, None], num_threads: Optional[int],
                          max_in_flight: Optional[int], seed: int,
                          pin_memory: Optional[bool], depth: int,
                          feature_cache: object, x_dtype: Optional[torch.dtype],
                          overlap_epochs: bool) -> Stage:
    """``salient_pipeline`` for one rank of a partitioned dataset."""
    from salient_pipes.distributed.fetch import FetchFeatures

    if feature_cache is not None:
        raise ValueError("a partitioned dataset's cache is chosen when it is loaded: "
                         "PartitionedDataset.load(path, cache=...)")
    if isinstance(split, str):
        (_, index), = iter_splits(dataset, [split])
        pad_to = dataset.max_split_size(split) if shuffle else 0
    else:
        index = as_node_ids("split", split, dataset.num_nodes)
        index = index[dataset.owner[index] == dataset.rank]
        pad_to = 0
        if shuffle and dataset.fetch_group is not None:  # the largest part's share
            size = torch.tensor([index.numel()])
            torch.distributed.all_reduce(size, torch.distributed.ReduceOp.MAX,
                                         group=dataset.fetch_group)
            pad_to = int(size)
    device = resolve_device(device)
    if pin_memory is None:
        pin_memory = device.type == "cuda"
    pipe = (
        NodeIndices(index)
        .shuffle_nodes(seed=seed, shuffle=shuffle, pad_to=pad_to)
        .batch_nodes(batch_size, drop_last=drop_last)
        .sample_neighbors(dataset, fanouts, replace=replace, num_threads=num_threads,
                          max_in_flight=max_in_flight, seed=seed, return_e_id=return_e_id,
                          overlap_epochs=overlap_epochs)
    )
    pipe = FetchFeatures(pipe, dataset, depth=depth, num_threads=num_threads)
    if pin_memory:
        pipe = pipe.pin_memory()
    return pipe.prefetch_to_device(device, x_dtype=x_dtype)
