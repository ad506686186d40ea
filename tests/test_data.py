"""FastDataset: sources, validation, the saved copy and its failure modes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.utils import to_undirected

from salient_pipes import DatasetCacheError, FastDataset, csr_from_edge_index
from salient_pipes.data import dataset as dataset_module
from salient_pipes.data import ogb
from salient_pipes.data.csr import csr_with_attributes, typed_csr
from salient_pipes.data.memory import HUGE_PAGE
from tests.conftest import mapped_file, native_sample


def _edges_of(ds: FastDataset) -> set:
    rows = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr[1:] - ds.rowptr[:-1])
    return set(zip(rows.tolist(), ds.col.tolist()))


def test_cora_from_pyg(cora):
    ds = FastDataset.from_pyg(cora, name="cora")
    undirected = to_undirected(cora.edge_index, num_nodes=cora.num_nodes)
    assert _edges_of(ds) == {(int(d), int(s)) for s, d in undirected.t().tolist()}
    assert ds.num_edges == undirected.size(1)
    assert ds.col.dtype == torch.int32
    # rows sorted, no duplicates
    for v in range(0, ds.num_nodes, 97):
        row = ds.col[ds.rowptr[v]:ds.rowptr[v + 1]]
        assert torch.all(row[1:] > row[:-1])
    assert ds.x.dtype == torch.float16
    assert torch.equal(ds.x, cora.x.half())
    assert torch.equal(ds.y, cora.y)
    assert ds.num_classes == 7
    for split, mask in (("train", cora.train_mask), ("valid", cora.val_mask),
                        ("test", cora.test_mask)):
        assert torch.equal(ds.split_idx[split], mask.nonzero().view(-1))


def test_from_pyg_explicit_split_and_errors(cora):
    split = {"train": torch.arange(10), "test": torch.arange(10, 20)}
    ds = FastDataset.from_pyg(cora, split, name="c2", feature_dtype=torch.bfloat16)
    assert ds.x.dtype == torch.bfloat16 and sorted(ds.split_idx) == ["test", "train"]
    bad = cora.clone()
    bad.y = bad.y[:-5]
    with pytest.raises(ValueError, match="y 2703 labels"):
        FastDataset.from_pyg(bad)
    bad = cora.clone()
    bad.x = None
    with pytest.raises(ValueError, match="no 'x'"):
        FastDataset.from_pyg(bad)
    with pytest.raises(ValueError, match="outside"):
        FastDataset.from_pyg(cora, {"train": torch.tensor([cora.num_nodes])})


def test_csr_from_edge_index_directed_and_undirected():
    edges = torch.tensor([[0, 0, 2, 2], [1, 1, 0, 2]])
    rowptr, col = csr_from_edge_index(edges, 3, to_undirected=False)
    assert rowptr.tolist() == [0, 1, 2, 3] and col.tolist() == [2, 0, 2]
    rowptr, col = csr_from_edge_index(edges, 3)
    assert rowptr.tolist() == [0, 2, 3, 5] and col.tolist() == [1, 2, 0, 0, 2]
    with pytest.raises(ValueError, match="outside"):
        csr_from_edge_index(torch.tensor([[0], [3]]), 3)


def _unique_csr(src, dst, num_src, num_dst):
    """The CSR the plain way: distinct (dst, src) keys, sorted."""
    key = torch.unique(dst.long() * max(num_src, 1) + src.long())
    row = key // max(num_src, 1)
    rowptr = torch.cat([torch.zeros(1, dtype=torch.int64),
                        torch.bincount(row, minlength=num_dst).cumsum(0)])
    return rowptr, key - row * max(num_src, 1)


@pytest.mark.parametrize("threads", [1, 2])
def test_in_memory_csrs_equal_the_sorted_distinct_pairs(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    gen = torch.Generator().manual_seed(threads)
    for trial in range(40):
        n, m = int(torch.randint(1, 400, (1,), generator=gen)), int(
            torch.randint(0, 3000, (1,), generator=gen))
        if trial < 2:  # rows enough (>= 1024 a thread) for the threaded sort
            n, m = 5000, 40000
        edges = torch.randint(n // 4 + 1, (2, m), generator=gen)  # many repeats, self-loops
        edges = edges.to(torch.int32) if trial % 2 else edges
        for undirected in (True, False):
            src, dst = (torch.cat([edges[0], edges[1]]), torch.cat([edges[1], edges[0]])) \
                if undirected else (edges[0], edges[1])
            rowptr, col = csr_from_edge_index(edges, n, to_undirected=undirected)
            ref_rowptr, ref_col = _unique_csr(src, dst, n, n)
            assert torch.equal(rowptr, ref_rowptr) and col.dtype == torch.int32
            assert torch.equal(col.long(), ref_col)
        num_dst = int(torch.randint(1, 50, (1,), generator=gen))
        pairs = torch.stack([torch.randint(n, (m,), generator=gen),
                             torch.randint(num_dst, (m,), generator=gen)])
        rowptr, col = typed_csr(pairs, n, num_dst)
        ref_rowptr, ref_col = _unique_csr(pairs[0], pairs[1], n, num_dst)
        assert torch.equal(rowptr, ref_rowptr) and torch.equal(col.long(), ref_col)


@pytest.mark.parametrize("threads", [1, 2])
def test_csr_with_attributes_orders_rows_by_time_source_and_input_edge(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    gen = torch.Generator().manual_seed(threads)
    for n, m, bipartite in ((5000, 60000, None), (37, 900, None), (50, 700, 20)):
        edges = torch.stack([torch.randint(bipartite or n // 3 + 1, (m,), generator=gen),
                             torch.randint(n // 3 + 1, (m,), generator=gen)])  # ties, loops
        values = {"edge_time": torch.randint(0, 4, (m,), generator=gen, dtype=torch.int32),
                  "edge_weight": torch.rand(m, generator=gen)}
        for undirected in (True, False) if bipartite is None else (False,):
            rowptr, col, kept = csr_with_attributes(edges, n, values, undirected, bipartite)
            # the plain way: every (row, time, neighbor, input edge), sorted
            edge = torch.arange(m)
            src, dst = edges
            if undirected:
                back = src != dst
                src, dst = torch.cat([src, dst[back]]), torch.cat([dst, src[back]])
                edge = torch.cat([edge, edge[back]])
            order = torch.argsort(edge, stable=True)
            for key in (src, values["edge_time"][edge], dst):
                order = order[torch.argsort(key[order], stable=True)]
            assert torch.equal(rowptr.diff(), torch.bincount(dst, minlength=n))
            assert torch.equal(col.long(), src[order])
            assert kept["edge_time"].dtype == torch.int64
            assert torch.equal(kept["edge_time"], values["edge_time"][edge[order]].long())
            assert torch.equal(kept["edge_weight"], values["edge_weight"][edge[order]])
    with pytest.raises(ValueError, match=r"edge_index\[1, 0\] = 9 is outside \[0, 5\)"):
        csr_with_attributes(torch.tensor([[0], [9]]), 5, {}, False)
    with pytest.raises(ValueError, match="edge_time must be a 1-D integer tensor"):
        csr_with_attributes(edges, n, {"edge_time": values["edge_weight"]}, False, bipartite)
    with pytest.raises(ValueError, match="edge_weight must be a 1-D tensor of one value"):
        csr_with_attributes(edges, n, {"edge_weight": values["edge_weight"][1:]}, False,
                            bipartite)


def test_csr_builds_refuse_edges_that_are_not_integer_pairs_in_range():
    builds = {"csr_from_edge_index": lambda e: csr_from_edge_index(e, 5),
              "typed_csr": lambda e: typed_csr(e, 5, 5),
              "csr_with_attributes": lambda e: csr_with_attributes(e, 5, {}, True)}
    for name, build in builds.items():
        for bad in (torch.tensor([[0.0, 1.5], [1.0, 2.0]]), torch.ones(2, 2, dtype=torch.bool),
                    torch.tensor([0, 1, 2]), torch.zeros(3, 2, dtype=torch.int64)):
            with pytest.raises(ValueError, match="edge_index must be an integer tensor of "
                                                 r"shape \[2, E\]"):
                build(bad)
        with pytest.raises(ValueError, match=r"edge_index\[0, 1\] = -1 is outside \[0, 5\)"):
            build(torch.tensor([[0, -1], [1, 2]]))
        with pytest.raises(ValueError, match=r"edge_index\[1, 0\] = 5 is outside \[0, 5\)"):
            build(np.array([[0, 1], [5, 2]], dtype=np.int32))
        rowptr, col = build([[0, 1], [1, 2]])[:2]  # a nested list of ids is fine
        assert rowptr[-1] == (4 if name != "typed_csr" else 2), name


def _valid_fields(n=5):
    rowptr, col = csr_from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 3]]), n)
    return dict(name="t", x=torch.zeros(n, 3), y=torch.zeros(n, dtype=torch.int64),
                rowptr=rowptr, col=col, split_idx={"train": torch.tensor([0, 1])}, num_classes=2)


@pytest.mark.parametrize("change,message", [
    ({"x": torch.zeros(4, 3)}, "x must have shape"),
    ({"y": torch.zeros(5)}, "y must be a 1-D int64"),
    ({"y": torch.full((5,), 2)}, "num_classes is 2"),
    ({"y": torch.full((5,), -3)}, "no other negative"),
    ({"num_classes": 0}, "num_classes"),
    ({"split_idx": {"train": torch.tensor([7])}}, "outside"),
    ({"split_idx": {"train": torch.tensor([0.5])}}, "must hold integer node ids"),
    ({"split_idx": {"train": torch.ones(4, dtype=torch.bool)}}, "mask of 4 entries"),
    ({"split_idx": {"train": torch.tensor([[0, 1]])}}, "must be 1-D"),
    ({"rowptr": torch.tensor([0, 1, 2, 3, 4, 2])}, "not monotone"),
    ({"col": torch.tensor([1, 0, 2, 1, 9, 2], dtype=torch.int32)}, "outside"),
    ({"x": np.zeros((5, 3))}, "must be a torch.Tensor"),
])
def test_constructor_validates(change, message):
    fields = _valid_fields()
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        FastDataset(**fields)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_nodes=1), "num_nodes must be >= 2, got 1"),
    (dict(num_nodes=2.5), r"num_nodes must be an int, got 2.5"),
    (dict(num_features=0), "num_features must be >= 1"),
    (dict(num_classes=1), "num_classes must be >= 2"),
    (dict(avg_degree=0), "avg_degree must be a number > 0, got 0"),
    (dict(avg_degree="12"), "avg_degree must be a number > 0"),
    (dict(avg_degree=True), "avg_degree must be a number > 0, got True"),
    (dict(avg_degree=float("nan")), "avg_degree must be a number > 0, got nan"),
    (dict(seed=-1), "seed must be >= 0"),
])
def test_synthetic_names_a_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FastDataset.synthetic(**{"num_nodes": 100, **kwargs})


def test_synthetic_mag_names_a_bad_argument():
    from salient_pipes import HeteroDataset

    for kwargs, message in [(dict(scale=0), "scale must be a number > 0, got 0"),
                            (dict(scale="1"), "scale must be a number > 0"),
                            (dict(num_classes=1), "num_classes must be >= 2"),
                            (dict(num_features=-1), "num_features must be >= 0")]:
        with pytest.raises(ValueError, match=message):
            HeteroDataset.synthetic_mag(**{"scale": 0.001, **kwargs})


def test_synthetic_is_deterministic_and_heavy_tailed():
    a = FastDataset.synthetic(num_nodes=4000, avg_degree=10, seed=3)
    b = FastDataset.synthetic(num_nodes=4000, avg_degree=10, seed=3)
    c = FastDataset.synthetic(num_nodes=4000, avg_degree=10, seed=4)
    assert torch.equal(a.col, b.col) and torch.equal(a.x, b.x)
    assert not torch.equal(a.col, c.col)
    degree = (a.rowptr[1:] - a.rowptr[:-1]).float()
    assert degree.max() > 8 * degree.mean()  # hubs
    assert abs(degree.mean() - 10) < 1.5
    sizes = {k: v.numel() for k, v in a.split_idx.items()}
    assert sum(sizes.values()) == 4000
    assert set(torch.cat(list(a.split_idx.values())).tolist()) == set(range(4000))


def test_synthetic_edges_follow_the_sources_class_as_drawn():
    # the model, drawn the plain way: every draw inside a class takes a
    # target of the source's class, one class at a time, in draw order
    n, classes, homophily = 3000, 6, 0.8
    gen = torch.Generator().manual_seed(5)
    label = torch.randint(classes, (n,), generator=gen)
    weight = (1 - torch.rand(n, generator=gen, dtype=torch.float64)) ** -0.5
    draws = n * 4
    src = torch.multinomial(weight, draws, replacement=True, generator=gen)
    dst = torch.multinomial(weight, draws, replacement=True, generator=gen)
    inside = torch.rand(draws, generator=gen) < homophily
    for c in range(classes):
        members = (label == c).nonzero().view(-1)
        pick = inside & (label[src] == c)
        if int(pick.sum()):
            dst[pick] = members[torch.multinomial(weight[members], int(pick.sum()),
                                                  replacement=True, generator=gen)]
    ds = FastDataset.synthetic(num_nodes=n, avg_degree=8, num_classes=classes, seed=5,
                               homophily=homophily)
    rowptr, col = csr_from_edge_index(torch.stack([src, dst]), n)
    assert torch.equal(ds.y, label) and torch.equal(ds.rowptr, rowptr)
    assert torch.equal(ds.col, col)
    pure = FastDataset.synthetic(num_nodes=n, avg_degree=8, num_classes=classes, seed=5,
                                 homophily=1.0)
    targets = torch.repeat_interleave(torch.arange(n), pure.rowptr[1:] - pure.rowptr[:-1])
    assert torch.equal(pure.y[pure.col.long()], pure.y[targets])


def test_save_and_load_round_trip(tmp_path, small_dataset):
    for dtype in (torch.float16, torch.bfloat16):
        ds = FastDataset(name="rt", x=small_dataset.x.to(dtype), y=small_dataset.y,
                         rowptr=small_dataset.rowptr, col=small_dataset.col,
                         split_idx=small_dataset.split_idx, num_classes=small_dataset.num_classes)
        ds.save(tmp_path / "copy", progress=False)
        for mmap in (True, False):
            back = FastDataset.load(tmp_path / "copy", mmap=mmap)
            assert back.x.dtype == dtype and torch.equal(back.x, ds.x)
            assert torch.equal(back.col, ds.col) and torch.equal(back.rowptr, ds.rowptr)
            assert all(torch.equal(back.split_idx[k], v) for k, v in ds.split_idx.items())
        assert not list(tmp_path.glob(".copy.tmp-*"))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_graph_in_memory_moves_only_the_csr_into_huge_pages(tmp_path):
    # col of 1.2 M int32 entries (4.8 MB): large enough for 2 MiB pages.
    ds = FastDataset.synthetic(num_nodes=60_000, avg_degree=20, num_features=8, num_classes=3,
                               seed=2)
    ds.save(tmp_path / "g", progress=False)
    mapped = FastDataset.load(tmp_path / "g")
    moved = FastDataset.load(tmp_path / "g", graph_in_memory=True)
    assert mapped_file(mapped.col).endswith("col.npy")
    assert mapped_file(moved.col) == "" and moved.col.data_ptr() % HUGE_PAGE == 0
    assert mapped_file(moved.rowptr) == ""
    assert mapped_file(moved.x).endswith("x.npy")  # the features stay mapped
    assert torch.equal(moved.col, ds.col) and torch.equal(moved.rowptr, ds.rowptr)
    seeds = np.arange(0, 60_000, 97, dtype=np.int64)
    a = native_sample(mapped.graph, seeds, [5, 3], seed=1)
    b = native_sample(moved.graph, seeds, [5, 3], seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    # False keeps the CSR mapped even without mmap for the rest.
    kept = FastDataset.load(tmp_path / "g", mmap=False, graph_in_memory=False)
    assert kept.col.data_ptr() % HUGE_PAGE != 0  # an ordinary heap copy
    assert torch.equal(kept.col, ds.col)


def test_interrupted_save_leaves_nothing_loadable(tmp_path, small_dataset, monkeypatch):
    calls = {"n": 0}
    real_save = np.save

    def failing_save(path, array, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash mid-save")
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(dataset_module.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        small_dataset.save(tmp_path / "copy", progress=False)
    assert not (tmp_path / "copy").exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FastDataset.load(tmp_path / "copy")


def test_damaged_copies_raise_with_rebuild_advice(tmp_path, small_dataset):
    small_dataset.save(tmp_path / "copy", progress=False)
    col_file = tmp_path / "copy" / "col.npy"
    col_file.write_bytes(col_file.read_bytes()[:-100])
    with pytest.raises(DatasetCacheError, match="truncated.*delete"):
        FastDataset.load(tmp_path / "copy")
    small_dataset.save(tmp_path / "copy", progress=False)  # overwrites the damaged copy
    FastDataset.load(tmp_path / "copy")
    meta = tmp_path / "copy" / "meta.json"
    meta.write_text(json.dumps({"format": "something else", "version": 9}))
    with pytest.raises(DatasetCacheError, match="not a salient_pipes.FastDataset v1"):
        FastDataset.load(tmp_path / "copy")
    meta.write_text("{not json")
    with pytest.raises(DatasetCacheError, match="no readable dataset"):
        FastDataset.load(tmp_path / "copy")


def test_a_copy_opened_by_the_wrong_class_names_the_right_one(tmp_path, small_dataset):
    from salient_pipes import HeteroDataset, PartitionedDataset, partition
    from salient_pipes.distributed import PartitionLoadError

    small_dataset.save(tmp_path / "fast", progress=False)
    HeteroDataset.synthetic_mag(scale=0.001).save(tmp_path / "mag", progress=False)
    partition(small_dataset, 2, tmp_path / "parts", method="random", progress=False)
    for opener, path, message in [
            (HeteroDataset.load, "fast", "is a salient_pipes.FastDataset copy, not a "
                                         "salient_pipes.hetero one: open it with "
                                         "FastDataset.load"),
            (FastDataset.load, "mag", "open it with HeteroDataset.load"),
            (FastDataset.load, "parts", "open it with PartitionedDataset.load"),
            (PartitionedDataset.load, "fast", "open it with FastDataset.load")]:
        with pytest.raises((DatasetCacheError, PartitionLoadError), match=message):
            opener(tmp_path / path)


def test_writes_replace_only_a_copy_this_library_wrote(tmp_path, small_dataset):
    """A save, conversion or partition to a path that holds a file, a link or
    a user's directory leaves it exactly as it was."""
    from salient_pipes import partition

    file = tmp_path / "notes.txt"
    file.write_text("mine")
    users = tmp_path / "project"
    (users / "src").mkdir(parents=True)
    (users / "src" / "main.py").write_text("print('mine')")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    (broken / "x.npy").write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(users, target_is_directory=True)
    writes = [lambda p: small_dataset.save(p, progress=False),
              lambda p: FastDataset.from_edges(p, torch.tensor([[0, 1], [1, 2]]), 3,
                                               progress=False),
              lambda p: partition(small_dataset, 2, p, method="random", progress=False)]
    for target, what in [(file, "is a file"), (users, "holds no copy salient_pipes wrote"),
                         (broken, "holds no copy"), (link, "is a symbolic link")]:
        for write in writes:
            with pytest.raises(FileExistsError, match=what):
                write(target)
    assert file.read_text() == "mine"
    assert (users / "src" / "main.py").read_text() == "print('mine')"
    assert sorted(p.name for p in broken.iterdir()) == ["meta.json", "x.npy"]
    assert link.is_symlink() and link.resolve() == users.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "link", "notes.txt",
                                                          "project"]  # no leftovers
    empty = tmp_path / "empty"
    empty.mkdir()
    small_dataset.save(empty, progress=False)  # an empty directory is fine
    partition(small_dataset, 2, tmp_path / "parts", method="random", progress=False)
    partition(small_dataset, 2, tmp_path / "parts", method="random", progress=False)  # ours
    assert FastDataset.load(empty).num_nodes == small_dataset.num_nodes


def _write_csv_gz(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for row in rows:
            f.write(",".join(str(v) for v in np.atleast_1d(row)) + "\n")


def _write_ogb_layout(root: Path, num_nodes=40, seed=0) -> dict:
    """A tiny graph in the layout OGB's arxiv archive unpacks to."""
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, num_nodes, size=(120, 2))
    feats = rng.standard_normal((num_nodes, 6)).round(3)
    labels = rng.integers(0, 40, size=num_nodes)
    base = root / "ogbn_arxiv"
    _write_csv_gz(base / "raw" / "edge.csv.gz", edges)
    _write_csv_gz(base / "raw" / "node-feat.csv.gz", feats)
    _write_csv_gz(base / "raw" / "node-label.csv.gz", labels)
    _write_csv_gz(base / "raw" / "num-node-list.csv.gz", [num_nodes])
    _write_csv_gz(base / "raw" / "num-edge-list.csv.gz", [len(edges)])
    perm = rng.permutation(num_nodes)
    split = {"train": perm[:20], "valid": perm[20:30], "test": perm[30:]}
    for name, idx in split.items():
        _write_csv_gz(base / "split" / "time" / f"{name}.csv.gz", idx)
    (base / "RELEASE_v1.txt").write_text("")
    return {"edges": edges, "feats": feats, "labels": labels, "split": split}


def test_from_path_converts_offline_then_reopens(tmp_path, monkeypatch):
    truth = _write_ogb_layout(tmp_path)

    def no_network(*args, **kwargs):
        raise AssertionError("from_path tried to download")

    monkeypatch.setattr("ogb.utils.url.download_url", no_network)
    monkeypatch.setattr("builtins.input", no_network)
    ds = FastDataset.from_path(tmp_path, "ogbn-arxiv", progress=False)
    assert ds.num_nodes == 40 and ds.num_classes == 40
    expected, _ = csr_from_edge_index(torch.from_numpy(truth["edges"].T), 40)
    assert torch.equal(ds.rowptr, expected)
    assert torch.equal(ds.x, torch.from_numpy(truth["feats"]).half())
    assert torch.equal(ds.y, torch.from_numpy(truth["labels"]))
    assert ds.split_idx["valid"].tolist() == truth["split"]["valid"].tolist()
    assert (tmp_path / "ogbn_arxiv" / "salient_pipes" / "meta.json").exists()

    def no_conversion(*args, **kwargs):
        raise AssertionError("the saved copy was not reused")

    monkeypatch.setattr(ogb, "convert", no_conversion)
    again = FastDataset.from_path(tmp_path, "ogbn-arxiv", progress=False)
    assert torch.equal(again.col, ds.col) and torch.equal(again.x, ds.x)


def test_labels_with_nan_become_minus_one(tmp_path):
    ds = FastDataset.from_edges(tmp_path / "d", torch.tensor([[0, 1], [1, 2]]), 3,
                                y=np.array([[1.0], [np.nan], [3.0]]), progress=False)
    assert ds.y.tolist() == [1, -1, 3] and ds.y.dtype == torch.int64 and ds.num_classes == 4


def test_unknown_and_heterogeneous_names(tmp_path):
    with pytest.raises(ValueError, match="unknown OGB node-property dataset 'ogbn-nope'"):
        FastDataset.from_path(tmp_path, "ogbn-nope")
    with pytest.raises(ValueError, match="heterogeneous"):
        FastDataset.from_path(tmp_path, "ogbn-mag")


def test_summary_names_the_essentials(small_dataset):
    line = small_dataset.summary()
    for part in ("3,000 nodes", "16 features (float16)", "4 classes", "train", "MiB"):
        assert part in line


def test_arxiv_example_runs_on_an_offline_ogb_layout(tmp_path, monkeypatch, capsys):
    from tests.test_pipes import load_example

    _write_ogb_layout(tmp_path, num_nodes=300)
    monkeypatch.setattr("ogb.utils.url.download_url", _no_download)
    example = load_example("graphsage_ogbn_arxiv")
    example.main(["--root", str(tmp_path), "--epochs", "2", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "epoch 1: loss" in out and "'test':" in out


def _no_download(*args, **kwargs):
    raise AssertionError("tried to download")


def test_from_edges_refuses_a_label_equal_to_num_classes(tmp_path):
    edges = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="y holds label 3 but num_classes is 3"):
        FastDataset.from_edges(tmp_path / "d", edges, 3, y=torch.tensor([0, 3, 1]),
                               num_classes=3, progress=False)
    ds = FastDataset.from_edges(tmp_path / "e", edges, 3, y=torch.tensor([0, 2, 1]),
                                num_classes=3, progress=False)
    assert ds.num_classes == 3


@pytest.mark.parametrize("rows,message", [
    (41, "has more than the 40 rows its dataset lists"),
    (39, "has 39 rows, its dataset lists 40"),
])
def test_ogb_files_of_the_wrong_length_are_named(tmp_path, monkeypatch, rows, message):
    _write_ogb_layout(tmp_path)
    raw = tmp_path / "ogbn_arxiv" / "raw"
    _write_csv_gz(raw / "node-feat.csv.gz", np.zeros((rows, 6)))
    monkeypatch.setattr("ogb.utils.url.download_url", _no_download)
    with pytest.raises(ValueError, match=f"node-feat.csv.gz {message}"):
        FastDataset.from_path(tmp_path, "ogbn-arxiv", progress=False)
    assert not (tmp_path / "ogbn_arxiv" / "salient_pipes").exists()  # nothing half-written


def test_npz_members_that_cannot_stream_are_named(tmp_path):
    import zipfile

    archive = tmp_path / "a.npz"
    np.savez(archive, cols=np.asfortranarray(np.ones((3, 2))), rows=np.arange(4),
             grid=np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="a.npz:cols is stored column-major"):
        ogb.npz_member_to_npy(archive, "cols", tmp_path / "cols.npy")
    assert np.load(ogb.npz_member_to_npy(archive, "rows", tmp_path / "r.npy")).tolist() == \
        [0, 1, 2, 3]
    assert np.load(ogb.npz_member_to_npy(archive, "grid", tmp_path / "g.npy")).tolist() == \
        [[0, 1, 2], [3, 4, 5]]  # row-major: streams as it is
    cut = tmp_path / "cut.npz"  # the header promises 100 int64 values; 3 follow
    header = tmp_path / "h.npy"
    np.save(header, np.arange(100))
    with zipfile.ZipFile(cut, "w") as zf:
        zf.writestr("rows.npy", header.read_bytes()[:128 + 24])
    with pytest.raises(ValueError, match="cut.npz:rows ends after 24 of 800 bytes"):
        ogb.npz_member_to_npy(cut, "rows", tmp_path / "rows.npy")


def test_from_path_downloads_unpacks_and_converts(tmp_path, monkeypatch):
    """The download path with the network replaced: OGB's archive (a folder
    named ``arxiv``) is fetched into the root, unpacked, renamed to
    ``ogbn_arxiv`` and converted; the archive is removed."""
    import zipfile

    staging = tmp_path / "staging"
    truth = _write_ogb_layout(staging)
    fetched = []

    def fake_download(url, folder):
        assert url.endswith("/arxiv.zip")
        archive = Path(folder) / "arxiv.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for file in (staging / "ogbn_arxiv").rglob("*"):
                zf.write(file, "arxiv/" + str(file.relative_to(staging / "ogbn_arxiv")))
        fetched.append(archive)
        return str(archive)

    monkeypatch.setattr("ogb.utils.url.download_url", fake_download)
    root = tmp_path / "data"
    ds = FastDataset.from_path(root, "ogbn-arxiv", progress=False)
    assert len(fetched) == 1 and not fetched[0].exists()  # the archive is removed
    assert (root / "ogbn_arxiv" / "raw" / "edge.csv.gz").exists()
    assert not (root / "arxiv").exists()
    assert torch.equal(ds.y, torch.from_numpy(truth["labels"]))
    assert ds.split_idx["test"].tolist() == truth["split"]["test"].tolist()
    assert FastDataset.from_path(root, "ogbn-arxiv", progress=False).num_nodes == 40
    assert len(fetched) == 1  # the second open downloads nothing


def test_long_writes_show_progress_bars_unless_asked_not_to(tmp_path, capsys):
    from salient_pipes import HeteroDataset, partition

    edges = torch.randint(0, 500, (2, 3000), generator=torch.Generator().manual_seed(0))
    x = torch.randn(500, 4)
    writes = {
        "from_edges": lambda p, **o: FastDataset.from_edges(p, edges, 500, x=x, **o),
        "save": lambda p, **o: FastDataset.synthetic(num_nodes=300, seed=0).save(p, **o),
        "hetero save": lambda p, **o: HeteroDataset.synthetic_mag(scale=0.001).save(p, **o),
        "partition": lambda p, **o: partition(FastDataset.synthetic(num_nodes=300, seed=0), 2,
                                              p, method="random", **o),
    }
    bars = {"from_edges": ("building CSR",), "save": ("saving",),  # (one chunk: no copy bar)
            "hetero save": ("saving",),
            "partition": ("writing parts",)}
    for name, write in writes.items():
        capsys.readouterr()
        write(tmp_path / f"{name}-default")  # progress by default
        err = capsys.readouterr().err
        assert all(bar in err for bar in bars[name]), (name, err)
        write(tmp_path / f"{name}-quiet", progress=False)
        assert capsys.readouterr().err == "", name
