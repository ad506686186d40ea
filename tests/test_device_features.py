"""Features on the device (salient_pipeline(features_on=..., device_cache=...)):
all of them, or a device cache of the hottest rows where the host gathers
only the rows the cache lacks and the batch is put together on the device.
The logic on the CPU; exact equality on CUDA where a GPU is present."""

from __future__ import annotations

import json

import pytest
import torch

from salient_pipes import FastDataset, HeteroDataset, _native, salient_pipeline
from salient_pipes.batch import PreparedBatch
from salient_pipes.data import FeatureCache
from salient_pipes.data.feature_cache import FeatureCaches
from salient_pipes.pipes import NodeIndices, pipeline_stats
from salient_pipes.pipes.device_features import (
    MARGIN,
    DeviceFeatures,
    assemble,
    choose_placement,
)
from salient_pipes.pipes.slice import SliceFeatures, gather
from tests.conftest import take_then_resume


def slice_stage(pipe):
    while not isinstance(pipe, SliceFeatures):
        pipe = pipe.source
    return pipe


@pytest.fixture(scope="module")
def ds():
    return FastDataset.synthetic(num_nodes=3000, avg_degree=6, num_features=12, seed=1)


def test_batches_gathered_on_the_device_equal_the_host_gather(ds):
    kw = dict(batch_size=128, fanouts=(4, 3), device="cpu", num_threads=2)
    on = salient_pipeline(ds, features_on="cpu", **kw)
    host = salient_pipeline(ds, **kw)
    assert slice_stage(on).x == {} and slice_stage(host).x  # the workers gather no rows
    assert on.placement == "features on cpu (as asked)" and host.placement.endswith("host")
    for _ in range(2):
        a, b = list(on), list(host)
        assert len(a) == len(b) == len(on)
        for p, q in zip(a, b):
            assert torch.equal(p.x, q.x) and torch.equal(p.y, q.y)
            assert torch.equal(p.n_id, q.n_id)


def test_heterogeneous_batches_and_the_cast_after_the_gather(ds):
    mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    kw = dict(batch_size=64, fanouts=[3, 2], device="cpu", num_threads=2)
    a = list(salient_pipeline(mag, features_on="cpu", **kw))
    b = list(salient_pipeline(mag, **kw))
    assert len(a) == len(b) > 1
    for p, q in zip(a, b):
        assert p.x.keys() == q.x.keys() and all(torch.equal(p.x[t], q.x[t]) for t in p.x)
    cast = next(iter(salient_pipeline(ds, features_on="cpu", x_dtype=torch.float32,
                                      batch_size=64, fanouts=(3,), device="cpu")))
    assert cast.x.dtype == torch.float32 and torch.equal(cast.x, ds.x[cast.n_id].float())


@pytest.mark.parametrize("cache", [None, "25%"])
def test_resume_with_features_on_the_device(ds, cache):
    def pipe():
        return salient_pipeline(ds, batch_size=100, fanouts=(3, 3), device="cpu",
                                num_threads=2, features_on="cpu", device_cache=cache,
                                overlap_epochs=False)

    whole = list(pipe())
    _, second = take_then_resume(pipe, pipe(), 4)
    rest = list(second)
    assert len(rest) == len(whole) - 4
    assert all(torch.equal(p.x, q.x) and torch.equal(p.n_id, q.n_id)
               for p, q in zip(rest, whole[4:]))


def test_auto_placement_follows_free_device_memory():
    gpu = torch.device("cuda", 0)
    where, cache, why = choose_placement("auto", gpu, 10 << 30, free=(10 << 30) + MARGIN)
    assert where == gpu and cache is None and "10.00 GiB of" in why
    # one byte short: a cache of what is free beyond the margin
    where, cache, why = choose_placement("auto", gpu, 10 << 30, free=(10 << 30) + MARGIN - 1,
                                         num_rows=1000)
    assert where == gpu and cache == (10 << 30) - 1 and "do not fit" in why
    assert "the hottest" in why and "gathered on the host" in why
    # not even the slot maps fit: the host
    where, cache, why = choose_placement("auto", gpu, 10 << 30, free=MARGIN + 4000,
                                         num_rows=1000)
    assert where is None and cache is None and "no room" in why
    assert choose_placement("auto", torch.device("cpu"), 1).device is None
    assert choose_placement(None, gpu, 1) == (None, None, "features on the host")
    assert choose_placement("host", gpu, 1).device is None
    assert choose_placement("cuda:1", gpu, 1).device == torch.device("cuda", 1)


def test_device_cache_placement_by_budget():
    gpu = torch.device("cuda", 0)
    # a share is of the features' bytes; the slot maps (4 bytes a row) count in it
    where, cache, why = choose_placement(None, gpu, 1000, device_cache="25%", num_rows=10)
    assert where == gpu and cache == 250 and "the hottest 0.0 MiB (21% of" in why
    assert choose_placement("auto", gpu, 1000, device_cache=600).cache == 600
    assert choose_placement("cuda:1", gpu, 1000, device_cache=10).device == \
        torch.device("cuda", 1)
    # a budget of the whole features keeps them whole (no slot maps needed)
    assert choose_placement(None, gpu, 1000, device_cache="100%", num_rows=10).cache is None
    assert choose_placement(None, gpu, 1000, device_cache=1000).cache is None
    with pytest.raises(ValueError, match="choose one"):
        choose_placement("host", gpu, 1000, device_cache="10%")
    # on a CPU device a device cache is not made unless a device is named
    cpu = torch.device("cpu")
    assert choose_placement(None, cpu, 1000, device_cache="10%").why.endswith("for a GPU)")
    assert choose_placement("cpu", cpu, 1000, device_cache="10%").cache == 100


def test_bad_placements_are_refused(ds, tmp_path):
    with pytest.raises(ValueError, match="name the same device"):
        salient_pipeline(ds, device="cpu", features_on="meta")
    ds.save(tmp_path / "d", progress=False)
    loaded = FastDataset.load(tmp_path / "d")
    with pytest.raises(ValueError, match="choose one"):
        salient_pipeline(loaded, device="cpu", features_on="cpu", out_of_core=True)
    with pytest.raises(ValueError, match="must be tensors"):
        DeviceFeatures({"a": [1, 2]}, "cpu")
    with pytest.raises(TypeError, match="PreparedBatch or NodeWiseBatch"):
        DeviceFeatures(ds.x, "cpu").fill(torch.zeros(3))
    with pytest.raises(ValueError, match="DeviceFeatures"):
        NodeIndices(torch.arange(4)).batch_nodes(2).prefetch_to_device("cpu", features="x")
    # a graph without features has nothing to gather
    empty = DeviceFeatures(torch.zeros(5, 0), "cpu")
    batch = PreparedBatch(x=None, y=None, adjs=[], n_id=torch.tensor([1]))
    assert empty.nbytes == 0 and empty.fill(batch) is batch


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_with_resident_features_equal_the_host_gathered_ones(ds):
    kw = dict(batch_size=128, fanouts=(4, 3), device="cuda", num_threads=2, shuffle=False)
    on = salient_pipeline(ds, features_on="cuda", **kw)
    assert on.placement.startswith("features on cuda")
    auto = salient_pipeline(ds, features_on="auto", **kw)
    assert auto.placement.startswith("features on cuda")
    for p, q, r in zip(on, salient_pipeline(ds, **kw), auto):
        assert p.x.is_cuda and torch.equal(p.x.cpu(), q.x.cpu())
        assert torch.equal(r.x.cpu(), q.x.cpu()) and torch.equal(p.y.cpu(), q.y.cpu())


def test_the_cli_places_the_features_and_says_where(tmp_path, capsys):
    from salient_pipes.cli import main

    out = tmp_path / "summary.json"
    main(["train", "--dataset", "synthetic", "--num-nodes", "2000", "--epochs", "1",
          "--fanouts", "3,2", "--hidden", "8", "--batch-size", "256", "--no-progress",
          "--device", "cpu", "--out", str(out), "--features-on", "cpu"])
    assert "features on cpu (as asked)" in capsys.readouterr().out
    assert 0 <= json.loads(out.read_text())["test_acc"] <= 1
    main(["train", "--dataset", "synthetic", "--num-nodes", "2000", "--epochs", "1",
          "--fanouts", "3,2", "--hidden", "8", "--batch-size", "256", "--no-progress",
          "--device", "cpu", "--out", str(out), "--features-on", "auto"])
    assert "features on the host: the device is the CPU" in capsys.readouterr().out


def crossing(pipe):
    """The batches as the slice stage hands them on (before the device)."""
    return list(slice_stage(pipe))


@pytest.mark.parametrize("budget,policy", [("25%", "degree"), ("50%", "sampled"),
                                           ("30%", "vip"), (0, "degree")])
def test_cached_batches_equal_the_host_gather_and_cross_without_cached_rows(ds, budget,
                                                                           policy):
    kw = dict(batch_size=128, fanouts=(4, 3), device="cpu", num_threads=2, shuffle=False,
              cache_policy=policy)
    on = salient_pipeline(ds, features_on="cpu", device_cache=budget, **kw)
    held = slice_stage(on).feature_cache[next(iter(slice_stage(on).feature_cache))]
    assert held.elsewhere and "features cached on cpu" in on.placement
    slots = held.slot
    host_pipe = salient_pipeline(ds, **kw)
    for _ in range(2):  # two epochs: the counts start again
        a, host = list(on), list(host_pipe)
        assert len(a) == len(host) == len(on)
        for p, q in zip(a, host):
            assert torch.equal(p.x, q.x) and torch.equal(p.n_id, q.n_id)
            assert torch.equal(p.y, q.y)
        stats = [s for s in pipeline_stats(on) if "device_cache_hit_rate" in s][0]
        ids = torch.cat([b.n_id for b in host])
        assert stats["device_cache_hit_rate"] == pytest.approx(
            float((slots[ids] >= 0).double().mean()))
    # what crosses: the rows of the nodes the cache lacks, in n_id order
    for b in crossing(on):
        lacking = b.n_id[slots[b.n_id] < 0]
        assert torch.equal(b.x, ds.x[lacking])
    if budget != 0:
        assert held.num_cached > 0 and 0 < stats["device_cache_hit_rate"] < 1


def test_cached_rows_are_the_hottest_by_policy(ds):
    pipe = salient_pipeline(ds, features_on="cpu", device_cache="20%", device="cpu",
                            batch_size=128, fanouts=(3,))
    held = slice_stage(pipe).feature_cache[next(iter(slice_stage(pipe).feature_cache))]
    degree = ds.rowptr[1:] - ds.rowptr[:-1]
    cached = held.slot >= 0
    assert degree[cached].min() >= degree[~cached].max()
    width = ds.x.size(1) * ds.x.element_size()
    assert held.num_cached == (int(0.2 * ds.x.numel() * ds.x.element_size())
                               - 4 * ds.num_nodes) // width
    on = DeviceFeatures(ds.x, "cpu", cache=FeatureCache(ds.x, 40_000))
    assert on.nbytes == on.cached["_N"].numel() * 2 + 4 * ds.num_nodes and not on.tables


@pytest.mark.filterwarnings("ignore:pin_memory")
def test_pinned_slots_and_heterogeneous_node_wise_batches():
    mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    kw = dict(batch_size=64, fanouts=[3, 2], device="cpu", num_threads=2, shuffle=False)
    # pin_memory=True on the CPU: whole batches in the slots of a pool
    a = salient_pipeline(mag, features_on="cpu", device_cache="40%", pin_memory=True, **kw)
    assert slice_stage(a).pinned_pool is not None
    b = list(salient_pipeline(mag, **kw))
    caches = slice_stage(a).feature_cache
    assert set(caches) == set(mag.x) and all(c.elsewhere for c in caches.values())
    assert sum(c.num_cached for c in caches.values()) > 0
    for p, q in zip(list(a), b):
        assert p.x.keys() == q.x.keys() and all(torch.equal(p.x[t], q.x[t]) for t in p.x)
    pool = slice_stage(a).pinned_pool
    subs = crossing(a)
    assert any(pool.span_of(sub.tensors()) is not None for sub in subs)  # in the slots
    for sub in subs:
        for t, rows in sub.x.items():
            assert torch.equal(rows, mag.x[t][sub.n_id[t][caches[t].slot[sub.n_id[t]] < 0]])
    assert 0 < [s for s in pipeline_stats(a) if "device_cache_hit_rate" in s][0][
        "device_cache_hit_rate"] < 1


def test_temporal_batches_take_the_gather_after_sampling(tmp_path):
    gen = torch.Generator().manual_seed(0)
    n = 600
    g = FastDataset.from_edges(tmp_path / "t", torch.randint(0, n, (2, 4000), generator=gen),
                               n, x=torch.randn(n, 6), y=torch.randint(0, 3, (n,), generator=gen),
                               split_idx={"train": torch.arange(300)},
                               edge_time=torch.randint(0, 50, (4000,), generator=gen),
                               node_time=torch.randint(20, 60, (n,), generator=gen),
                               progress=False)
    kw = dict(batch_size=32, fanouts=(3, 2), device="cpu", temporal="uniform", shuffle=False)
    on = salient_pipeline(g, features_on="cpu", device_cache="35%", **kw)
    assert not slice_stage(on).fused  # disjoint samples: gathered after sampling
    host = list(salient_pipeline(g, **kw))
    a = list(on)
    assert len(a) == len(host) > 2
    for p, q in zip(a, host):
        assert torch.equal(p.x["_N"], q.x["_N"]) and torch.equal(p.n_id["_N"], q.n_id["_N"])


def test_assemble_puts_cached_and_missed_rows_in_place():
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(50, 3, generator=gen)
    for cached_share in (0.0, 0.3, 1.0):
        hot = torch.randperm(50, generator=gen)[: int(cached_share * 50)]
        slots = torch.full((50,), -1, dtype=torch.int32)
        slots[hot] = torch.arange(hot.numel(), dtype=torch.int32)
        ids = torch.randint(0, 50, (200,), generator=gen)  # repeats too
        missed = table[ids[slots[ids] < 0]]
        out = assemble(table[hot], slots, ids, missed)
        assert torch.equal(out, table[ids])
    one_d = torch.arange(5.)
    slots = torch.tensor([0, -1, 1, -1, -1], dtype=torch.int32)
    assert assemble(one_d[[0, 2]], slots, torch.tensor([4, 2, 0]),
                    torch.tensor([4.])).tolist() == [4.0, 2.0, 0.0]


def test_the_threaded_gather_leaves_cached_rows_out():
    # above 1 MiB per thread the gather splits across threads
    x = torch.randn(40_000, 64)
    cache = FeatureCache(x, 4 * 40_000 + 256 * 10_000, priority=torch.rand(40_000),
                         pin=False).held_on("cpu")
    ids = torch.randint(0, 40_000, (30_000,))
    cache.reset_counts()
    for threads in (1, 2):
        out = gather(x, ids, num_threads=threads, cache=cache)
        assert torch.equal(out, x[ids[cache.slot[ids] < 0]])
    assert cache.lookups == 60_000 and cache.hits == 2 * int((cache.slot[ids] >= 0).sum())
    # without the move the same cache reads its rows (all of them)
    assert torch.equal(gather(x, ids, cache=FeatureCache(x, "50%", pin=False)), x[ids])


@pytest.mark.parametrize("chunk", [1 << 26, 100])
def test_a_device_cache_fills_the_device_a_chunk_at_a_time(ds, monkeypatch, chunk):
    from salient_pipes.data import feature_cache

    monkeypatch.setattr(feature_cache, "FILL_CHUNK", chunk)  # 100: 4 rows a chunk
    priority = torch.rand(ds.num_nodes, generator=torch.Generator().manual_seed(0))
    gathered = []
    real_gather = _native.gather

    def gather_spy(buffer, ids, num_threads):
        gathered.append(len(ids))
        return real_gather(buffer, ids, num_threads)

    monkeypatch.setattr(feature_cache._native, "gather", gather_spy)
    direct = FeatureCache(ds.x, "30%", priority=priority, device="cpu")
    per_chunk = max(1, chunk // (ds.x.size(1) * ds.x.element_size()))
    assert sum(gathered) == direct.num_cached and max(gathered) == min(per_chunk, sum(gathered))
    assert len(gathered) == -(-direct.num_cached // per_chunk)
    moved = FeatureCache(ds.x, "30%", priority=priority, pin=False).held_on("cpu")
    assert direct.elsewhere and direct.num_cached == moved.num_cached > 100
    assert torch.equal(direct.rows, ds.x[direct.ids]) and torch.equal(direct.ids, moved.ids)
    assert torch.equal(direct.slot, moved.slot)


def test_native_row_cache_held_elsewhere_checks_its_slots():
    like = torch.empty(0, 4).numpy()
    held = _native.RowCache(torch.tensor([-1, 2, 0, 1], dtype=torch.int32).numpy(), like,
                            elsewhere=True)
    assert held.elsewhere and held.num_cached == 3
    with pytest.raises(ValueError, match="distinct row"):
        _native.RowCache(torch.tensor([0, 0], dtype=torch.int32).numpy(), like, elsewhere=True)
    with pytest.raises(ValueError, match="distinct row"):
        _native.RowCache(torch.tensor([-1, 2], dtype=torch.int32).numpy(), like, elsewhere=True)
    with pytest.raises(ValueError, match="does not match its cache"):
        _native.gather(torch.zeros(4, 3).numpy(), torch.tensor([1]).numpy(), 1, held)


def test_bad_device_cache_requests_are_refused(ds, tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        salient_pipeline(ds, device="cpu", features_on="cpu", device_cache="10%",
                         feature_cache="10%")
    with pytest.raises(ValueError, match="choose one"):
        salient_pipeline(ds, device="cpu", features_on="host", device_cache="10%")
    with pytest.raises(ValueError, match="features_on must be 'host', 'auto' or a device"):
        salient_pipeline(ds, device="cpu", features_on="bogus")
    with pytest.raises(ValueError, match="device_cache must be a byte count"):
        salient_pipeline(ds, device="cpu", features_on="cpu", device_cache="lots")
    with pytest.raises(ValueError, match="device_cache share must be within"):
        salient_pipeline(ds, device="cpu", features_on="cpu", device_cache="120%")
    ds.save(tmp_path / "d", progress=False)
    with pytest.raises(ValueError, match="choose one"):
        salient_pipeline(FastDataset.load(tmp_path / "d"), device="cpu", device_cache="10%",
                         features_on="cpu", out_of_core=True)
    with pytest.raises(ValueError, match="FeatureCache of x"):
        DeviceFeatures(ds.x, "cpu", cache=FeatureCache(torch.zeros(7, 2), "50%"))
    with pytest.raises(ValueError, match="FeatureCache of x"):
        DeviceFeatures(ds.x, "cpu", cache=FeatureCaches({"paper": FeatureCache(ds.x, 0)}))
    # a device CPU and auto: the host (nothing cached)
    auto = salient_pipeline(ds, device="cpu", features_on="auto", batch_size=64, fanouts=(2,))
    assert slice_stage(auto).feature_cache is None and auto.placement.endswith("the CPU")
    # the node indices stage has no features to fill
    with pytest.raises(TypeError, match="PreparedBatch or NodeWiseBatch"):
        list(NodeIndices(torch.arange(4)).batch_nodes(2).prefetch_to_device(
            "cpu", features=DeviceFeatures(ds.x, "cpu", cache=FeatureCache(ds.x, "10%"))))


def test_the_cli_keeps_a_device_cache_and_reports_its_hits(tmp_path, capsys):
    from salient_pipes.cli import main

    out = tmp_path / "summary.json"
    main(["train", "--dataset", "synthetic", "--num-nodes", "2000", "--epochs", "1",
          "--fanouts", "3,2", "--hidden", "8", "--batch-size", "256", "--no-progress",
          "--device", "cpu", "--out", str(out), "--features-on", "cpu", "--gpu-cache", "30%"])
    text = capsys.readouterr().out
    assert "features cached on cpu: device_cache='30%'" in text
    assert "cpu cache hits" in text
    assert 0 <= json.loads(out.read_text())["test_acc"] <= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("budget", ["25%", "50%"])
def test_cuda_batches_with_a_device_cache_equal_the_host_gathered_ones(ds, budget):
    kw = dict(batch_size=128, fanouts=(4, 3), device="cuda", num_threads=2, shuffle=False)
    on = salient_pipeline(ds, device_cache=budget, **kw)
    assert on.placement.startswith("features cached on cuda")
    held = slice_stage(on).feature_cache
    assert all(c.rows.is_cuda for c in held.values())
    for p, q in zip(on, salient_pipeline(ds, **kw)):
        assert p.x.is_cuda and torch.equal(p.x.cpu(), q.x.cpu())
    mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    kw.update(batch_size=64, fanouts=[3, 2])
    for p, q in zip(salient_pipeline(mag, device_cache=budget, x_dtype=torch.float32, **kw),
                    salient_pipeline(mag, x_dtype=torch.float32, **kw)):
        assert all(torch.equal(p.x[t].cpu(), q.x[t].cpu()) for t in q.x)
    from torch_geometric.data import Data

    from salient_pipes.pyg import NeighborLoader

    data = Data(x=torch.randn(400, 8), edge_index=torch.randint(0, 400, (2, 3000)))
    loader = NeighborLoader(data, num_neighbors=[3, 2], batch_size=64, seed=0,
                            features_on="cuda", device_cache=budget)
    for b in loader:
        assert b.x.is_cuda and torch.equal(b.x.cpu(), data.x[b.n_id])


@pytest.mark.parametrize("kw", [dict(features_on="cpu"),
                                dict(features_on="cpu", device_cache="30%")])
def test_pyg_loaders_keep_x_on_the_device(kw):
    from torch_geometric.data import Data, HeteroData

    from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader

    gen = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(400, 8, generator=gen), y=torch.arange(400),
                edge_index=torch.randint(0, 400, (2, 3000), generator=gen))
    loader = NeighborLoader(data, num_neighbors=[3, 2], batch_size=64, seed=0, **kw)
    assert loader.placement.startswith("features" + (" cached" if "device_cache" in kw
                                                      else " on cpu"))
    plain = NeighborLoader(data, num_neighbors=[3, 2], batch_size=64, seed=0)
    for a, b in zip(loader, plain):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x)
        assert torch.equal(a.y, b.y)  # the other attributes as PyG slices them
    rate = [s for s in pipeline_stats(loader.pipe) if "device_cache_hit_rate" in s]
    cached = loader.on_device.host_cache["_N"]
    # a cache of every row when all of x is on the device
    assert (cached.num_cached == 400) == ("device_cache" not in kw)
    assert rate and 0 < rate[0]["device_cache_hit_rate"] <= 1
    one = loader([5, 7])  # collate_fn: one batch now
    assert torch.equal(one.x, data.x[one.n_id])
    links = LinkNeighborLoader(data, num_neighbors=[2], batch_size=32, seed=0, **kw)
    batch = next(iter(links))
    assert torch.equal(batch.x, data.x[batch.n_id])
    hetero = HeteroData()
    hetero["a"].x = torch.randn(100, 4, generator=gen)
    hetero["b"].x = torch.randn(60, 6, generator=gen)
    hetero["a", "to", "b"].edge_index = torch.stack([torch.randint(0, 100, (500,)),
                                                     torch.randint(0, 60, (500,))])
    hetero["b", "to", "a"].edge_index = torch.stack([torch.randint(0, 60, (500,)),
                                                     torch.randint(0, 100, (500,))])
    typed = NeighborLoader(hetero, num_neighbors=[2, 2], input_nodes="b", batch_size=16,
                           seed=0, **kw)
    for b in typed:
        for t in ("a", "b"):
            assert torch.equal(b[t].x, hetero[t].x[b[t].n_id])


def test_pyg_loader_device_options_refuse_what_they_cannot_do():
    from torch_geometric.data import Data

    from salient_pipes.pyg import NeighborLoader

    data = Data(x=torch.randn(20, 3), edge_index=torch.randint(0, 20, (2, 40)))
    with pytest.raises(ValueError, match="choose one"):
        NeighborLoader(data, num_neighbors=[2], features_on="host", device_cache="10%")
    with pytest.raises(ValueError, match="no 2-D x"):
        NeighborLoader(Data(edge_index=data.edge_index, num_nodes=20), num_neighbors=[2],
                       features_on="cpu")
    assert NeighborLoader(data, num_neighbors=[2]).on_device is None
    with pytest.raises(ValueError, match="features_on must be"):
        NeighborLoader(data, num_neighbors=[2], features_on="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            NeighborLoader(data, num_neighbors=[2], features_on="cuda")
