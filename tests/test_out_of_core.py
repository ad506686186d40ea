"""Graphs larger than memory: the bounded CSR build, O(1) opening through
stamps, features read through a hot-row cache, and OGB's raw formats read
in chunks."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from salient_pipes import FastDataset, FeatureCache, _native, csr_from_edge_index, salient_pipeline
from salient_pipes.data import build, ogb, parse_bytes
from salient_pipes.data import dataset as dataset_module
from salient_pipes.data import format as format_module
from salient_pipes.data.build import plan_buckets
from salient_pipes.data.format import DatasetCacheError
from salient_pipes.pipes import NodeIndices, gather, pipeline_stats
from tests.conftest import pairs


def _edges(num_nodes: int, num_edges: int, seed: int, dtype=np.int64) -> np.ndarray:
    """Duplicates, self loops, isolated nodes and a few hub rows."""
    rng = np.random.default_rng(seed)
    active = max(1, int(num_nodes * 0.8))  # the rest stay isolated
    edges = rng.integers(0, active, size=(2, num_edges))
    hubs = rng.integers(0, active, size=3)
    edges[1, : num_edges // 3] = rng.choice(hubs, num_edges // 3)  # hub rows
    edges[1, -50:] = edges[0, -50:]  # self loops
    edges[:, 100:200] = edges[:, :100]  # duplicates
    return edges.astype(dtype)


@pytest.mark.parametrize("undirected", [True, False])
@pytest.mark.parametrize("limit", ["64B", "4KiB", "1GiB"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_bounded_build_equals_the_in_memory_build(tmp_path, undirected, limit, dtype):
    edges = _edges(700, 6000, seed=len(limit) + undirected, dtype=dtype)
    ds = FastDataset.from_edges(tmp_path / "d", edges, 700, to_undirected=undirected,
                                memory_limit=limit, progress=False, num_threads=2)
    rowptr, col = csr_from_edge_index(torch.from_numpy(edges.astype(np.int64)), 700,
                                      to_undirected=undirected)
    assert torch.equal(ds.rowptr, rowptr)
    assert torch.equal(ds.col, col) and ds.col.dtype == torch.int32
    assert ds.num_edges == col.numel()


def test_plan_buckets_respects_the_limit_and_covers_every_row():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 40, size=5000)
    counts[[17, 2500]] = 10_000  # rows costlier than the limit get a bucket alone
    limit = 4 * 300 + 24 * 10
    buckets = plan_buckets(counts, 4, limit)
    assert buckets[0][0] == 0 and buckets[-1][1] == 5000
    assert all(a[1] == b[0] for a, b in zip(buckets, buckets[1:]))
    for begin, end in buckets:
        cost = int(counts[begin:end].sum()) * 4 + 24 * (end - begin)
        assert cost <= limit or end - begin == 1
        if end < 5000:  # greedy: the next row would not have fit
            assert cost + int(counts[end]) * 4 + 24 > limit
    assert (17, 18) in buckets and (2500, 2501) in buckets
    # a block boundary of the planner's reads falls inside a bucket
    many = np.ones(3 << 20, dtype=np.int64)
    big = plan_buckets(many, 4, 28 * 1_000_000)
    assert [b for b in big if b[1] - b[0] != 1_000_000] == [(3_000_000, 3 << 20)]


def test_inputs_may_be_npy_files_memmaps_or_tensors(tmp_path):
    edges = _edges(300, 2000, seed=4)
    x = np.random.default_rng(1).standard_normal((300, 5)).astype(np.float32)
    y = np.random.default_rng(2).integers(-1, 7, size=300)
    np.save(tmp_path / "edges.npy", edges)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mask = torch.zeros(300, dtype=torch.bool)
    mask[:100] = True
    by_path = FastDataset.from_edges(
        tmp_path / "a", tmp_path / "edges.npy", 300, x=str(tmp_path / "x.npy"),
        y=tmp_path / "y.npy", split_idx={"train": mask, "test": torch.arange(200, 300)},
        progress=False)
    by_mmap = FastDataset.from_edges(
        tmp_path / "b", np.load(tmp_path / "edges.npy", mmap_mode="r"), 300,
        x=torch.from_numpy(x), y=torch.from_numpy(y).view(-1, 1), feature_dtype=torch.bfloat16,
        split_idx={"train": mask}, num_classes=9, progress=False)
    for ds in (by_path, by_mmap):
        assert torch.equal(ds.y, torch.from_numpy(y))
        assert torch.equal(ds.split_idx["train"], torch.arange(100))
    assert by_path.num_classes == 7 and by_mmap.num_classes == 9
    assert torch.equal(by_path.x, torch.from_numpy(x).half())
    assert by_mmap.x.dtype == torch.bfloat16 and torch.equal(by_mmap.x,
                                                             torch.from_numpy(x).bfloat16())
    assert torch.equal(by_path.col, by_mmap.col)
    # features in several chunks
    small = build.CHUNK_BYTES
    try:
        build.CHUNK_BYTES = 5 * 8 * 7  # 7 rows per chunk
        chunked = FastDataset.from_edges(tmp_path / "c", edges, 300, x=x, progress=False)
    finally:
        build.CHUNK_BYTES = small
    assert torch.equal(chunked.x, by_path.x)
    no_features = FastDataset.from_edges(tmp_path / "e", edges, 300, progress=False)
    assert no_features.x.shape == (300, 0) and (no_features.y == -1).all()


@pytest.mark.parametrize("position", [5, 1999])
@pytest.mark.parametrize("side, value", [(0, -1), (1, 300), (0, 10**12)])
def test_bad_ids_anywhere_are_named_and_leave_the_old_copy(tmp_path, position, side, value):
    edges = _edges(300, 2000, seed=5)
    good = FastDataset.from_edges(tmp_path / "d", edges, 300, progress=False)
    before = good.col.clone()
    edges[side, position] = value
    with pytest.raises(ValueError, match=rf"edge_index\[{side}, {position}\] = {value} is outside"):
        FastDataset.from_edges(tmp_path / "d", edges, 300, progress=False)
    assert torch.equal(FastDataset.load(tmp_path / "d").col, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_bad_inputs_get_clear_errors(tmp_path):
    edges = _edges(100, 500, seed=6)
    np.save(tmp_path / "edges.npy", edges)
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes((tmp_path / "edges.npy").read_bytes()[:-64])
    cases = [
        (dict(edge_index=trunc), "edge_index: .*trunc.npy is not a readable .npy file"),
        (dict(edge_index=edges.astype(np.float32)), "int32 or int64 node ids, got float32"),
        (dict(edge_index=edges.astype(np.uint16)), "int32 or int64"),
        (dict(edge_index=edges.T), r"shape \[2, E\]"),
        (dict(edge_index=np.ascontiguousarray(edges.T).T), "row-major"),
        (dict(edge_index=[[0, 1]]), "tensor, a numpy array or the path"),
        (dict(x=np.zeros((99, 3))), r"x must have shape \[num_nodes=100, F\], got \(99, 3\)"),
        (dict(y=np.full(100, 0.5)), "integer class labels"),
        (dict(y=np.full(100, -2)), "label -2"),
        (dict(y=np.arange(100), num_classes=10), "label 99 but num_classes is 10"),
        (dict(y=np.zeros(50)), "one label per node"),
        (dict(split_idx={"train": torch.tensor([100])}), "outside"),
        (dict(memory_limit="lots"), "memory_limit must be a byte count"),
        (dict(memory_limit=0), "at least one byte"),
        (dict(num_nodes=-1), "num_nodes must be >= 0"),
    ]
    for change, message in cases:
        kwargs = dict(edge_index=edges, num_nodes=100, progress=False)
        kwargs.update(change)
        with pytest.raises(ValueError, match=message):
            FastDataset.from_edges(tmp_path / "d", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edges.npy", "trunc.npy"]


def test_a_full_disk_leaves_the_previous_copy_intact(tmp_path, monkeypatch):
    edges = _edges(200, 1000, seed=7)
    x = np.ones((200, 4), dtype=np.float32)
    FastDataset.from_edges(tmp_path / "d", edges, 200, x=x, progress=False)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build, "write_labels", full_disk)  # after the CSR and x are written
    with pytest.raises(OSError, match="No space left on device.*previous copy there is intact"):
        FastDataset.from_edges(tmp_path / "d", edges, 200, x=2 * x, progress=False)
    again = FastDataset.load(tmp_path / "d")
    assert torch.equal(again.x, torch.ones(200, 4, dtype=torch.float16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_parse_bytes():
    assert parse_bytes("1GiB") == 2**30 and parse_bytes("1 gb") == 10**9
    assert parse_bytes("512KiB") == 512 * 1024 and parse_bytes(77) == 77
    for bad in ("1 parsec", "", True, 1.5, "-1GiB"):
        with pytest.raises(ValueError, match="memory_limit"):
            parse_bytes(bad)


# ------------------------------------------------------------------ opening
def test_opening_is_o1_and_stamps_refuse_changed_files(tmp_path, monkeypatch):
    edges = _edges(500, 4000, seed=8)
    FastDataset.from_edges(tmp_path / "d", edges, 500, x=np.ones((500, 3)), progress=False)
    validated = []
    real_graph = _native.CSRGraph

    def spy(rowptr, col, validate=True):
        validated.append(validate)
        return real_graph(rowptr, col, validate)

    monkeypatch.setattr(dataset_module._native, "CSRGraph", spy)
    FastDataset.load(tmp_path / "d")
    assert validated == [False]  # the stamp stands for the validation done when writing

    # copied elsewhere: new modification times, same bytes -> validated once, stamps renewed
    col_file = tmp_path / "d" / "col.npy"
    os.utime(col_file, ns=(1, 1))
    FastDataset.load(tmp_path / "d")
    FastDataset.load(tmp_path / "d")
    assert validated == [False, True, False]

    # a changed byte in a sampled block is refused, whatever its time
    data = bytearray(col_file.read_bytes())
    data[-1] ^= 0xFF
    col_file.write_bytes(bytes(data))
    with pytest.raises(DatasetCacheError, match="changed after it was written"):
        FastDataset.load(tmp_path / "d")
    col_file.write_bytes(bytes(data[:-8]))
    with pytest.raises(DatasetCacheError, match="truncated"):
        FastDataset.load(tmp_path / "d")


def test_copies_without_stamps_are_validated(tmp_path, small_dataset, monkeypatch):
    small_dataset.save(tmp_path / "d", progress=False)
    meta_file = tmp_path / "d" / "meta.json"
    meta = json.loads(meta_file.read_text())
    for info in meta["files"].values():  # as written before stamps existed
        del info["crc"], info["mtime_ns"]
    meta_file.write_text(json.dumps(meta))
    col = np.load(tmp_path / "d" / "col.npy")
    col[len(col) // 2] = 10**6
    np.save(tmp_path / "d" / "col.npy", col)
    with pytest.raises(DatasetCacheError, match="outside"):
        FastDataset.load(tmp_path / "d")


# ----------------------------------------------------------- feature cache
def _unchanged(item):
    return item


@pytest.mark.parametrize("budget", [0, "1KiB", "40KiB", "everything"])
def test_gathers_through_the_cache_equal_the_file_rows(tmp_path, budget):
    edges = _edges(2000, 20000, seed=9)
    x = np.random.default_rng(3).standard_normal((2000, 16)).astype(np.float32)
    ds = FastDataset.from_edges(tmp_path / "d", edges, 2000, x=x,
                                y=np.arange(2000) % 5, split_idx={"train": torch.arange(2000)},
                                progress=False)
    cache = FeatureCache.for_dataset(ds, budget, num_threads=2)
    expected_rows = {0: 0, "1KiB": 0, "40KiB": (40 * 1024 - 8000) // 32, "everything": 2000}
    assert cache.num_cached == expected_rows[budget]
    assert torch.equal(cache.rows, ds.x[cache.ids])
    idx = torch.randint(0, 2000, (5000,))
    for threads in (1, 3):
        assert torch.equal(gather(ds.x, idx, threads, cache), ds.x[idx])
    cached = cache.slot[idx] >= 0
    assert cache.lookups == 10000 and cache.hits == 2 * int(cached.sum())
    for fused in (True, False):
        pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(300)
                .sample_neighbors(ds, [5, 5], num_threads=2))
        if not fused:
            pipe = pipe.map(_unchanged)
        pipe = pipe.slice_features(ds.x, ds.y, cache=cache)
        plain = (NodeIndices(ds.split_idx["train"]).batch_nodes(300)
                 .sample_neighbors(ds, [5, 5], num_threads=2).slice_features(ds.x, ds.y))
        got = list(pipe)
        for a, b in pairs(got, list(plain)):
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        rate = pipeline_stats(pipe)[-1]["cache_hit_rate"]
        looked_up = torch.cat([b.n_id for b in got])
        assert rate == pytest.approx(float((cache.slot[looked_up] >= 0).float().mean()))
    if budget == "everything":
        assert rate == 1.0
    if budget in (0, "1KiB"):
        assert rate == 0.0


def test_cache_policies_choose_the_rows_sampled_most(small_dataset):
    ds = small_dataset
    budget = 4 * ds.num_nodes + 300 * 32  # 300 rows of 16 fp16 features
    by_degree = FeatureCache.for_dataset(ds, budget)
    degree = ds.rowptr.diff()
    assert by_degree.num_cached == 300
    assert int(degree[by_degree.ids].min()) >= int(degree.sort(descending=True).values[299])
    sampled = FeatureCache.for_dataset(ds, budget, policy="sampled", fanouts=(5, 5),
                                       batch_size=128, num_batches=8)
    # measured counts favour high-degree nodes: most chosen rows overlap
    overlap = len(set(sampled.ids.tolist()) & set(by_degree.ids.tolist()))
    assert overlap > 150
    with pytest.raises(ValueError, match="cache policy must be one of"):
        FeatureCache.for_dataset(ds, budget, policy="lru")
    with pytest.raises(ValueError, match="feature_cache must be a byte count"):
        FeatureCache.for_dataset(ds, "a lot")
    with pytest.raises(ValueError, match="priority must hold one value per row"):
        FeatureCache(ds.x, budget, priority=torch.ones(3))


def test_salient_pipeline_with_a_feature_cache(small_dataset):
    pipe = salient_pipeline(small_dataset, batch_size=256, fanouts=(5, 5), device="cpu",
                            feature_cache="64KiB")
    plain = salient_pipeline(small_dataset, batch_size=256, fanouts=(5, 5), device="cpu")
    for a, b in pairs(list(pipe), list(plain)):
        assert torch.equal(a.x, b.x)
    rate = [s for s in pipeline_stats(pipe) if "cache_hit_rate" in s][0]["cache_hit_rate"]
    assert 0.2 < rate < 1.0  # about 40% of the rows, the busiest ones


def test_fanouts_named_by_edge_type_choose_the_same_sampled_cache(small_dataset):
    """Fanouts given as a dict naming the graph's one edge type build the
    "sampled" cache from the same batches as the list does."""
    from salient_pipes.batch import EDGE_TYPE, NODE_TYPE
    from salient_pipes.pipes import SliceFeatures, upstream

    def cache(fanouts):
        pipe = salient_pipeline(small_dataset, batch_size=128, fanouts=fanouts, device="cpu",
                                feature_cache="32KiB", cache_policy="sampled")
        return [s for s in upstream(pipe) if isinstance(s, SliceFeatures)][0].feature_cache

    by_list, by_dict = cache([5, 5]), cache({EDGE_TYPE: [5, 5]})
    assert by_list[NODE_TYPE].num_cached > 0
    assert torch.equal(by_list[NODE_TYPE].ids, by_dict[NODE_TYPE].ids)
    with pytest.raises(ValueError, match="names edge type"):
        cache({("a", "to", "b"): [5, 5]})


def test_native_row_cache_checks_its_slots():
    rows = np.zeros((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"slot\[1\] = 2"):
        _native.RowCache(np.array([0, 2, -1], dtype=np.int32), rows)
    with pytest.raises(ValueError, match=r"slot\[2\] = 0: each slot must be -1 or a distinct"):
        _native.RowCache(np.array([0, 1, 0], dtype=np.int32), rows)
    cache = _native.RowCache(np.array([0, 1, -1], dtype=np.int32), rows)
    with pytest.raises(ValueError, match="does not match its cache"):
        _native.gather(np.zeros((4, 3), dtype=np.float32), np.array([0]), 1, cache)
    with pytest.raises(ValueError, match="does not match its cache"):
        _native.gather(np.zeros((3, 3), dtype=np.float64), np.array([0]), 1, cache)


# ---------------------------------------------------------------- memory
@pytest.mark.timeout(300)
def test_bounded_build_keeps_anonymous_memory_under_its_limit(tmp_path):
    """An edge list ten times the limit; RssAnon sampled while it builds."""
    num_nodes, num_edges = 400_000, 12_000_000  # 192 MB of int64 edges
    limit = 16 << 20
    edges = np.lib.format.open_memmap(tmp_path / "edges.npy", mode="w+", dtype=np.int64,
                                      shape=(2, num_edges))
    rng = np.random.default_rng(0)
    for begin in range(0, num_edges, 1 << 22):
        end = min(num_edges, begin + (1 << 22))
        edges[:, begin:end] = rng.integers(0, num_nodes, size=(2, end - begin))
    del edges
    script = textwrap.dedent(f"""
        import json, threading, time
        from salient_pipes import FastDataset

        def anon():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon"))

        base, peak, done = anon(), [0], threading.Event()
        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], anon())
                time.sleep(0.005)
        threading.Thread(target=watch, daemon=True).start()
        ds = FastDataset.from_edges({str(tmp_path / 'd')!r}, {str(tmp_path / 'edges.npy')!r},
                                    {num_nodes}, memory_limit={limit}, progress=False)
        done.set()
        print(json.dumps({{"base": base, "peak": peak[0], "edges": ds.num_edges}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["edges"] > 2 * num_edges * 0.99
    grown = result["peak"] - result["base"]
    overhead = 48 << 20  # planner blocks, pandas/numpy temporaries, allocator slack
    assert grown <= limit + overhead, f"RssAnon grew by {grown / 2**20:.1f} MiB"


# ------------------------------------------------------------------- OGB
def _write_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def test_ogb_binary_layout_is_streamed_out_of_its_archives(tmp_path, monkeypatch):
    monkeypatch.setattr("ogb.utils.url.download_url", lambda *a, **k: pytest.fail("download"))
    rng = np.random.default_rng(0)
    n = 500
    edges = rng.integers(0, n, size=(2, 3000))
    feats = rng.standard_normal((n, 8)).astype(np.float32)
    labels = rng.integers(0, 172, size=(n, 1)).astype(np.float64)
    labels[::3] = np.nan  # papers100M marks unlabeled nodes with NaN
    base = tmp_path / "ogbn_papers100M"
    _write_npz(base / "raw" / "data.npz", edge_index=edges, node_feat=feats,
               num_nodes_list=np.array([n]), num_edges_list=np.array([3000]))
    _write_npz(base / "raw" / "node-label.npz", node_label=labels)
    for name, idx in {"train": np.arange(0, 300), "valid": np.arange(300, 400),
                      "test": np.arange(400, 500)}.items():
        (base / "split" / "time").mkdir(parents=True, exist_ok=True)
        np.savetxt(base / "split" / "time" / f"{name}.csv.gz", idx, fmt="%d")
    small = ogb.CHUNK_BYTES
    monkeypatch.setattr(ogb, "CHUNK_BYTES", 1000)  # many chunks per archive member
    ds = FastDataset.from_path(tmp_path, "ogbn-papers100M", progress=False,
                               memory_limit="8KiB")
    monkeypatch.setattr(ogb, "CHUNK_BYTES", small)
    rowptr, col = csr_from_edge_index(torch.from_numpy(edges), n)
    assert torch.equal(ds.rowptr, rowptr) and torch.equal(ds.col, col)
    assert torch.equal(ds.x, torch.from_numpy(feats).half())
    expected_y = np.where(np.isnan(labels[:, 0]), -1, labels[:, 0]).astype(np.int64)
    assert torch.equal(ds.y, torch.from_numpy(expected_y)) and ds.num_classes == 172
    assert ds.split_idx["valid"].tolist() == list(range(300, 400))
    assert not list(base.glob(".scratch-*"))
    with zipfile.ZipFile(base / "raw" / "data.npz") as zf:  # the members were compressed
        assert zf.getinfo("node_feat.npy").compress_type == zipfile.ZIP_DEFLATED


def test_random_access_advice_by_default_only_for_large_features(tmp_path, monkeypatch):
    edges = _edges(300, 2000, seed=10)
    FastDataset.from_edges(tmp_path / "d", edges, 300, x=np.ones((300, 8)), progress=False)
    advised = []
    monkeypatch.setattr(format_module, "advise_random", lambda array: advised.append(array))
    FastDataset.load(tmp_path / "d")
    assert advised == []  # 4.8 KB of features: read-ahead warms the page cache faster
    FastDataset.load(tmp_path / "d", random_access=True)
    assert len(advised) == 1 and advised[0].shape == (300, 8)
    monkeypatch.setattr(format_module, "physical_memory", lambda: 8000)
    FastDataset.load(tmp_path / "d")
    FastDataset.load(tmp_path / "d", random_access=False)
    assert len(advised) == 2



def test_files_larger_than_half_of_memory_are_mapped_read_only(tmp_path, monkeypatch):
    # A private mapping of a file larger than memory needs that much memory
    # committed, which the kernel refuses: such files are mapped read-only.
    edges = _edges(300, 2000, seed=11)
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    FastDataset.from_edges(tmp_path / "d", edges, 300, x=x, progress=False)
    modes = {}
    real_load = np.load

    def spy(file, mmap_mode=None, **kwargs):
        modes[Path(file).stem] = mmap_mode
        return real_load(file, mmap_mode=mmap_mode, **kwargs)

    monkeypatch.setattr(format_module.np, "load", spy)
    FastDataset.load(tmp_path / "d")
    assert set(modes.values()) == {"c"}  # copy-on-write: writes stay private
    monkeypatch.setattr(format_module, "physical_memory", lambda: 8000)  # x is 4.8 KB
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's non-writable warning is not shown to users
        large = FastDataset.load(tmp_path / "d")
    assert modes["x"] == "r" and modes["col"] == "r" and modes["y"] == "c"
    assert torch.equal(large.x, torch.from_numpy(x).half())
