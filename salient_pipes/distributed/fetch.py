"""Stage: the features of a partitioned dataset's batches, fetched from
their owners (:mod:`salient_pipes.distributed.exchange`) on a background
thread ahead of the consumer."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.batch import PreparedBatch
from salient_pipes.distributed.dataset import PartitionedDataset
from salient_pipes.distributed.exchange import FeatureExchange, FetchStats
from salient_pipes.pipes import Stage, default_num_threads
from salient_pipes.pipes._handoff import DONE, Failure, drain, offer, start_background


@functional_datapipe("fetch_features")
class FetchFeatures(Stage):
    """Turns each :class:`SampledSubgraph` of a :class:`PartitionedDataset`
    into a :class:`PreparedBatch`: ``x[n_id]`` from this rank's rows, its
    cache of remote rows and the other ranks, ``y`` for the seeds (which
    this rank owns).

    A background thread runs the exchange up to ``depth`` batches ahead of
    the consumer, so fetching batch i+1 overlaps training on batch i. Every
    rank must iterate the stage once per epoch; the exchange runs in lock
    step (see the module docstring). ``fetch_stats`` reports the epoch's
    rows by source and the bytes received.

    Example:
        >>> import tempfile
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.distributed import PartitionedDataset, partition
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> out = partition(ds, 1, tempfile.mkdtemp() + "/p", method="random", progress=False)
        >>> part = PartitionedDataset.load(out, rank=0)
        >>> pipe = (NodeIndices(part.split_idx["train"]).batch_nodes(64)
        ...         .sample_neighbors(part, [5, 5]).fetch_features(part))
        >>> batch = next(iter(pipe))
        >>> bool((batch.x == ds.x[batch.n_id]).all())
        True
    """

    def __init__(self, source: IterDataPipe, dataset: PartitionedDataset, depth: int = 2,
                 num_threads: Optional[int] = None) -> None:
        super().__init__(source)
        if not isinstance(dataset, PartitionedDataset):
            raise TypeError(f"fetch_features takes a PartitionedDataset, got "
                            f"{type(dataset).__name__}")
        self.dataset = dataset
        self.depth = check_int("depth", depth, minimum=1)
        num_threads = default_num_threads() if num_threads is None else \
            check_int("num_threads", num_threads, minimum=1)
        self.exchange = FeatureExchange(dataset, num_threads)
        self.fetch_stats = FetchStats()
        self._worker: Optional[threading.Thread] = None

    def extra_stats(self) -> dict:
        return self.fetch_stats.as_dict()

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[PreparedBatch]:
        if self._worker is not None:  # the last epoch's exchange, serving other ranks
            self._worker.join()
        self.fetch_stats = stats = FetchStats()
        items: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        self._worker = start_background(lambda: self._work(items, stop, stats), stop,
                                        "salient_pipes-fetch")
        try:
            yield from drain(items)
            self._worker.join()
        finally:
            stop.set()  # stopped early: the worker answers the others until all are done

    def _work(self, items: queue.Queue, stop: threading.Event, stats: FetchStats) -> None:
        source = iter(self.source)
        active = True
        try:
            while True:
                sub = next(source, None) if active and not stop.is_set() else None
                if sub is None and active:
                    active = False
                    close = getattr(source, "close", None)
                    if close is not None:
                        close()
                n_id = sub.n_id if sub is not None else torch.empty(0, dtype=torch.int64)
                y = None if sub is None else self._labels(sub)
                x, anyone = self.exchange.step(n_id, active, stats)
                if sub is not None:
                    offer(items, PreparedBatch(x=x, y=y, adjs=sub.adjs, n_id=sub.n_id), stop)
                if not anyone:
                    break
            offer(items, DONE, stop)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(items, Failure(exc), stop)

    def _labels(self, sub: Any) -> Tensor:
        ds = self.dataset
        seeds = sub.n_id[: sub.batch_size]
        if bool((ds.owner[seeds] != ds.rank).any()):
            raise ValueError(f"rank {ds.rank} got seeds owned by other ranks: seed each "
                             "rank with its own part's nodes (dataset.split_idx)")
        return ds.y[ds.local[seeds].to(torch.int64)]

    def __len__(self) -> int:
        return len(self.source)


__all__ = ["FetchFeatures"]
