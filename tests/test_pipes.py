"""The stages and salient_pipeline(): exactly-once epochs, determinism, the
batch contract, fused slicing, faults, stats, swapping and extending."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, IterDataPipe

from salient_pipes import (
    FastDataset,
    HeteroDataset,
    PreparedBatch,
    SampledSubgraph,
    pipeline_stats,
    salient_pipeline,
)
from salient_pipes.pipes import NodeIndices, SampleNeighbors, gather
from tests.conftest import check_sample, pairs, settled_thread_count, thread_count

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check_batch(batch: PreparedBatch, ds: FastDataset, fanouts) -> None:
    """The batch contract (DESIGN.md §2) and the data it must carry."""
    assert isinstance(batch, PreparedBatch)
    seeds = batch.n_id[: batch.batch_size]
    assert batch.adjs[-1].size[1] == batch.batch_size == batch.y.numel()
    hops = [(a.edge_index.numpy(), a.e_id, a.size) for a in batch.adjs]
    rowptr, col = ds.rowptr.numpy(), ds.col.numpy()
    n_id = batch.n_id.numpy()
    for edge_index, e_id, (num_src, num_dst) in hops:
        src, dst = edge_index
        assert (src < num_src).all() and (dst < num_dst).all()
        assert (dst[1:] >= dst[:-1]).all(), "edge_index must be sorted by target"
        if e_id is not None:  # positions in col
            assert (col[e_id.numpy()] == n_id[src]).all()
        for s, d in zip(src[:50].tolist(), dst[:50].tolist()):
            row = col[rowptr[n_id[d]]:rowptr[n_id[d] + 1]]
            assert n_id[s] in row
    assert torch.equal(batch.x, ds.x[batch.n_id])
    assert torch.equal(batch.y, ds.y[seeds])
    assert batch.x.dtype == ds.x.dtype and batch.n_id.dtype == torch.int64
    assert all(a.edge_index.dtype == torch.int64 for a in batch.adjs)
    assert len(batch.adjs) == len(fanouts)


def epoch_seeds(pipe) -> torch.Tensor:
    return torch.cat([torch.empty(0, dtype=torch.int64)] + [b.n_id[: b.batch_size] for b in pipe])


@pytest.mark.parametrize("batch_size", [1, 64, 333, 5000])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_seed_exactly_once(small_dataset, batch_size, drop_last):
    train = small_dataset.split_idx["train"]
    pipe = salient_pipeline(small_dataset, batch_size=batch_size, fanouts=(3,), device="cpu",
                            drop_last=drop_last)
    for _ in range(2):
        seeds = epoch_seeds(pipe)
        if drop_last:
            full = train.numel() // batch_size * batch_size
            assert seeds.numel() == full == len(pipe) * batch_size
            assert len(set(seeds.tolist())) == full and set(seeds.tolist()) <= set(train.tolist())
        else:
            assert torch.equal(seeds.sort().values, train.sort().values)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_nodes,batch_size", [(1620, 100), (1025, 512), (7, 2), (3, 4)])
def test_sharding_covers_split_with_equal_batch_counts(world_size, num_nodes, batch_size):
    idx = torch.arange(num_nodes) * 3
    for epoch in range(2):
        counts, shards = [], []
        for rank in range(world_size):
            pipe = (NodeIndices(idx).shuffle_nodes(seed=5, rank=rank, world_size=world_size)
                    .batch_nodes(batch_size))
            pipe.set_epoch(epoch)
            batches = list(pipe)
            assert all(0 < b.numel() <= batch_size for b in batches)
            counts.append(len(batches))
            assert len(batches) == len(pipe)
            shards.append(torch.cat(batches) if batches else torch.empty(0, dtype=torch.long))
        assert len(set(counts)) == 1, f"ranks have {counts} batches"
        union = torch.cat(shards)
        assert torch.equal(union.sort().values, idx), "shards must cover the split exactly once"


def test_sharding_too_small_to_give_every_rank_a_batch_is_an_error():
    with pytest.raises(ValueError, match="cannot shard 2 nodes over 3 ranks"):
        list(NodeIndices(torch.arange(2)).shuffle_nodes(rank=0, world_size=3).batch_nodes(4))


@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_of_one_node_repeat_a_seed_on_a_shorter_shard(drop_last):
    """7 seeds on 2 ranks in batches of 1: a shard of 3 cannot be cut into
    the 4 batches the other rank takes, so it repeats its first node (one
    rank raising while the other went on would leave that one waiting in
    its first collective)."""
    shards = [list(NodeIndices(torch.arange(7)).shuffle_nodes(seed=1, rank=rank, world_size=2)
                   .batch_nodes(1, drop_last=drop_last)) for rank in (0, 1)]
    assert [len(s) for s in shards] == [4, 4]
    assert all(b.numel() == 1 for s in shards for b in s)
    first, second = (torch.cat(s) for s in shards)
    assert torch.equal(second[3:], second[:1]), "the shorter shard repeats its first node"
    assert torch.equal(torch.cat([first, second[:3]]).sort().values, torch.arange(7))


def test_same_batches_whatever_num_threads(small_dataset):
    runs = []
    for threads in (1, 2, 4):
        pipe = salient_pipeline(small_dataset, batch_size=200, fanouts=(5, 5), device="cpu",
                                num_threads=threads, seed=3)
        pipe.set_epoch(4)
        runs.append(list(pipe))
    for other in runs[1:]:
        for a, b in pairs(runs[0], other):
            assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x)
            assert all(torch.equal(p.edge_index, q.edge_index) for p, q in pairs(a.adjs, b.adjs))


def test_epochs_differ_and_repeat(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=500, fanouts=(4,), device="cpu")
    first, second = epoch_seeds(pipe), epoch_seeds(pipe)  # epochs 0 and 1
    assert pipe.epoch == 1 and not torch.equal(first, second)
    pipe.set_epoch(0)
    assert torch.equal(epoch_seeds(pipe), first)
    unshuffled = salient_pipeline(small_dataset, batch_size=500, fanouts=(4,), device="cpu",
                                  shuffle=False)
    assert torch.equal(epoch_seeds(unshuffled), small_dataset.split_idx["train"])


def test_unread_iterators_do_not_advance_the_epoch(small_dataset):
    # tqdm.auto calls iter() on its iterable once more than it reads
    pipe = salient_pipeline(small_dataset, batch_size=500, fanouts=(4,), device="cpu")
    for _ in range(3):
        iter(pipe)
    first = epoch_seeds(pipe)
    assert pipe.epoch == 0
    pipe.set_epoch(0)
    assert torch.equal(first, epoch_seeds(pipe))


def test_batch_contract_and_data(small_dataset):
    fanouts = (6, 4, -1)
    pipe = salient_pipeline(small_dataset, batch_size=256, fanouts=fanouts, device="cpu")
    for batch in pipe:
        check_batch(batch, small_dataset, fanouts)
        assert batch.adjs[0].size[0] == batch.n_id.numel()
        for outer, inner in zip(batch.adjs[:-1], batch.adjs[1:]):
            assert outer.size[1] == inner.size[0]


def test_batches_print_their_shapes_not_their_contents(small_dataset, mag):
    from salient_pipes.batch import Adj, NodeWiseBatch, PreparedBatch, SeedBatch

    hop = Adj(torch.tensor([[1, 2], [0, 0]]), torch.tensor([4, 9]), (3, 1))
    assert repr(hop) == "Adj(edge_index=[2, 2], e_id=[2], size=(3, 1))"
    batch = PreparedBatch(x=torch.zeros(3, 5), y=None, adjs=[hop], n_id=torch.arange(3))
    assert repr(batch) == ("PreparedBatch(x=[3, 5], y=None, adjs=[Adj(edge_index=[2, 2], "
                           "e_id=[2], size=(3, 1))], n_id=[3], batch_size=1)")
    assert repr(SampledSubgraph(torch.arange(3), [hop])).startswith(
        "SampledSubgraph(n_id=[3], adjs=[Adj(edge_index=[2, 2]")
    assert repr(SeedBatch({"p": torch.arange(4)}, {"input_id": torch.tensor(2)})) == \
        "SeedBatch(seeds={'p': [4]}, payload={'input_id': 2})"
    real = next(iter(salient_pipeline(small_dataset, batch_size=256, fanouts=(6, 4),
                                      device="cpu")))
    x = list(real.x.shape)
    assert repr(real).startswith(f"PreparedBatch(x={x}, y=[256], adjs=[Adj(edge_index=")
    typed = next(iter(salient_pipeline(mag, batch_size=16, fanouts=(3, 2), device="cpu")))
    assert isinstance(typed, NodeWiseBatch)
    text = repr(typed)
    assert "tensor(" not in text and text.endswith(", batch_size=16)")
    assert f"'paper': {list(typed.x['paper'].shape)}" in text


def test_a_pipeline_prints_its_chain_with_each_stages_settings(small_dataset, mag):
    train = small_dataset.split_idx["train"]
    pipe = (NodeIndices(train).shuffle_nodes(seed=3).shard_nodes(1, 2, pad_to=7)
            .batch_nodes(50, drop_last=True).sample_neighbors(small_dataset, [4, 2], num_threads=1)
            .slice_features(small_dataset.x, small_dataset.y).prefetch_to_device("cpu"))
    chain = (f"NodeIndices({train.numel():,} nodes) -> ShuffleNodes(seed=3) -> "
             "ShardNodes(rank=1, world_size=2, pad_to=7) -> "
             "BatchNodes(batch_size=50, drop_last=True) -> "
             "SampleNeighbors(fanouts=[4, 2], node_wise=False, num_threads=1) -> "
             "SliceFeatures -> PrefetchToDevice(device='cpu')")
    assert repr(pipe) == str(pipe) == chain
    assert repr(pipe.source) == chain.rsplit(" -> ", 1)[0]  # each stage: the chain up to it
    unshuffled = NodeIndices(train).shuffle_nodes(shuffle=False)
    assert str(unshuffled).endswith("ShuffleNodes(shuffle=False)")
    users = pipe.map(_identity)  # a torch DataPipe after ours keeps torch's own repr
    assert repr(users) == type(users).__name__
    typed = mag.split_idx["train"]
    per_type = {e: [3] if e[1] == "cites" else [1] for e in mag.edge_types}
    sampled = NodeIndices(typed).batch_nodes(8).sample_neighbors(mag, per_type, num_threads=2)
    assert repr(sampled).endswith(f"SampleNeighbors(fanouts per edge type "
                                  f"({len(mag.edge_types)} types), node_wise=True, "
                                  "num_threads=2)")


def test_a_chain_over_an_empty_index_is_walked_to_its_source(small_dataset):
    # a stage of no batches is falsy (its length is 0): the chain goes on past it
    empty = NodeIndices(torch.tensor([], dtype=torch.int64)).shuffle_nodes(seed=1).batch_nodes(4)
    pipe = empty.sample_neighbors(small_dataset, [2])
    assert len(empty) == 0
    pipe.set_epoch(3)
    assert list(pipe) == [] and empty.source.epoch == 3
    assert [row["stage"] for row in pipeline_stats(pipe)] == [
        "NodeIndices", "ShuffleNodes", "BatchNodes", "SampleNeighbors"]


def test_sampler_stage_alone_meets_the_contract(small_dataset):
    rowptr, col = small_dataset.rowptr.numpy(), small_dataset.col.numpy()
    pipe = (NodeIndices(small_dataset.split_idx["valid"]).batch_nodes(100)
            .sample_neighbors(small_dataset, [4, 3], return_e_id=True, replace=True))
    for sub in pipe:
        assert isinstance(sub, SampledSubgraph)
        hops = [(a.edge_index.numpy(), a.e_id.numpy(), a.size) for a in sub.adjs]
        check_sample(rowptr, col, sub.n_id[: sub.batch_size].numpy(), [4, 3], True,
                     sub.n_id.numpy(), hops)


def _identity(item):
    return item


def test_fused_and_unfused_slicing_agree(small_dataset):
    ds = small_dataset

    def chain(fused: bool):
        pipe = NodeIndices(ds.split_idx["train"]).shuffle_nodes(seed=1).batch_nodes(300)
        pipe = pipe.sample_neighbors(ds, [5, 5], seed=2)
        if not fused:
            pipe = pipe.map(_identity)  # any stage in between unfuses
        return pipe.slice_features(ds.x, ds.y)

    fused, unfused = chain(True), chain(False)
    assert fused.fused and not unfused.fused
    for a, b in pairs(fused, unfused):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.n_id, b.n_id)


def test_gather_bfloat16_and_bad_index():
    x = torch.randn(50, 3).to(torch.bfloat16)
    idx = torch.tensor([4, 0, 49, 4])
    assert torch.equal(gather(x, idx, 2), x[idx])
    with pytest.raises(ValueError, match="outside"):
        gather(x, torch.tensor([50]))
    with pytest.raises(ValueError, match="integers"):
        gather(x, torch.tensor([1.0]))


def test_user_stage_error_reaches_loop_and_next_epoch_works(small_dataset):
    ds = small_dataset
    state = {"fail": True, "seen": 0}

    def flaky(batch):
        state["seen"] += 1
        if state["fail"] and state["seen"] == 3:
            raise RuntimeError("user stage failed")
        return batch

    pipe = salient_pipeline(ds, batch_size=200, fanouts=(5, 5), device="cpu")
    pipe = pipe.map(flaky)
    with pytest.raises(RuntimeError, match="user stage failed"):
        for _ in pipe:
            pass
    state["fail"] = False
    assert torch.equal(epoch_seeds(pipe).sort().values, ds.split_idx["train"].sort().values)


def test_native_worker_error_mid_epoch_then_recovery(small_dataset):
    ds = small_dataset
    pipe = NodeIndices(ds.split_idx["train"]).batch_nodes(100).sample_neighbors(ds, [3])
    pipe._inject_failure(4)
    got = []
    with pytest.raises(RuntimeError, match="injected failure in batch 4"):
        for sub in pipe:
            got.append(sub)
    assert len(got) == 4
    pipe._inject_failure(-1)
    seeds = torch.cat([s.n_id[: s.batch_size] for s in pipe])
    assert torch.equal(seeds.sort().values, ds.split_idx["train"].sort().values)


def test_breaking_out_leaves_no_work_or_threads(small_dataset):
    baseline = thread_count()
    pipe = salient_pipeline(small_dataset, batch_size=100, fanouts=(10, 10), device="cpu",
                            num_threads=2)
    sampler = [s for s in [pipe.source.source] if isinstance(s, SampleNeighbors)][0]
    for _ in range(5):
        for i, _batch in enumerate(pipe):
            if i == 2:
                break
        assert sampler._session.in_flight == 0
    assert thread_count() <= baseline + 2  # the pipe's own idle pool, nothing more
    assert torch.equal(epoch_seeds(pipe).sort().values,
                       small_dataset.split_idx["train"].sort().values)
    del pipe, sampler
    assert settled_thread_count(baseline) <= baseline


def test_pipeline_stats_and_len(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=256, fanouts=(5, 5), device="cpu")
    batches = sum(1 for _ in pipe)
    assert batches == len(pipe) == -(-small_dataset.split_idx["train"].numel() // 256)
    rows = pipeline_stats(pipe)
    assert [r["stage"] for r in rows] == ["NodeIndices", "ShuffleNodes", "ShardNodes",
                                          "BatchNodes", "SampleNeighbors", "SliceFeatures",
                                          "PrefetchToDevice"]
    assert [r["items"] for r in rows] == [1, 1, 1] + [batches] * 4


def _slow(batch):
    time.sleep(0.02)
    return batch


def test_pipeline_stats_puts_the_wait_on_the_slow_stage(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=256, fanouts=(3,), device="cpu")
    # a slow user stage between slicing and the device copy
    prefetch = pipe
    slow = prefetch.source.map(_slow)
    prefetch.source = slow
    batches = sum(1 for _ in prefetch)
    rows = {r["stage"]: r for r in pipeline_stats(prefetch)}
    slept = 0.02 * batches
    # the sleep is spent below PrefetchToDevice, and not in SliceFeatures
    assert rows["PrefetchToDevice"]["wait_s"] >= slept
    assert rows["PrefetchToDevice"]["self_s"] >= slept
    assert rows["SliceFeatures"]["wait_s"] < slept / 2
    assert rows["PrefetchToDevice"]["wait_s"] == pytest.approx(
        rows["SliceFeatures"]["wait_s"] + rows["PrefetchToDevice"]["self_s"])


class _InFlightProbe(IterDataPipe):
    """Seed batches that record, as each is asked for, how many batches the
    sampler downstream has in flight."""

    def __init__(self, batches):
        self.batches, self.sampler, self.seen = batches, None, []

    def __iter__(self):
        for seeds in self.batches:
            self.seen.append(self.sampler._busy.in_flight)
            yield seeds


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_sampler_keeps_at_most_max_in_flight_batches(small_dataset, max_in_flight):
    probe = _InFlightProbe(list(torch.split(small_dataset.split_idx["train"], 50)))
    pipe = SampleNeighbors(probe, small_dataset, [3], num_threads=2,
                           max_in_flight=max_in_flight)
    probe.sampler = pipe
    assert len(list(pipe)) == len(probe.batches)
    # it runs ahead as far as allowed, and no further
    assert max(probe.seen) == max_in_flight - 1


def test_dataloader_with_batch_size_none(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=400, fanouts=(5,), device="cpu")
    loader = DataLoader(pipe, batch_size=None)
    assert len(loader) == len(pipe)
    assert torch.equal(torch.cat([b.n_id[: b.batch_size] for b in loader]).sort().values,
                       small_dataset.split_idx["train"].sort().values)


def _all_subclasses(cls: type) -> list:
    return [c for sub in cls.__subclasses__() for c in (sub, *_all_subclasses(sub))]


def test_torch_functional_forms_stay_reachable_after_every_stage(small_dataset):
    """No stage's attribute or method hides a functional form torch
    registers on IterDataPipe (``.shuffle()``, ``.map()``, ``.batch()``...):
    a chain of our stages goes on with torch's stages."""
    import salient_pipes.distributed  # noqa: F401  (registers fetch_features)
    from salient_pipes.pipes import Stage, upstream

    functional = set(IterDataPipe.functions)
    assert {"shuffle", "map", "batch", "filter", "shuffle_nodes"} <= functional
    for cls in _all_subclasses(Stage):
        own = {a for c in cls.__mro__ if c not in IterDataPipe.__mro__ for a in vars(c)}
        assert not own & functional, (cls.__name__, own & functional)
    chains = [salient_pipeline(small_dataset, batch_size=200, fanouts=(5,), device="cpu",
                               shuffle=shuffle, feature_cache="10%") for shuffle in (True, False)]
    for chain in chains:
        for stage in upstream(chain):
            assert not set(vars(stage)) & functional, (type(stage).__name__,
                                                        set(vars(stage)) & functional)
    ids = small_dataset.split_idx["train"]
    shuffled = NodeIndices(ids).shuffle_nodes(seed=0).shuffle().map(lambda t: t.sort().values)
    assert torch.equal(next(iter(shuffled)), ids.sort().values)


def test_custom_stage_example(small_dataset):
    example = load_example("custom_stage")
    pipe = example.build(small_dataset)
    batches = list(pipe)
    assert len(batches) == len(pipe)
    stages = [r["stage"] for r in pipeline_stats(pipe)]
    assert "FeatureNoise" in stages
    clean = batches[0].n_id
    assert not torch.equal(batches[0].x, small_dataset.x[clean])  # noise was added
    assert (batches[0].x.float() - small_dataset.x[clean].float()).abs().mean() < 0.2


def test_pyg_sampler_example_swaps_in(small_dataset):
    pytest.importorskip("torch_sparse", reason="the PyG adapter needs torch-sparse")
    example = load_example("pyg_sampler")
    pipe = example.build(small_dataset, fanouts=(4, 3), batch_size=250)
    seeds = []
    for batch in pipe:
        check_batch(batch, small_dataset, (4, 3))
        seeds.append(batch.n_id[: batch.batch_size])
    assert torch.equal(torch.cat(seeds).sort().values,
                       small_dataset.split_idx["train"].sort().values)


def test_bad_arguments(small_dataset):
    with pytest.raises(ValueError, match="no split 'nope'"):
        salient_pipeline(small_dataset, "nope", device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        salient_pipeline(small_dataset, batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="fanout"):
        salient_pipeline(small_dataset, fanouts=(), device="cpu")
    with pytest.raises(ValueError, match="fanout"):
        salient_pipeline(small_dataset, fanouts=(5, 0), device="cpu")
    with pytest.raises(ValueError, match="rank"):
        salient_pipeline(small_dataset, rank=2, world_size=2, device="cpu")
    with pytest.raises(ValueError, match="max_in_flight"):
        salient_pipeline(small_dataset, max_in_flight=0, device="cpu")
    with pytest.raises(ValueError, match="epoch"):
        salient_pipeline(small_dataset, device="cpu").set_epoch(-1)
    # options checked even where this call would not use them (no cache, a CPU)
    with pytest.raises(ValueError, match="cache_policy must be one of"):
        salient_pipeline(small_dataset, device="cpu", cache_policy="lru")
    with pytest.raises(ValueError, match="device_cache must be a byte count"):
        salient_pipeline(small_dataset, device="cpu", device_cache="a lot")
    with pytest.raises(TypeError, match="FastDataset, HeteroDataset, CSRGraph"):
        NodeIndices(torch.arange(3)).batch_nodes(2).sample_neighbors("graph", [2])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_pin_memory_without_cuda_passes_through_with_one_warning(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=500, fanouts=(3,), device="cpu",
                            pin_memory=True)
    from salient_pipes.pipes import PinMemory

    PinMemory._warned = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = epoch_seeds(pipe)
        second = epoch_seeds(pipe)
    assert sum("CUDA is not available" in str(w.message) for w in caught) == 1
    assert first.numel() == second.numel() == small_dataset.split_idx["train"].numel()
    with pytest.raises(ValueError, match="CUDA is not available"):
        salient_pipeline(small_dataset, device="cuda")


def test_run_ahead_delivers_in_order_and_stays_within_depth():
    import threading

    from salient_pipes.pipes._handoff import run_ahead

    produced = []

    def make():
        for i in range(20):
            produced.append(i)
            yield i

    got = []
    for item in run_ahead(make, 3, threading.Event(), "test-ahead"):
        time.sleep(0.01)  # a slow consumer: the thread fills the queue and waits
        # the queue holds 3, the thread one more in hand, the consumer this one
        assert len(produced) - item - 1 <= 4, (item, len(produced))
        got.append(item)
    assert got == list(range(20))


def test_run_ahead_raises_the_threads_failure_after_its_items():
    import threading

    from salient_pipes.pipes._handoff import run_ahead

    def make():
        yield 1
        yield 2
        raise KeyError("source broke")

    got = []
    with pytest.raises(KeyError, match="source broke"):
        for item in run_ahead(make, 1, threading.Event(), "test-ahead"):
            got.append(item)
    assert got == [1, 2]
    with pytest.raises(ZeroDivisionError):  # failing to start the source is raised too
        list(run_ahead(lambda: iter([1 / 0]), 1, threading.Event(), "test-ahead"))


def test_run_ahead_stops_its_thread_and_closes_the_source():
    import threading

    from salient_pipes.pipes._handoff import run_ahead

    closed, made, sources = [], [], []

    def source():
        try:
            for i in range(1000):
                made.append(i)
                yield i
        finally:
            closed.append(threading.current_thread().name)

    def make():  # the test holds each source too: only an explicit close closes it
        sources.append(source())
        return sources[-1]

    def alive():
        return [t for t in threading.enumerate() if t.name == "test-ahead"]

    items = run_ahead(make, 2, threading.Event(), "test-ahead")
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the consumer stops early: the thread ends and closes the source
    assert closed == ["test-ahead"] and not alive()  # joined: gone already
    assert len(made) <= 3 + 2 + 1  # taken, queued, in the thread's hand: no more made
    # A later iteration stopping an abandoned one: setting its event ends its thread.
    stop = threading.Event()
    made.clear()
    abandoned = run_ahead(make, 2, stop, "test-ahead")
    next(abandoned)
    stop.set()
    deadline = time.monotonic() + 5
    while len(closed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == ["test-ahead"] * 2
    assert len(made) <= 1 + 2 + 1
    abandoned.close()
    assert not alive()


def test_a_chain_of_threads_unwinds_when_closed_while_a_stage_above_delivers_nothing():
    import threading

    from salient_pipes.pipes._handoff import run_ahead

    inner_stop = threading.Event()
    ends = []

    def stalled():  # delivers one item, then waits (watching its stop) and never delivers
        try:
            yield "first"
            while not inner_stop.is_set():
                time.sleep(0.01)
        finally:
            ends.append("stalled")

    def middle():  # a stage between: its thread waits for the stalled one's items
        try:
            yield from run_ahead(stalled, 1, inner_stop, "test-inner")
        finally:
            ends.append("middle")

    outer = run_ahead(middle, 1, threading.Event(), "test-outer")
    assert next(outer) == "first"
    time.sleep(0.2)  # both threads now wait for an item that never comes
    closing = threading.Thread(target=outer.close, daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "closing the chain waited forever on the stalled stage"
    assert inner_stop.is_set() and ends == ["stalled", "middle"]
    assert not [t for t in threading.enumerate() if t.name in ("test-inner", "test-outer")]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.cuda
def test_pin_and_prefetch_on_cuda(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=256, fanouts=(5, 5), device="cuda")
    from salient_pipes.pipes import PinMemory
    from salient_pipes.pipes.base import upstream

    # Batches placed in pinned slots need no pin stage.
    assert not any(isinstance(s, PinMemory) for s in upstream(pipe))
    for batch in pipe:
        assert batch.x.is_cuda and batch.adjs[0].edge_index.is_cuda
        assert torch.equal(batch.x.cpu(), small_dataset.x[batch.n_id.cpu()])
    pinned = next(iter(NodeIndices(small_dataset.split_idx["train"]).batch_nodes(256)
                       .sample_neighbors(small_dataset, [5]).slice_features(small_dataset.x)
                       .pin_memory()))
    assert pinned.is_pinned() and pinned.pin_memory() is pinned


@cuda
@pytest.mark.cuda
def test_prefetch_overlaps_copy_with_compute(small_dataset):
    # With depth 2, the copies of the next batches are issued before the
    # consumer gets the current one: the side stream has queued work then.
    pipe = (NodeIndices(small_dataset.split_idx["train"]).batch_nodes(256)
            .sample_neighbors(small_dataset, [5, 5]).slice_features(small_dataset.x)
            .pin_memory().prefetch_to_device("cuda", depth=2))
    n = 0
    for batch in pipe:
        torch.cuda.current_stream().synchronize()
        assert batch.x.is_cuda
        n += 1
    assert n == len(pipe)


def test_prefetch_casts_features_after_the_copy():

    ds = FastDataset.synthetic(num_nodes=300, seed=0)
    plain = salient_pipeline(ds, batch_size=64, fanouts=(3,), device="cpu")
    cast = salient_pipeline(ds, batch_size=64, fanouts=(3,), device="cpu",
                            x_dtype=torch.float32)
    for a, b in zip(plain, cast):
        assert a.x.dtype == torch.float16 and b.x.dtype == torch.float32
        assert torch.equal(a.x.float(), b.x) and torch.equal(a.y, b.y)
    mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    batch = next(iter(salient_pipeline(mag, batch_size=16, fanouts=[2], device="cpu",
                                       x_dtype=torch.float32)))
    assert batch.x and all(v.dtype == torch.float32 for v in batch.x.values())
    with pytest.raises(ValueError, match="x_dtype"):
        NodeIndices(torch.arange(3)).prefetch_to_device("cpu", x_dtype="float32")


def test_stages_look_up_no_missing_attribute_per_item(small_dataset, monkeypatch):
    """torch checks each item of each stage against ``_is_child_datapipe``;
    a lookup that falls through to IterDataPipe.__getattr__ raises and
    catches an AttributeError, about half of a stage's cost per item. Such
    lookups may happen per epoch, not per batch."""
    misses = []
    fallback = IterDataPipe.__getattr__

    def counted(self, name):
        misses.append(name)
        return fallback(self, name)

    monkeypatch.setattr(IterDataPipe, "__getattr__", counted)
    train = small_dataset.split_idx["train"]

    def lookups(batch_size: int) -> list:
        pipe = salient_pipeline(small_dataset, batch_size=batch_size, fanouts=(3, 2),
                                device="cpu", num_threads=1)
        list(pipe)  # the first epoch sets up the session
        misses.clear()
        batches = sum(1 for _ in pipe)
        return sorted(misses), batches

    few, many = lookups(train.numel()), lookups(max(1, train.numel() // 20))
    assert few[1] == 1 and many[1] >= 20
    assert many[0] == few[0]


def test_dataloader_example_feeds_every_training_seed_once():
    example = load_example("dataloader")
    batches, seeds = example.main(num_nodes=5000)
    train = FastDataset.synthetic(num_nodes=5000, seed=0).split_idx["train"].numel()
    assert seeds == train and batches == -(-train // 1024)


def test_hetero_mag_example_learns_with_both_loaders():
    pytest.importorskip("torch_sparse", reason="PyG's loader needs torch-sparse")
    import subprocess

    # In a fresh interpreter, as a user runs it: PyG's loader forks worker
    # processes, and a fork of this test process (its threads, and whatever
    # locks they hold at that instant, from every test before) is not what
    # the example is about.
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "hetero_mag.py"), "--scale", "0.01", "--epochs", "2",
         "--fanouts", "5", "3"], capture_output=True, text=True, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = {name: [float(line.rsplit("valid acc ", 1)[1]) for line in
                       proc.stdout.splitlines() if line.startswith(prefix)]
                for name, prefix in (("salient", "salient_pipes epoch"), ("pyg", "PyG loader"))}
    chance = 1 / HeteroDataset.synthetic_mag(scale=0.01, seed=0).num_classes
    for name in ("salient", "pyg"):
        assert len(accuracy[name]) == 2 and accuracy[name][-1] > 3 * chance, proc.stdout


def test_ddp_example_under_torchrun_learns():
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(EXAMPLES / "ddp_train.py"), "--num-nodes", "4000", "--epochs", "4",
         "--hidden", "32"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 4  # rank 0 alone prints (2 steps an epoch: 2 epochs were too few)
    valid = float(lines[-1].rsplit("valid ", 1)[1])
    chance = 1 / FastDataset.synthetic(num_nodes=4000, seed=0).num_classes
    assert valid > 2 * chance, proc.stdout
