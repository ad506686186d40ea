"""Properties every PyG batch must have, checked on random graphs and
random loader options: tiny graphs (one node, no edges), duplicate and
shuffled seeds, every subgraph type, disjoint, replace, zero and full
fanouts, temporal and weighted sampling, negative sampling, several node
and edge types. Each property follows from PyG's contract alone (the input
graph and the options), so the same checks also run on PyG's own loaders
where their sampler here (torch-sparse) supports the options: the
properties are PyG's, not a description of our output."""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Tuple

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric import loader as pyg_loader
from torch_geometric.data import Data, HeteroData

from salient_pipes import pyg as ours

PROPERTIES = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
FANOUT = st.sampled_from([-1, 0, 1, 2, 5])


def _loaders(cls_name: str, pyg_can: bool) -> List[Any]:
    """Our loader, and PyG's where its sampler here supports the options."""
    return [getattr(ours, cls_name)] + ([getattr(pyg_loader, cls_name)] if pyg_can else [])


def _iterate(loader) -> List[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyG's notice that pyg-lib is missing
        return list(loader)


def _graph(seed: int, num_nodes: int, num_edges: int) -> Data:
    gen = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(num_nodes, 3, generator=gen), y=torch.arange(num_nodes),
                edge_index=torch.randint(0, num_nodes, (2, num_edges), generator=gen),
                edge_attr=torch.arange(num_edges, dtype=torch.float).view(-1, 1),
                num_nodes=num_nodes)


def _covers(input_ids: List[torch.Tensor], count: int) -> None:
    """Every input (seed, edge) in exactly one batch of the epoch."""
    got = torch.cat(input_ids).sort().values if input_ids else torch.empty(0, dtype=torch.long)
    assert torch.equal(got, torch.arange(count)), "an input missing or repeated in the epoch"


def _edges_exist(batch, data: Data, bidirectional: bool) -> None:
    """Each sampled edge is an input edge (or, in a bidirectional subgraph,
    the reverse of one); e_id names it and slices its attributes."""
    src, dst = batch.n_id[batch.edge_index]
    if not bidirectional:
        assert torch.equal(data.edge_index[:, batch.e_id], torch.stack([src, dst]))
        assert torch.equal(batch.edge_attr, data.edge_attr[batch.e_id])
        return
    known = set(map(tuple, data.edge_index.t().tolist()))
    assert all((s, d) in known or (d, s) in known for s, d in zip(src.tolist(), dst.tolist()))


def _hop_counts(batch, data: Data, fanouts: List[int], replace: bool,
                weight: torch.Tensor | None, time: torch.Tensor | None) -> None:
    """Hop by hop: the nodes a hop samples for are the previous hop's new
    ones, and each gets min(fanout, in-degree) distinct in-edges (fanout
    -1: all of them; with replacement: exactly fanout unless it has
    none; weighted: only edges of positive weight; temporal: none newer
    than its seed's time)."""
    nodes = torch.tensor(batch.num_sampled_nodes).cumsum(0).tolist()
    edges = torch.tensor([0] + list(batch.num_sampled_edges)).cumsum(0).tolist()
    in_degree = torch.bincount(data.edge_index[1], minlength=data.num_nodes)
    for hop, fanout in enumerate(fanouts):
        lo, hi = (0 if hop == 0 else nodes[hop - 1]), nodes[hop]
        dst = batch.edge_index[1, edges[hop]:edges[hop + 1]]
        assert ((dst >= lo) & (dst < hi)).all(), "an edge sampled for a node of another hop"
        e_id = batch.e_id[edges[hop]:edges[hop + 1]]
        if weight is not None:
            assert (weight[e_id] > 0).all(), "an edge of weight zero was sampled"
        if time is not None:
            seed_time = time[batch.n_id[:batch.batch_size]][batch.batch]
            assert (time[batch.n_id] <= seed_time).all(), "a node newer than its seed"
        count = torch.bincount(dst - lo, minlength=hi - lo)
        degree = in_degree[batch.n_id[lo:hi]]
        if fanout >= 0:
            assert (count <= fanout).all(), "more neighbors than the fanout"
        if weight is None and time is None:
            want = degree if fanout < 0 else (
                torch.where(degree > 0, fanout, 0) if replace else degree.clamp(max=fanout))
            assert torch.equal(count, want), (hop, fanout, count, want)
        if not replace:
            pairs = torch.stack([dst, e_id])
            assert pairs.unique(dim=1).size(1) == pairs.size(1), "an edge sampled twice"


@pytest.mark.parametrize("cls", _loaders("NeighborLoader", pyg_can=True),
                         ids=lambda c: c.__module__.split(".")[0])
@PROPERTIES
@given(seed=st.integers(0, 2**31), num_nodes=st.integers(1, 40),
       num_edges=st.integers(0, 160), fanouts=st.lists(FANOUT, max_size=3),
       batch_size=st.integers(1, 16), shuffle=st.booleans(), replace=st.booleans(),
       input_nodes=st.none() | st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_node_batches_hold_pyg_properties(cls, seed, num_nodes, num_edges, fanouts, batch_size,
                                          shuffle, replace, input_nodes):
    data = _graph(seed, num_nodes, num_edges)
    seeds = torch.arange(num_nodes) if input_nodes is None else \
        torch.tensor(input_nodes) % num_nodes  # duplicates included
    loader = cls(data, num_neighbors=fanouts, batch_size=batch_size, shuffle=shuffle,
                 replace=replace, input_nodes=None if input_nodes is None else seeds)
    batches = _iterate(loader)
    assert len(batches) == math.ceil(seeds.numel() / batch_size)
    for batch in batches:
        k = batch.batch_size
        assert torch.equal(batch.n_id[:k], seeds[batch.input_id]), "the seeds first"
        assert torch.equal(batch.x, data.x[batch.n_id]) and torch.equal(batch.y, data.y[batch.n_id])
        new = batch.n_id[k:]
        assert new.unique().numel() == new.numel() and not torch.isin(new, batch.n_id[:k]).any(), \
            "a sampled node listed twice"
        _edges_exist(batch, data, bidirectional=False)
        if cls is ours.NeighborLoader or "num_sampled_nodes" in batch:  # not with torch-sparse
            assert sum(batch.num_sampled_nodes) == batch.n_id.numel()
            assert sum(batch.num_sampled_edges) == batch.edge_index.size(1)
            _hop_counts(batch, data, fanouts, replace, None, None)
    _covers([b.input_id for b in batches], seeds.numel())


@PROPERTIES
@given(seed=st.integers(0, 2**31), num_nodes=st.integers(1, 40),
       num_edges=st.integers(0, 160), fanouts=st.lists(FANOUT, max_size=3),
       batch_size=st.integers(1, 16), replace=st.booleans(),
       mode=st.sampled_from(["disjoint", "bidirectional", "induced", "weighted", "temporal"]))
def test_node_batches_of_every_subgraph_kind_hold_pyg_properties(
        seed, num_nodes, num_edges, fanouts, batch_size, replace, mode):
    """The options PyG's loader needs pyg-lib for (disjoint, weighted,
    temporal), and the bidirectional and induced subgraphs."""
    data = _graph(seed, num_nodes, num_edges)
    gen = torch.Generator().manual_seed(seed + 1)
    kwargs: Dict[str, Any] = {}
    weight = time = None
    if mode == "weighted":
        weight = torch.rand(num_edges, generator=gen)
        weight[torch.rand(num_edges, generator=gen) < 0.3] = 0
        data.w, kwargs["weight_attr"] = weight, "w"
    if mode == "temporal":
        time = torch.randint(0, 8, (num_nodes,), generator=gen)
        data.time, kwargs["time_attr"] = time, "time"
    subgraph_type = mode if mode in ("bidirectional", "induced") else "directional"
    batches = _iterate(ours.NeighborLoader(
        data, num_neighbors=fanouts, batch_size=batch_size, replace=replace,
        subgraph_type=subgraph_type, disjoint=mode == "disjoint", **kwargs))
    for batch in batches:
        k = batch.batch_size
        assert torch.equal(batch.n_id[:k], batch.input_id), "the seeds first"
        assert torch.equal(batch.x, data.x[batch.n_id])
        _edges_exist(batch, data, bidirectional=mode == "bidirectional")
        if subgraph_type != "directional":  # PyG states no per-hop counts for these
            assert "num_sampled_nodes" not in batch and "num_sampled_edges" not in batch
            assert batch.n_id.unique().numel() == batch.n_id.numel()
        if mode == "induced":  # every input edge between the batch's nodes
            inside = torch.isin(data.edge_index, batch.n_id).all(0)
            assert torch.equal(batch.e_id.sort().values, inside.nonzero().view(-1))
        if mode in ("disjoint", "temporal"):  # temporal sampling is disjoint in PyG
            assert torch.equal(batch.batch[:k], torch.arange(k))
            src, dst = batch.edge_index
            assert torch.equal(batch.batch[src], batch.batch[dst]), "an edge across subgraphs"
            _hop_counts(batch, data, fanouts, replace, weight, time)
        if mode == "weighted":
            _hop_counts(batch, data, fanouts, replace, weight, None)
    _covers([b.input_id for b in batches], num_nodes)


@pytest.mark.parametrize("cls", _loaders("LinkNeighborLoader", pyg_can=True),
                         ids=lambda c: c.__module__.split(".")[0])
@PROPERTIES
@given(seed=st.integers(0, 2**31), num_nodes=st.integers(2, 40),
       num_edges=st.integers(1, 160), num_labels=st.integers(1, 30),
       fanouts=st.lists(FANOUT, max_size=2), batch_size=st.integers(1, 12),
       negatives=st.sampled_from([None, "labels", "binary", "triplet"]),
       amount=st.sampled_from([1, 2, 3]))
def test_link_batches_hold_pyg_properties(cls, seed, num_nodes, num_edges, num_labels, fanouts,
                                          batch_size, negatives, amount):
    data = _graph(seed, num_nodes, num_edges)
    gen = torch.Generator().manual_seed(seed + 2)
    label_index = torch.randint(0, num_nodes, (2, num_labels), generator=gen)
    labels = torch.randint(0, 3, (num_labels,), generator=gen) if negatives == "labels" else None
    neg = dict(mode=negatives, amount=amount) if negatives in ("binary", "triplet") else None
    batches = _iterate(cls(data, num_neighbors=fanouts, edge_label_index=label_index,
                           edge_label=labels, batch_size=batch_size, neg_sampling=neg))
    for batch in batches:
        ids, n_id = batch.input_id, batch.n_id
        assert n_id.unique().numel() == n_id.numel()
        assert torch.equal(batch.x, data.x[n_id])
        _edges_exist(batch, data, bidirectional=False)
        if negatives == "triplet":
            assert torch.equal(n_id[batch.src_index], label_index[0, ids])
            assert torch.equal(n_id[batch.dst_pos_index], label_index[1, ids])
            shape = (ids.numel(),) if amount == 1 else (ids.numel(), amount)  # PyG's squeeze
            assert batch.dst_neg_index.shape == shape
            continue
        ends = n_id[batch.edge_label_index]
        assert torch.equal(ends[:, :ids.numel()], label_index[:, ids]), "the labelled edges first"
        if negatives == "binary":
            assert ends.size(1) == ids.numel() * (1 + amount)
            assert torch.equal(batch.edge_label, torch.cat(
                [torch.ones(ids.numel()), torch.zeros(ids.numel() * amount)]))
        elif negatives == "labels":
            assert torch.equal(batch.edge_label, labels[ids])
    _covers([b.input_id for b in batches], num_labels)


def _hetero(seed: int, sizes: Tuple[int, int]) -> HeteroData:
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["author"].x = torch.randn(sizes[0], 2, generator=gen)
    data["paper"].x = torch.randn(sizes[1], 3, generator=gen)
    for (src, rel, dst), count in zip(HETERO_TYPES, torch.randint(0, 60, (3,), generator=gen)):
        num = dict(author=sizes[0], paper=sizes[1])
        data[src, rel, dst].edge_index = torch.stack([
            torch.randint(0, num[src], (int(count),), generator=gen),
            torch.randint(0, num[dst], (int(count),), generator=gen)])
        data[src, rel, dst].w = torch.arange(int(count), dtype=torch.float)
    return data


HETERO_TYPES = [("author", "writes", "paper"), ("paper", "cites", "paper"),
                ("paper", "rev_writes", "author")]
REVERSE = dict(zip(HETERO_TYPES, [HETERO_TYPES[2], HETERO_TYPES[1], HETERO_TYPES[0]]))


@PROPERTIES
@given(seed=st.integers(0, 2**31), sizes=st.tuples(st.integers(1, 20), st.integers(1, 30)),
       hops=st.integers(0, 3), per_type=st.booleans(), batch_size=st.integers(1, 10),
       disjoint=st.booleans(), replace=st.booleans(), bidirectional=st.booleans(),
       data_=st.data())
def test_heterogeneous_batches_hold_pyg_properties(seed, sizes, hops, per_type, batch_size,
                                                   disjoint, replace, bidirectional, data_):
    data = _hetero(seed, sizes)
    fanouts: Any = {t: data_.draw(st.lists(FANOUT, min_size=hops, max_size=hops))
                    for t in HETERO_TYPES} if per_type else \
        data_.draw(st.lists(FANOUT, min_size=hops, max_size=hops))
    batches = _iterate(ours.NeighborLoader(
        data, num_neighbors=fanouts, input_nodes="paper", batch_size=batch_size,
        disjoint=disjoint, replace=replace,
        subgraph_type="bidirectional" if bidirectional else "directional"))
    for batch in batches:
        k = batch["paper"].batch_size
        assert torch.equal(batch["paper"].n_id[:k], batch["paper"].input_id)
        for node_type in ("author", "paper"):
            n_id = batch[node_type].n_id
            assert torch.equal(batch[node_type].x, data[node_type].x[n_id])
            if not disjoint:
                assert n_id.unique().numel() == n_id.numel()
        for edge_type in HETERO_TYPES:
            src, _, dst = edge_type
            ends = torch.stack([batch[src].n_id[batch[edge_type].edge_index[0]],
                                batch[dst].n_id[batch[edge_type].edge_index[1]]])
            if not bidirectional:
                e_id = batch[edge_type].e_id
                assert torch.equal(data[edge_type].edge_index[:, e_id], ends)
                assert torch.equal(batch[edge_type].w, data[edge_type].w[e_id])
                continue
            # PyG pairs writes with rev_writes, and makes cites symmetric
            known = set(map(tuple, data[edge_type].edge_index.t().tolist())) | \
                set(map(tuple, data[REVERSE[edge_type]].edge_index.flip(0).t().tolist()))
            assert all(pair in known for pair in map(tuple, ends.t().tolist()))
    _covers([b["paper"].input_id for b in batches], sizes[1])
