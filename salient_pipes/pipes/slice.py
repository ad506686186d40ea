"""Stage: gather the features of a subgraph's nodes and the seeds' labels."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Optional, Union

from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import _native
from salient_pipes._checks import check_int
from salient_pipes.batch import HeteroBatch, PreparedBatch
from salient_pipes.data.features import FeatureCache, HeteroFeatureCache
from salient_pipes.pipes._arrays import as_buffer, as_index, from_buffer
from salient_pipes.pipes.base import Stage
from salient_pipes.pipes.pinned_pool import PinnedPool
from salient_pipes.pipes.sample import SampleNeighbors, default_num_threads
from salient_pipes.pipes.sample_hetero import SampleHeteroNeighbors


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


@functional_datapipe("slice_features")
class SliceFeatures(Stage):
    """Turns each :class:`SampledSubgraph` into a :class:`PreparedBatch`:
    ``x[n_id]`` and ``y[seeds]`` (``y`` optional). With ``x`` a dict of
    features per node type, fills each :class:`HeteroBatch`'s ``x`` (and
    ``y`` for the seeds).

    Directly after ``sample_neighbors`` the gather is fused into the sampling
    workers, as in SALIENT: each batch is sliced by the thread that sampled
    it, while its rows are still warm in that core's cache. After any other
    stage it gathers on ``num_threads`` native threads.

    With ``cache`` (a :class:`FeatureCache` of ``x``; a
    :class:`HeteroFeatureCache` for features per node type), rows are read
    from the cache when it holds them and from ``x`` (often a file)
    otherwise; ``pipeline_stats`` reports the epoch's hit rate.

    With ``pinned`` (a :class:`PinnedPool`; fused gather only), the workers
    place each whole batch (``x``, ``y``, ``n_id``, every hop; per node and
    edge type for a heterogeneous graph) in a page-locked slot, so
    ``pin_memory`` has nothing left to copy;
    ``prefetch_to_device`` hands each slot back once its copy to the device
    has completed. ``salient_pipeline`` sets this up on CUDA.

    Example:
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=200, seed=0)
        >>> pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(32)
        ...         .sample_neighbors(ds, [5, 5]).slice_features(ds.x, ds.y))
        >>> batch = next(iter(pipe)); batch.x.shape[0] == batch.n_id.numel()
        True
    """

    def __init__(self, source: IterDataPipe, x: Union[Tensor, Mapping[str, Tensor]],
                 y: Optional[Tensor] = None, num_threads: Optional[int] = None,
                 cache: Union[FeatureCache, HeteroFeatureCache, None] = None,
                 pinned: Optional[PinnedPool] = None) -> None:
        super().__init__(source)
        if pinned is not None and not isinstance(pinned, PinnedPool):
            raise ValueError(f"pinned must be a PinnedPool, got {type(pinned).__name__}")
        self.pinned_pool = pinned
        self.num_threads = default_num_threads() if num_threads is None else \
            check_int("num_threads", num_threads, minimum=1)
        self.hetero = isinstance(x, Mapping)
        if self.hetero:  # {node type: features} of a heterogeneous graph
            self._init_hetero(x, y, cache)
            return
        for name, value in (("x", x), ("y", y)):
            if value is not None and not isinstance(value, Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if x.dim() not in (1, 2) or x.device.type != "cpu":
            raise ValueError(f"x must be a 1-D or 2-D CPU tensor, got {x.dim()}-D on {x.device}")
        if y is not None and y.size(0) != x.size(0):
            raise ValueError(f"x has {x.size(0)} rows but y has {y.size(0)}")
        if isinstance(source, SampleNeighbors) and source.node_wise:
            raise ValueError("slice_features takes per-hop samples; node-wise samples "
                             "(node_wise=True) become PyG batches with to_pyg(data)")
        if pinned is not None and not self.fused:
            raise ValueError("pinned slots take the fused gather: put slice_features "
                             "directly after sample_neighbors")
        self.x, self.y = x.contiguous(), None if y is None else y.contiguous()
        if cache is not None and not isinstance(cache, FeatureCache):
            raise ValueError(f"cache must be a FeatureCache, got {type(cache).__name__}")
        if cache is not None and cache.slot.numel() != self.x.size(0):
            raise ValueError(f"cache holds rows of a table of {cache.slot.numel()} rows, "
                             f"x has {self.x.size(0)}")
        self.feature_cache = cache

    def _init_hetero(self, x: Mapping[str, Tensor], y: Optional[Tensor],
                     cache: Optional[Any]) -> None:
        for t, value in x.items():
            if not isinstance(value, Tensor) or value.dim() != 2 or value.device.type != "cpu":
                raise ValueError(f"x[{t!r}] must be a 2-D CPU tensor")
        if y is not None and not isinstance(y, Tensor):
            raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if cache is not None and not isinstance(cache, HeteroFeatureCache):
            raise ValueError("features per node type take a HeteroFeatureCache, got "
                             f"{type(cache).__name__}")
        for t, c in (cache or {}).items():
            if t not in x or c.slot.numel() != x[t].size(0):
                raise ValueError(f"the cache of node type {t!r} does not match x[{t!r}]")
        self.x, self.y, self.feature_cache = dict(x), y, cache
        if self.pinned_pool is not None and not self.fused:
            raise ValueError("pinned slots take the fused gather: put slice_features "
                             "directly after sample_neighbors (disjoint samples gather no "
                             "features)")

    @property
    def fused(self) -> bool:
        if self.hetero:
            return isinstance(self.source, SampleHeteroNeighbors) and not self.source.disjoint
        return isinstance(self.source, SampleNeighbors)

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        if self.hetero:
            yield from self._hetero()
            return
        if self.feature_cache is not None:
            self.feature_cache.reset_counts()
        if self.fused:
            yield from self._fused()
            return
        for sub in self.source:
            yield PreparedBatch(
                x=gather(self.x, sub.n_id, self.num_threads, self.feature_cache),
                y=None if self.y is None else gather(self.y, sub.n_id[: sub.batch_size]),
                adjs=sub.adjs, n_id=sub.n_id)

    def _fused(self) -> Iterator[Any]:
        """The sampling stage's batches with the rows gathered in its
        workers; with a pinned pool, slots whose copies completed are given
        back after each batch."""
        pool = self.pinned_pool
        for batch in self.source._prepared(self.x, self.y, self.feature_cache, pinned=pool):
            if pool is not None:
                pool.poll()
            yield batch

    def _hetero(self) -> Iterator[HeteroBatch]:
        cache = self.feature_cache
        if cache is not None:
            cache.reset_counts()
        if self.fused:
            yield from self._fused()
            return
        for b in self.source:
            if not isinstance(b, HeteroBatch):
                raise TypeError(f"slice_features with features per node type takes "
                                f"HeteroBatch items, got {type(b).__name__}")
            yield dataclasses.replace(
                b, x={t: gather(self.x[t], b.n_id[t], self.num_threads,
                                None if cache is None else cache.get(t))
                      for t in b.n_id if t in self.x},
                y=None if self.y is None else gather(self.y, b.n_id[b.input_type][:b.batch_size]))

    def __len__(self) -> int:
        return len(self.source)
