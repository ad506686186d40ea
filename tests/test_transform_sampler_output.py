"""PyG's ``transform_sampler_output``: our loaders hand the function what
PyG's sampler would return (``SamplerOutput`` / ``HeteroSamplerOutput``,
edges as CSR positions, PyG's metadata) and PyG's own ``filter_fn`` builds
the batch from what it returns."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch_geometric.loader as pyg_loader
from torch_geometric.data import Data
from torch_geometric.sampler import HeteroSamplerOutput, SamplerOutput

from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader
from tests.test_pyg_parity import _data, _hetero, _stores


def _same(a, b) -> None:
    """Two batches hold the same stores, keys and values."""
    assert type(a) is type(b)
    for sa, sb in zip(a.stores, b.stores):
        assert list(sa.keys()) == list(sb.keys()), (list(sa.keys()), list(sb.keys()))
        for key, va in sa.items():
            vb = sb[key]
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, key


def _both(make, **kwargs):
    """The loader's batches without and with an identity
    transform_sampler_output, the outputs it was given, and the edge
    permutation of the loader that was given them."""
    seen = []

    def keep(out):
        seen.append(out)
        return out

    plain = list(make(**kwargs))
    loader = make(transform_sampler_output=keep, **kwargs)
    through = list(loader)
    assert len(plain) == len(through) == len(seen) > 0
    sampler = getattr(loader, "node_sampler", None) or loader.link_sampler
    return plain, through, seen, sampler.edge_permutation


def _timed(seed=0) -> Data:
    data = _data(seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    data.t = torch.randint(0, 10, (data.num_nodes,), generator=gen)
    data.et = torch.randint(0, 10, (data.num_edges,), generator=gen)
    data.edge_attr = torch.randn(data.num_edges, 3, generator=gen)
    return data


NODE_CASES = [
    {}, {"subgraph_type": "bidirectional"}, {"subgraph_type": "induced"}, {"disjoint": True},
    {"time_attr": "t"}, {"time_attr": "t", "input_time": torch.full((60,), 6)},
    {"time_attr": "et", "input_time": torch.full((60,), 6), "temporal_strategy": "last"},
    {"weight_attr": "edge_weight", "replace": True},
]


@pytest.mark.parametrize("case", NODE_CASES, ids=lambda c: "-".join(c) or "plain")
def test_node_batches_built_from_the_outputs_equal_ours(case):
    data = _timed()
    plain, through, seen, perm = _both(lambda **kw: NeighborLoader(
        data, [3, 2], batch_size=16, seed=5, **kw), **case)
    for a, b, out in zip(plain, through, seen):
        _same(a, b)
        assert isinstance(out, SamplerOutput)
        assert torch.equal(out.node, a.n_id) and torch.equal(out.metadata[0], a.input_id)
        # edges as PyG's sampler reports them: CSR positions the permutation maps to ids
        assert torch.equal(perm[out.edge], a.e_id)
        assert (out.batch is None) == ("disjoint" not in case and "time_attr" not in case)
        assert (out.metadata[1] is None) == ("input_time" not in case)


@pytest.mark.parametrize("case", [
    {}, {"neg_sampling": "binary"}, {"neg_sampling": "triplet", "disjoint": True},
    {"time_attr": "t", "edge_label_time": torch.arange(400) % 10, "neg_sampling": "triplet"},
    {"time_attr": "et", "edge_label_time": torch.arange(400) % 10, "neg_sampling": "binary"},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items() if isinstance(v, str)) or "plain")
def test_link_batches_built_from_the_outputs_equal_ours(case):
    data = _timed()
    plain, through, seen, _ = _both(lambda **kw: LinkNeighborLoader(
        data, [3, 2], batch_size=16, seed=5, **kw), **case)
    for a, b, out in zip(plain, through, seen):
        _same(a, b)
        assert torch.equal(out.metadata[0], a.input_id)
        if case.get("neg_sampling") == "triplet":
            assert torch.equal(out.metadata[1], a.src_index)
            assert torch.equal(out.metadata[3], a.dst_neg_index)
        else:
            assert torch.equal(out.metadata[1], a.edge_label_index)


@pytest.mark.parametrize("case", [
    {"subgraph_type": "directional"}, {"subgraph_type": "bidirectional"},
    {"subgraph_type": "induced"}, {"disjoint": True}])
def test_typed_node_batches_built_from_the_outputs_equal_ours(case):
    data = _hetero()
    data["paper", "cites", "paper"].edge_attr = torch.arange(150.0)
    plain, through, seen, _ = _both(lambda **kw: NeighborLoader(
        data, [3, 2], input_nodes="paper", batch_size=8, seed=2, **kw), **case)
    for a, b, out in zip(plain, through, seen):
        _same(a, b)
        assert isinstance(out, HeteroSamplerOutput)
        assert torch.equal(out.node["author"], a["author"].n_id)


@pytest.mark.parametrize("neg", [None, "binary", "triplet"])
def test_typed_link_batches_built_from_the_outputs_equal_ours(neg):
    plain, through, _, _ = _both(lambda **kw: LinkNeighborLoader(
        _hetero(), [3, 2], edge_label_index=("author", "writes", "paper"), batch_size=8,
        seed=2, neg_sampling=neg, **kw))
    for a, b in zip(plain, through):
        _same(a, b)


def test_remote_stores_and_collate_fn_take_the_outputs_too():
    data = _data()
    fs, gs, _ = _stores(data)
    make = lambda **kw: NeighborLoader((fs, gs), [-1], input_nodes=torch.arange(60),  # noqa: E731
                                       batch_size=16, seed=1, **kw)
    plain, through, _, _ = _both(make)
    for a, b in zip(plain, through):
        _same(a, b)
    for per_worker in (True, False):  # collate_fn, or PyG's __call__ through filter_fn
        loader = make(transform_sampler_output=lambda out: out, filter_per_worker=per_worker)
        _same(make()(torch.tensor([3, 7])), loader(torch.tensor([3, 7])))


def test_what_the_function_returns_is_what_the_batch_is_built_from():
    data = _data()

    def first_hop_only(out):
        keep = out.col < out.metadata[0].numel()  # edges into a seed
        out.row, out.col, out.edge = out.row[keep], out.col[keep], out.edge[keep]
        return out

    calls = []
    loader = NeighborLoader(data, [4, 4], batch_size=10, seed=3,
                            transform_sampler_output=first_hop_only,
                            transform=lambda b: calls.append(b) or b)
    full = NeighborLoader(data, [4, 4], batch_size=10, seed=3)
    for a, b in zip(full, loader):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x)
        into_seeds = a.edge_index[1] < a.batch_size
        assert 0 < b.edge_index.size(1) < a.edge_index.size(1)
        assert torch.equal(b.edge_index, a.edge_index[:, into_seeds])
        assert torch.equal(b.e_id, a.e_id[into_seeds])
        assert torch.equal(data.edge_index[:, b.e_id], b.n_id[b.edge_index])
    assert len(calls) == len(loader)  # the transform runs after it, once per batch


def _global(out, perm):
    """A sampler output as PyG's filter reads it: node ids, and each edge as
    (global source, global target, edge id)."""
    edges = zip(out.node[out.row].tolist(), out.node[out.col].tolist(),
                perm[out.edge].tolist())
    return sorted(out.node.tolist()), Counter(edges)


@pytest.mark.parametrize("subgraph_type", ["directional", "induced"])
def test_outputs_match_pygs_own_with_every_neighbor(subgraph_type):
    """With every neighbor taken, sampling is determined: our outputs and
    PyG's (its own loader, its own sampler) hold the same nodes and edges."""
    pytest.importorskip("torch_sparse")
    data = _data(seed=4)
    ours, theirs = [], []
    mine = NeighborLoader(data, [-1, -1], batch_size=12, subgraph_type=subgraph_type,
                          transform_sampler_output=lambda o: ours.append(o) or o)
    pyg = pyg_loader.NeighborLoader(data, [-1, -1], batch_size=12,
                                    subgraph_type=subgraph_type,
                                    transform_sampler_output=lambda o: theirs.append(o) or o)
    for a, b in zip(mine, pyg):
        assert _global_edges_of(a) == _global_edges_of(b)
    assert len(ours) == len(theirs) == len(mine)
    mine_perm = mine.node_sampler.edge_permutation
    pyg_perm = pyg.node_sampler.edge_permutation
    for o, t in zip(ours, theirs):
        assert _global(o, mine_perm) == _global(t, pyg_perm)
        assert torch.equal(o.metadata[0], t.metadata[0])


def _global_edges_of(batch):
    return Counter(zip(batch.n_id[batch.edge_index[0]].tolist(),
                       batch.n_id[batch.edge_index[1]].tolist(), batch.e_id.tolist()))


def test_bad_uses_are_refused_clearly():
    data = _data()
    with pytest.raises(ValueError, match="transform_sampler_output must be callable"):
        NeighborLoader(data, [2], transform_sampler_output=3)
    with pytest.raises(ValueError, match="PyG's filter_fn builds them"):
        NeighborLoader(data, [2], transform_sampler_output=lambda o: o, features_on="cpu")
    with pytest.raises(NotImplementedError, match="neighbor_sampler"):
        NeighborLoader(data, [2], neighbor_sampler=object())
    with pytest.raises(NotImplementedError, match="neighbor_sampler"):
        LinkNeighborLoader(data, [2], neighbor_sampler=object())
