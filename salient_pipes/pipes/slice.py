"""Stage: gather the features of a subgraph's nodes and the seeds' labels."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterator, Mapping, Optional, Union

from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import _native
from salient_pipes._checks import check_int
from salient_pipes.batch import NODE_TYPE, NodeWiseBatch, PreparedBatch, SampledSubgraph
from salient_pipes.data.feature_cache import FeatureCache, FeatureCaches
from salient_pipes.pipes._arrays import as_buffer, as_index, from_buffer
from salient_pipes.pipes.base import Stage
from salient_pipes.pipes.lookahead import LookAhead
from salient_pipes.pipes.pinned_pool import PinnedPool
from salient_pipes.pipes.sample import SampleNeighbors, default_num_threads

Features = Union[Tensor, Mapping[str, Tensor]]


def gather(src: Tensor, index: Tensor, num_threads: int = 1,
           cache: Optional[FeatureCache] = None) -> Tensor:
    """``src[index]`` for a CPU tensor of any dtype, copied row by row by the
    native core on ``num_threads`` threads, through ``cache`` (a
    :class:`FeatureCache` of ``src``) when given.

    Example:
        >>> gather(torch.arange(6.).view(3, 2), torch.tensor([2, 0])).tolist()
        [[4.0, 5.0], [0.0, 1.0]]
    """
    if not isinstance(src, Tensor):
        raise ValueError(f"src must be a torch.Tensor, got {type(src).__name__}")
    num_threads = check_int("num_threads", num_threads, minimum=1)
    out = _native.gather(as_buffer(src), as_index(index), num_threads,
                         None if cache is None else cache.native)
    return from_buffer(out, src.dtype)


def _per_type(value: Any) -> Dict[str, Any]:
    """A mapping per node type as it is; a single value for a graph of one
    type (keyed by :data:`~salient_pipes.batch.NODE_TYPE`)."""
    return dict(value) if isinstance(value, Mapping) else {NODE_TYPE: value}


@functional_datapipe("slice_features")
class SliceFeatures(Stage):
    """Gathers each batch's features and its seeds' labels: a
    :class:`SampledSubgraph` (per-hop) becomes a :class:`PreparedBatch` with
    ``x[n_id]`` and ``y[seeds]``; a :class:`NodeWiseBatch` gets ``x`` per
    node type filled (and ``y`` for its seeds).

    Directly after ``sample_neighbors`` the gather is fused into the sampling
    workers, as in SALIENT: each batch is sliced by the thread that sampled
    it, while its rows are still warm in that core's cache
    (:meth:`SampleNeighbors.with_features`). After any other stage it
    gathers on ``num_threads`` native threads.

    Args:
        source: yields :class:`SampledSubgraph` or :class:`NodeWiseBatch`.
        x: features: a tensor (a graph of one node type) or a dict per node type.
        y: labels of the seeds' node type, or ``None``.
        num_threads: native threads of the unfused gather.
        cache: a :class:`~salient_pipes.data.FeatureCache` of ``x`` (one per
            node type: :class:`~salient_pipes.data.FeatureCaches`): rows are
            read from it when it holds them and from ``x`` (often a file)
            otherwise; :func:`pipeline_stats` reports the epoch's hit rate.
            A cache whose rows are on the device (``FeatureCache.held_on``)
            leaves its rows out: ``x`` holds the other rows, in order, and
            the prefetch stage's ``DeviceFeatures`` completes it.
        pinned: a :class:`PinnedPool` (fused gather only): the workers place
            each whole batch in a page-locked slot, so ``pin_memory`` has
            nothing left to copy; ``prefetch_to_device`` hands each slot
            back once its copy to the device has completed.
            ``salient_pipeline`` sets this up on CUDA.
        lookahead: read ``x`` from disk a window of batches ahead
            (:class:`~salient_pipes.pipes.lookahead.LookAhead`): features
            larger than memory at disk speed. The batches are the same;
            :func:`pipeline_stats` reports the reads.

    Example:
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=200, seed=0)
        >>> pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(32)
        ...         .sample_neighbors(ds, [5, 5]).slice_features(ds.x, ds.y))
        >>> batch = next(iter(pipe)); batch.x.shape[0] == batch.n_id.numel()
        True
    """

    def __init__(self, source: IterDataPipe, x: Features, y: Optional[Tensor] = None,
                 num_threads: Optional[int] = None,
                 cache: Union[FeatureCache, FeatureCaches, None] = None,
                 pinned: Optional[PinnedPool] = None,
                 lookahead: Optional[LookAhead] = None) -> None:
        super().__init__(source)
        if pinned is not None and not isinstance(pinned, PinnedPool):
            raise ValueError(f"pinned must be a PinnedPool, got {type(pinned).__name__}")
        self.pinned_pool = pinned
        self.num_threads = default_num_threads() if num_threads is None else \
            check_int("num_threads", num_threads, minimum=1)
        self.x = _per_type(x)
        for t, value in self.x.items():
            where = "x" if t == NODE_TYPE else f"x[{t!r}]"
            if not isinstance(value, Tensor):
                raise ValueError(f"{where} must be a torch.Tensor, got {type(value).__name__}")
            if value.dim() not in (1, 2) or value.device.type != "cpu":
                raise ValueError(f"{where} must be a 1-D or 2-D CPU tensor, got "
                                 f"{value.dim()}-D on {value.device}")
            self.x[t] = value.contiguous()
        if y is not None and not isinstance(y, Tensor):
            raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
        self.y = None if y is None else y.contiguous()
        if self.y is not None and NODE_TYPE in self.x and \
                self.y.size(0) != self.x[NODE_TYPE].size(0):
            raise ValueError(f"x has {self.x[NODE_TYPE].size(0)} rows but y has "
                             f"{self.y.size(0)}")
        self.feature_cache = None if cache is None else self._check_cache(cache)
        if isinstance(source, SampleNeighbors) and not isinstance(x, Mapping) and \
                not source.schema.single_type:
            raise ValueError("features of a graph with several node types are a dict per "
                             "node type")
        if lookahead is not None:
            if not isinstance(lookahead, LookAhead):
                raise ValueError(f"lookahead must be a LookAhead, got {type(lookahead).__name__}")
            if cache is not None or pinned is not None:
                raise ValueError("lookahead reads each window's rows from disk itself: it takes "
                                 "no cache and no pinned slots (its budget is the memory)")
            lookahead.check(self.x)
        self.lookahead = lookahead
        if pinned is not None and not self.fused:
            raise ValueError("pinned slots take the fused gather: put slice_features directly "
                             "after sample_neighbors (disjoint samples gather no features)")

    def _check_cache(self, cache: Any) -> FeatureCaches:
        if not isinstance(cache, Mapping) and NODE_TYPE not in self.x:
            raise ValueError("features per node type take a cache per node type "
                             f"(FeatureCaches), got {type(cache).__name__}")
        caches = _per_type(cache)
        for t, c in caches.items():
            if not isinstance(c, FeatureCache):
                raise ValueError(f"cache must be a FeatureCache (per node type: FeatureCaches), "
                                 f"got {type(c).__name__}")
            if t not in self.x or c.slot.numel() != self.x[t].size(0):
                rows = self.x[t].size(0) if t in self.x else 0
                raise ValueError(f"cache holds rows of a table of {c.slot.numel()} rows, "
                                 f"x{'' if t == NODE_TYPE else f'[{t!r}]'} has {rows}")
        return cache if isinstance(cache, FeatureCaches) else FeatureCaches(caches)

    @property
    def fused(self) -> bool:
        """Whether the sampling workers gather (the stage right after sampling)."""
        return isinstance(self.source, SampleNeighbors) and not self.source.disjoint

    def extra_stats(self) -> Dict[str, Any]:
        if self.lookahead is not None:
            return self.lookahead.stats()
        if self.feature_cache is None:
            return {}
        # a cache whose rows are on the device: the rows that did not cross
        held = any(c.elsewhere for c in self.feature_cache.values())
        return {"device_cache_hit_rate" if held else "cache_hit_rate":
                self.feature_cache.hit_rate}

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        if self.feature_cache is not None:
            self.feature_cache.reset_counts()
        if self.lookahead is not None:
            self.lookahead.reset_counts()
            # the rows of x are read a window ahead; the rest as always
            items = self.source.with_features({}, self.y) if self.fused else \
                (self._gather(item, with_x=False) for item in self.source)
            yield from self.lookahead.run(items, self.x)
            return
        if self.fused:
            pool = self.pinned_pool
            for batch in self.source.with_features(self.x, self.y, self.feature_cache,
                                                   pinned=pool):
                if pool is not None:
                    pool.poll()  # slots whose copies completed come back
                yield batch
            return
        for item in self.source:
            yield self._gather(item, with_x=bool(self.x))

    def _gather(self, item: Any, with_x: bool = True) -> Any:
        caches: Mapping[str, FeatureCache] = self.feature_cache or {}
        if isinstance(item, SampledSubgraph):
            x = self.x[NODE_TYPE] if NODE_TYPE in self.x else next(iter(self.x.values()))
            return PreparedBatch(
                x=gather(x, item.n_id, self.num_threads, caches.get(NODE_TYPE)) if with_x
                else None,
                y=None if self.y is None else gather(self.y, item.n_id[: item.batch_size]),
                adjs=item.adjs, n_id=item.n_id)
        if isinstance(item, NodeWiseBatch):
            seeds = item.n_id[item.input_type][: item.batch_size]
            return dataclasses.replace(
                item, x={t: gather(self.x[t], ids, self.num_threads, caches.get(t))
                         for t, ids in item.n_id.items() if t in self.x and with_x},
                y=None if self.y is None else gather(self.y, seeds))
        raise TypeError(f"slice_features takes SampledSubgraph or NodeWiseBatch items, got "
                        f"{type(item).__name__}")

    def __len__(self) -> int:
        return len(self.source)
