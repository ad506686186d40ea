"""Temporal and weighted sampling through the PyG loaders: on random
time-stamped graphs no sampled node or edge is later than its subgraph's
seed time (node- and edge-level times, node and link loaders, homogeneous
and heterogeneous), full fanouts find exactly the brute-force valid set,
zero-weight edges are never taken, and batches repeat across thread
counts and after a resume."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data, HeteroData

from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader

N, E = 80, 900


def _graph(level: str, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, N, (2, E), generator=g)
    count = N if level == "node" else E
    return Data(edge_index=edge_index, num_nodes=N, x=torch.randn(N, 3, generator=g),
                time=torch.randint(0, 100, (count,), generator=g))


def _subgraph_of_edges(batch) -> torch.Tensor:
    return batch.batch[batch.edge_index[1]]


def _assert_nothing_later(batch, level: str, subgraph_time: torch.Tensor) -> None:
    if level == "node":  # a seed itself is not sampled (a link's ends may be later)
        seeds = int(batch.num_sampled_nodes[0])
        assert (batch.time[seeds:] <= subgraph_time[batch.batch[seeds:]]).all()
    else:
        assert (batch.time <= subgraph_time[_subgraph_of_edges(batch)]).all()
    assert batch.edge_index.size(1) > 0  # not vacuous


@pytest.mark.parametrize("level", ["node", "edge"])
@pytest.mark.parametrize("strategy", ["uniform", "last"])
def test_node_loader_takes_nothing_later_than_the_seed(level, strategy):
    data = _graph(level)
    input_time = None if level == "node" else torch.randint(20, 100, (N,))
    loader = NeighborLoader(data, num_neighbors=[4, 3], batch_size=16, time_attr="time",
                            temporal_strategy=strategy, input_time=input_time, seed=1)
    seen = 0
    for batch in loader:
        if level == "node":  # the seeds' own times bound them; PyG reports no seed_time then
            assert "seed_time" not in batch
            bound = data.time[batch.input_id]
        else:
            bound = input_time[batch.input_id]
            assert torch.equal(batch.seed_time, bound)
        # disjoint subgraphs: subgraph j's seed is local node j
        assert torch.equal(batch.batch[:batch.batch_size], torch.arange(batch.batch_size))
        _assert_nothing_later(batch, level, bound)
        seen += batch.batch_size
    assert seen == N


def _valid_sources(data: Data, level: str, v: int, limit: int) -> set:
    src, dst = data.edge_index
    into = dst == v
    times = data.time[src] if level == "node" else data.time
    return set(src[into & (times <= limit)].tolist())


@pytest.mark.parametrize("level", ["node", "edge"])
def test_full_fanout_finds_exactly_the_valid_neighbors(level):
    data = _graph(level, seed=2)
    input_time = torch.randint(0, 100, (N,), generator=torch.Generator().manual_seed(3))
    if level == "node":
        input_time = torch.maximum(input_time, data.time)  # a seed is no later than itself
    loader = NeighborLoader(data, num_neighbors=[-1, -1], batch_size=10, time_attr="time",
                            input_time=input_time, shuffle=False)
    for batch in loader:
        for j in range(batch.batch_size):
            seed, limit = int(batch.n_id[j]), int(batch.seed_time[j])
            hop1 = _valid_sources(data, level, seed, limit)
            hop2 = set().union(*(_valid_sources(data, level, u, limit) for u in hop1))
            got = set(batch.n_id[batch.batch == j].tolist())
            assert got == {seed} | hop1 | hop2


def _link_subgraph_times(batch, mode: str) -> torch.Tensor:
    """Each disjoint subgraph's seed time. As in PyG, ``batch`` maps a node
    to its positive link (a negative's subgraph belongs to the link it was
    drawn for), so subgraph ``i`` has link ``i``'s time."""
    num_pos = batch.input_id.numel()
    if mode == "binary":
        seeds = batch.edge_label_index.reshape(-1)
        assert torch.equal(batch.batch[seeds], torch.arange(seeds.numel()) % num_pos)
        return batch.edge_label_time[:num_pos]
    for index in (batch.src_index, batch.dst_pos_index, batch.dst_neg_index.t()):
        assert torch.equal(batch.batch[index.reshape(-1)],
                           torch.arange(index.numel()) % num_pos)
    return batch.seed_time


@pytest.mark.parametrize("level", ["node", "edge"])
@pytest.mark.parametrize("mode", ["binary", "triplet"])
def test_link_loader_takes_nothing_later_than_the_link(level, mode):
    data = _graph(level, seed=4)
    label_time = torch.randint(30, 100, (E,), generator=torch.Generator().manual_seed(5))
    loader = LinkNeighborLoader(data, num_neighbors=[3, 2], batch_size=32, time_attr="time",
                                edge_label_index=data.edge_index, edge_label_time=label_time,
                                neg_sampling=mode, seed=2)
    for batch in loader:
        subgraph_time = _link_subgraph_times(batch, mode)
        _assert_nothing_later(batch, level, subgraph_time)
        if mode == "binary":
            pos = batch.edge_label == 1
            assert torch.equal(batch.edge_label_time[pos], label_time[batch.input_id])
        else:
            assert torch.equal(batch.seed_time, label_time[batch.input_id])
            if level == "node":  # negatives are drawn among nodes that exist by then
                neg = batch.n_id[batch.dst_neg_index].view(batch.seed_time.numel(), -1)
                ok = data.time[neg] <= batch.seed_time.view(-1, 1)
                assert ok.float().mean() > 0.9


def _hetero(level: str, seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["user"].x, data["item"].x = torch.randn(40, 2, generator=g), torch.randn(30, 2)
    for et, (s, d) in {("user", "buys", "item"): (40, 30), ("item", "rev_buys", "user"): (30, 40),
                       ("user", "follows", "user"): (40, 40)}.items():
        data[et].edge_index = torch.stack([torch.randint(0, s, (300,), generator=g),
                                           torch.randint(0, d, (300,), generator=g)])
        if level == "edge":
            data[et].time = torch.randint(0, 100, (300,), generator=g)
    if level == "node":
        data["user"].time = torch.randint(0, 100, (40,), generator=g)
        data["item"].time = torch.randint(0, 100, (30,), generator=g)
    return data


@pytest.mark.parametrize("level", ["node", "edge"])
def test_hetero_node_loader_takes_nothing_later_than_the_seed(level):
    data = _hetero(level)
    input_time = None if level == "node" else torch.randint(10, 100, (40,))
    loader = NeighborLoader(data, num_neighbors=[3, 3], batch_size=8, time_attr="time",
                            input_nodes="user", input_time=input_time, seed=0)
    reached = set()
    for batch in loader:
        if level == "node":  # the seeds' own times bound them; PyG reports no seed_time then
            assert "seed_time" not in batch["user"]
            seed_time = data["user"].time[batch["user"].input_id]
            for t in ("user", "item"):
                assert (batch[t].time <= seed_time[batch[t].batch]).all()
        else:
            seed_time = batch["user"].seed_time
            assert torch.equal(seed_time, input_time[batch["user"].input_id])
        for et in data.edge_types:
            store = batch[et]
            if store.edge_index.numel():
                reached.add(et)
                sub = batch[et[2]].batch[store.edge_index[1]]
                if level == "edge":
                    assert (store.time <= seed_time[sub]).all()
                else:  # the edge's source exists by its subgraph's seed time
                    src_time = batch[et[0]].time[store.edge_index[0]]
                    assert (src_time <= seed_time[sub]).all()
    assert reached == set(data.edge_types)


def test_hetero_link_loader_with_node_times():
    data = _hetero("node", seed=1)
    et = ("user", "buys", "item")
    label_time = torch.randint(50, 100, (300,), generator=torch.Generator().manual_seed(6))
    loader = LinkNeighborLoader(data, num_neighbors=[2, 2], batch_size=25, time_attr="time",
                                edge_label_index=(et, data[et].edge_index),
                                edge_label_time=label_time, neg_sampling="binary", seed=3)
    for batch in loader:
        times = label_time[batch[et].input_id]
        pos = batch[et].edge_label == 1
        assert torch.equal(batch[et].edge_label_time[pos], times)
        src, dst = batch[et].edge_label_index
        num_pos = times.numel()
        order = torch.arange(src.numel()) % num_pos
        assert torch.equal(batch["user"].batch[src], order)
        assert torch.equal(batch["item"].batch[dst], order)
        for t in ("user", "item"):  # sampled nodes exist by their link's time
            seeds = int(batch[t].num_sampled_nodes[0])
            assert (batch[t].time[seeds:] <= times[batch[t].batch[seeds:]]).all()
        assert int(batch["user"].num_sampled_nodes[1]) > 0


# ------------------------------------------------------------------ weights
def _weighted(seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, N, (2, E), generator=g)
    w = torch.rand(E, generator=g)
    w[torch.rand(E, generator=g) < 0.4] = 0.0
    return Data(edge_index=edge_index, num_nodes=N, w=w)


@pytest.mark.parametrize("replace", [False, True])
def test_weighted_loader_never_takes_a_zero_weight_edge(replace):
    data = _weighted()
    loader = NeighborLoader(data, num_neighbors=[5, 5], batch_size=16, weight_attr="w",
                            replace=replace, seed=0)
    taken = torch.cat([b.e_id for b in loader])
    assert taken.numel() > 100 and (data.w[taken] > 0).all()


def test_weighted_full_fanout_takes_every_positive_edge():
    data = _weighted(seed=1)
    loader = NeighborLoader(data, num_neighbors=[-1], batch_size=N, weight_attr="w",
                            shuffle=False)
    (batch,) = list(loader)
    assert sorted(batch.e_id.tolist()) == (data.w > 0).nonzero().view(-1).tolist()


def test_hetero_weights_on_one_edge_type_leave_the_others_uniform():
    data = _hetero("none")
    data["user", "buys", "item"].w = torch.zeros(300)
    data["user", "buys", "item"].w[:10] = 1.0
    loader = NeighborLoader(data, num_neighbors=[-1], batch_size=30, input_nodes="item",
                            weight_attr="w", shuffle=False)
    e_ids = torch.cat([b["user", "buys", "item"].e_id for b in loader])
    assert set(e_ids.tolist()) == set(range(10))
    loader = NeighborLoader(data, num_neighbors=[-1], batch_size=40, input_nodes="user",
                            weight_attr="w", shuffle=False)
    (batch,) = list(loader)
    et = ("item", "rev_buys", "user")  # no weights: every edge into a seed
    assert batch[et].e_id.numel() == data[et].edge_index.size(1)


# ------------------------------------------------------------ determinism
def _batches(loader, count=None):
    out = []
    it = iter(loader)
    while count is None or len(out) < count:  # take no batch beyond count
        b = next(it, None)
        if b is None:
            break
        out.append((b.n_id.clone(), b.e_id.clone(), b.edge_index.clone()))
    return out


@pytest.mark.parametrize("kind", ["time", "weight"])
def test_batches_repeat_for_any_thread_count_and_after_a_resume(kind):
    data = _graph("edge", seed=7) if kind == "time" else _weighted(seed=7)
    args = dict(num_neighbors=[4, 3], batch_size=8, seed=5, shuffle=True)
    args.update(time_attr="time", input_time=torch.full((N,), 60)) if kind == "time" else \
        args.update(weight_attr="w", replace=False)
    one = _batches(NeighborLoader(data, num_workers=1, **args))
    two = _batches(NeighborLoader(data, num_workers=2, **args))
    assert len(one) == N // 8
    for a, b in zip(one, two):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    first = NeighborLoader(data, num_workers=2, **args)
    _batches(first, count=3)
    state = first.state_dict()
    resumed = NeighborLoader(data, num_workers=1, **args)
    resumed.load_state_dict(state)
    rest = _batches(resumed)
    assert len(rest) == len(one) - 3
    for a, b in zip(one[3:], rest):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_temporal_example_shows_the_leak():
    from examples.temporal_link_prediction import main

    results = main(["--epochs", "2", "--num-nodes", "600", "--num-events", "4000"])
    leaky, temporal = results["leaky"], results["temporal"]
    assert leaky["reported"] > leaky["deployed"] + 0.05  # future edges inflate the figure
    assert temporal["reported"] == temporal["deployed"]  # the same loader both times
    assert temporal["deployed"] > 0.6  # the planted signal is learnt from the past alone


def test_temporal_negatives_are_redrawn_among_nodes_that_exist_by_then():
    # 40 nodes exist at time 50, the other 40 only at 100; every link is at
    # time 50. A negative drawn among the later nodes is drawn again (up to
    # five times, as PyG does), and a node of time exactly 50 is valid.
    g = torch.Generator().manual_seed(6)
    time = torch.full((N,), 100)
    early = torch.randperm(N, generator=g)[:40]
    time[early] = 50
    data = Data(edge_index=torch.randint(0, N, (2, E), generator=g), num_nodes=N, time=time)
    loader = LinkNeighborLoader(data, [2], batch_size=100, time_attr="time",
                                edge_label_time=torch.full((E,), 50), neg_sampling="binary",
                                seed=3)
    negatives = []
    for batch in loader:
        negatives.append(batch.n_id[batch.edge_label_index[:, batch.edge_label == 0]].view(-1))
    negatives = torch.cat(negatives)
    assert negatives.numel() == 2 * E and bool((time[negatives] == 50).all())
    # spread over the early nodes: the earliest node, the fallback after five
    # failed redraws, is not where most of them end up
    share = torch.bincount(negatives, minlength=N).max().item() / negatives.numel()
    assert share < 0.15
