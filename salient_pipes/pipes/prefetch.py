"""Stage: copy batches to the device on a side stream, ahead of compute."""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Deque, Iterator, Optional, Tuple, Union

import torch
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes.base import Stage, close_iterator, upstream


@functional_datapipe("prefetch_to_device")
class PrefetchToDevice(Stage):
    """Moves batches to ``device``. On CUDA the copies of the next ``depth``
    batches are issued on a side stream with ``non_blocking=True`` while the
    model computes on the current one; a batch is handed over only after the
    current stream waits for its copy, and its tensors are recorded on the
    current stream so the allocator does not reuse them too early. Batches
    gathered into a :class:`PinnedPool` (``slice_features(pinned=...)``)
    have each copy's event recorded with their pool, which reuses a slot only
    after the event completes. On a CPU device batches pass through.

    ``x_dtype`` casts the features after the copy, on the device (and on
    the copy stream): fp16 rows cross the bus at half the bytes and reach a
    model that wants fp32 as fp32. Per node type for heterogeneous batches.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(4)).batch_nodes(2).prefetch_to_device("cpu")
        >>> len(list(pipe))
        2
    """

    def __init__(self, source: IterDataPipe, device: Union[str, torch.device],
                 depth: int = 1, x_dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(source)
        self.depth = check_int("depth", depth, minimum=1)
        if x_dtype is not None and not isinstance(x_dtype, torch.dtype):
            raise ValueError(f"x_dtype must be a torch.dtype, got {type(x_dtype).__name__}")
        self.x_dtype = x_dtype
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device} requested but CUDA is not available")

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        if self.device.type != "cuda":
            for item in self.source:
                yield self._cast(item.to(self.device) if self.device.type != "cpu" else item)
            return
        stream = torch.cuda.Stream(self.device)
        pools = [s.pinned_pool for s in upstream(self)
                 if getattr(s, "pinned_pool", None) is not None]
        items = iter(self.source)
        copies: Deque[Tuple[Any, torch.cuda.Event]] = deque()

        def issue() -> bool:
            try:
                item = next(items)
            except StopIteration:
                return False
            with torch.cuda.stream(stream):
                moved = self._cast(item.to(self.device, non_blocking=True))
                done = torch.cuda.Event()
                done.record(stream)
            for pool in pools:  # before `item` goes: its slots wait for the copy
                pool.record(item, done)
            copies.append((moved, done))
            return True

        try:
            while len(copies) < self.depth and issue():
                pass
            while copies:
                batch, done = copies.popleft()
                current = torch.cuda.current_stream(self.device)
                current.wait_event(done)
                if hasattr(batch, "record_stream"):
                    batch.record_stream(current)
                issue()  # the next copy overlaps the consumer's compute on `batch`
                yield batch
        finally:
            close_iterator(items)

    def _cast(self, batch: Any) -> Any:
        x = getattr(batch, "x", None)
        if self.x_dtype is None or x is None or not dataclasses.is_dataclass(batch):
            return batch
        if isinstance(x, dict):
            return dataclasses.replace(batch, x={t: v.to(self.x_dtype) for t, v in x.items()})
        return dataclasses.replace(batch, x=x.to(self.x_dtype))

    def __len__(self) -> int:
        return len(self.source)
