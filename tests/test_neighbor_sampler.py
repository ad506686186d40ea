"""PyG's ``neighbor_sampler`` argument: another of our loaders'
``node_sampler``/``link_sampler`` shares the graph that loader built, and
PyG's own ``NeighborSampler`` lends its settings; either way the sampler's
settings win over the loader's, as in PyG. Anything else is refused by
name."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
import torch_geometric.loader
import torch_geometric.typing
from torch_geometric.data import Data
from torch_geometric.sampler import BidirectionalNeighborSampler
from torch_geometric.sampler import NeighborSampler as PygNeighborSampler

import salient_pipes.pyg as salient_pyg
from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader
from tests.test_pyg_parity import _data, _hetero, _stores
from tests.test_transform_sampler_output import _global_edges_of, _same


def _pyg_sampler(data, *args, **kwargs):
    """PyG's NeighborSampler, built without pyg-lib (it warns, and refuses
    weights and edge times that it would sample itself; here it only holds
    the settings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PygNeighborSampler(data, *args, **kwargs)


def _timed(level: str) -> Data:
    g = torch.Generator().manual_seed(5)
    data = Data(edge_index=torch.randint(0, 60, (2, 500), generator=g), num_nodes=60,
                x=torch.randn(60, 3, generator=g))
    data.time = torch.randint(0, 50, (60 if level == "node" else 500,), generator=g)
    return data


def _all_same(a, b) -> None:
    a, b = list(a), list(b)
    assert len(a) == len(b) > 1
    for x, y in zip(a, b):
        _same(x, y)


SETTINGS = dict(replace=True, disjoint=True, subgraph_type="bidirectional")


def test_pyg_samplers_settings_win_over_the_loaders():
    data = _data()
    sampler = _pyg_sampler(data, [3, 2], **SETTINGS)
    given = NeighborLoader(data, [9], neighbor_sampler=sampler, batch_size=16, seed=4)
    _all_same(given, NeighborLoader(data, [3, 2], batch_size=16, seed=4, **SETTINGS))
    assert given.node_sampler.num_neighbors.values == [3, 2]
    assert given.node_sampler.replace and given.node_sampler.disjoint
    assert list(given.num_neighbors.values()) == [[3, 2]]  # what the native sampler gets


def _global_pairs(batch):
    return Counter(zip(*batch.n_id[batch.edge_index].tolist()))


@pytest.mark.parametrize("subgraph_type", ["directional", "bidirectional"])
def test_one_pyg_sampler_gives_our_loader_and_pygs_the_same_subgraphs(subgraph_type):
    pytest.importorskip("torch_sparse")
    data = _data(seed=2)
    sampler = _pyg_sampler(data, [-1, -1], subgraph_type=subgraph_type)
    ours = NeighborLoader(data, [1], neighbor_sampler=sampler, batch_size=12)
    theirs = torch_geometric.loader.NeighborLoader(data, [1], neighbor_sampler=sampler,
                                                   batch_size=12)
    assert len(ours) == len(theirs) > 1
    for a, b in zip(ours, theirs):
        if subgraph_type == "directional":
            assert _global_edges_of(a) == _global_edges_of(b)
        else:  # PyG's to_bidirectional keeps any one id of an edge found both ways
            assert _global_pairs(a) == _global_pairs(b)
        assert torch.equal(a.n_id[:a.batch_size], b.n_id[:b.batch_size])


def test_pyg_samplers_per_edge_type_fanouts_on_a_typed_graph():
    data = _hetero()
    fanouts = {et: [2, 1] for et in data.edge_types}
    fanouts[data.edge_types[0]] = [0, 0]
    sampler = _pyg_sampler(data, fanouts)
    seeds = (data.node_types[0], None)
    given = NeighborLoader(data, [5, 5], input_nodes=seeds, neighbor_sampler=sampler,
                           batch_size=8, seed=2)
    _all_same(given, NeighborLoader(data, fanouts, input_nodes=seeds, batch_size=8, seed=2))
    edge_type = data.edge_types[0]
    assert all(b[edge_type].edge_index.size(1) == 0 for b in given)


def test_a_loaders_node_sampler_shares_its_graph_with_node_and_link_loaders():
    data = _data()
    first = NeighborLoader(data, [3, 2], batch_size=16, seed=4, **SETTINGS)
    second = NeighborLoader(data, [1], neighbor_sampler=first.node_sampler, batch_size=16,
                            seed=4)
    assert second.graph is first.graph  # not built again
    _all_same(second, NeighborLoader(data, [3, 2], batch_size=16, seed=4, **SETTINGS))
    link = LinkNeighborLoader(data, [1], neighbor_sampler=first.node_sampler, batch_size=16,
                              seed=6, neg_sampling="binary")
    assert link.graph is first.graph and link.link_sampler.num_neighbors.values == [3, 2]
    _all_same(link, LinkNeighborLoader(data, [3, 2], batch_size=16, seed=6,
                                       neg_sampling="binary", **SETTINGS))
    # and back: a link loader's sampler serves a node loader
    node = NeighborLoader(data, [7], neighbor_sampler=link.link_sampler, batch_size=16, seed=4)
    _all_same(node, NeighborLoader(data, [3, 2], batch_size=16, seed=4, **SETTINGS))


def test_a_shared_temporal_sampler_keeps_sampling_by_time():
    data = _timed("edge")
    kw = dict(time_attr="time", temporal_strategy="last", input_time=torch.full((60,), 30),
              batch_size=10, seed=1)
    first = NeighborLoader(data, [4, 4], **kw)
    kw.pop("time_attr")
    second = NeighborLoader(data, [1], neighbor_sampler=first.node_sampler, **kw)
    assert second.time_attr == "time" and second.temporal_strategy == "last"
    assert second.csc is first.csc and second.time is first.time  # not sorted again
    _all_same(second, NeighborLoader(data, [4, 4], time_attr="time", **kw))
    for batch in second:
        assert int(data.time[batch.e_id].max()) <= 30
    # link loaders over it: timed without naming time_attr, so edge_label_time is needed
    with pytest.raises(ValueError, match="'edge_label_time' is not set"):
        LinkNeighborLoader(data, [2], neighbor_sampler=first.node_sampler, batch_size=10)
    link = LinkNeighborLoader(data, [2], neighbor_sampler=first.node_sampler, batch_size=10,
                              edge_label_time=torch.full((data.num_edges,), 20), seed=1)
    for batch in link:
        assert int(data.time[batch.e_id].max()) <= 20


def test_time_arguments_are_checked_before_the_graph_is_built():
    broken = Data(edge_index=torch.tensor([[0, 5], [1, 0]]), num_nodes=2)  # id 5 of 2 nodes
    with pytest.raises(ValueError, match="edge_label_time is for temporal sampling"):
        LinkNeighborLoader(broken, [2], edge_label_time=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="input_time is for temporal sampling"):
        NeighborLoader(broken, [2], input_time=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="holds ids outside"):
        NeighborLoader(broken, [2])


def test_a_shared_remote_graph_accepts_a_new_tuple_of_the_same_stores():
    fs, gs, _ = _stores(_data())
    first = NeighborLoader((fs, gs), [3], input_nodes=torch.arange(60), batch_size=16, seed=1)
    second = NeighborLoader((fs, gs), [5], input_nodes=torch.arange(60), batch_size=16,
                            seed=1, neighbor_sampler=first.node_sampler)
    assert second.graph is first.graph
    _all_same(second, NeighborLoader((fs, gs), [3], input_nodes=torch.arange(60),
                                     batch_size=16, seed=1))


@pytest.mark.parametrize("level", ["node", "edge"])
def test_pyg_temporal_sampler_needs_the_attribute_named(level, monkeypatch):
    data = _timed(level)
    monkeypatch.setattr(torch_geometric.typing, "WITH_EDGE_TIME_NEIGHBOR_SAMPLE", True)
    sampler = _pyg_sampler(data, [3], time_attr="time", temporal_strategy="last")
    with pytest.raises(ValueError, match="samples by time: name the attribute with time_attr"):
        NeighborLoader(data, [3], neighbor_sampler=sampler, batch_size=10)
    kw = dict(input_time=torch.full((60,), 25), batch_size=10, seed=3)
    given = NeighborLoader(data, [3], neighbor_sampler=sampler, time_attr="time", **kw)
    assert given.temporal_strategy == "last" and given.disjoint  # the sampler's strategy
    _all_same(given, NeighborLoader(data, [3], time_attr="time", temporal_strategy="last",
                                    **kw))


def test_pyg_weighted_sampler_needs_the_attribute_named(monkeypatch):
    data = _data()
    data.w = torch.rand(data.num_edges)
    data.w[::3] = 0.0
    monkeypatch.setattr(torch_geometric.typing, "WITH_WEIGHTED_NEIGHBOR_SAMPLE", True)
    sampler = _pyg_sampler(data, [4], weight_attr="w")
    with pytest.raises(ValueError, match="samples by weight: name the attribute"):
        NeighborLoader(data, [4], neighbor_sampler=sampler, batch_size=10)
    given = NeighborLoader(data, [4], neighbor_sampler=sampler, weight_attr="w",
                           batch_size=10, seed=3)
    _all_same(given, NeighborLoader(data, [4], weight_attr="w", batch_size=10, seed=3))
    assert all(bool((data.w[b.e_id] > 0).all()) for b in given)


def test_what_cannot_be_honoured_is_refused_by_name():
    data = _data()

    class Mine(PygNeighborSampler):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine, both_ways = Mine(data, [2]), BidirectionalNeighborSampler(data, [2])
    with pytest.raises(NotImplementedError, match="a tests.test_neighbor_sampler.test_what_"
                                                  "cannot_be_honoured_is_refused_by_name."
                                                  "<locals>.Mine is not supported"):
        NeighborLoader(data, [2], neighbor_sampler=mine, batch_size=4)
    with pytest.raises(NotImplementedError, match="BidirectionalNeighborSampler"):
        NeighborLoader(data, [2], neighbor_sampler=both_ways, batch_size=4)
    with pytest.raises(NotImplementedError, match="a str is not supported"):
        LinkNeighborLoader(data, [2], neighbor_sampler="uniform", batch_size=4)
    legacy = salient_pyg.NeighborSampler(data.edge_index, [2], num_nodes=data.num_nodes)
    with pytest.raises(ValueError, match="takes a sampler, not a loader \\(got salient_pipes"
                                         ".adapters.pyg.legacy.NeighborSampler\\)"):
        NeighborLoader(data, [2], neighbor_sampler=legacy, batch_size=4)
    backward = _pyg_sampler(data, [2], sample_direction="backward")
    with pytest.raises(NotImplementedError, match="samples backward"):
        NeighborLoader(data, [2], neighbor_sampler=backward, batch_size=4)

    other = _data()
    other.num_nodes = data.num_nodes + 1
    with pytest.raises(ValueError, match=f"graph of {data.num_nodes} nodes; this loader's "
                                         f"has {data.num_nodes + 1}"):
        NeighborLoader(other, [2], neighbor_sampler=_pyg_sampler(data, [2]), batch_size=4)
    with pytest.raises(ValueError, match="time_attr='time', but neighbor_sampler does not"):
        NeighborLoader(_timed("node"), [2], neighbor_sampler=_pyg_sampler(_timed("node"), [2]),
                       time_attr="time", batch_size=4)

    ours = NeighborLoader(data, [2], batch_size=4).node_sampler
    with pytest.raises(ValueError, match="belongs to a loader over another graph"):
        NeighborLoader(_data(), [2], neighbor_sampler=ours, batch_size=4)
    with pytest.raises(ValueError, match="time_attr='t', but neighbor_sampler samples with "
                                         "time_attr=None"):
        NeighborLoader(data, [2], neighbor_sampler=ours, time_attr="t", batch_size=4)
