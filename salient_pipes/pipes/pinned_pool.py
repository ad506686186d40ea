"""Reusable page-locked buffers that the sampling workers place batches in.

Without them a batch is copied twice on the way to the GPU: the workers
write it to ordinary memory, then ``pin_memory`` copies it into page-locked
memory. With a :class:`PinnedPool` a worker places the whole batch in one of
the pool's page-locked slots (``x`` gathered at the slot's start, then
``y``, ``n_id`` and every hop), ``pin_memory`` has nothing to do, and
``prefetch_to_device`` moves the batch's region of the slot to the GPU in
one copy (:meth:`span_of`). A heterogeneous batch, with its arrays per node
and edge type, goes into one slot the same way.

A slot is lent to a batch and comes back only when both hold:

1. Python has dropped every array of the batch in the slot (the native side
   sees the last one go);
2. every device copy that reads it has completed: ``prefetch_to_device``
   records a CUDA event after issuing the copy, and the pool checks the
   events with ``query()`` before it reuses the slot.

So a slot is never rewritten while a copy may still read it. A batch that
finds no free slot large enough is gathered into ordinary memory as before
(a *miss*, counted); the pool never blocks the workers. Slots grow to the
largest batch seen.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes._checks import check_int


class SlotSpan(NamedTuple):
    """The region of a slot that holds a whole batch (:meth:`PinnedPool.span_of`)."""

    region: Tensor  # uint8 view of the slot's bytes, first to last array
    first: int  # address of its first byte
    slot: int


class PinnedPool:
    """``num_slots`` page-locked buffers, one batch each.

    ``pin`` defaults to whether CUDA is available; without it the slots are
    ordinary memory and the reuse protocol is the same (so it is tested on
    CPUs). ``slot_bytes`` sizes the first slots; by default they are made at
    the first batch's size (the first batches miss), then regrown to 1.25x
    the largest batch seen whenever a free slot is too small.

    Example:
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> pool = PinnedPool(num_slots=8, slot_bytes=1 << 20)
        >>> pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(64)
        ...         .sample_neighbors(ds, [5]).slice_features(ds.x, ds.y, pinned=pool))
        >>> in_slots = [pool.slot_of(batch.x) is not None for batch in pipe]
        >>> all(in_slots), pool.misses
        (True, 0)
    """

    def __init__(self, num_slots: int = 8, slot_bytes: int = 0, *,
                 pin: Optional[bool] = None, growth: float = 1.25) -> None:
        self.num_slots = check_int("num_slots", num_slots, minimum=1)
        slot_bytes = check_int("slot_bytes", slot_bytes, minimum=0)
        if growth < 1:
            raise ValueError(f"growth must be >= 1, got {growth}")
        self.pin = torch.cuda.is_available() if pin is None else bool(pin)
        self.growth = growth
        self.native = _native.PinnedSlots()
        self._memory: Dict[int, Tensor] = {}  # slot → its bytes
        self._starts: List[Tuple[int, int]] = []  # (first byte's address, slot), sorted
        self._events: Dict[int, List[Any]] = {}  # slot → copies that read it
        self._lock = threading.Lock()
        for _ in range(self.num_slots if slot_bytes else 0):
            self._add(slot_bytes)

    # ------------------------------------------------------------ slots
    def _add(self, nbytes: int) -> None:
        memory = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.pin)
        slot = self.native.add(memory.numpy())
        self._memory[slot] = memory
        bisect.insort(self._starts, (memory.data_ptr(), slot))

    def _remove(self, slot: int) -> None:
        if self.native.remove(slot):
            memory = self._memory.pop(slot)
            self._starts.remove((memory.data_ptr(), slot))

    def slot_of(self, tensor: Tensor) -> Optional[int]:
        """The slot that holds ``tensor``'s bytes, or ``None`` (not the pool's)."""
        if not tensor.numel():
            return None
        address = tensor.data_ptr()
        i = bisect.bisect_right(self._starts, (address, float("inf"))) - 1  # last start <= address
        if i < 0:
            return None
        start, slot = self._starts[i]
        end = address + tensor.numel() * tensor.element_size()
        return slot if end <= start + self._memory[slot].numel() else None

    def span_of(self, tensors: Sequence[Tensor]) -> Optional[SlotSpan]:
        """The one slot region that holds every non-empty tensor of
        ``tensors`` (a batch's arrays, which the workers place side by
        side); ``None`` if some are not in the pool, span several slots,
        are not contiguous or lie at an offset from the region's start that
        is not a multiple of their element size (the workers align each
        array to 64 bytes). One copy of ``region`` moves the whole batch."""
        lo, hi, slot = None, 0, None
        for t in tensors:
            if not t.numel():
                continue
            where = self.slot_of(t)
            if where is None or not t.is_contiguous() or (slot is not None and where != slot):
                return None
            slot = where
            address = t.data_ptr()
            lo = address if lo is None else min(lo, address)
            hi = max(hi, address + t.numel() * t.element_size())
        if slot is None or lo is None:
            return None
        if any(t.numel() and (t.data_ptr() - lo) % t.element_size() for t in tensors):
            return None  # an array the copy could not show as its dtype
        memory = self._memory[slot]
        start = memory.data_ptr()
        return SlotSpan(memory[lo - start:hi - start], lo, slot)

    @property
    def capacities(self) -> Dict[int, int]:
        return {slot: memory.numel() for slot, memory in self._memory.items()}

    # ----------------------------------------------------------- protocol
    def record(self, batch: Any, event: Any) -> None:
        """Ties the slots of ``batch``'s tensors to ``event`` (anything with
        ``query()``, such as a ``torch.cuda.Event`` recorded after the copy
        that reads them): they are not reused before it completes. Call it
        before dropping ``batch``; :meth:`poll` gives slots back."""
        tensors = batch.tensors() if hasattr(batch, "tensors") else [batch]
        with self._lock:
            slots = {self.slot_of(t) for t in tensors if isinstance(t, Tensor)}
            self._tie({s for s in slots if s is not None}, event)

    def tie(self, slots: Iterable[int], event: Any) -> None:
        """:meth:`record` for slots already known (a :class:`SlotSpan`'s)."""
        with self._lock:
            self._tie(slots, event)

    def _tie(self, slots: Iterable[int], event: Any) -> None:
        for slot in slots:
            self._events.setdefault(slot, []).append(event)

    def poll(self) -> int:
        """Gives back every retired slot whose recorded copies have all
        completed, regrows free slots that are too small and tops the pool
        up to ``num_slots``; returns how many slots came back."""
        given = 0
        with self._lock:
            for slot in self.native.in_state("retired"):
                events = self._events.get(slot, [])
                if all(e.query() for e in events):
                    self._events.pop(slot, None)
                    self.native.give(slot)
                    given += 1
            wanted = int(self.native.largest * self.growth)
            if wanted:
                for slot in self.native.in_state("free"):
                    if self._memory[slot].numel() < self.native.largest:
                        self._remove(slot)
                while len(self._memory) < self.num_slots:
                    self._add(wanted)
        return given

    # ------------------------------------------------------------- counts
    @property
    def hits(self) -> int:
        """Batches gathered into a slot."""
        return self.native.hits

    @property
    def misses(self) -> int:
        """Batches gathered into ordinary memory: no free slot was large enough."""
        return self.native.misses

    def __repr__(self) -> str:
        return (f"PinnedPool({len(self._memory)} slots, pinned={self.pin}, hits {self.hits}, "
                f"misses {self.misses})")


__all__ = ["PinnedPool", "SlotSpan"]
