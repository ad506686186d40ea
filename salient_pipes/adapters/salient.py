"""SALIENT's tutorial API, built on our stages.

Code written for SALIENT's ``fast_trainer`` runs with its imports replaced::

    from salient_pipes.adapters.salient import *
    # FastDataset, FastSamplerConfig, FastSampler, Shuffler, DevicePrefetcher,
    # PreparedBatch, Timer, test, train, ...

Differences: the sampler's first argument is its thread count as before,
but sampling is deterministic per (seed, epoch, batch); ``DevicePrefetcher``
accepts CPU devices (then it is a pass-through), so the tutorial also runs
without a GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from salient_pipes.batch import PreparedBatch
from salient_pipes.data import FastDataset
from salient_pipes.pipes import NodeIndices, ShuffleNodes, Stage
from salient_pipes.train import EpochResult, train_epoch

TrainCore = Callable[[torch.nn.Module, PreparedBatch], Any]
TrainCallback = Callable[[List[PreparedBatch], List[Any]], None]
TestCallback = Callable[[PreparedBatch], None]
DeviceIterator = Iterable[Tuple[PreparedBatch, ...]]


@dataclass
class FastSamplerConfig:
    """What to sample: the graph, features, labels, seeds and fanouts.

    ``y`` may be ``[N]`` or ``[N, 1]`` (the tutorial passes
    ``dataset.y.unsqueeze(-1)``); batches always carry ``y`` of shape ``[B]``.

    Example:
        >>> ds = FastDataset.synthetic(num_nodes=300, seed=0)
        >>> cfg = FastSamplerConfig(x=ds.x, y=ds.y.unsqueeze(-1), rowptr=ds.rowptr, col=ds.col,
        ...                         idx=ds.split_idx["train"], batch_size=64, sizes=[5, 5])
    """

    x: Tensor
    y: Tensor
    rowptr: Tensor
    col: Tensor
    idx: Tensor
    batch_size: int
    sizes: Sequence[int]
    skip_nonfull_batch: bool = False
    pin_memory: bool = False
    seed: int = 0
    replace: bool = False
    graph: Any = field(default=None, repr=False)


class FastSampler:
    """Iterates ``PreparedBatch``es of ``cfg.idx`` in order (shuffle it with
    :class:`Shuffler`), sampled on ``num_threads`` native threads with at most
    ``max_items_in_queue`` batches prepared ahead.

    Example:
        >>> ds = FastDataset.synthetic(num_nodes=300, seed=0)
        >>> cfg = FastSamplerConfig(x=ds.x, y=ds.y, rowptr=ds.rowptr, col=ds.col,
        ...                         idx=ds.split_idx["train"], batch_size=64, sizes=[5, 5])
        >>> loader = FastSampler(2, 4, cfg)
        >>> sum(b.batch_size for b in loader) == cfg.idx.numel()
        True
    """

    def __init__(self, num_threads: int, max_items_in_queue: int, cfg: FastSamplerConfig) -> None:
        self.cfg = cfg
        self.idx = cfg.idx
        self.num_threads = num_threads
        self.max_items_in_queue = max_items_in_queue
        self._y = cfg.y.reshape(-1)
        self._epoch = 0
        self._graph = cfg.graph if cfg.graph is not None else (cfg.rowptr, cfg.col)

    def _pipe(self) -> Stage:
        pipe = (NodeIndices(self.idx)
                .batch_nodes(self.cfg.batch_size, drop_last=self.cfg.skip_nonfull_batch)
                .sample_neighbors(self._graph, self.cfg.sizes, replace=self.cfg.replace,
                                  num_threads=self.num_threads,
                                  max_in_flight=self.max_items_in_queue, seed=self.cfg.seed)
                .slice_features(self.cfg.x, self._y))
        # Build the native graph once, however often the index changes.
        self._graph = pipe.source.graph
        if self.cfg.pin_memory and torch.cuda.is_available():
            pipe = pipe.pin_memory()
        pipe.set_epoch(self._epoch)
        self._epoch += 1
        return pipe

    def __iter__(self) -> Iterator[PreparedBatch]:
        return iter(self._pipe())

    def __len__(self) -> int:
        n = self.idx.numel()
        bs = self.cfg.batch_size
        return n // bs if self.cfg.skip_nonfull_batch else -(-n // bs)


class Shuffler:
    """A permutation of ``idx`` per epoch, seeded by ``(seed, epoch)``.

    Example:
        >>> s = Shuffler(torch.arange(5)); s.set_epoch(1)
        >>> sorted(s.get_idx().tolist())
        [0, 1, 2, 3, 4]
    """

    def __init__(self, idx: Tensor, seed: int = 0) -> None:
        self._stage = ShuffleNodes(NodeIndices(idx), seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self._stage.set_epoch(epoch)

    def get_idx(self) -> Tensor:
        idx = next(iter(self._stage))
        self._stage.set_epoch(self._stage.epoch)  # get_idx is repeatable within an epoch
        return idx


class DevicePrefetcher:
    """Moves the batches of ``it`` to ``devices[0]`` one batch ahead (on a
    side CUDA stream for a GPU) and yields them as 1-tuples, as SALIENT's
    does. A CPU device passes batches through.
    """

    def __init__(self, devices: Sequence[Any], it: Iterable[PreparedBatch]) -> None:
        if len(devices) != 1:
            raise ValueError("DevicePrefetcher drives exactly one device per process")
        self.devices = [torch.device(d) for d in devices]
        self._it = it

    def __iter__(self) -> Iterator[Tuple[PreparedBatch]]:
        from salient_pipes.pipes import PrefetchToDevice

        for batch in PrefetchToDevice(_Iterable(self._it), self.devices[0]):
            yield (batch,)


class _Iterable(torch.utils.data.IterDataPipe):
    def __init__(self, it: Iterable[Any]) -> None:
        self.it = it

    def __iter__(self) -> Iterator[Any]:
        return iter(self.it)


class Timer:
    """Prints how long its block took, as ``(name) took X sec``.

    Example:
        >>> with Timer(("valid", "Compute")) as t:
        ...     seconds = t.stop()
        ('valid', 'Compute') took ... sec
        >>> seconds >= 0
        True
    """

    def __init__(self, name: Any, fn: Callable[[str], None] = print) -> None:
        self.name, self.fn = name, fn
        self.seconds: Optional[float] = None

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def stop(self) -> float:
        if self.seconds is None:
            self.seconds = time.perf_counter() - self._start
            self.fn(f"{self.name} took {self.seconds:.9f} sec")
        return self.seconds

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@torch.no_grad()
def _batchwise_test(model: torch.nn.Module, num_batches: int, devit: DeviceIterator,
                    cb: Optional[TestCallback] = None) -> Tuple[int, int]:
    """(correct, total) over ``devit``; counts stay on the device until the end."""
    model.eval()
    correct: Optional[Tensor] = None
    total = 0
    for (inp,) in devit:
        pred = model(inp.x, inp.adjs).argmax(dim=-1).reshape(-1)
        hits = (pred == inp.y).sum()
        correct = hits if correct is None else correct + hits
        total += inp.batch_size
        if cb is not None:
            cb(inp)
    return (0 if correct is None else int(correct.item())), total


def _train(model: torch.nn.Module, devit: DeviceIterator, optimizer: torch.optim.Optimizer,
           **kwargs: Any) -> EpochResult:
    return train_epoch(model, (inp for (inp,) in devit), optimizer, **kwargs)


test = SimpleNamespace(batchwise_test=_batchwise_test)
train = SimpleNamespace(train_epoch=_train)

__all__ = [
    "DeviceIterator",
    "DevicePrefetcher",
    "FastDataset",
    "FastSampler",
    "FastSamplerConfig",
    "Optional",
    "PreparedBatch",
    "Shuffler",
    "TestCallback",
    "Timer",
    "TrainCallback",
    "TrainCore",
    "test",
    "train",
]
