"""Temporal, weighted and disjoint sampling against PyG's own loaders where
pyg-lib is installed (PyG samples that way only through pyg-lib): the same
subgraphs where the sampling is determined (every valid neighbor, or the most
recent ones), and the same inclusion frequencies where it is random.

pyg-lib's wheels come from PyG's own index, not PyPI; without it these
tests skip (docs/pyg.md, "Checked against pyg-lib", says how to run them)."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Dict, FrozenSet, Tuple

import pytest
import torch

pytest.importorskip("pyg_lib")
import torch_geometric.loader as pyg  # noqa: E402
from torch_geometric.data import Data, HeteroData  # noqa: E402

import salient_pipes.pyg as ours  # noqa: E402

warnings.filterwarnings("ignore", message=".*(pyg-lib|torch-sparse|deprecated).*")

Subgraphs = Dict[int, Tuple[FrozenSet[int], Counter]]


def _graph(num_nodes=80, num_edges=600, seed=0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    data = Data(x=torch.arange(num_nodes).float().view(-1, 1),
                edge_index=torch.randint(0, num_nodes, (2, num_edges), generator=gen))
    data.node_time = torch.randint(0, 50, (num_nodes,), generator=gen)
    data.edge_time = torch.randperm(num_edges, generator=gen)  # distinct: "last" is determined
    data.weight = torch.rand(num_edges, generator=gen)
    return data


def _per_seed(batch, store=None) -> Subgraphs:
    """Each seed's subgraph: its nodes, and its edges as (source, target)
    global ids with multiplicity."""
    b = batch if store is None else batch[store]
    out: Subgraphs = {}
    for i in range(int(b.batch_size)):
        keep = b.batch == i
        nodes = frozenset(b.n_id[keep].tolist())
        src, dst = b.edge_index
        mine = b.batch[dst] == i
        assert bool((b.batch[src][mine] == i).all())  # disjoint: no edge between subgraphs
        out[i] = (nodes, Counter(zip(b.n_id[src[mine]].tolist(), b.n_id[dst[mine]].tolist())))
    return out


def _both(data, *args, **kwargs):
    """The first batch of our loader and of PyG's, same arguments; both carry
    the same attributes."""
    a = next(iter(ours.NeighborLoader(data, *args, **kwargs)))
    b = next(iter(pyg.NeighborLoader(data, *args, **kwargs)))
    for sa, sb in zip(a.stores, b.stores):
        assert set(sa.keys()) == set(sb.keys()), (sa.keys(), sb.keys())
    return a, b


@pytest.mark.parametrize("hops", [[-1], [-1, -1], [-1, -1, -1]])
def test_disjoint_subgraphs_with_every_neighbor_are_pygs(hops):
    data = _graph()
    a, b = _both(data, hops, input_nodes=torch.arange(0, 80, 7), batch_size=12, disjoint=True)
    assert _per_seed(a) == _per_seed(b)
    assert a.num_sampled_nodes == b.num_sampled_nodes
    assert a.num_sampled_edges == b.num_sampled_edges


@pytest.mark.parametrize("hops", [[-1, -1], [-1, -1, -1]])
def test_node_times_take_the_neighbors_pyg_takes(hops):
    data = _graph()
    seeds = torch.arange(0, 80, 5)
    for input_time in (None, torch.full((len(seeds),), 25), torch.arange(len(seeds)) * 3):
        a, b = _both(data, hops, input_nodes=seeds, input_time=input_time, batch_size=16,
                     time_attr="node_time")
        assert _per_seed(a) == _per_seed(b), input_time
        if input_time is not None:
            assert torch.equal(a.seed_time, b.seed_time)


@pytest.mark.parametrize("hops", [[-1, -1], [3, 2], [1, 1, 1]])
def test_edge_times_with_the_last_strategy_are_pygs(hops):
    data = _graph()
    seeds = torch.arange(0, 80, 4)
    input_time = torch.randint(100, 600, (len(seeds),), generator=torch.Generator().manual_seed(1))
    a, b = _both(data, hops, input_nodes=seeds, input_time=input_time, batch_size=20,
                 time_attr="edge_time", temporal_strategy="last")
    assert _per_seed(a) == _per_seed(b)


def _per_subgraph(batch) -> Subgraphs:
    """Each subgraph of a link batch (``batch`` numbers them)."""
    out: Subgraphs = {}
    src, dst = batch.edge_index
    for i in range(int(batch.batch.max()) + 1):
        mine = batch.batch[dst] == i
        out[i] = (frozenset(batch.n_id[batch.batch == i].tolist()),
                  Counter(zip(batch.n_id[src[mine]].tolist(), batch.n_id[dst[mine]].tolist())))
    return out


@pytest.mark.parametrize("kwargs", [
    dict(num_neighbors=[-1, -1], disjoint=True),
    dict(num_neighbors=[-1, -1], time_attr="node_time", edge_label_time=torch.full((30,), 30)),
    dict(num_neighbors=[-1, -1], time_attr="edge_time", edge_label_time=torch.arange(30) * 20),
    dict(num_neighbors=[2, 2], time_attr="edge_time", edge_label_time=torch.arange(30) * 20,
         temporal_strategy="last")], ids=["disjoint", "node-times", "edge-times", "last"])
def test_link_subgraphs_are_pygs(kwargs):
    data = _graph()
    links = data.edge_index[:, :30]
    a = next(iter(ours.LinkNeighborLoader(data, edge_label_index=links, batch_size=30,
                                          **kwargs)))
    b = next(iter(pyg.LinkNeighborLoader(data, edge_label_index=links, batch_size=30,
                                         **kwargs)))
    assert set(a.keys()) == set(b.keys())
    assert _per_subgraph(a) == _per_subgraph(b)
    assert torch.equal(a.n_id[a.edge_label_index], b.n_id[b.edge_label_index])


def _typed_edges(batch, et) -> Counter:
    """The edges of type ``et`` as (subgraph, global source, global target)."""
    s, d = batch[et].edge_index
    src, dst = batch[et[0]], batch[et[2]]
    return Counter(zip(src.batch[s].tolist(), src.n_id[s].tolist(), dst.n_id[d].tolist()))


def test_hetero_node_times_with_every_neighbor_are_pygs():
    gen = torch.Generator().manual_seed(3)
    data = HeteroData()
    data["paper"].x = torch.arange(40).float().view(-1, 1)
    data["author"].x = torch.arange(30).float().view(-1, 1)
    data["paper"].time = torch.randint(0, 20, (40,), generator=gen)
    data["author"].time = torch.randint(0, 20, (30,), generator=gen)
    data["paper", "cites", "paper"].edge_index = torch.randint(0, 40, (2, 160), generator=gen)
    writes = torch.stack([torch.randint(0, 30, (120,), generator=gen),
                          torch.randint(0, 40, (120,), generator=gen)])
    data["author", "writes", "paper"].edge_index = writes
    data["paper", "rev_writes", "author"].edge_index = writes.flip(0)
    a, b = _both(data, [-1, -1], input_nodes=("paper", torch.arange(0, 40, 3)), batch_size=14,
                 time_attr="time")
    for t in ("paper", "author"):
        ga = {i: frozenset(a[t].n_id[a[t].batch == i].tolist()) for i in range(14)}
        gb = {i: frozenset(b[t].n_id[b[t].batch == i].tolist()) for i in range(14)}
        assert ga == gb, t
    for et in data.edge_types:
        assert _typed_edges(a, et) == _typed_edges(b, et), et


def _inclusion(loader_cls, data, seeds, fanout, epochs, **kwargs) -> torch.Tensor:
    """How often each edge of the seeds' neighborhoods is sampled, over
    ``epochs`` passes."""
    counts = torch.zeros(data.num_edges)
    torch.manual_seed(0)
    loader = loader_cls(data, [fanout], input_nodes=seeds, batch_size=len(seeds),
                        weight_attr="weight", **kwargs)
    for _ in range(epochs):
        for batch in loader:
            counts[batch.e_id] += 1
    return counts / epochs


@pytest.mark.parametrize("replace", [False, True])
def test_weighted_inclusion_frequencies_match_pygs(replace):
    star = torch.zeros(2, 12, dtype=torch.long)
    star[0] = torch.arange(1, 13)  # twelve in-edges of node 0 ...
    weight = torch.tensor([8.0, 4, 2, 1, 1, 1, 0.5, 0.5, 0, 0, 3, 6])  # ... two never drawn
    data = Data(x=torch.zeros(13, 1), edge_index=star, weight=weight)
    seeds = torch.tensor([0])
    a = _inclusion(ours.NeighborLoader, data, seeds, 3, 3000, replace=replace)
    b = _inclusion(pyg.NeighborLoader, data, seeds, 3, 3000, replace=replace)
    assert a[weight == 0].sum() == 0 and b[weight == 0].sum() == 0
    # 3000 epochs each: a frequency's standard error is below 0.01
    assert torch.allclose(a, b, atol=0.05), (a, b)


def test_the_benchmarks_switch_between_pygs_sampler_backends():
    from benchmarks.common import pyg_backend, pyg_backends

    assert pyg_backends()[0] == "pyg-lib"
    data = _graph()
    kwargs = dict(num_neighbors=[2], batch_size=4, disjoint=True)
    assert next(iter(pyg.NeighborLoader(data, **kwargs))).batch.numel() > 0  # pyg-lib's
    with pyg_backend("torch-sparse"), pytest.raises(ValueError, match="disjoint"):
        next(iter(pyg.NeighborLoader(data, **kwargs)))  # torch-sparse has no disjoint mode
    assert next(iter(pyg.NeighborLoader(data, **kwargs))).batch.numel() > 0  # switched back
