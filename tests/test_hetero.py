"""Heterogeneous graphs: dataset, native sampler, stages, PyG loaders, training."""

from __future__ import annotations

import copy
import functools
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from salient_pipes import HeteroDataset, HeteroSAGE, _native, salient_pipeline
from salient_pipes.data.csr import typed_csr
from salient_pipes.pipes import NodeIndices, fanouts_per_edge_type
from salient_pipes.train import batchwise_test, forward, train_epoch
from tests.conftest import mapped_file

WRITES = ("author", "writes", "paper")
CITES = ("paper", "cites", "paper")


def csr_neighbors(ds_or_csc, e, v):
    rowptr, col = ds_or_csc.rowptr[e], ds_or_csc.col[e]
    return col[rowptr[v]:rowptr[v + 1]].tolist()


# --------------------------------------------------------------- the dataset
def test_typed_csr_is_sorted_deduplicated_and_bipartite():
    rowptr, col = typed_csr(torch.tensor([[4, 0, 4, 2], [1, 1, 1, 0]]), num_src=5, num_dst=3)
    assert rowptr.tolist() == [0, 1, 3, 3]
    assert col.tolist() == [2, 0, 4]
    with pytest.raises(ValueError, match=r"edge_index\[0, 0\] = 5 is outside \[0, 5\)"):
        typed_csr(torch.tensor([[5], [0]]), num_src=5, num_dst=3)
    with pytest.raises(ValueError, match=r"edge_index\[1, 0\] = 3 is outside \[0, 3\)"):
        typed_csr(torch.tensor([[0], [3]]), num_src=5, num_dst=3)


def test_dataset_validates_its_fields(mag):
    edges = {e: (mag.rowptr[e], mag.col[e]) for e in mag.edge_types}
    kwargs = dict(name="t", num_nodes=mag.num_nodes, edges=edges, x=mag.x, y=mag.y,
                  label_type="paper", split_idx=mag.split_idx, num_classes=mag.num_classes)
    HeteroDataset(**kwargs)  # the reference is valid
    bad_x = dict(mag.x, author=mag.x["author"][:-1])
    with pytest.raises(ValueError, match=r"x\['author'\] must be a tensor of shape"):
        HeteroDataset(**{**kwargs, "x": bad_x})
    with pytest.raises(ValueError, match="label_type 'venue' is not a node type"):
        HeteroDataset(**{**kwargs, "label_type": "venue"})
    with pytest.raises(ValueError, match="names node type 'venue'"):
        HeteroDataset(**{**kwargs, "edges": {**edges, ("venue", "hosts", "paper"): edges[CITES]}})
    # an edge type whose source ids exceed its source type's count
    small = dict(mag.num_nodes, author=3)
    with pytest.raises(ValueError, match=r"edge type \('author', .*col\[\d+\] = \d+ is "
                                         r"outside \[0, 3\)"):
        HeteroDataset(**{**kwargs, "num_nodes": small,
                         "x": dict(mag.x, author=mag.x["author"][:3])})
    with pytest.raises(ValueError, match="y must hold labels"):
        HeteroDataset(**{**kwargs, "y": mag.y.clone().fill_(mag.num_classes)})


def test_save_load_round_trip_and_stamps(mag, tmp_path):
    mag.save(tmp_path / "g", progress=False)
    back = HeteroDataset.load(tmp_path / "g")
    assert back.node_types == mag.node_types and back.edge_types == mag.edge_types
    for e in mag.edge_types:
        assert torch.equal(back.rowptr[e], mag.rowptr[e]) and torch.equal(back.col[e], mag.col[e])
    for t in mag.node_types:
        assert torch.equal(back.x[t], mag.x[t])
    assert torch.equal(back.y, mag.y)
    assert {k: v.tolist() for k, v in back.split_idx.items()} == \
        {k: v.tolist() for k, v in mag.split_idx.items()}
    col = tmp_path / "g" / "edges" / "author__writes__paper" / "col.npy"
    with open(col, "r+b") as f:
        f.truncate(col.stat().st_size - 4)
    from salient_pipes.data import DatasetCacheError

    with pytest.raises(DatasetCacheError, match="truncated"):
        HeteroDataset.load(tmp_path / "g")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps")
def test_graph_in_memory_moves_every_edge_types_csr(mag, tmp_path):
    mag.save(tmp_path / "g", progress=False)
    moved = HeteroDataset.load(tmp_path / "g", graph_in_memory=True)
    mapped = HeteroDataset.load(tmp_path / "g")
    for e in mag.edge_types:
        assert mapped_file(moved.col[e]) == "" and mapped_file(moved.rowptr[e]) == ""
        assert mapped_file(mapped.col[e]).endswith("col.npy")
        assert torch.equal(moved.col[e], mag.col[e])
    for t in mag.node_types:
        if moved.x[t].numel():
            assert mapped_file(moved.x[t]).endswith("x.npy")  # the features stay mapped
    for a, b in zip(_native_run(moved), _native_run(mapped)):
        assert all(np.array_equal(u, v) for u, v in zip(a[0], b[0]))


def test_from_edges_bounded_build_equals_in_memory(tmp_path):
    gen = torch.Generator().manual_seed(0)
    counts = {"paper": 300, "author": 500}
    writes = torch.stack([torch.randint(500, (4000,), generator=gen),
                          torch.randint(300, (4000,), generator=gen)])
    cites = torch.randint(300, (2, 3000), generator=gen)
    np.save(tmp_path / "cites.npy", cites.numpy())  # a .npy path is read through a memory map
    x = {"paper": torch.randn(300, 6, generator=gen)}
    ds = HeteroDataset.from_edges(tmp_path / "g", counts, {WRITES: writes,
                                                           CITES: tmp_path / "cites.npy"},
                                  label_type="paper", x=x, y=torch.randint(4, (300,)),
                                  split_idx={"train": torch.arange(100)},
                                  memory_limit=256, progress=False)  # many tiny buckets
    for e, ei in ((WRITES, writes), (CITES, cites)):
        rowptr, col = typed_csr(ei, counts[e[0]], counts[e[2]])
        assert torch.equal(ds.rowptr[e], rowptr) and torch.equal(ds.col[e], col)
    assert ds.num_features == {"paper": 6, "author": 0}
    assert torch.equal(ds.x["paper"], x["paper"].half())
    with pytest.raises(ValueError, match=r"edge type \('author', 'writes', 'paper'\).*outside"):
        HeteroDataset.from_edges(tmp_path / "h", counts,
                                 {WRITES: torch.tensor([[500], [0]])}, label_type="paper",
                                 progress=False)
    assert not (tmp_path / "h").exists()  # nothing half-written


def _write_gz_csv(path: Path, frame: pd.DataFrame, header: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        frame.to_csv(f, header=header, index=False)


def _write_mag_layout(root):
    """A small graph in ogbn-mag's exact raw layout under ``root``."""
    gen = np.random.default_rng(0)
    counts = {"author": 40, "field_of_study": 7, "institution": 5, "paper": 30}
    raw = root / "ogbn_mag" / "raw"
    _write_gz_csv(raw / "num-node-dict.csv.gz", pd.DataFrame({k: [v] for k, v in counts.items()}),
                  header=True)
    triplets = [("author", "affiliated_with", "institution"), ("author", "writes", "paper"),
                ("paper", "cites", "paper"), ("paper", "has_topic", "field_of_study")]
    _write_gz_csv(raw / "triplet-type-list.csv.gz", pd.DataFrame(triplets))
    edges = {}
    for s, r, d in triplets:
        m = 60
        ei = np.stack([gen.integers(counts[s], size=m), gen.integers(counts[d], size=m)], 1)
        edges[(s, r, d)] = ei
        folder = raw / "relations" / f"{s}___{r}___{d}"
        _write_gz_csv(folder / "edge.csv.gz", pd.DataFrame(ei))
        _write_gz_csv(folder / "num-edge-list.csv.gz", pd.DataFrame([m]))
    feats = gen.standard_normal((30, 4)).astype(np.float32)
    _write_gz_csv(raw / "node-feat" / "paper" / "node-feat.csv.gz", pd.DataFrame(feats))
    labels = gen.integers(349, size=30)
    _write_gz_csv(raw / "node-label" / "paper" / "node-label.csv.gz", pd.DataFrame(labels))
    split = root / "ogbn_mag" / "split" / "time" / "paper"
    for name, ids in (("train", range(0, 20)), ("valid", range(20, 25)), ("test", range(25, 30))):
        _write_gz_csv(split / f"{name}.csv.gz", pd.DataFrame(list(ids)))
    return counts, triplets, edges, feats, labels


def test_ogb_mag_raw_layout_is_converted(tmp_path, monkeypatch):
    """A small graph in ogbn-mag's exact raw layout goes through the real converter."""
    root = tmp_path / "data"
    counts, triplets, edges, feats, labels = _write_mag_layout(root)
    ds = HeteroDataset.from_path(root, "ogbn-mag", progress=False)
    assert ds.num_nodes == counts and ds.label_type == "paper" and ds.num_classes == 349
    assert sorted(ds.edge_types) == sorted(triplets)
    for e, ei in edges.items():
        rowptr, col = typed_csr(torch.from_numpy(ei.T.copy()), counts[e[0]], counts[e[2]])
        assert torch.equal(ds.rowptr[e], rowptr) and torch.equal(ds.col[e], col)
    assert torch.allclose(ds.x["paper"].float(), torch.from_numpy(feats), atol=1e-2)
    assert ds.x["author"].shape == (40, 0)
    assert ds.y.tolist() == labels.tolist()
    assert ds.split_idx["valid"].tolist() == list(range(20, 25))
    # the second open reads the converted copy
    monkeypatch.setattr("salient_pipes.data.ogb.convert_hetero",
                        lambda *a, **k: pytest.fail("converted twice"))
    assert HeteroDataset.from_path(root, "ogbn-mag", progress=False).num_nodes == counts


def test_ogb_mag_layout_labelling_two_node_types_is_refused(tmp_path):
    root = tmp_path / "data"
    _write_mag_layout(root)
    _write_gz_csv(root / "ogbn_mag" / "raw" / "node-label" / "author" / "node-label.csv.gz",
                  pd.DataFrame(np.zeros(40, np.int64)))
    with pytest.raises(ValueError, match=r"should label exactly one node type, found "
                                         r"\['author', 'paper'\]"):
        HeteroDataset.from_path(root, "ogbn-mag", progress=False)


# ------------------------------------------------------------- the sampler
def _check_sample(ds, batch, fanouts):
    """Every edge exists, hops expand the previous hop's nodes with at most
    (and, without replacement, exactly min(degree, fanout)) neighbors, ids
    map back and counts add up."""
    for t in ds.node_types:
        assert sum(batch.num_sampled_nodes[t]) == batch.n_id[t].numel()
        assert batch.n_id[t].unique().numel() == batch.n_id[t].numel()
    for i, e in enumerate(ds.edge_types):
        s, _, d = e
        ei = batch.edge_index[e]
        assert sum(batch.num_sampled_edges[e]) == ei.size(1)
        src, dst = batch.n_id[s][ei[0]], batch.n_id[d][ei[1]]
        for u, v in zip(src.tolist(), dst.tolist()):
            assert u in csr_neighbors(ds, e, v)
        begin = 0
        for hop, count in enumerate(batch.num_sampled_edges[e]):
            targets = ei[1, begin:begin + count]
            lo = sum(batch.num_sampled_nodes[d][:hop])
            hi = lo + batch.num_sampled_nodes[d][hop]
            assert ((targets >= lo) & (targets < hi)).all()
            per_target = torch.bincount(targets - lo, minlength=hi - lo)
            degree = (ds.rowptr[e][1:] - ds.rowptr[e][:-1])[batch.n_id[d][lo:hi]]
            f = fanouts[i][hop]
            want = degree if f < 0 else degree.clamp(max=f)
            assert torch.equal(per_target, want)
            begin += count


def test_sampled_subgraphs_are_valid_and_exact(mag):
    fanouts = {e: [3, 2] for e in mag.edge_types}
    fanouts[CITES] = [-1, 0]
    pipe = (NodeIndices(mag.split_idx["train"]).batch_nodes(40)
            .sample_neighbors(mag, fanouts, return_e_id=True, num_threads=2)
            .slice_features(mag.x, mag.y))
    lists = fanouts_per_edge_type(fanouts, mag.edge_types)
    batches = list(pipe)
    assert len(batches) == len(pipe)
    for b in batches[:3]:
        _check_sample(mag, b, lists)
        for t in mag.node_types:
            assert torch.equal(b.x[t], mag.x[t][b.n_id[t]])
        assert torch.equal(b.y, mag.y[b.n_id["paper"][:b.batch_size]])
        for e in mag.edge_types:  # e_id are positions in the edge type's col
            assert torch.equal(mag.col[e][b.e_id[e]].long(), b.n_id[e[0]][b.edge_index[e][0]])
    seeds = torch.cat([b.n_id["paper"][:b.batch_size] for b in batches])
    assert torch.equal(seeds, mag.split_idx["train"])


def _batches(ds, threads, **kwargs):
    pipe = (NodeIndices(ds.split_idx["train"]).shuffle_nodes(seed=1).batch_nodes(50)
            .sample_neighbors(ds, [4, 3], num_threads=threads, seed=7, **kwargs))
    return list(pipe)


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.n_id.keys() == y.n_id.keys()
        for t in x.n_id:
            assert torch.equal(x.n_id[t], y.n_id[t])
        for e in x.edge_index:
            assert torch.equal(x.edge_index[e], y.edge_index[e])
        assert x.num_sampled_edges == y.num_sampled_edges


def test_same_samples_whatever_the_thread_count(mag):
    one = _batches(mag, 1)
    _same(one, _batches(mag, 3))
    _same(one, _batches(mag, 2, ordered=True, max_in_flight=1))
    other = _batches(mag, 1, replace=True)
    assert any(not torch.equal(a.n_id["author"], b.n_id["author"]) for a, b in zip(one, other))


def _hetero_session(graph, fanouts, **kwargs):
    return _native.Session(graph, fanouts, node_wise=True, **kwargs)


def _native_run(ds, **kwargs):
    index = {t: i for i, t in enumerate(ds.node_types)}
    session = _hetero_session(ds.graph, fanouts_per_edge_type([5, 4], ds.edge_types), seed=3,
                                    return_e_id=True, **kwargs)
    out = []
    for position, seeds in enumerate(ds.split_idx["train"][:200].split(40)):
        lists = [np.empty(0, dtype=np.int64)] * len(ds.node_types)
        lists[index["paper"]] = seeds.numpy()
        session.submit(lists, 0, position)
        out.append(session.next())
    return out


def test_hash_relabelling_and_prefetch_give_identical_samples(mag):
    base = _native_run(mag, relabel="slots")
    for variant in (_native_run(mag, relabel="hash"), _native_run(mag, prefetch=False)):
        for (n1, e1, c1, s1, *_), (n2, e2, c2, s2, *_) in zip(base, variant):
            assert all(np.array_equal(a, b) for a, b in zip(n1, n2))
            assert all(np.array_equal(a[i], b[i]) for a, b in zip(e1, e2) for i in range(2))
            assert c1 == c2 and s1 == s2


def test_sampler_errors_are_clear(mag):
    pipe = NodeIndices(torch.arange(3))
    with pytest.raises(ValueError, match=r"names edge type \('a', 'b', 'c'\)"):
        pipe.sample_neighbors(mag, {("a", "b", "c"): [2]})
    with pytest.raises(ValueError, match="number of hops must be the same across all edge types"):
        pipe.sample_neighbors(mag, {WRITES: [2], CITES: [2, 2]})
    with pytest.raises(ValueError, match=r"fanouts\[1\] must be an int, got 'x'"):
        pipe.sample_neighbors(mag, [2, "x"])
    with pytest.raises(ValueError, match="input_type must be one of"):
        pipe.sample_neighbors(mag, [2], input_type="venue")
    # Disjoint: features are sliced after sampling (not fused), by the decoded ids.
    sliced = pipe.sample_neighbors(mag, [2], disjoint=True).slice_features(mag.x, mag.y)
    assert not sliced.fused
    b = next(iter(sliced))
    assert b.batch is not None and torch.equal(b.x["paper"], mag.x["paper"][b.n_id["paper"]])
    assert torch.equal(b.y, mag.y[b.n_id["paper"][: b.batch_size]])
    bad = NodeIndices(torch.tensor([mag.num_nodes["paper"]])).batch_nodes(1)
    with pytest.raises(ValueError, match="outside"):
        list(bad.sample_neighbors(mag, [2]))
    twice = NodeIndices(torch.tensor([1, 1])).batch_nodes(2)
    with pytest.raises(ValueError, match="appears twice"):
        list(twice.sample_neighbors(mag, [2]))
    with pytest.raises(ValueError, match=r"x\[1\] has 3 rows"):
        _hetero_session(mag.graph, fanouts_per_edge_type([2], mag.edge_types),
                              x=[None, np.zeros((3, 2), np.float32), None, None])


def test_a_worker_failure_reaches_the_consumer_and_the_stage_recovers(mag):
    pipe = NodeIndices(mag.split_idx["train"][:200]).batch_nodes(40).sample_neighbors(mag, [3])
    pipe._inject_failure(2)
    with pytest.raises(RuntimeError, match="injected failure in batch 2"):
        list(pipe)
    pipe._inject_failure(-1)
    assert len(list(pipe)) == 5


def test_resume_continues_the_epoch_exactly(mag):
    def pipe():
        return (NodeIndices(mag.split_idx["train"]).shuffle_nodes(seed=2).batch_nodes(64)
                .sample_neighbors(mag, [3, 2], seed=5, num_threads=2)
                .slice_features(mag.x, mag.y))
    full = list(pipe())
    resumed = pipe()
    resumed.load_state_dict({"epoch": 0, "batches_done": 3})
    _same(full[3:], list(resumed))


# ------------------------------------------------------------- PyG loaders
def test_full_neighborhoods_give_the_full_graph_outputs_of_a_to_hetero_model(mag_pyg):
    from torch_geometric.nn import SAGEConv, to_hetero

    from salient_pipes.pyg import NeighborLoader

    data = mag_pyg.clone()
    for t in data.node_types:
        data[t].x = data[t].x.double()

    class GNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = SAGEConv((-1, -1), 16)
            self.conv2 = SAGEConv((-1, -1), 5)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    torch.manual_seed(0)
    model = to_hetero(GNN(), data.metadata(), aggr="sum").double()
    with torch.no_grad():
        full = model(data.x_dict, data.edge_index_dict)["paper"]
        seeds = torch.arange(0, data["paper"].num_nodes, 7)
        loader = NeighborLoader(data, num_neighbors=[-1, -1], input_nodes=("paper", seeds),
                                batch_size=16, seed=0)
        seen = 0
        for batch in loader:
            out = model(batch.x_dict, batch.edge_index_dict)["paper"][:batch["paper"].batch_size]
            assert torch.allclose(out, full[batch["paper"].n_id[:batch["paper"].batch_size]],
                                  atol=1e-10)
            seen += batch["paper"].batch_size
    assert seen == seeds.numel()


def test_full_neighborhoods_give_the_full_graph_outputs_of_hetero_sage(mag):
    model = HeteroSAGE((mag.node_types, mag.edge_types), mag.num_features, 16, mag.num_classes,
                       num_layers=2, target="paper").double().eval()
    x = {t: v.double() for t, v in mag.x.items()}
    with torch.no_grad():
        full = model(x, {e: mag.to_pyg()[e].edge_index for e in mag.edge_types})
        pipe = salient_pipeline(mag, "valid", batch_size=32, fanouts=[-1, -1], device="cpu",
                                shuffle=False)
        as_dict = _PerType(model)  # PyG's to_hetero models return a dict per node type
        for batch in pipe:
            batch.x = {t: v.double() for t, v in batch.x.items()}
            assert torch.allclose(forward(model, batch),
                                  full[batch.n_id["paper"][:batch.batch_size]], atol=1e-10)
            assert torch.equal(forward(as_dict, batch), forward(model, batch))


class _PerType(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, edge_index):
        return {"author": torch.zeros(1), "paper": self.model(x, edge_index)}


def test_neighbor_loader_batches_match_pyg_layout(mag_pyg):
    from salient_pipes.pyg import NeighborLoader

    data = mag_pyg
    mask = data["paper"].train_mask
    loader = NeighborLoader(data, num_neighbors={WRITES: [3, 2], CITES: [2, 2]},
                            input_nodes=("paper", mask), batch_size=30, shuffle=True, seed=4)
    batch = next(iter(loader))
    assert batch["paper"].batch_size == 30
    assert torch.equal(batch["paper"].n_id[:30], batch["paper"].input_id)  # a mask: its ids
    for t in data.node_types:
        assert torch.equal(batch[t].x, data[t].x[batch[t].n_id])
        assert sum(batch[t].num_sampled_nodes) == batch[t].n_id.numel()
    assert torch.equal(batch["paper"].y, data["paper"].y[batch["paper"].n_id])
    for e in data.edge_types:
        ei, e_id = batch[e].edge_index, batch[e].e_id
        assert torch.equal(data[e].edge_index[:, e_id],
                           torch.stack([batch[e[0]].n_id[ei[0]], batch[e[2]].n_id[ei[1]]]))
        assert sum(batch[e].num_sampled_edges) == ei.size(1)
    # edge types missing from the dict are not sampled
    assert batch[("paper", "has_topic", "field_of_study")].edge_index.size(1) == 0
    assert len(loader) == -(-int(mask.sum()) // 30)


def test_loader_input_errors(mag_pyg):
    from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader

    with pytest.raises(ValueError, match="node type 'venue'"):
        NeighborLoader(mag_pyg, [2], input_nodes=("venue", None))
    with pytest.raises(ValueError, match="node type or"):
        NeighborLoader(mag_pyg, [2], input_nodes=torch.arange(3))
    with pytest.raises(ValueError, match=r"names edge type \('a', 'b', 'c'\)"):
        NeighborLoader(mag_pyg, {("a", "b", "c"): [2]}, input_nodes="paper")
    with pytest.raises(ValueError, match="node type .a."):
        LinkNeighborLoader(mag_pyg, [2], edge_label_index=(("a", "b", "c"), None))
    broken = mag_pyg.clone()
    broken[WRITES].edge_index = torch.tensor([[10**6], [0]])
    with pytest.raises(ValueError, match="source type"):
        NeighborLoader(broken, [2], input_nodes="paper")


@pytest.mark.parametrize("mode", ["binary", "triplet"])
def test_link_loader_on_a_bipartite_edge_type(mag_pyg, mode):
    from salient_pipes.pyg import LinkNeighborLoader

    data = mag_pyg
    label_index = data[WRITES].edge_index[:, :50]
    loader = LinkNeighborLoader(data, num_neighbors=[2, 2], edge_label_index=(WRITES, label_index),
                                batch_size=20, neg_sampling=mode, seed=1)
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        store = batch[WRITES]
        pos = label_index[:, store.input_id]
        authors, papers = batch["author"].n_id, batch["paper"].n_id
        if mode == "binary":
            n = store.input_id.numel()
            eli = store.edge_label_index
            assert torch.equal(authors[eli[0, :n]], pos[0])
            assert torch.equal(papers[eli[1, :n]], pos[1])
            assert store.edge_label.tolist() == [1.0] * n + [0.0] * (eli.size(1) - n)
        else:
            assert torch.equal(authors[batch["author"].src_index], pos[0])
            assert torch.equal(papers[batch["paper"].dst_pos_index], pos[1])
            assert batch["paper"].dst_neg_index.max() < papers.numel()
        # the seeds of both types come first in their types
        assert batch["author"].num_sampled_nodes[0] > 0 and batch["paper"].num_sampled_nodes[0] > 0


def test_loader_determinism_across_workers(mag_pyg):
    from salient_pipes.pyg import NeighborLoader

    def run(workers):
        loader = NeighborLoader(mag_pyg, [3, 2], input_nodes="paper", batch_size=100,
                                shuffle=True, seed=9, num_workers=workers)
        return [(b["author"].n_id, b[WRITES].edge_index) for b in loader]

    for (a1, e1), (a2, e2) in zip(run(1), run(3)):
        assert torch.equal(a1, a2) and torch.equal(e1, e2)


# ----------------------------------------------------- training and the CLI
def test_training_learns_on_the_mag_like_graph(mag):
    torch.manual_seed(0)
    model = HeteroSAGE((mag.node_types, mag.edge_types), mag.num_features, 32, mag.num_classes,
                       num_layers=2, target="paper")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(mag, batch_size=128, fanouts=[5, 5], device="cpu", num_threads=2)
    losses = [train_epoch(model, pipe, opt, progress=False).loss for _ in range(4)]
    assert losses[-1] < 0.7 * losses[0]
    acc = batchwise_test(model, mag, fanouts=[5, 5], device="cpu", progress=False)["valid"]
    assert acc > 2.0 / mag.num_classes


def test_mag_like_features_have_unit_scale_and_349_classes_are_learnable():
    # Inputs far from unit scale stalled HeteroSAGE at lr 0.01 (loss stayed
    # at ln(349), accuracy at chance) although the classes are separable.
    ds = HeteroDataset.synthetic_mag(scale=0.005, seed=1)
    for t, x in ds.x.items():
        std = x.float().std(0)
        assert 0.9 < float(std.mean()) < 1.1, t
    torch.manual_seed(0)
    model = HeteroSAGE((ds.node_types, ds.edge_types), ds.num_features, 64, ds.num_classes,
                       num_layers=2, target="paper")  # the example's model and optimiser
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(ds, batch_size=256, fanouts=[5, 5], device="cpu", num_threads=2)
    for _ in range(4):
        train_epoch(model, pipe, opt, progress=False)
    acc = batchwise_test(model, ds, fanouts=[5, 5], device="cpu", progress=False)["valid"]
    assert acc > 10.0 / ds.num_classes


def test_cli_trains_the_mag_like_graph(tmp_path):
    import json

    from salient_pipes.cli import main

    out = tmp_path / "summary.json"
    main(["train", "--dataset", "mag-synthetic", "--mag-scale", "0.002", "--epochs", "1",
          "--fanouts", "4,3", "--hidden", "16", "--batch-size", "256", "--no-progress",
          "--device", "cpu", "--out", str(out), "--feature-cache", "10%"])
    summary = json.loads(out.read_text())
    assert summary["dataset"].startswith("mag-like") and 0 <= summary["test_acc"] <= 1
    assert 0 < summary["history"][0]["cache_hit_rate"] < 1


def test_edge_attributes_are_sliced_by_edge_id(mag_pyg):
    from salient_pipes.pyg import NeighborLoader

    data = mag_pyg.clone()
    data[WRITES].edge_attr = torch.randn(data[WRITES].num_edges, 3)
    data[WRITES].weight = torch.arange(data[WRITES].num_edges)
    batch = next(iter(NeighborLoader(data, [4, 2], input_nodes="paper", batch_size=64, seed=0)))
    e_id = batch[WRITES].e_id
    assert e_id.numel() > 0
    assert torch.equal(batch[WRITES].edge_attr, data[WRITES].edge_attr[e_id])
    assert torch.equal(batch[WRITES].weight, e_id)
    assert batch["author"].num_nodes == batch["author"].n_id.numel()


def test_native_boundary_refuses_inconsistent_input(mag):
    rp = np.array([0, 1, 1], dtype=np.int64)
    col = np.array([0], dtype=np.int32)
    with pytest.raises(ValueError, match="rowptr must hold num_nodes"):
        _native.TypedGraph([3, 2], [1], [0], [rp], [col])
    with pytest.raises(ValueError, match=r"names a node type outside \[0, 2\)"):
        _native.TypedGraph([2, 2], [2], [0], [rp], [col])
    with pytest.raises(ValueError, match="one entry per edge type"):
        _native.TypedGraph([2, 2], [1], [0], [rp], [col], True, ["a", "b"])
    with pytest.raises(ValueError, match=r"edge type \('a', 'r', 'p'\): col\[0\] = 0"):
        _native.TypedGraph([2, 0], [1], [0], [rp], [col], True, ["('a', 'r', 'p')"])
    session = _hetero_session(mag.graph, fanouts_per_edge_type([2], mag.edge_types))
    with pytest.raises(ValueError, match="one array per node type"):
        session.submit([np.zeros(1, dtype=np.int64)], 0, 0)
    with pytest.raises(ValueError, match="one list per edge type"):
        _hetero_session(mag.graph, [[2]])
    with pytest.raises(ValueError, match="same number"):
        _hetero_session(mag.graph, [[2]] * (len(mag.edge_types) - 1) + [[2, 2]])
    with pytest.raises(ValueError, match=r"fanouts\[0\]\[0\] = -2"):
        _hetero_session(mag.graph, [[-2]] + [[2]] * (len(mag.edge_types) - 1))


def test_hetero_feature_cache_keeps_the_most_used_rows_within_budget(mag):
    from salient_pipes.data import FeatureCaches

    budget = 4 * sum(mag.num_nodes[t] for t in mag.x) + 300 * 256
    cache = FeatureCaches.for_dataset(mag, budget, pin=False)
    assert set(cache) == set(mag.x)
    spent = sum(c.rows.numel() * c.rows.element_size() + 4 * c.slot.numel()
                for c in cache.values())
    assert 0 < spent <= budget
    for t, c in cache.items():
        assert torch.equal(c.rows, mag.x[t][c.ids])
        uses = sum(torch.bincount(mag.col[e].to(torch.int64), minlength=mag.num_nodes[t])
                   for e in mag.edge_types if e[0] == t)
        kept = torch.zeros(mag.num_nodes[t], dtype=torch.bool)
        kept[c.ids] = True
        if kept.any() and (~kept).any():  # no row left out is used more than one kept
            assert uses[~kept].max() <= uses[kept].min()


@pytest.mark.parametrize("fused", [True, False])
def test_hetero_pipeline_through_a_feature_cache_gathers_the_same_rows(mag, fused):
    from salient_pipes.data import FeatureCaches
    from salient_pipes.pipes import pipeline_stats

    cache = FeatureCaches.for_dataset(mag, "64KiB", pin=False)
    seeds = mag.split_idx["train"][:200]

    def chain(cache):
        pipe = NodeIndices(seeds).batch_nodes(50).sample_neighbors(mag, [3, 2], seed=1)
        if not fused:
            pipe = pipe.shuffle(buffer_size=1)  # any stage between: the unfused gather
        return pipe.slice_features(mag.x, mag.y, cache=cache)

    cached, plain = chain(cache), chain(None)
    for a, b in zip(cached, plain):
        assert a.x.keys() == b.x.keys()
        assert all(torch.equal(a.x[t], b.x[t]) for t in a.x) and torch.equal(a.y, b.y)
    assert 0 < cache.hit_rate < 1
    assert pipeline_stats(cached)[-1]["cache_hit_rate"] == cache.hit_rate
    with pytest.raises(ValueError, match="FeatureCaches"):
        chain(next(iter(cache.values())))


def test_hetero_salient_pipeline_takes_a_cache_budget(mag):
    pipe = salient_pipeline(mag, batch_size=64, fanouts=[3, 2], device="cpu",
                            feature_cache="128KiB")
    full = salient_pipeline(mag, batch_size=64, fanouts=[3, 2], device="cpu")
    for a, b in zip(pipe, full):
        assert all(torch.equal(a.x[t], b.x[t]) for t in a.x)
    stage, = [s for s in pipe._chain() if getattr(s, "feature_cache", None) is not None]
    assert stage.feature_cache.hit_rate > 0
    with pytest.raises(NotImplementedError, match="'degree' policy"):
        salient_pipeline(mag, feature_cache="1MiB", cache_policy="sampled")


def _pyg_sampler_or_skip():
    """PyG's NeighborLoader, the reference here, samples with pyg-lib or
    torch-sparse: without either it cannot run."""
    import importlib.util

    if not any(importlib.util.find_spec(m) for m in ("pyg_lib", "torch_sparse")):
        pytest.skip("PyG's loader needs pyg-lib or torch-sparse (the reference)")


def test_bidirectional_hetero_batches_match_pygs_with_all_neighbours(mag_pyg):
    import warnings

    _pyg_sampler_or_skip()

    from torch_geometric.loader import NeighborLoader as PygLoader

    from salient_pipes.pyg import NeighborLoader

    seeds = ("paper", torch.arange(12))
    ours = next(iter(NeighborLoader(mag_pyg, [-1, -1], input_nodes=seeds, batch_size=12,
                                    subgraph_type="bidirectional")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = next(iter(PygLoader(mag_pyg, [-1, -1], input_nodes=seeds, batch_size=12,
                                     subgraph_type="bidirectional")))

    def edges(batch, e):
        src, _, dst = e
        ei = batch[e].edge_index
        return set(zip(batch[src].n_id[ei[0]].tolist(), batch[dst].n_id[ei[1]].tolist()))

    for t in mag_pyg.node_types:
        assert set(ours[t].n_id.tolist()) == set(theirs[t].n_id.tolist())
        assert sorted(ours[t].keys()) == sorted(theirs[t].keys())
    for e in mag_pyg.edge_types:
        assert list(ours[e].keys()) == ["edge_index"] == list(theirs[e].keys())
        assert edges(ours, e) == edges(theirs, e), e
    # In both directions: every reverse type holds the flipped edges.
    for src, rel, dst in mag_pyg.edge_types:
        if (dst, f"rev_{rel}", src) in mag_pyg.edge_types:
            flipped = {(b, a) for a, b in edges(ours, (src, rel, dst))}
            assert flipped == edges(ours, (dst, f"rev_{rel}", src))


def test_induced_hetero_batches_match_pygs_with_all_neighbours(mag_pyg):
    import warnings

    _pyg_sampler_or_skip()

    from torch_geometric.loader import NeighborLoader as PygLoader

    from salient_pipes.pyg import NeighborLoader

    data = mag_pyg.clone()
    data[WRITES].edge_attr = torch.randn(data[WRITES].num_edges, 3)
    seeds = ("paper", torch.arange(10))
    ours = next(iter(NeighborLoader(data, [-1], input_nodes=seeds, batch_size=10,
                                    subgraph_type="induced")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = next(iter(PygLoader(data, [-1], input_nodes=seeds, batch_size=10,
                                     subgraph_type="induced")))

    def edges(batch, e):
        src, _, dst = e
        ei = batch[e].edge_index
        return sorted(zip(batch[src].n_id[ei[0]].tolist(), batch[dst].n_id[ei[1]].tolist(),
                          batch[e].e_id.tolist()))

    for t in data.node_types:
        assert set(ours[t].n_id.tolist()) == set(theirs[t].n_id.tolist())
        assert sorted(ours[t].keys()) == sorted(theirs[t].keys())
    for e in data.edge_types:
        assert sorted(ours[e].keys()) == sorted(theirs[e].keys())
        assert edges(ours, e) == edges(theirs, e), e
    assert torch.equal(ours[WRITES].edge_attr, data[WRITES].edge_attr[ours[WRITES].e_id])
    # Induced: more edges than were sampled (the edges among the found nodes).
    directional = next(iter(NeighborLoader(data, [-1], input_nodes=seeds, batch_size=10)))
    assert sum(ours[e].edge_index.size(1) for e in data.edge_types) > \
        sum(directional[e].edge_index.size(1) for e in data.edge_types)
    with pytest.raises(ValueError, match="subgraph_type must be one of"):
        NeighborLoader(data, [-1], input_nodes=seeds, subgraph_type="closed")


def test_disjoint_hetero_batches_give_every_seed_its_own_subgraph(mag_pyg):
    from salient_pipes.pyg import NeighborLoader

    seeds = torch.tensor([3, 7, 3, 11])  # a repeated seed gets a subgraph of its own too
    batch = next(iter(NeighborLoader(mag_pyg, [-1, -1], input_nodes=("paper", seeds),
                                     batch_size=4, disjoint=True)))
    assert torch.equal(batch["paper"].n_id[:4], seeds)
    assert torch.equal(batch["paper"].batch[:4], torch.arange(4))

    def nodes(b, i=None):
        return {(t, n) for t in mag_pyg.node_types
                for n, s in zip(b[t].n_id.tolist(), b[t].batch.tolist() if i is not None
                                else [None] * b[t].num_nodes) if i is None or s == i}

    for i, seed in enumerate(seeds.tolist()):
        alone = next(iter(NeighborLoader(mag_pyg, [-1, -1], input_nodes=("paper",
                                         torch.tensor([seed])), batch_size=1)))
        assert nodes(batch, i) == nodes(alone), i  # exactly the seed's own subgraph
    for e in mag_pyg.edge_types:  # edges stay within one seed's subgraph
        src, _, dst = e
        ei = batch[e].edge_index
        assert torch.equal(batch[src].batch[ei[0]], batch[dst].batch[ei[1]])
        assert torch.equal(batch[e].edge_index.size(1) * torch.ones(1),
                           torch.tensor([float(batch[e].e_id.numel())]))
    x = mag_pyg["paper"].x
    assert torch.equal(batch["paper"].x, x[batch["paper"].n_id])
    with pytest.raises(NotImplementedError, match="induced"):
        NeighborLoader(mag_pyg, [2], input_nodes="paper", disjoint=True,
                       subgraph_type="induced")


@pytest.mark.parametrize("into", ["pool blocks", "a pinned slot"])
def test_native_disjoint_hetero_gathers_the_rows_of_each_keys_node(mag, into):
    types = mag.node_types
    fan = [[3] for _ in mag.edge_types]
    x = [mag.x[t].numpy() for t in types]
    label = np.arange(mag.num_nodes[types[0]], dtype=np.int64) * 7
    extra = {}
    if into == "a pinned slot":
        extra["pinned"] = slots = _native.PinnedSlots()
        slots.add(np.zeros(1 << 22, dtype=np.uint8))
    session = _hetero_session(mag.graph, fan, x=x, attrs=[(0, label)], disjoint=True,
                              **extra)
    seeds = [np.array([4, 1, 4]) if t in ("paper", "author") else np.empty(0, dtype=np.int64)
             for t in types]
    session.submit(seeds, 0, 0)
    out = session.next()
    n_id, xs, attrs, space = out[0], out[4], out[6], session.key_space
    assert max(int(k.max()) for k in n_id if k.size) >= space  # keys beyond one space
    for t in range(len(types)):
        assert np.array_equal(xs[t], x[t][n_id[t] % space])
    assert np.array_equal(attrs[0], label[n_id[0] % space])
    if into == "a pinned slot":
        assert slots.in_state("lent") == [0]  # the batch lives in the slot


def test_native_disjoint_hetero_checks_its_input(mag):
    types = mag.node_types
    fan = [[2] for _ in mag.edge_types]
    session = _hetero_session(mag.graph, fan, disjoint=True)
    both = [np.array([4, 1]) if t in ("paper", "author") else np.empty(0, dtype=np.int64)
            for t in types]
    session.submit(both, 0, 0)
    n_id = session.next()[0]
    space = session.key_space
    for t in ("paper", "author"):  # seed i of every type opens subgraph i
        assert n_id[types.index(t)][:2].tolist() == [4, space + 1]


def test_native_node_attributes_are_checked(mag):
    fan = [[2] for _ in mag.edge_types]
    paper = mag.node_types.index("paper")
    rows = np.zeros(mag.num_nodes["paper"], dtype=np.int16)
    with pytest.raises(ValueError, match=r"attrs\[0\] names node type 9"):
        _hetero_session(mag.graph, fan, attrs=[(9, rows)])
    with pytest.raises(ValueError, match=r"attrs\[1\] has 3 rows but its node type"):
        _hetero_session(mag.graph, fan, attrs=[(paper, rows), (paper, rows[:3])])
    with pytest.raises(ValueError, match="must be 1-D or 2-D"):
        _hetero_session(mag.graph, fan, attrs=[(paper, rows.reshape(-1, 1, 1))])


def test_to_pyg_slices_every_node_attribute_in_the_workers(mag_pyg):
    """Labels, masks, a 3-D attribute and fp16/int16 attributes are sliced
    by the sampling workers (fused); what is not one row per node stays as
    PyG's own node slicing leaves it."""
    from salient_pipes.pyg import NeighborLoader

    data = copy.copy(mag_pyg)
    n = data["author"].num_nodes
    data["author"].pos = torch.randn(n, 2, 3)
    data["author"].rank = torch.randint(-100, 100, (n,), dtype=torch.int16)
    data["author"].score = torch.rand(n).half()
    data["paper"].weight = torch.rand(data["paper"].num_nodes, 1, dtype=torch.float64)
    loader = NeighborLoader(data, [3, 2], input_nodes=("paper", data["paper"].train_mask),
                            batch_size=25, seed=2)
    stage = loader.pipe
    while not hasattr(stage, "fused_attrs"):
        stage = stage.source
    assert set(stage.fused_attrs["author"]) == {"pos", "rank", "score"}
    assert {"y", "train_mask", "weight"} <= set(stage.fused_attrs["paper"])
    batches = list(loader)
    assert len(batches) > 2
    for batch in batches:
        for t in data.node_types:
            for key, value in data[t].items():
                if key == "num_nodes":
                    continue
                got = batch[t][key]
                assert got.dtype == value.dtype and torch.equal(got, value[batch[t].n_id]), (t, key)


def _constant(value, _):
    return value


@pytest.mark.parametrize("edge_type", [WRITES, CITES])
@pytest.mark.parametrize("neg_sampling", [None, "binary", "triplet"])
def test_disjoint_hetero_link_batches_follow_pyg_layout(mag_pyg, edge_type, neg_sampling):
    """Disjoint link batches of a heterogeneous graph, laid out as PyG's:
    with endpoints of two types, source i and destination i share subgraph
    i; of one type, every endpoint has its own; ``batch`` is the subgraph's
    index mod the batch size. Each subgraph holds exactly what sampling its
    seeds alone gives (all neighbours)."""
    from salient_pipes.batch import SeedBatch
    from salient_pipes.pyg import LinkNeighborLoader, hetero_csc_of

    data = mag_pyg
    src_t, _, dst_t = edge_type
    fanouts = {WRITES: [-1, -1], CITES: [-1, -1]}
    size = 4
    loader = LinkNeighborLoader(data, fanouts, edge_label_index=edge_type, batch_size=size,
                                disjoint=True, neg_sampling=neg_sampling, shuffle=True, seed=6)
    batch = next(iter(loader))
    label_index = data[edge_type].edge_index[:, batch[edge_type].input_id]
    if neg_sampling == "triplet":
        src = batch[src_t].n_id[batch[src_t].src_index]
        dst = batch[dst_t].n_id[batch[dst_t].dst_pos_index]
        negatives = batch[dst_t].dst_neg_index
        assert negatives.shape == (size,)
        # negative k of edge i is in edge i's group
        assert torch.equal(batch[dst_t].batch[negatives], torch.arange(size))
    else:
        eli = batch[edge_type].edge_label_index
        src, dst = batch[src_t].n_id[eli[0]][:size], batch[dst_t].n_id[eli[1]][:size]
        assert torch.equal(batch[src_t].batch[eli[0]], torch.arange(eli.size(1)) % size)
        assert torch.equal(batch[dst_t].batch[eli[1]], torch.arange(eli.size(1)) % size)
        if neg_sampling == "binary":
            assert torch.equal(batch[edge_type].edge_label,
                               torch.cat([torch.ones(size), torch.zeros(eli.size(1) - size)]))
    assert torch.equal(src, label_index[0]) and torch.equal(dst, label_index[1])

    # Which seeds opened which subgraph, as PyG numbers them.
    seeds = {t: batch[t].n_id[: batch[t].num_sampled_nodes[0]] for t in data.node_types}
    if src_t != dst_t:
        pairs = [{src_t: seeds[src_t][j:j + 1], dst_t: seeds[dst_t][j:j + 1]}
                 for j in range(max(seeds[src_t].numel(), seeds[dst_t].numel()))]
        for p in pairs:  # triplets: the extra destinations have no source
            for t in list(p):
                if p[t].numel() == 0:
                    del p[t]
    else:
        pairs = [{src_t: seeds[src_t][j:j + 1]} for j in range(seeds[src_t].numel())]

    csc = hetero_csc_of(data)

    def alone(p):  # the seeds of one subgraph, sampled together without disjoint
        pipe = NodeIndices(torch.arange(1)).map(functools.partial(_constant, SeedBatch(p, {})))
        pipe = pipe.sample_neighbors(csc, fanouts, input_type=src_t)
        only = next(iter(pipe))
        return sorted((t, n) for t in data.node_types for n in only.n_id[t].tolist())

    for i in range(size):
        expected = sorted(sum((alone(p) for j, p in enumerate(pairs) if j % size == i), []))
        got = sorted((t, n) for t in data.node_types
                     for n, g in zip(batch[t].n_id.tolist(), batch[t].batch.tolist()) if g == i)
        assert got == expected, i
    for e in data.edge_types:  # edges stay within one group
        ei = batch[e].edge_index
        assert torch.equal(batch[e[0]].batch[ei[0]], batch[e[2]].batch[ei[1]])


def test_hetero_pipeline_shards_its_seeds_across_ranks(mag):
    # as replicated data-parallel training runs it: every rank holds all features
    shards = []
    for rank in range(3):
        pipe = salient_pipeline(mag, batch_size=64, fanouts=(2,), device="cpu", seed=4,
                                rank=rank, world_size=3)
        batches = list(pipe)
        shards.append(torch.cat([b.n_id["paper"][:b.batch_size] for b in batches]))
        assert len(batches) == len(pipe)
    assert len({len(s) // 64 + (len(s) % 64 > 0) for s in shards}) == 1  # equal batch counts
    every = torch.cat(shards)
    assert torch.equal(every.sort().values, mag.split_idx["train"].sort().values)


def test_to_pyg_and_from_pyg_round_trip_keeps_every_split(mag):
    # the splits travel as PyG names them: train_mask, val_mask, test_mask
    data = mag.to_pyg()
    assert {"train_mask", "val_mask", "test_mask"} <= set(data["paper"].keys())
    again = HeteroDataset.from_pyg(data)  # masks, no split_idx: the label type's masks
    assert again.split_idx.keys() == mag.split_idx.keys()
    for split, idx in mag.split_idx.items():
        assert torch.equal(again.split_idx[split], idx.sort().values)
    assert torch.equal(again.y, mag.y) and again.edge_types == mag.edge_types


def _hetero_shapes():
    from torch_geometric.data import HeteroData

    gen = torch.Generator().manual_seed(3)
    two_relations = HeteroData()  # one node type, two edge types
    two_relations["paper"].x = torch.randn(20, 3, generator=gen)
    two_relations["paper", "cites", "paper"].edge_index = torch.randint(0, 20, (2, 60),
                                                                        generator=gen)
    two_relations["paper", "refs", "paper"].edge_index = torch.randint(0, 20, (2, 40),
                                                                       generator=gen)
    bipartite = HeteroData()  # two node types, one edge type
    bipartite["author"].x = torch.randn(10, 3, generator=gen)
    bipartite["paper"].x = torch.randn(20, 3, generator=gen)
    bipartite["author", "writes", "paper"].edge_index = torch.stack(
        [torch.randint(0, 10, (50,), generator=gen), torch.randint(0, 20, (50,), generator=gen)])
    return {"two_relations": two_relations, "bipartite": bipartite}


@pytest.mark.parametrize("shape", ["two_relations", "bipartite"])
def test_a_graph_of_more_than_one_type_samples_node_wise(shape):
    # Only one node type and one edge type make a homogeneous graph: one of
    # each and several of the other is heterogeneous, sampled per node type
    # (the layer-wise sampler refuses it).
    from salient_pipes.pyg import NeighborLoader

    data = _hetero_shapes()[shape]
    loader = NeighborLoader(data, num_neighbors=[3, 2], input_nodes="paper", batch_size=4)
    edges = 0
    for batch in loader:
        for edge_type in data.edge_types:
            src_type, _, dst_type = edge_type
            sampled = batch[edge_type].edge_index
            src = batch[src_type].n_id[sampled[0]]
            dst = batch[dst_type].n_id[sampled[1]]
            have = set(zip(*data[edge_type].edge_index.tolist()))
            assert all(pair in have for pair in zip(src.tolist(), dst.tolist()))
            edges += sampled.size(1)
    assert edges > 0
