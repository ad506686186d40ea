"""One-copy pinned batches: the slot protocol (free → lent → retired → free
after the copies' events), its failure paths, and the stages that use it.
The protocol runs the same on ordinary memory, so it is tested on CPUs with
fake events; the CUDA test runs where a GPU is."""

from __future__ import annotations

import dataclasses
import gc
import types
import weakref

import numpy as np
import pytest
import torch

from salient_pipes import FastDataset, _native, salient_pipeline
from salient_pipes.pipes import NodeIndices, PinnedPool
from salient_pipes.pipes.base import Stage
from tests.conftest import per_hop


class FakeEvent:
    """Stands in for a CUDA event: complete when the test says so."""

    def __init__(self) -> None:
        self.done = False

    def query(self) -> bool:
        return self.done


def _dataset() -> FastDataset:
    return FastDataset.synthetic(num_nodes=600, num_features=8, seed=2)


def _session(ds, pool, threads=1):
    return _native.Session(ds.graph, [4, 3], seed=1, x=ds.x.numpy(), num_threads=threads,
                           pinned=pool.native)


def _next_x(session, ds, position, seeds=None):
    seeds = ds.split_idx["train"][position * 20:(position + 1) * 20] if seeds is None else seeds
    session.submit(seeds.numpy(), 0, position)
    n_id, _, x, _ = per_hop(session.next())
    # n_id copied out of the slot, so that x alone holds it (the hops are dropped)
    return torch.from_numpy(n_id).clone(), torch.from_numpy(x)


def test_the_whole_batch_lies_in_one_slot_and_any_array_holds_it():
    ds = _dataset()
    pool = PinnedPool(num_slots=2, slot_bytes=1 << 20, pin=False)
    kwargs = dict(seed=1, x=ds.x.numpy(), y=ds.y.numpy(), return_e_id=True, num_threads=1)
    pinned = _native.Session(ds.graph, [4, 3], pinned=pool.native, **kwargs)
    plain = _native.Session(ds.graph, [4, 3], **kwargs)
    seeds = ds.split_idx["train"][:20].numpy()
    for session in (pinned, plain):
        session.submit(seeds, 0, 0)
    got, want = per_hop(pinned.next()), per_hop(plain.next())
    arrays = [got[0], got[2], got[3]] + [a for hop in got[1] for a in hop[:2]]
    expected = [want[0], want[2], want[3]] + [a for hop in want[1] for a in hop[:2]]
    for a, b in zip(arrays, expected):
        np.testing.assert_array_equal(a, b)
    slot = pool.slot_of(torch.from_numpy(got[2]))
    memory = pool._memory[slot]
    start, end = memory.data_ptr(), memory.data_ptr() + memory.numel()
    for a in arrays:  # every array inside the slot, 64-byte aligned
        assert start <= a.ctypes.data and a.ctypes.data + a.nbytes <= end
        assert (a.ctypes.data - start) % 64 == 0
        assert a.size == 0 or pool.slot_of(torch.from_numpy(a)) == slot
    assert pool.slot_of(memory[-4:]) == slot and pool.slot_of(torch.zeros(4)) is None
    assert pool.hits == 1 and pool.misses == 0
    edge_index = got[1][0][0]  # the last array held: the slot stays lent
    del got, arrays, a
    gc.collect()
    assert pool.native.in_state("lent") == [slot]
    del edge_index
    gc.collect()
    assert pool.native.in_state("retired") == [slot]


@pytest.mark.parametrize("tie", ["record", "tie"])
def test_slots_cycle_only_after_python_drops_the_batch_and_its_copy_completes(tie):
    ds = _dataset()
    pool = PinnedPool(num_slots=2, slot_bytes=1 << 20, pin=False)
    session = _session(ds, pool)
    n_a, x_a = _next_x(session, ds, 0)
    slot_a = pool.slot_of(x_a)
    assert slot_a is not None and torch.equal(x_a, ds.x[n_a])
    saved = x_a.clone()
    event = FakeEvent()
    if tie == "record":  # the pool finds the batch's slots
        pool.record(x_a, event)
    else:  # the slot is known (a SlotSpan's)
        pool.tie([slot_a], event)
    del x_a
    gc.collect()
    assert pool.native.in_state("retired") == [slot_a]
    assert pool.poll() == 0  # its copy has not completed: the slot stays out
    n_b, x_b = _next_x(session, ds, 1)
    assert pool.slot_of(x_b) not in (None, slot_a)
    n_c, x_c = _next_x(session, ds, 2)  # no free slot left: ordinary memory
    assert pool.slot_of(x_c) is None and pool.misses == 1
    assert torch.equal(x_b, ds.x[n_b]) and torch.equal(x_c, ds.x[n_c])
    view = pool._memory[slot_a][: saved.numel() * saved.element_size()]
    assert torch.equal(view.view(saved.dtype).view_as(saved), saved)  # not rewritten
    event.done = True
    assert pool.poll() == 1
    released = weakref.ref(event)
    del event
    assert released() is None, "the pool still holds a completed copy's event"
    n_d, x_d = _next_x(session, ds, 3)
    assert pool.slot_of(x_d) == slot_a and torch.equal(x_d, ds.x[n_d])
    assert pool.hits == 3


def test_a_batch_without_recorded_copies_frees_its_slot_when_dropped():
    ds = _dataset()
    pool = PinnedPool(num_slots=1, slot_bytes=1 << 20, pin=False)
    session = _session(ds, pool)
    for position in range(4):
        _, x = _next_x(session, ds, position)
        assert pool.slot_of(x) == 0
        del x
        pool.poll()
    assert (pool.hits, pool.misses) == (4, 0)


def test_slots_grow_to_the_largest_batch():
    ds = _dataset()
    pool = PinnedPool(num_slots=2, slot_bytes=64, pin=False)  # far too small
    session = _session(ds, pool)
    _, x = _next_x(session, ds, 0)
    assert pool.slot_of(x) is None and pool.misses == 1
    del x
    pool.poll()
    assert all(c >= pool.native.largest for c in pool.capacities.values())
    assert len(pool.capacities) == 2
    # the address index lists exactly the slots now held, none of the removed ones
    assert sorted(pool._starts) == sorted((m.data_ptr(), slot) for slot, m in pool._memory.items())
    _, x = _next_x(session, ds, 1)
    slot = pool.slot_of(x)
    assert slot is not None
    # A slot that a worker lent out after the pool listed it as free is not
    # dropped: the batch in it still finds its slot.
    pool._remove(slot)
    assert pool.slot_of(x) == slot and slot in pool.capacities


def test_a_slot_exactly_as_large_as_the_largest_batch_is_kept():
    ds = _dataset()
    sizing = PinnedPool(num_slots=1, slot_bytes=64, pin=False)
    _next_x(_session(ds, sizing), ds, 0)
    largest = sizing.native.largest
    pool = PinnedPool(num_slots=2, slot_bytes=largest, pin=False)
    _, x = _next_x(_session(ds, pool), ds, 0)  # the same batch: it fits exactly
    assert pool.slot_of(x) is not None and pool.native.largest == largest
    before = {slot: m.data_ptr() for slot, m in pool._memory.items()}
    del x
    pool.poll()
    assert {slot: m.data_ptr() for slot, m in pool._memory.items()} == before
    assert pool.capacities == {slot: largest for slot in before}


def test_pool_arguments_defaults_and_repr():
    for bad in ({"slot_bytes": -1}, {"slot_bytes": 1.5}, {"growth": 0.99}, {"num_slots": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PinnedPool(pin=False, **bad)
    assert PinnedPool(growth=1, pin=False).growth == 1
    assert PinnedPool().pin == torch.cuda.is_available()
    assert PinnedPool(pin=True).pin and not PinnedPool(pin=False).pin  # no slot made yet
    pool = PinnedPool(num_slots=3, pin=False)  # slots sized by the first batch
    assert pool.capacities == {}
    assert pool.poll() == 0 and pool.capacities == {}  # no batch yet: nothing to size
    assert len(PinnedPool(num_slots=3, slot_bytes=64, pin=False).capacities) == 3
    ds = _dataset()
    session = _session(ds, pool)
    _next_x(session, ds, 0)
    pool.poll()
    _, x = _next_x(session, ds, 1)
    assert repr(pool) == "PinnedPool(3 slots, pinned=False, hits 1, misses 1)"


def test_an_array_is_in_a_slot_only_if_all_its_bytes_are(monkeypatch):
    from salient_pipes.pipes import pinned_pool

    buffer = torch.zeros(256, dtype=torch.uint8)  # slots carved side by side
    carved = iter(range(0, 256, 64))

    def empty(nbytes, dtype, pin_memory):
        start = next(carved)
        return buffer[start:start + nbytes]

    monkeypatch.setattr(pinned_pool, "torch", types.SimpleNamespace(
        empty=empty, uint8=torch.uint8, cuda=torch.cuda))
    pool = PinnedPool(num_slots=2, slot_bytes=64, pin=False)
    assert pool.slot_of(buffer[:64]) == 0 and pool.slot_of(buffer[64:128]) == 1
    for straddling in (buffer[32:96], buffer[32:96].view(torch.int64)):
        assert pool.slot_of(straddling) is None
        assert pool.span_of([straddling]) is None
    assert pool.slot_of(buffer[128:130]) is None  # past the last slot
    assert pool.slot_of(buffer[10:10]) is None  # empty: holds no bytes of any slot
    assert pool.span_of([]) is None and pool.span_of([buffer[10:10]]) is None
    span = pool.span_of([buffer[70:80], buffer[64:66]])
    assert span.slot == 1 and span.first == buffer[64:].data_ptr() and span.region.numel() == 16


def test_lent_slots_of_discarded_batches_come_back():
    ds = _dataset()
    pool = PinnedPool(num_slots=3, slot_bytes=1 << 20, pin=False)
    session = _session(ds, pool, threads=2)
    for position in range(3):
        session.submit(ds.split_idx["train"][position * 20:(position + 1) * 20].numpy(), 0,
                       position)
    session.cancel()  # their samples never reach Python
    del session
    gc.collect()
    assert sorted(pool.native.in_state("free")) == [0, 1, 2]


def test_native_slots_reject_misuse():
    slots = _native.PinnedSlots()
    with pytest.raises(ValueError, match="writable, contiguous 1-D byte array"):
        slots.add(np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="writable"):
        slots.add(np.zeros(4, dtype=np.float32))
    slot = slots.add(np.zeros(16, dtype=np.uint8))
    with pytest.raises(ValueError, match="not in the state"):
        slots.give(slot)  # free, not retired
    with pytest.raises(ValueError, match="state must be"):
        slots.in_state("busy")
    assert slots.remove(slot) and not slots.remove(slot)
    with pytest.raises(ValueError, match="no pinned slot 99"):
        slots.give(99)
    ds = _dataset()
    with pytest.raises(ValueError, match="need x"):
        _native.Session(ds.graph, [2], pinned=slots)
    with pytest.raises(ValueError, match="num_slots"):
        PinnedPool(num_slots=0)


def test_pinned_pipeline_yields_the_same_batches_and_recycles_its_slots():
    ds = _dataset()
    pool = PinnedPool(num_slots=8, pin=False)  # 4 in flight, 1 held, room to spare

    def chain():
        return NodeIndices(ds.split_idx["train"]).shuffle_nodes(seed=1).batch_nodes(32)

    pinned = chain().sample_neighbors(ds, [4, 3], num_threads=2).slice_features(
        ds.x, ds.y, pinned=pool)
    plain = chain().sample_neighbors(ds, [4, 3], num_threads=2).slice_features(ds.x, ds.y)
    for epoch in range(2):
        pinned.set_epoch(epoch)
        plain.set_epoch(epoch)
        for a, b in zip(pinned, plain):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.n_id, b.n_id)
    # Batches gathered before the first one reached the consumer (at most
    # the 4 in flight) find no slot; the first sizes the slots, and from then
    # on every batch finds a free one.
    assert 1 <= pool.misses <= 4 and pool.hits == 2 * len(pinned) - pool.misses, pool
    assert len(pool.capacities) == 8
    with pytest.raises(ValueError, match="fused gather"):
        chain().sample_neighbors(ds, [4]).shuffle(buffer_size=2).slice_features(ds.x,
                                                                              pinned=pool)
    with pytest.raises(ValueError, match="PinnedPool"):
        chain().sample_neighbors(ds, [4]).slice_features(ds.x, pinned=object())


def test_hetero_batches_lie_whole_in_one_slot():
    from salient_pipes import HeteroDataset

    ds = HeteroDataset.synthetic_mag(scale=0.002, num_classes=4, num_features=8, seed=5)
    ds.x["author"] = ds.x["author"].float()  # types of different row widths
    pool = PinnedPool(num_slots=8, pin=False)

    def chain():
        return NodeIndices(ds.split_idx["train"]).shuffle_nodes(seed=1).batch_nodes(32)

    pinned = chain().sample_neighbors(ds, [4, 3], num_threads=2, return_e_id=True) \
        .slice_features(ds.x, ds.y, pinned=pool)
    plain = chain().sample_neighbors(ds, [4, 3], num_threads=2, return_e_id=True) \
        .slice_features(ds.x, ds.y)
    placed = 0
    for epoch in range(2):
        pinned.set_epoch(epoch)
        plain.set_epoch(epoch)
        for a, b in zip(pinned, plain):
            assert a.x.keys() == b.x.keys() == set(ds.node_types)
            for t in ds.node_types:
                assert torch.equal(a.x[t], b.x[t]) and a.x[t].dtype == ds.x[t].dtype
                assert torch.equal(a.x[t], ds.x[t][a.n_id[t]])
                assert torch.equal(a.n_id[t], b.n_id[t])
            for e in ds.edge_types:
                assert torch.equal(a.edge_index[e], b.edge_index[e])
                assert torch.equal(a.e_id[e], b.e_id[e])
            assert torch.equal(a.y, b.y)
            slots = {pool.slot_of(t) for t in a.tensors() if t.numel()}
            if slots != {None}:  # placed: every array in one slot, 64-byte aligned
                assert len(slots) == 1 and None not in slots, slots
                start = pool._memory[slots.pop()].data_ptr()
                assert all((t.data_ptr() - start) % 64 == 0 for t in a.tensors() if t.numel())
                placed += 1
    assert placed == pool.hits and pool.hits > len(pinned), pool
    # Dropped batches gave every slot back.
    del a, b
    gc.collect()
    pool.poll()
    assert not pool.native.in_state("lent")


def test_hetero_slot_is_not_reused_before_its_copy_completes():
    from salient_pipes import HeteroDataset
    from salient_pipes.pipes import SampleNeighbors  # noqa: F401 (the stage under test)

    ds = HeteroDataset.synthetic_mag(scale=0.002, num_classes=4, num_features=8, seed=5)
    pool = PinnedPool(num_slots=4, slot_bytes=1 << 20, pin=False)
    pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(16)
            .sample_neighbors(ds, [3], num_threads=1, max_in_flight=1)
            .slice_features(ds.x, pinned=pool))
    it = iter(pipe)
    first = next(it)
    # (slot, byte offset in it, contents) of every array of the batch
    saved = [(pool.slot_of(v), v.data_ptr() - pool._memory[pool.slot_of(v)].data_ptr(),
              v.clone()) for v in first.tensors() if pool.slot_of(v) is not None]
    held = {slot for slot, _, _ in saved}
    assert len(held) == 1 and len(saved) == len([v for v in first.tensors() if v.numel()])
    event = FakeEvent()
    pool.record(first, event)
    del first
    gc.collect()
    for _ in range(3):  # the pool has 4 slots; the first batch's stay retired
        batch = next(it)
        assert not held & {pool.slot_of(v) for v in batch.x.values()}
        del batch
        gc.collect()
    assert set(pool.native.in_state("retired")) >= held
    for slot, at, rows in saved:  # nothing wrote over what the copy reads
        memory = pool._memory[slot][at:at + rows.numel() * rows.element_size()]
        assert torch.equal(memory.view(rows.dtype).view(rows.shape), rows)
    event.done = True
    pool.poll()
    assert not set(pool.native.in_state("retired")) & held


def test_hetero_pinned_slots_need_the_fused_gather():
    from salient_pipes import HeteroDataset

    ds = HeteroDataset.synthetic_mag(scale=0.002, num_classes=4, num_features=8, seed=5)
    with pytest.raises(ValueError, match="fused gather"):
        (NodeIndices(ds.split_idx["train"]).batch_nodes(16)
         .sample_neighbors(ds, [3], disjoint=True)
         .slice_features(ds.x, pinned=PinnedPool(pin=False)))


def _assert_moved_in_one_copy(moved, batch):
    """``moved`` equals ``batch`` array by array, shares no memory with it,
    and all its arrays are views of one copy."""
    pairs = list(zip(moved.tensors(), batch.tensors()))
    assert len(pairs) == len(batch.tensors()) >= 4
    storages = set()
    for m, b in pairs:
        assert torch.equal(m, b) and m.dtype == b.dtype and m.shape == b.shape
        if b.numel():
            assert m.data_ptr() != b.data_ptr()
            storages.add(m.untyped_storage().data_ptr())
    assert len(storages) == 1, "the arrays were copied one by one"


def test_a_batch_in_a_slot_moves_in_one_copy():
    from salient_pipes.pipes.prefetch import move_to_device

    ds = _dataset()
    pool = PinnedPool(num_slots=4, slot_bytes=1 << 20, pin=False)
    pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(40)
            .sample_neighbors(ds, [4, 3], num_threads=2).slice_features(ds.x, ds.y, pinned=pool))
    cpu = torch.device("cpu")
    one_copy = 0
    for batch in pipe:
        found = pool.span_of(batch.tensors())
        if found is None:  # gathered outside the pool (no free slot): copied array by array
            assert pool.slot_of(batch.x) is None
            moved = move_to_device(batch, cpu, [pool])
            assert all(torch.equal(m, b) for m, b in zip(moved.tensors(), batch.tensors()))
            continue
        span, first = found.region, found.first
        assert found.slot == pool.slot_of(batch.x)
        one_copy += 1
        assert first == min(t.data_ptr() for t in batch.tensors() if t.numel())
        assert first + span.numel() == max(t.data_ptr() + t.numel() * t.element_size()
                                           for t in batch.tensors())
        _assert_moved_in_one_copy(move_to_device(batch, cpu, [pool]), batch)
    assert one_copy == pool.hits >= 4, pool
    # With an array placed elsewhere the batch is copied array by array.
    mixed = batch.map_tensors(lambda t: t)
    mixed.y = batch.y.clone()
    assert pool.span_of(mixed.tensors()) is None  # y is not in the slot
    moved = move_to_device(mixed, cpu, [pool])
    assert torch.equal(moved.y, batch.y) and torch.equal(moved.x, batch.x)
    # A batch that no pool holds is moved array by array.
    plain = batch.map_tensors(torch.clone)
    moved = move_to_device(plain, cpu, [pool])
    assert all(torch.equal(m, b) for m, b in zip(moved.tensors(), plain.tensors()))
    # A non-contiguous array cannot be a view of the copy.
    strided = batch.map_tensors(lambda t: t)
    strided.x = batch.x[:, ::2]
    assert pool.span_of(strided.tensors()) is None


class _Arrays:
    """The least a batch needs for :func:`move_to_device`: its arrays, and
    ``to`` for a batch that is not in one slot region."""

    def __init__(self, **arrays):
        self.arrays = arrays

    def tensors(self):
        return list(self.arrays.values())

    def map_tensors(self, fn):
        return _Arrays(**{name: fn(t) for name, t in self.arrays.items()})

    def to(self, device, non_blocking=False):
        return self.map_tensors(lambda t: t.to(device, non_blocking=non_blocking))


def test_arrays_of_several_dtypes_become_views_of_the_copy_at_their_offsets():
    from salient_pipes.pipes.prefetch import move_to_device

    pool = PinnedPool(num_slots=1, slot_bytes=256, pin=False)
    (memory,) = pool._memory.values()
    memory.copy_(torch.randint(0, 256, (256,), dtype=torch.uint8))  # compared as bytes: NaNs
    # int64 at 0, fp16 at 24 (6 bytes), an empty array, fp32 at 32: the
    # region is 44 bytes, not a whole number of int64s.
    batch = _Arrays(a=memory[0:24].view(torch.int64), h=memory[24:30].view(torch.float16),
                    e=torch.empty(0, 3), f=memory[32:44].view(torch.float32).view(3, 1))
    span = pool.span_of(batch.tensors())
    assert span is not None and span.first == memory.data_ptr() and span.region.numel() == 44
    moved = move_to_device(batch, torch.device("cpu"), [pool])
    for name, t in batch.arrays.items():
        m = moved.arrays[name]
        assert m.dtype == t.dtype and m.shape == t.shape and m.is_contiguous()
        assert torch.equal(m.view(torch.uint8), t.view(torch.uint8)), name  # the same bytes
    assert len({m.untyped_storage().data_ptr() for m in moved.tensors() if m.numel()}) == 1
    assert moved.arrays["f"].data_ptr() - moved.arrays["a"].data_ptr() == 32

    # An int64 6 bytes after the region's first array (fp16 at byte 2) cannot
    # be a view of a copy that starts there: array by array.
    odd = _Arrays(h=memory[2:8].view(torch.float16), a=memory[8:16].view(torch.int64))
    assert pool.span_of(odd.tensors()) is None
    moved = move_to_device(odd, torch.device("cpu"), [pool])
    assert all(torch.equal(m.view(torch.uint8), t.view(torch.uint8))
               for m, t in zip(moved.tensors(), odd.tensors()))


def test_a_hetero_batch_in_a_slot_moves_in_one_copy():
    from salient_pipes import HeteroDataset
    from salient_pipes.pipes.prefetch import move_to_device

    ds = HeteroDataset.synthetic_mag(scale=0.002, num_classes=4, num_features=8, seed=5)
    ds.x["author"] = ds.x["author"].float()  # rows of two dtypes in one slot
    pool = PinnedPool(num_slots=4, slot_bytes=1 << 21, pin=False)
    pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(32)
            .sample_neighbors(ds, [4, 3], num_threads=2, return_e_id=True)
            .slice_features(ds.x, ds.y, pinned=pool))
    one_copy = 0
    for batch in pipe:
        moved = move_to_device(batch, torch.device("cpu"), [pool])
        if pool.slot_of(batch.x["paper"]) is None:
            continue  # gathered outside the pool: tested above
        one_copy += 1
        _assert_moved_in_one_copy(moved, batch)
        assert moved.num_sampled_nodes == batch.num_sampled_nodes
        assert all(torch.equal(moved.x[t], ds.x[t][batch.n_id[t]]) for t in ds.node_types)
    assert one_copy == pool.hits >= 4, pool


class _FakeCuda:
    """Stands in for the CUDA calls of the prefetch stage, so that its device
    path (copies issued ahead, on the consumer's thread or its own; events
    waited on before a batch is handed over; slots tied to the copies' events)
    runs on CPUs. A "copy" is a clone; it remembers which batches were issued."""

    def __init__(self) -> None:
        import threading

        self.issued: list = []   # batch positions, in the order their copies were issued
        self.waited: list = []   # events the consumer's stream waited on
        self.recorded: list = []  # (event, stream) of every recorded copy
        self.issuers: set = set()
        self.spans: list = []  # (slot region each copy was given or None, its x's address)
        self._threading = threading

    def install(self, monkeypatch) -> None:
        import contextlib

        from salient_pipes.batch import PreparedBatch
        from salient_pipes.pipes import prefetch

        fake = self

        class Stream:
            def wait_event(self, event):
                assert event.recorded, "waited on an event before its copy was issued"
                fake.waited.append(event)

        consumer = Stream()

        class Event:
            def __init__(self):
                self.recorded = False

            def record(self, stream):
                self.recorded = True
                fake.recorded.append((self, stream))

            def query(self):
                return self.recorded

        def move(batch, device, span, non_blocking=True):
            fake.issued.append(int(batch.n_id[0]))
            fake.issuers.add(fake._threading.current_thread().name)
            fake.spans.append((span, batch.x.data_ptr()))
            return batch.map_tensors(torch.clone)

        monkeypatch.setattr(prefetch, "move_span", move)
        monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: consumer)
        monkeypatch.setattr(PreparedBatch, "record_stream", lambda self, stream: None)


@pytest.mark.parametrize("background", [True, False])
def test_prefetch_device_path_issues_ahead_and_hands_over_after_the_copy(monkeypatch,
                                                                          background):
    import threading

    fake = _FakeCuda()
    fake.install(monkeypatch)
    ds = _dataset()
    pool = PinnedPool(num_slots=12, slot_bytes=1 << 20, pin=False)
    tied, ties = [], []  # the events each batch's slots were tied to; (slots, event) by tie
    record, tie = pool.record, pool.tie
    monkeypatch.setattr(pool, "record", lambda b, event: (tied.append(event), record(b, event)))
    monkeypatch.setattr(pool, "tie", lambda slots, event: (
        tied.append(event), ties.append((list(slots), event)), tie(slots, event)))
    plain = list(NodeIndices(ds.split_idx["train"]).batch_nodes(20)
                 .sample_neighbors(ds, [4, 3]).slice_features(ds.x, ds.y))
    pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(20)
            .sample_neighbors(ds, [4, 3]).slice_features(ds.x, ds.y, pinned=pool)
            .prefetch_to_device("cpu", depth=2, background=background))
    pipe.device = torch.device("cuda")  # the device path, with the fakes above
    got = []
    for i, batch in enumerate(pipe):
        # handed over only after the consumer's stream waited on its copy
        assert len(fake.waited) == i + 1
        ahead = len(fake.issued) - (i + 1)
        # inline: exactly `depth` copies ahead (fewer at the end); a thread:
        # its queue (depth) and the one in its hand
        assert ahead <= 2 if not background else ahead <= 3, (i, ahead)
        if not background and i + 1 + 2 <= len(plain):
            assert ahead == 2
        got.append(batch)
    assert [int(b.n_id[0]) for b in got] == fake.issued == [int(b.n_id[0]) for b in plain]
    # each copy's event went to the pool, and the consumer waited on the same ones
    assert tied == [event for event, _ in fake.recorded] == fake.waited
    # a batch found in a slot is copied from it (x at the region's start) and
    # that slot, found once, is the one tied to its copy
    found = [(span, x_at) for span, x_at in fake.spans if span is not None]
    assert len(found) == pool.hits > 0
    assert all(span.first == x_at for span, x_at in found)
    assert [[span.slot] for span, _ in found] == [slots for slots, _ in ties]
    for a, b in zip(got, plain):
        assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors()))
    assert fake.issuers == ({"salient_pipes-prefetch"} if background
                            else {threading.current_thread().name})
    # every slot came back once its copy's event completed and the batch was dropped
    del got, batch
    gc.collect()
    pool.poll()
    assert pool.hits > 0 and not pool.native.in_state("lent") and \
        not pool.native.in_state("retired")


class _Watched(Stage):
    """Hands items on and counts the iterations of it that were closed."""

    def __init__(self, source) -> None:
        super().__init__(source)
        self.closed = 0

    def _generate(self, epoch, start, **options):
        try:
            yield from self.source
        finally:
            self.closed += 1

    def __len__(self) -> int:
        return len(self.source)


@pytest.mark.parametrize("background", [True, False])
def test_prefetch_device_path_stops_its_thread_when_the_consumer_stops(monkeypatch, background):
    import threading

    fake = _FakeCuda()
    fake.install(monkeypatch)
    ds = _dataset()
    watched = _Watched(NodeIndices(ds.split_idx["train"]).batch_nodes(10)
                       .sample_neighbors(ds, [4]).slice_features(ds.x))
    pipe = watched.prefetch_to_device("cpu", depth=2, background=background)
    pipe.device = torch.device("cuda")
    it = iter(pipe)
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "salient_pipes-prefetch"]
    assert watched.closed == 1, "the stage above was left open"
    # the next epoch runs whole
    assert len(list(pipe)) == len(pipe)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_prefetch_from_pinned_slots_equals_cpu_batches_under_a_slow_consumer():
    import time

    ds = FastDataset.synthetic(num_nodes=20_000, num_features=64, seed=3)
    pipe = salient_pipeline(ds, batch_size=256, fanouts=(10, 5), device="cuda")
    pool, = [s.pinned_pool for s in pipe._chain() if getattr(s, "pinned_pool", None)]
    pool.num_slots = 3  # small: slots are reused while copies are in flight
    cpu = salient_pipeline(ds, batch_size=256, fanouts=(10, 5), device="cpu")
    memory = []
    for epoch in range(3):
        pipe.set_epoch(epoch)
        cpu.set_epoch(epoch)
        for gpu_batch, cpu_batch in zip(pipe, cpu):
            time.sleep(0.002)
            assert torch.equal(gpu_batch.x.cpu(), cpu_batch.x)
            assert torch.equal(gpu_batch.n_id.cpu(), cpu_batch.n_id)
            assert torch.equal(gpu_batch.y.cpu(), cpu_batch.y)  # the rest of the slot
            for gpu_adj, cpu_adj in zip(gpu_batch.adjs, cpu_batch.adjs):
                assert torch.equal(gpu_adj.edge_index.cpu(), cpu_adj.edge_index)
        memory.append(torch.cuda.memory_allocated())
        # the prefetch thread began the next epoch's batches (overlap_epochs)
        sampler, = [s for s in pipe._chain() if hasattr(s, "overlap_epochs")]
        assert sampler._carry is not None and sampler._carry.epoch == epoch + 1
    assert pool.hits > 0 and pool.pin
    assert memory[-1] <= memory[0] * 1.1  # flat over epochs


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_prefetch_of_hetero_batches_from_pinned_slots_equals_cpu_batches():
    from salient_pipes import HeteroDataset

    ds = HeteroDataset.synthetic_mag(scale=0.01, num_classes=8, num_features=32, seed=4)
    pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 3), device="cuda")
    pool, = [s.pinned_pool for s in pipe._chain() if getattr(s, "pinned_pool", None)]
    cpu = salient_pipeline(ds, batch_size=256, fanouts=(5, 3), device="cpu")
    for epoch in range(2):
        pipe.set_epoch(epoch)
        cpu.set_epoch(epoch)
        for gpu_batch, cpu_batch in zip(pipe, cpu):
            for t in ds.node_types:
                assert torch.equal(gpu_batch.x[t].cpu(), cpu_batch.x[t])
                assert torch.equal(gpu_batch.n_id[t].cpu(), cpu_batch.n_id[t])
    assert pool.hits > 0 and pool.pin


@pytest.mark.parametrize("hetero", [False, True])
def test_record_stream_marks_each_storage_once(monkeypatch, hetero):
    """A batch moved in one copy is views of one storage: the training
    thread marks it for the compute stream with one call, and every storage
    of any batch is still marked."""
    from salient_pipes.pipes.prefetch import move_to_device

    if hetero:
        from salient_pipes import HeteroDataset

        ds = HeteroDataset.synthetic_mag(scale=0.002, num_classes=4, num_features=8, seed=5)
    else:
        ds = _dataset()
    pool = PinnedPool(num_slots=2, slot_bytes=1 << 21, pin=False)
    batch = next(iter(NodeIndices(ds.split_idx["train"]).batch_nodes(32)
                      .sample_neighbors(ds, [4, 3], num_threads=1)
                      .slice_features(ds.x, ds.y, pinned=pool)))
    marked = []
    monkeypatch.setattr(torch.Tensor, "record_stream",
                        lambda t, stream: marked.append((t.untyped_storage().data_ptr(), stream)))

    def storages(b):
        return {t.untyped_storage().data_ptr() for t in b.tensors() if t.numel()}

    stream = object()
    moved = move_to_device(batch, torch.device("cpu"), [pool])
    moved.record_stream(stream)
    assert marked == [(next(iter(storages(moved))), stream)] and len(storages(moved)) == 1
    marked.clear()
    cast = moved.map_tensors(lambda t: t)
    cast.x = ({k: v.float() for k, v in moved.x.items()} if hetero else moved.x.float())
    cast.record_stream(stream)  # the cast features are storages of their own
    assert sorted(p for p, _ in marked) == sorted(storages(cast)) and len(marked) > 1
    marked.clear()
    plain = batch.map_tensors(torch.clone)
    plain.record_stream(stream)
    nonempty = [t for t in plain.tensors() if t.numel()]
    assert sorted(p for p, _ in marked) == sorted(storages(plain)) and len(marked) == len(nonempty)


def test_find_span_looks_in_every_pool_and_passes_over_items_that_are_not_batches():
    from salient_pipes.pipes.prefetch import find_span, move_to_device

    ds = _dataset()
    other = PinnedPool(num_slots=1, slot_bytes=1 << 16, pin=False)  # holds none of them
    pool = PinnedPool(num_slots=2, slot_bytes=1 << 20, pin=False)
    # One batch in flight: the first batch is the first to ask for a slot
    # (with several in flight, a later one may take both slots first).
    batch = next(iter(NodeIndices(ds.split_idx["train"]).batch_nodes(20)
                      .sample_neighbors(ds, [4, 3], num_threads=1, max_in_flight=1)
                      .slice_features(ds.x, ds.y, pinned=pool)))
    found = find_span(batch, [other, pool])
    assert found is not None and found[0] is pool and found[1].slot == pool.slot_of(batch.x)
    assert find_span(batch, []) is None and find_span(batch, [other]) is None
    # items without arrays of a batch (a tensor, a tuple) are not looked for
    # in the pools, and move as they are
    for item in (batch.x, (batch.x, batch.y)):
        assert find_span(item, [other, pool]) is None
    assert torch.equal(move_to_device(batch.x, torch.device("cpu"), [pool]), batch.x)


def test_prefetch_to_cuda_without_cuda_is_refused(monkeypatch):
    from salient_pipes.pipes.prefetch import PrefetchToDevice

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        PrefetchToDevice(NodeIndices(torch.arange(4)), "cuda")


def test_prefetch_depth_and_a_device_that_is_neither_cpu_nor_cuda():
    from salient_pipes.pipes.prefetch import PrefetchToDevice

    with pytest.raises(ValueError, match="depth"):
        PrefetchToDevice(NodeIndices(torch.arange(4)), "cpu", depth=0)
    ds = _dataset()
    pipe = (NodeIndices(ds.split_idx["train"][:20]).batch_nodes(10).sample_neighbors(ds, [3])
            .slice_features(ds.x).prefetch_to_device("meta", depth=1))
    assert [b.x.device.type for b in pipe] == ["meta", "meta"]


def test_a_batchs_tensors_are_those_map_tensors_moves(small_dataset, mag):
    """tensors() (what is pinned, packed into one copy and recorded on the
    copy stream) lists exactly the arrays map_tensors() moves: none left
    behind (y among them), no None."""
    batches = {
        "per hop": next(iter(salient_pipeline(small_dataset, batch_size=64, fanouts=(3, 2),
                                              device="cpu", return_e_id=True))),
        "node-wise": next(iter(salient_pipeline(mag, batch_size=32, fanouts=(3, 2),
                                                device="cpu", return_e_id=True))),
    }
    unlabelled = batches["node-wise"]
    batches["node-wise, no y"] = dataclasses.replace(unlabelled, y=None)
    for name, batch in batches.items():
        moved: list = []
        batch.map_tensors(lambda t, moved=moved: moved.append(t) or t)
        listed = batch.tensors()
        assert all(t is not None for t in listed), name
        assert sorted(map(id, listed)) == sorted(map(id, moved)), name
        assert (batch.y is None) == all(t is not batch.y for t in listed), name


def test_record_storages_records_each_storage_once(monkeypatch):
    from salient_pipes.batch import record_storages

    calls = []
    monkeypatch.setattr(torch.Tensor, "record_stream",
                        lambda t, stream: calls.append((t.untyped_storage().data_ptr(), stream)))
    flat, other = torch.arange(10.0), torch.ones(3)
    record_storages([flat[:4], flat[4:], torch.empty(0), other[1:], other], "copy stream")
    assert sorted(calls) == sorted([(flat.untyped_storage().data_ptr(), "copy stream"),
                                    (other.untyped_storage().data_ptr(), "copy stream")])


def test_adj_to_moves_both_arrays_and_keeps_a_missing_e_id_missing():
    from salient_pipes.batch import Adj

    edge_index, e_id = torch.tensor([[1, 2], [0, 0]]), torch.tensor([5, 7])
    moved = Adj(edge_index, e_id, (3, 1)).to("cpu", non_blocking=True)
    assert torch.equal(moved.edge_index, edge_index) and torch.equal(moved.e_id, e_id)
    assert moved.size == (3, 1) and len(moved.tensors()) == 2
    bare = Adj(edge_index, None, (3, 1)).to("cpu")
    assert bare.e_id is None and bare.tensors() == [bare.edge_index]
