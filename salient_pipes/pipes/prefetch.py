"""Stage: copy batches to the device on a side stream, ahead of compute."""

from __future__ import annotations

import dataclasses
import threading
from collections import deque
from typing import Any, Deque, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int, usable_device
from salient_pipes.pipes._handoff import run_ahead
from salient_pipes.pipes.base import Stage, close_iterator, upstream
from salient_pipes.pipes.device_features import DeviceFeatures
from salient_pipes.pipes.pinned_pool import PinnedPool, SlotSpan


def move_to_device(batch: Any, device: torch.device, pools: Sequence[PinnedPool] = (),
                   non_blocking: bool = True) -> Any:
    """``batch.to(device)``, in one copy when the batch lies in a slot of one
    of ``pools``: the workers place all of a batch's arrays side by side in
    its slot, so the slot's region that holds them is copied at once and the
    batch's tensors become views of the device copy at the same offsets.
    One copy costs the calling thread one launch instead of one per array.
    A batch with an array outside one slot region (and any other batch) is
    copied array by array.

    Example:
        >>> from salient_pipes.pipes.pinned_pool import PinnedPool
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=300, seed=0)
        >>> pool = PinnedPool(num_slots=4, slot_bytes=1 << 20, pin=False)
        >>> batch = next(iter(NodeIndices(ds.split_idx["train"]).batch_nodes(32)
        ...                   .sample_neighbors(ds, [5]).slice_features(ds.x, ds.y, pinned=pool)))
        >>> moved = move_to_device(batch, torch.device("cpu"), [pool])
        >>> bool((moved.x == batch.x).all()), moved.x.data_ptr() == batch.x.data_ptr()
        (True, False)
    """
    found = find_span(batch, pools)
    return move_span(batch, device, None if found is None else found[1], non_blocking)


def find_span(batch: Any, pools: Sequence[PinnedPool]) -> Optional[Tuple[PinnedPool, SlotSpan]]:
    """The pool and slot region that hold all of ``batch``'s arrays, if any."""
    if not pools or getattr(batch, "map_tensors", None) is None:
        return None
    tensors = batch.tensors()
    for pool in pools:
        span = pool.span_of(tensors)
        if span is not None:
            return pool, span
    return None


def move_span(batch: Any, device: torch.device, span: Optional[SlotSpan],
              non_blocking: bool = True) -> Any:
    """:func:`move_to_device` with the batch's slot region already found
    (``None``: array by array)."""
    if span is None:
        return batch.to(device, non_blocking=non_blocking)
    moved = span.region.to(device, non_blocking=non_blocking, copy=True)
    typed: Dict[torch.dtype, Tensor] = {}  # the copy, as each dtype of the batch

    def view(t: Tensor) -> Tensor:
        # span_of placed every non-empty array in the region, contiguous and
        # at a multiple of its element size from its start: one view op per
        # array (each torch op on this thread is a round trip of the GIL).
        if not t.numel():
            return t.to(device, non_blocking=non_blocking)
        size = t.element_size()
        base = typed.get(t.dtype)
        if base is None:
            base = typed[t.dtype] = moved[:moved.numel() // size * size].view(t.dtype)
        return base.as_strided(t.shape, t.stride(), (t.data_ptr() - span.first) // size)

    return batch.map_tensors(view)


@functional_datapipe("prefetch_to_device")
class PrefetchToDevice(Stage):
    """Moves batches to ``device``. On CUDA the copies of the next ``depth``
    batches are issued on a side stream with ``non_blocking=True`` while the
    model computes on the current one; a batch is handed over only after the
    current stream waits for its copy, and its tensors are recorded on the
    current stream so the allocator does not reuse them too early. With
    ``background`` (the default) a thread of the stage pulls the batches and
    issues their copies, so the training thread only waits on an event per
    batch; without it the training thread issues them itself. Batches
    gathered into a :class:`PinnedPool` (``slice_features(pinned=...)``)
    cross in one copy (see :func:`move_to_device`) and have the copy's event
    recorded with their pool, which reuses a slot only after the event
    completes. On a CPU device batches pass through.

    ``x_dtype`` casts the features after the copy, on the device (and on
    the copy stream): fp16 rows cross the bus at half the bytes and reach a
    model that wants fp32 as fp32. Per node type for heterogeneous batches.

    ``features`` (a :class:`DeviceFeatures`): batches come without ``x``
    and their rows are gathered from tables resident on the device, after
    the copy and on the copy stream.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(4)).batch_nodes(2).prefetch_to_device("cpu")
        >>> len(list(pipe))
        2
    """

    def __init__(self, source: IterDataPipe, device: Union[str, torch.device],
                 depth: int = 2, x_dtype: Optional[torch.dtype] = None,
                 background: bool = True,
                 features: Optional[DeviceFeatures] = None) -> None:
        super().__init__(source)
        if features is not None and not isinstance(features, DeviceFeatures):
            raise ValueError(f"features must be DeviceFeatures, got {type(features).__name__}")
        self.features = features
        self.depth = check_int("depth", depth, minimum=1)
        if x_dtype is not None and not isinstance(x_dtype, torch.dtype):
            raise ValueError(f"x_dtype must be a torch.dtype, got {type(x_dtype).__name__}")
        self.x_dtype = x_dtype
        self.background = bool(background)
        self.device = usable_device(device)
        self._stop_previous = threading.Event()

    def settings(self) -> str:
        return f"device='{self.device}'"

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        if self.device.type != "cuda":
            for item in self.source:
                yield self._cast(self._fill(item.to(self.device)
                                            if self.device.type != "cpu" else item))
            return
        stream = torch.cuda.Stream(self.device)
        pools = [s.pinned_pool for s in upstream(self)
                 if getattr(s, "pinned_pool", None) is not None]
        if self.background:
            # An earlier iteration abandoned without being closed stops issuing.
            self._stop_previous.set()
            stop = self._stop_previous = threading.Event()
            copies = run_ahead(lambda: self._issue_all(stream, pools), self.depth, stop,
                               "salient_pipes-prefetch")
        else:
            copies = self._issue_inline(stream, pools)
        try:
            for batch, done in copies:
                current = torch.cuda.current_stream(self.device)  # the consumer's, now
                current.wait_event(done)
                if hasattr(batch, "record_stream"):  # allocated on the copy stream
                    batch.record_stream(current)
                yield batch
        finally:
            close_iterator(copies)

    def _issue_all(self, stream: torch.cuda.Stream,
                   pools: Sequence[Any]) -> Iterator[Tuple[Any, torch.cuda.Event]]:
        """Each batch's copy, issued on ``stream`` when the batch is pulled."""
        items = iter(self.source)
        try:
            for item in items:
                found = find_span(item, pools)
                with torch.cuda.stream(stream):
                    moved = self._cast(self._fill(
                        move_span(item, self.device, None if found is None else found[1])))
                    done = torch.cuda.Event()
                    done.record(stream)
                # before `item` goes: its slots wait for the copy
                if found is not None:
                    pool, span = found
                    pool.tie([span.slot], done)
                else:  # arrays in no one region (rare): each one's slot, if any
                    for other in pools:
                        other.record(item, done)
                del item
                yield moved, done
        finally:
            close_iterator(items)

    def _issue_inline(self, stream: torch.cuda.Stream,
                      pools: Sequence[Any]) -> Iterator[Tuple[Any, torch.cuda.Event]]:
        """The copies issued on the consumer's thread, ``depth`` batches ahead:
        the next copies overlap the consumer's compute on the batch it has."""
        pending: Deque[Tuple[Any, torch.cuda.Event]] = deque()
        issued = self._issue_all(stream, pools)
        try:
            for copy in issued:
                pending.append(copy)
                if len(pending) > self.depth:
                    yield pending.popleft()
            while pending:
                yield pending.popleft()
        finally:
            close_iterator(issued)

    def _fill(self, batch: Any) -> Any:
        return batch if self.features is None else self.features.fill(batch)

    def _cast(self, batch: Any) -> Any:
        x = getattr(batch, "x", None)
        if self.x_dtype is None or x is None or not dataclasses.is_dataclass(batch):
            return batch
        item: Any = batch  # a batch instance (mypy also allows a dataclass type here)
        if isinstance(x, dict):
            return dataclasses.replace(item, x={t: v.to(self.x_dtype) for t, v in x.items()})
        return dataclasses.replace(item, x=x.to(self.x_dtype))

    def __len__(self) -> int:
        return len(self.source)
