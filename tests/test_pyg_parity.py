"""salient_pipes.pyg as a drop-in for PyG's loaders: PyG's argument forms,
``repr``, sparse ``adj_t`` inputs, zero hops, ``sampler=``/``batch_sampler=``,
``collate_fn(index)``, remote backends, and the PyG code that takes a loader
(``ZipLoader``, ``PrefetchLoader``, ``CachedLoader``, ``ImbalancedSampler``,
``trim_to_layer``, ``BasicGNN.inference``). Where PyG itself can run the same
case here (torch-sparse's sampler), its result is the reference."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
import torch_geometric.loader as pyg_loader
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler
from torch_geometric.data import Data, HeteroData
from torch_geometric.sampler import NegativeSampling, NumNeighbors
from torch_geometric.sampler.base import SubgraphType
from torch_geometric.testing import MyFeatureStore, MyGraphStore

from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader

torch_sparse = pytest.importorskip("torch_sparse")  # PyG's own sampler, the reference
warnings.filterwarnings("ignore", message=".*pyg-lib.*")


def _data(num_nodes=60, num_edges=400, seed=0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    return Data(x=torch.randn(num_nodes, 4, generator=gen), y=torch.randint(0, 3, (num_nodes,),
                generator=gen), edge_index=edge_index,
                edge_weight=torch.rand(num_edges, generator=gen))


def _hetero(seed=0) -> HeteroData:
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["paper"].x = torch.arange(40).float().view(-1, 1)
    data["author"].x = torch.arange(100, 130).float().view(-1, 1)
    data["paper", "cites", "paper"].edge_index = torch.randint(0, 40, (2, 150), generator=gen)
    data["author", "writes", "paper"].edge_index = torch.stack(
        [torch.randint(0, 30, (120,), generator=gen), torch.randint(0, 40, (120,), generator=gen)])
    data["paper", "rev_writes", "author"].edge_index = \
        data["author", "writes", "paper"].edge_index.flip(0)
    return data


def _global_edges(batch, store=None, src="n_id", dst="n_id"):
    """The batch's edges as a multiset of (global source, global target)."""
    b = batch if store is None else batch[store]
    ei = b.edge_index
    n_src = (batch if store is None else batch[store[0]])[src]
    n_dst = (batch if store is None else batch[store[2]])[dst]
    return Counter(zip(n_src[ei[0]].tolist(), n_dst[ei[1]].tolist()))


# ------------------------------------------------------------- argument forms
def test_pygs_other_loaders_are_named_where_they_are():
    import salient_pipes.pyg as ours

    for name in ("HGTLoader", "ClusterLoader", "ImbalancedSampler"):
        assert name in pyg_loader.__all__
        with pytest.raises(ImportError, match=f"salient_pipes.pyg has no {name}: .*; import "
                                              f"{name} from torch_geometric.loader"):
            exec(f"from salient_pipes.pyg import {name}", {})
    assert not hasattr(ours, "Nonexistent")  # any other name: a plain AttributeError
    assert ours.NeighborLoader is NeighborLoader


def test_pyg_enums_numneighbors_and_repr_as_pyg():
    data = _data()
    by_name = NeighborLoader(data, [3, 2], batch_size=16, subgraph_type="bidirectional", seed=4)
    by_enum = NeighborLoader(data, NumNeighbors([3, 2]), batch_size=16, seed=4,
                             subgraph_type=SubgraphType.bidirectional)
    for a, b in zip(by_name, by_enum):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
    for loader, name in ((by_enum, "NeighborLoader()"),
                         (LinkNeighborLoader(data, [2], batch_size=4), "LinkNeighborLoader()")):
        assert str(loader) == repr(loader) == name
        assert isinstance(loader, DataLoader)
        assert isinstance(loader, getattr(pyg_loader, name[:-2]))
    assert len(by_enum.node_sampler.num_neighbors) == 2
    # the chain under a loader prints its stages, the PyG one last
    assert repr(by_enum.pipe).endswith("ToPyG(subgraph_type='bidirectional')")
    with pytest.raises(ValueError, match="hops must be the same across all"):
        NeighborLoader(_hetero(), {("paper", "cites", "paper"): [1],
                                   ("author", "writes", "paper"): [1, 1]}, input_nodes="paper")


def test_directed_false_is_induced_with_a_warning():
    data = _data()
    with pytest.warns(DeprecationWarning, match="induced"):
        loader = NeighborLoader(data, [2], batch_size=10, directed=False, seed=0)
    batch = next(iter(loader))
    # induced: every input edge among the batch's nodes
    inside = torch.zeros(data.num_nodes, dtype=torch.bool)
    inside[batch.n_id] = True
    expected = int((inside[data.edge_index[0]] & inside[data.edge_index[1]]).sum())
    assert batch.edge_index.size(1) == expected


def test_input_id_of_masks_and_given_input_id_as_pyg():
    data = _data()
    mask = torch.zeros(data.num_nodes, dtype=torch.bool)
    mask[[3, 9, 20, 41]] = True
    ours = list(NeighborLoader(data, [2], input_nodes=mask, batch_size=3))
    theirs = list(pyg_loader.NeighborLoader(data, [2], input_nodes=mask, batch_size=3))
    assert [b.input_id.tolist() for b in ours] == [b.input_id.tolist() for b in theirs] == \
        [[3, 9, 20], [41]]
    given = torch.tensor([7, 8, 9, 10])
    batch = next(iter(NeighborLoader(data, [2], input_nodes=torch.tensor([1, 2, 3, 4]),
                                     input_id=given, batch_size=4)))
    assert batch.input_id.tolist() == [7, 8, 9, 10]
    with pytest.raises(ValueError, match="input_id has 2 entries"):
        NeighborLoader(data, [2], input_nodes=torch.tensor([1, 2, 3]), input_id=given[:2])


def test_hetero_edge_label_index_forms_as_pyg():
    data = _hetero()
    writes = ("author", "writes", "paper")
    full = data[writes].edge_index
    forms = [("author", "paper"), writes, (writes, None), (("author", "paper"), None),
             (("author", "paper"), full), [writes, full]]
    for form in forms:
        loader = LinkNeighborLoader(data, [1], edge_label_index=form, batch_size=200, seed=0)
        theirs = pyg_loader.LinkNeighborLoader(data, [1], edge_label_index=form, batch_size=200)
        ours, ref = next(iter(loader)), next(iter(theirs))
        assert ours.input_type == ref.input_type == writes
        for b in (ours, ref):
            eli = b[writes].edge_label_index
            pairs = torch.stack([b["author"].n_id[eli[0]], b["paper"].n_id[eli[1]]])
            assert torch.equal(pairs, full), form
    with pytest.raises(ValueError, match="several edge types"):
        twice = _hetero()
        twice["author", "reviews", "paper"].edge_index = full
        LinkNeighborLoader(twice, [1], edge_label_index=("author", "paper"))


def test_zero_hops_batches_hold_the_seeds_alone():
    data = _data()
    batch = next(iter(NeighborLoader(data, [], batch_size=8)))
    assert batch.n_id.tolist() == list(range(8)) and batch.edge_index.size(1) == 0
    assert batch.num_sampled_nodes == [8] and batch.num_sampled_edges == []
    hetero = _hetero()
    hbatch = next(iter(NeighborLoader(hetero, [], input_nodes="paper", batch_size=5)))
    assert hbatch["paper"].n_id.tolist() == list(range(5))
    assert hbatch["author"].n_id.numel() == 0
    # edgeless graphs, link loaders (PyG's own test case)
    eli = torch.tensor([[0, 5, 5], [9, 9, 2]])
    link = next(iter(LinkNeighborLoader(Data(num_nodes=10), num_neighbors=[],
                                        edge_label_index=eli, batch_size=3)))
    assert torch.equal(link.n_id[link.edge_label_index], eli)
    assert link.num_nodes == 4 and "edge_index" not in link
    typed = next(iter(LinkNeighborLoader(HeteroData(paper=dict(num_nodes=10)), num_neighbors=[],
                                         edge_label_index=(("paper", "paper"), eli),
                                         batch_size=3)))
    assert torch.equal(typed["paper"].n_id[typed["paper", "to", "paper"].edge_label_index], eli)


# ------------------------------------------------------------------- adj_t
@pytest.mark.parametrize("layout", ["SparseTensor", "torch.sparse_csr", "torch.sparse_coo"])
def test_adj_t_inputs_sample_the_same_graph_as_edge_index(layout):
    import torch_geometric.transforms as T

    data = _data()
    data.edge_index = torch.unique(data.edge_index, dim=1)  # a sparse matrix has no repeats
    data.edge_weight = torch.rand(data.edge_index.size(1))
    if layout == "SparseTensor":
        sparse = T.ToSparseTensor(attr="edge_weight")(data.clone())
    else:
        sparse = T.ToSparseTensor(attr="edge_weight", layout=torch.sparse_csr)(data.clone())
        if layout == "torch.sparse_coo":
            sparse.adj_t = sparse.adj_t.to_sparse_coo()
    weight = {(int(s), int(d)): float(w) for (s, d), w in
              zip(data.edge_index.t(), data.edge_weight)}
    for a, b in zip(NeighborLoader(sparse, [-1, -1], batch_size=16),
                    NeighborLoader(data, [-1, -1], batch_size=16)):
        assert torch.equal(a.n_id[:16], b.n_id[:16]) and set(a.n_id.tolist()) == set(
            b.n_id.tolist())
        assert "edge_index" not in a and "e_id" in a
        adj = a.adj_t
        if layout == "SparseTensor":
            row, col, value = adj.coo()
            assert isinstance(adj, torch_sparse.SparseTensor)
        else:
            assert adj.layout == torch.sparse_csr
            torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), adj.values(),
                                    adj.shape, check_invariants=True)
            coo = adj.to_sparse_coo().coalesce()
            (row, col), value = coo.indices(), coo.values()
        assert tuple(adj.shape if layout != "SparseTensor" else adj.sizes()) == \
            (a.num_nodes, a.num_nodes)
        edges = list(zip(a.n_id[col].tolist(), a.n_id[row].tolist()))  # adj_t: row = target
        assert Counter(edges) == _global_edges(b)
        assert value.tolist() == pytest.approx([weight[e] for e in edges])
    if layout == "SparseTensor":  # PyG itself reads a SparseTensor adj_t
        ref = next(iter(pyg_loader.NeighborLoader(sparse, [-1], batch_size=16)))
        ours = next(iter(NeighborLoader(sparse, [-1], batch_size=16)))
        r_row, r_col, _ = ref.adj_t.coo()
        o_row, o_col, _ = ours.adj_t.coo()
        assert Counter(zip(ref.n_id[r_col].tolist(), ref.n_id[r_row].tolist())) == \
            Counter(zip(ours.n_id[o_col].tolist(), ours.n_id[o_row].tolist()))


def test_a_coo_adj_t_raises_no_notice_of_ours(tmp_path):
    """Converting a user's COO ``adj_t`` and building the batches' CSR
    ``adj_t`` are our work: torch's once-per-process notice that sparse CSR
    is in beta must not surface from them (a fresh process, so that the
    notice has not been given yet; the warning filter turns it into an
    error)."""
    import subprocess
    import sys

    script = tmp_path / "coo.py"
    script.write_text(
        "import warnings, torch\n"
        "from torch_geometric.data import Data\n"
        "from salient_pipes.pyg import NeighborLoader\n"
        "warnings.filterwarnings('error', 'Sparse CSR tensor support is in beta')\n"
        "g = torch.Generator().manual_seed(0)\n"
        "i = torch.randint(0, 50, (2, 300), generator=g)\n"
        "adj_t = torch.sparse_coo_tensor(i, torch.rand(300, generator=g), (50, 50))\n"
        "batch = next(iter(NeighborLoader(Data(x=torch.randn(50, 4), adj_t=adj_t), [5, 5],\n"
        "                                 batch_size=8)))\n"
        "assert batch.adj_t.layout == torch.sparse_csr\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr[-2000:]


def test_bad_adj_t_is_refused_clearly():
    data = Data(x=torch.randn(4, 1), adj_t=torch.ones(4, 4))
    with pytest.raises(ValueError, match="SparseTensor or a torch sparse tensor"):
        NeighborLoader(data, [1])
    wrong = Data(x=torch.randn(4, 1),
                 adj_t=torch.sparse_coo_tensor(torch.tensor([[0], [1]]), [1.0], (3, 4)))
    with pytest.raises(ValueError, match=r"has size \(3, 4\)"):
        NeighborLoader(wrong, [1])


# ------------------------------------------------------- seeds and collation
def test_collate_fn_builds_one_batch_from_positions_now():
    data = _data()
    input_nodes = torch.arange(10, 50)
    calls = []

    def transform(batch):
        calls.append(1)
        batch.marked = True
        return batch

    for filter_per_worker in (True, False):
        calls.clear()
        loader = NeighborLoader(data, [3, 2], input_nodes=input_nodes, batch_size=8,
                                transform=transform, filter_per_worker=filter_per_worker)
        batch = loader([0, 5, 39])
        assert batch.marked and len(calls) == 1
        assert batch.n_id[:3].tolist() == [10, 15, 49] and batch.input_id.tolist() == [0, 5, 39]
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        raw = loader.collate_fn(torch.tensor([1, 2]))
        assert ("marked" in raw) == filter_per_worker
        assert loader.filter_fn(raw).marked
    # each call draws anew; the iteration is not disturbed by calls in between
    loader = NeighborLoader(data, [2, 2], batch_size=8, seed=3)
    first = [b.n_id for b in loader]
    draws = {tuple(loader([4]).n_id.tolist()) for _ in range(12)}
    assert len(draws) > 1
    assert all(torch.equal(a, b.n_id) for a, b in zip(first, NeighborLoader(
        data, [2, 2], batch_size=8, seed=3)))
    link = LinkNeighborLoader(data, [2], batch_size=4, neg_sampling="binary")
    lbatch = link([3, 7])
    assert torch.equal(lbatch.n_id[lbatch.edge_label_index[:, :2]], data.edge_index[:, [3, 7]])
    assert lbatch.edge_label.tolist() == [1, 1, 0, 0]


def test_duplicate_seeds_keep_a_row_each_as_pyg():
    data = _data()
    seeds = torch.tensor([5, 7, 5, 5, 9])
    ours = next(iter(NeighborLoader(data, [-1], input_nodes=seeds, batch_size=5)))
    ref = next(iter(pyg_loader.NeighborLoader(data, [-1], input_nodes=seeds, batch_size=5)))
    for b in (ours, ref):
        assert b.n_id[:5].tolist() == seeds.tolist() and b.batch_size == 5
    for row in range(5):  # each seed row gets all its in-edges, as in PyG
        assert Counter(ours.n_id[ours.edge_index[0, ours.edge_index[1] == row]].tolist()) == \
            Counter(ref.n_id[ref.edge_index[0, ref.edge_index[1] == row]].tolist())
    assert Counter(ours.n_id.tolist()) == Counter(ref.n_id.tolist())


def test_sampler_and_batch_sampler_choose_the_seeds():
    data = _data()
    order = [17, 3, 3, 40, 0, 22, 59]

    class Fixed(torch.utils.data.Sampler):
        def __iter__(self):
            return iter(order)

        def __len__(self):
            return len(order)

    loader = NeighborLoader(data, [2], sampler=Fixed(), batch_size=3, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b.n_id[:b.batch_size].tolist() for b in batches] == [[17, 3, 3], [40, 0, 22], [59]]
    by_batch = NeighborLoader(data, [2], input_nodes=torch.arange(30, 60), seed=0,
                              batch_sampler=BatchSampler(SequentialSampler(range(30)), 7, True))
    assert [b.batch_size for b in by_batch] == [7] * 4
    assert next(iter(by_batch)).n_id[:7].tolist() == list(range(30, 37))
    with pytest.raises(ValueError, match="mutually exclusive"):
        NeighborLoader(data, [2], sampler=Fixed(), shuffle=True)


def test_imbalanced_sampler_balances_the_seeds():
    torch.manual_seed(0)
    n = 600
    y = (torch.arange(n) % 10 == 0).long()  # 10% minority
    data = Data(x=torch.randn(n, 2), y=y, edge_index=torch.randint(0, n, (2, 3000)))
    sampler = pyg_loader.ImbalancedSampler(data)
    loader = NeighborLoader(data, [2], batch_size=100, sampler=sampler)
    seeds = torch.cat([b.n_id[:b.batch_size] for b in loader])
    assert seeds.numel() == n
    assert 0.4 < float(y[seeds].float().mean()) < 0.6  # balanced, not 0.1


# ---------------------------------------------------------- remote backends
def _stores(data):
    """``data`` put into PyG's test FeatureStore/GraphStore (edges as COO,
    in their order), counting multi_get_tensor calls."""
    class Counting(MyFeatureStore):
        calls = 0

        def multi_get_tensor(self, attrs):
            Counting.calls += 1
            return super().multi_get_tensor(attrs)

    fs, gs = Counting(), MyGraphStore()
    if isinstance(data, HeteroData):
        for t in data.node_types:
            fs.put_tensor(data[t].x, group_name=t, attr_name="x", index=None)
        for e in data.edge_types:
            ei = data[e].edge_index
            gs.put_edge_index((ei[0], ei[1]), edge_type=e, layout="coo",
                              size=(data[e[0]].num_nodes, data[e[2]].num_nodes))
    else:
        for key in ("x", "y"):
            fs.put_tensor(data[key], group_name=None, attr_name=key, index=None)
        ei = data.edge_index
        gs.put_edge_index((ei[0], ei[1]), edge_type=None, layout="coo",
                          size=(data.num_nodes, data.num_nodes))
    return fs, gs, Counting


def test_remote_backends_node_and_link_loaders_match_in_memory():
    data = _data()
    fs, gs, counting = _stores(data)
    local = NeighborLoader(data, [-1, -1], batch_size=16)
    remote = NeighborLoader((fs, gs), [-1, -1], input_nodes=torch.arange(60), batch_size=16)
    assert str(local) == str(remote) and len(local) == len(remote)
    for a, b in zip(local, remote):
        assert isinstance(b, Data) and torch.equal(a.n_id[:a.batch_size], b.n_id[:b.batch_size])
        assert torch.equal(b.x, data.x[b.n_id]) and torch.equal(b.y, data.y[b.n_id])
        assert _global_edges(a) == _global_edges(b)
        assert torch.equal(data.edge_index[:, b.e_id], b.n_id[b.edge_index])
    assert counting.calls == len(remote)  # one fetch per batch
    link = next(iter(LinkNeighborLoader((fs, gs), [-1], batch_size=8, neg_sampling="binary")))
    assert torch.equal(link.n_id[link.edge_label_index[:, :8]], data.edge_index[:, :8])


@pytest.mark.parametrize("typed", [False, True])
def test_remote_backends_sample_by_node_time_as_in_memory(typed):
    # node times in the FeatureStore bound each seed's subgraph, as data.time does
    data = _hetero() if typed else _data()
    fs, gs, _ = _stores(data)
    gen = torch.Generator().manual_seed(7)
    for t in (data.node_types if typed else [None]):
        store = data[t] if typed else data
        store.time = torch.randint(0, 50, (store.num_nodes,), generator=gen)
        fs.put_tensor(store.time, group_name=t, attr_name="time", index=None)
    seeds = ("paper", range(40)) if typed else torch.arange(60)
    local = NeighborLoader(data, [-1, -1], input_nodes=seeds[0] if typed else None,
                           batch_size=10, time_attr="time")
    remote = NeighborLoader((fs, gs), [-1, -1], input_nodes=seeds, batch_size=10,
                            time_attr="time")
    edges = 0
    for a, b in zip(local, remote):
        for e in (data.edge_types if typed else [None]):
            assert _global_edges(a, e) == _global_edges(b, e)
            edges += sum(_global_edges(b, e).values())
        seed_store = b["paper"] if typed else b
        time = data["paper"].time if typed else data.time
        assert torch.equal(seed_store.batch[:10], torch.arange(10))  # disjoint, as PyG's
        later = time[seed_store.n_id] > time[seed_store.n_id[seed_store.batch]]
        assert not bool(later.any())
    assert edges > 0 and len(local) == len(remote)


def test_remote_backends_heterogeneous():
    data = _hetero()
    fs, gs, _ = _stores(data)
    local = NeighborLoader(data, [-1, -1], input_nodes="paper", batch_size=10)
    remote = NeighborLoader((fs, gs), [-1, -1], input_nodes=("paper", range(40)), batch_size=10)
    for a, b in zip(local, remote):
        assert isinstance(b, HeteroData) and set(b.node_types) == {"paper", "author"}
        for t in ("paper", "author"):
            assert torch.equal(b[t].x, data[t].x[b[t].n_id])
            assert b[t].num_nodes == b[t].n_id.numel()
        for e in data.edge_types:
            assert _global_edges(a, e) == _global_edges(b, e), e
    writes = ("author", "writes", "paper")
    link = next(iter(LinkNeighborLoader((fs, gs), [1], edge_label_index=writes, batch_size=5,
                                        neg_sampling=NegativeSampling("binary"))))
    eli = link[writes].edge_label_index[:, :5]
    assert torch.equal(torch.stack([link["author"].n_id[eli[0]], link["paper"].n_id[eli[1]]]),
                       data[writes].edge_index[:, :5])


# ---------------------------------------------------- PyG code around loaders
def test_zip_prefetch_and_cached_loaders_take_ours():
    data = _data()
    a = NeighborLoader(data, [2], batch_size=10)
    b = LinkNeighborLoader(data, [1], batch_size=10)
    zipped = list(pyg_loader.ZipLoader([a, b], batch_size=10))
    assert len(zipped) == 6  # min(60 nodes, 400 edges) / 10
    for i, (node_batch, link_batch) in enumerate(zipped):
        assert node_batch.n_id[:10].tolist() == list(range(10 * i, 10 * i + 10))
        eli = link_batch.n_id[link_batch.edge_label_index]
        assert torch.equal(eli, data.edge_index[:, 10 * i:10 * i + 10])
    prefetched = pyg_loader.PrefetchLoader(a, device="cpu")
    assert len(prefetched) == len(a) and \
        [x.n_id[:10].tolist() for x in prefetched] == [x.n_id[:10].tolist() for x in a]
    cached = pyg_loader.CachedLoader(a)
    first = list(cached)
    assert len(first) == 6 and all(x is y for x, y in zip(first, cached))


def test_trim_to_layer_and_basic_gnn_inference_on_our_batches():
    from torch_geometric.nn.models import GraphSAGE

    torch.manual_seed(0)
    data = _data(num_nodes=80, num_edges=500)
    model = GraphSAGE(4, 8, num_layers=2, out_channels=3).eval()
    full = model(data.x, data.edge_index)
    loader = NeighborLoader(data, [-1, -1], batch_size=20)
    for batch in loader:
        trimmed = model(batch.x, batch.edge_index,
                        num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                        num_sampled_edges_per_hop=batch.num_sampled_edges)
        plain = model(batch.x, batch.edge_index)
        assert torch.allclose(trimmed[:20], plain[:20], atol=1e-5)
        assert torch.allclose(plain[:20], full[batch.n_id[:20]], atol=1e-5)
    layer_loader = NeighborLoader(data, [-1], batch_size=32, shuffle=False)
    with torch.no_grad():
        out = model.inference(layer_loader)
    assert torch.allclose(out, full, atol=1e-5)


# ------------------------------------------------------ details that matter
def test_numneighbors_default_prefetch_and_link_input_id():
    data = _hetero()
    cites, writes = ("paper", "cites", "paper"), ("author", "writes", "paper")
    values = NumNeighbors({cites: [0, 0]}, default=[-1, -1])  # writes falls back to -1
    batch = next(iter(NeighborLoader(data, values, input_nodes="paper", batch_size=40)))
    assert batch[cites].edge_index.size(1) == 0
    assert batch[writes].edge_index.size(1) == data[writes].edge_index.size(1)  # all of them
    homo = _data()
    loader = NeighborLoader(homo, [2], batch_size=8, num_workers=2, prefetch_factor=3)
    sampler = next(s for s in _stages(loader.pipe) if type(s).__name__ == "SampleNeighbors")
    assert sampler.num_threads == 2 and sampler.max_in_flight == 6
    link = LinkNeighborLoader(homo, [1], batch_size=4, input_id=torch.arange(400) + 1000)
    assert next(iter(link)).input_id.tolist() == [1000, 1001, 1002, 1003]


def _stages(pipe):
    while pipe is not None:
        yield pipe
        pipe = getattr(pipe, "source", None)


def test_num_nodes_is_stated_where_pyg_states_it():
    data = _data()
    batch = next(iter(NeighborLoader(data, [2], batch_size=8)))
    assert "num_nodes" not in batch._store and batch.num_nodes == batch.n_id.numel()
    data.num_nodes = data.num_nodes  # stated: the batch states its own count
    batch = next(iter(NeighborLoader(data, [2], batch_size=8)))
    assert int(batch._store["num_nodes"]) == batch.n_id.numel()
    hetero = next(iter(NeighborLoader(_hetero(), [2], input_nodes="paper", batch_size=8)))
    assert all("num_nodes" not in hetero[t] for t in hetero.node_types)


def test_torch_sparse_adj_t_with_bidirectional_and_induced_subgraphs():
    import torch_geometric.transforms as T

    data = _data()
    data.edge_index = torch.unique(data.edge_index, dim=1)
    sparse = T.ToSparseTensor(layout=torch.sparse_csr)(data.clone())
    for kind in ("bidirectional", "induced"):
        for a, b in zip(NeighborLoader(sparse, [-1, -1], batch_size=16, subgraph_type=kind),
                        NeighborLoader(data, [-1, -1], batch_size=16, subgraph_type=kind)):
            torch.sparse_csr_tensor(a.adj_t.crow_indices(), a.adj_t.col_indices(),
                                    a.adj_t.values(), a.adj_t.shape,
                                    check_invariants=True)  # sorted within rows, as torch wants
            coo = a.adj_t.to_sparse_coo().coalesce()
            row, col = coo.indices()
            assert Counter(zip(a.n_id[col].tolist(), a.n_id[row].tolist())) == \
                Counter(set(_global_edges(b))), kind  # a sparse matrix holds each edge once


def test_remote_node_type_named_like_its_relation_and_an_unsized_store():
    # PyG's own case: ("user", "user", "user"); a batch[name] lookup would
    # find the edge store.
    fs, gs = MyFeatureStore(), MyGraphStore()
    fs.put_tensor(torch.arange(10), group_name="user", attr_name="x", index=None)
    edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    gs.put_edge_index((edge_index[0], edge_index[1]), edge_type=("user", "user", "user"),
                      layout="coo", size=(10, 10))
    batch = next(iter(NeighborLoader((fs, gs), [-1], input_nodes=("user", range(10)),
                                     batch_size=10)))
    assert batch.node_types == ["user"] and batch["user"].num_nodes == 10
    assert torch.equal(batch["user"].x, batch["user"].n_id)
    # a store that gives no size: the CSC is padded to the feature store's nodes
    fs, gs = MyFeatureStore(), MyGraphStore()
    fs.put_tensor(torch.arange(10), group_name=None, attr_name="x", index=None)
    gs.put_edge_index((edge_index[0], edge_index[1]), edge_type=None, layout="coo")
    loader = NeighborLoader((fs, gs), [-1], input_nodes=torch.arange(10), batch_size=10)
    batch = next(iter(loader))
    assert loader.csc.rowptr.tolist() == [0, 0, 1, 2, 3, 4, 5, 5, 5, 5, 5]
    assert Counter(zip(batch.n_id[batch.edge_index[0]].tolist(),
                       batch.n_id[batch.edge_index[1]].tolist())) == \
        Counter(zip(edge_index[0].tolist(), edge_index[1].tolist()))
