"""What every stage shares: epochs, resumable positions and wait times."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional

from torch.utils.data import IterDataPipe, get_worker_info

from salient_pipes._checks import check_int

WORKER_PROCESS_ERROR = (
    "salient_pipes pipes cannot run in DataLoader worker processes (num_workers > 0): "
    "they already sample and gather on native threads, and each worker would repeat "
    "the whole epoch. Use DataLoader(pipe, batch_size=None) with num_workers=0, and set "
    "the pipe's num_threads for more parallelism.")


@dataclass
class StageStats:
    """How long the consumer of a stage waited for its items, this epoch.

    ``wait_s`` includes the time the stage itself waited on its upstream;
    :func:`pipeline_stats` also reports the stage's own share.
    """

    items: int = 0
    wait_s: float = 0.0


def close_iterator(items: Iterator[Any]) -> None:
    """Closes a generator (running its cleanup now); other iterators are left alone."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def upstream(pipe: IterDataPipe) -> List[IterDataPipe]:
    """The chain from ``pipe`` back to its source, ``pipe`` first. Follows
    our stages' ``source`` and torch DataPipes' ``datapipe`` attributes."""
    chain = []
    node: Optional[IterDataPipe] = pipe
    while isinstance(node, IterDataPipe):
        chain.append(node)
        above = getattr(node, "source", None)  # not `or`: a pipe's truth is its length
        node = getattr(node, "datapipe", None) if above is None else above
    return chain


class Stage(IterDataPipe):
    """Base of every salient_pipes stage.

    A stage reads ``self.source`` (a source stage has none) and implements
    ``_generate(epoch)``. Each new iteration is the next epoch unless
    :meth:`set_epoch` named one. ``set_epoch`` and :meth:`load_state_dict`
    reach every stage of the chain up to the source, through user stages
    too, so one call on the last stage steers the whole chain.
    """

    # torch checks this attribute on every item of every stage (iterator
    # validity). Missing, the lookup falls through IterDataPipe.__getattr__,
    # which builds and raises an AttributeError each time: about half of a
    # stage's cost per item.
    _is_child_datapipe = False
    source: IterDataPipe

    def __init__(self, source: Optional[IterDataPipe] = None) -> None:
        if source is not None:
            self.source = source
        self.stats = StageStats()
        self._epoch = 0
        self._epoch_fixed = False
        self._started = False
        self._start = 0  # first batch of the next iteration (resume)
        self._delivered = 0  # batches of the current epoch handed on so far

    # --------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration epoch ``epoch``, here and upstream."""
        epoch = check_int("epoch", epoch, minimum=0)
        for stage in self._chain():
            stage._epoch, stage._epoch_fixed = epoch, True

    @property
    def epoch(self) -> int:
        """The epoch of the current iteration (between epochs: the last one)."""
        return self._epoch

    # -------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        """The epoch and how many of its batches this stage has delivered.

        Example:
            >>> from salient_pipes.pipes import NodeIndices
            >>> pipe = NodeIndices(torch.arange(10)).batch_nodes(4)
            >>> it = iter(pipe); _ = next(it)
            >>> pipe.state_dict()
            {'epoch': 0, 'batches_done': 1}
        """
        return {"epoch": self._epoch, "batches_done": self._delivered}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Makes the next iteration continue ``state``'s epoch after its
        ``batches_done`` batches, yielding exactly what the uninterrupted
        epoch would have yielded from there on. A state that cannot be this
        pipe's (other keys, more batches than its epoch has) is a
        ``ValueError``."""
        if not isinstance(state, Mapping) or not {"epoch", "batches_done"} <= state.keys():
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError("state must be what state_dict() returns, a dict with 'epoch' and "
                             f"'batches_done'; got {got}")
        batches_done = check_int("batches_done", state["batches_done"], minimum=0)
        try:
            batches = len(self)
        except TypeError:  # a pipe without a length: nothing to compare with
            batches = batches_done
        if batches_done > batches:
            raise ValueError(f"batches_done={batches_done} is past the {batches} batches of this "
                             "pipe's epoch: the state comes from a pipe of other settings (batch "
                             "size, split, ranks)")
        self.set_epoch(check_int("epoch", state["epoch"], minimum=0))
        for stage in self._chain():
            stage._start = batches_done

    def _chain(self) -> List[Stage]:
        return [s for s in upstream(self) if isinstance(s, Stage)]

    # ---------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Any]:
        return self._run({})

    def _run(self, options: Dict[str, Any]) -> Iterator[Any]:
        # A generator: the epoch advances at the first next(), not at iter(),
        # so an iterator that is created but never read (tqdm.auto makes one)
        # does not count as an epoch.
        if get_worker_info() is not None:
            raise RuntimeError(WORKER_PROCESS_ERROR)
        if self._started and not self._epoch_fixed:
            self._epoch += 1
        self._started, self._epoch_fixed = True, False
        start, self._start = self._start, 0
        self.stats = stats = StageStats()
        self._delivered = start
        items = self._generate(self._epoch, start, **options)
        # Held locally: a pipe still alive when the interpreter exits is
        # closed after module globals may have been cleared.
        close = close_iterator
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                stats.wait_s += time.perf_counter() - t0
                stats.items += 1
                self._delivered += 1
                yield item
        finally:
            close(items)

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        """Yields the items of ``epoch``, beginning with batch ``start``."""
        raise NotImplementedError

    def extra_stats(self) -> Dict[str, Any]:
        """What :func:`pipeline_stats` reports of this stage beyond its wait
        times (a feature cache's hit rate, a fetch's rows by source)."""
        return {}

    def settings(self) -> str:
        """The stage's main settings, as its part of the chain's ``repr``
        (none by default)."""
        return ""

    def __repr__(self) -> str:
        """The chain up to this stage, source first: printing a pipeline
        shows what it is made of.

        Example:
            >>> from salient_pipes.pipes import NodeIndices
            >>> print(NodeIndices(torch.arange(10)).shuffle_nodes(seed=1).batch_nodes(4))
            NodeIndices(10 nodes) -> ShuffleNodes(seed=1) -> BatchNodes(batch_size=4)
        """
        return " -> ".join(_described(stage) for stage in reversed(upstream(self)))

    __str__ = __repr__  # IterDataPipe prints its class name alone


def _described(stage: IterDataPipe) -> str:
    settings = stage.settings() if isinstance(stage, Stage) else ""
    return f"{type(stage).__name__}({settings})" if settings else type(stage).__name__


def pipeline_stats(pipe: IterDataPipe) -> List[Dict[str, Any]]:
    """Per stage of ``pipe``'s chain (source first): items delivered in the
    last epoch, seconds its consumer waited on it (``wait_s``) and the part of
    that spent in the stage itself rather than upstream (``self_s``); and
    what the stage's :meth:`Stage.extra_stats` reports (the hit rate of a
    feature cache this epoch, ``cache_hit_rate``, or of a device cache,
    ``device_cache_hit_rate``; the feature fetch of a partitioned dataset:
    rows by source, bytes fetched; the reads of out-of-core features).

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(10)).batch_nodes(4)
        >>> _ = list(pipe)
        >>> [s["stage"] for s in pipeline_stats(pipe)]
        ['NodeIndices', 'BatchNodes']
    """
    rows = []
    below = 0.0
    for stage in reversed(upstream(pipe)):
        stats = getattr(stage, "stats", None)
        if not isinstance(stats, StageStats):
            continue
        rows.append({"stage": type(stage).__name__, "items": stats.items,
                     "wait_s": stats.wait_s, "self_s": max(0.0, stats.wait_s - below)})
        if isinstance(stage, Stage):
            rows[-1].update(stage.extra_stats())
        below = stats.wait_s
    return rows
