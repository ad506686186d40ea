"""The PyG drop-in: NeighborLoader and LinkNeighborLoader on our native
node-wise sampler, checked against full-graph models, the input graph and
PyG's own conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.nn.models import GraphSAGE

from salient_pipes import _native
from salient_pipes.pipes.to_pyg import induced_edges
from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader, csc_of
from tests.conftest import native_sample, pairs, random_csr


def _data(num_nodes=400, num_edges=3000, seed=0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index[:, :40] = edge_index[:, 40:80]  # duplicate edges stay separate
    mask = torch.rand(num_nodes, generator=gen) < 0.3
    return Data(x=torch.randn(num_nodes, 8, generator=gen, dtype=torch.float64),
                y=torch.randint(0, 5, (num_nodes,), generator=gen), edge_index=edge_index,
                edge_attr=torch.randn(num_edges, 3, generator=gen),
                edge_weight=torch.rand(num_edges, generator=gen),
                train_mask=mask, score=torch.arange(num_nodes) * 10)


def _check_batch(batch: Data, data: Data, seeds: torch.Tensor) -> None:
    n_id, e_id = batch.n_id, batch.e_id
    assert torch.equal(n_id[: batch.batch_size], seeds)
    assert n_id.unique().numel() == n_id.numel()
    # every sampled edge exists in the input, at the id e_id names
    assert torch.equal(data.edge_index[:, e_id], n_id[batch.edge_index])
    for key in ("x", "y", "train_mask", "score"):
        assert torch.equal(batch[key], data[key][n_id]), key
    assert batch.x.dtype == data.x.dtype
    assert torch.equal(batch.edge_attr, data.edge_attr[e_id])
    assert torch.equal(batch.edge_weight, data.edge_weight[e_id])
    assert sum(batch.num_sampled_nodes) == n_id.numel()
    assert sum(batch.num_sampled_edges) == batch.edge_index.size(1)
    assert batch.num_nodes == n_id.numel()


@pytest.mark.parametrize("shuffle", [False, True])
def test_node_batches_carry_pyg_attributes(shuffle):
    data = _data()
    loader = NeighborLoader(data, num_neighbors=[4, 3], input_nodes=data.train_mask,
                            batch_size=32, shuffle=shuffle, seed=1)
    train = data.train_mask.nonzero().view(-1)
    seen = []
    for batch in loader:
        seeds = batch.input_id  # of a mask: the ids it selects, as in PyG
        _check_batch(batch, data, seeds)
        seen.append(seeds)
    assert len(seen) == len(loader) == math.ceil(train.numel() / 32)
    assert torch.equal(torch.cat(seen).sort().values, train)


def test_node_wise_semantics_each_node_expanded_once():
    data = _data(num_nodes=300, num_edges=2400, seed=2)
    csc = csc_of(data)
    degree = csc.rowptr.diff()
    for batch in NeighborLoader(data, num_neighbors=[5, 2, 3], batch_size=20, seed=3):
        targets = batch.edge_index[1]
        bounds = np.cumsum([0] + batch.num_sampled_nodes)
        edge_bounds = np.cumsum([0] + batch.num_sampled_edges)
        for hop, fanout in enumerate([5, 2, 3]):
            hop_targets = targets[edge_bounds[hop]:edge_bounds[hop + 1]]
            # the targets of hop h are the nodes found in hop h - 1, each with
            # min(degree, fanout) distinct sampled edges
            assert bool(((hop_targets >= bounds[hop]) & (hop_targets < bounds[hop + 1])).all())
            frontier = torch.arange(bounds[hop], bounds[hop + 1])
            counts = torch.bincount(hop_targets - bounds[hop], minlength=frontier.numel())
            expected = degree[batch.n_id[frontier]].clamp(max=fanout)
            assert torch.equal(counts, expected)
        assert batch.e_id.unique().numel() == batch.e_id.numel()


def _sage(data: Data, layers: int) -> GraphSAGE:
    torch.manual_seed(0)
    return GraphSAGE(data.num_features, 16, layers, out_channels=4).double().eval()


@pytest.mark.parametrize("trim", [False, True])
def test_full_neighborhoods_give_full_graph_outputs(trim):
    data = _data(num_nodes=250, num_edges=1500, seed=4)
    model = _sage(data, 3)
    with torch.no_grad():
        full = model(data.x, data.edge_index)
        loader = NeighborLoader(data, num_neighbors=[-1] * 3, batch_size=50, shuffle=True,
                                seed=5)
        for batch in loader:
            if trim:
                out = model(batch.x, batch.edge_index,
                            num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                            num_sampled_edges_per_hop=batch.num_sampled_edges)
            else:
                out = model(batch.x, batch.edge_index)
            seeds = batch.n_id[: batch.batch_size]
            torch.testing.assert_close(out[: batch.batch_size], full[seeds], rtol=1e-12,
                                       atol=1e-12)


def test_same_batches_whatever_the_thread_count_and_epochs_differ():
    data = _data(seed=6)
    runs = [list(NeighborLoader(data, [4, 4], batch_size=64, shuffle=True, seed=7,
                                num_workers=w)) for w in (1, 3)]
    for a, b in pairs(*runs):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
    loader = NeighborLoader(data, [4, 4], batch_size=64, shuffle=True, seed=7)
    first, second = list(loader), list(loader)
    assert not torch.equal(first[0].n_id, second[0].n_id)  # reshuffled and resampled
    for a, b in pairs(first, runs[0]):
        assert torch.equal(a.n_id, b.n_id)
    torch.manual_seed(11)
    x = next(iter(NeighborLoader(data, [4], batch_size=64, shuffle=True)))
    torch.manual_seed(11)
    y = next(iter(NeighborLoader(data, [4], batch_size=64, shuffle=True)))
    assert torch.equal(x.n_id, y.n_id)  # torch.manual_seed makes runs repeat, as with PyG


def test_subgraph_types():
    data = _data(num_nodes=200, num_edges=1200, seed=8)
    kw = dict(num_neighbors=[3, 3], batch_size=16, seed=9)
    directional = next(iter(NeighborLoader(data, **kw)))
    both = next(iter(NeighborLoader(data, subgraph_type="bidirectional", **kw)))
    induced = next(iter(NeighborLoader(data, subgraph_type="induced", **kw)))
    assert torch.equal(directional.n_id, both.n_id) and torch.equal(both.n_id, induced.n_id)
    pairs_both = set(map(tuple, both.edge_index.t().tolist()))
    for s, d in directional.edge_index.t().tolist():
        assert (s, d) in pairs_both and (d, s) in pairs_both
    # induced: exactly the input edges among the sampled nodes
    n_id = induced.n_id
    inside = torch.isin(data.edge_index, n_id).all(0)
    expected = sorted(map(tuple, data.edge_index[:, inside].t().tolist()))
    got = sorted(map(tuple, n_id[induced.edge_index].t().tolist()))
    assert got == expected
    assert torch.equal(data.edge_index[:, induced.e_id], n_id[induced.edge_index])
    assert torch.equal(induced.edge_attr, data.edge_attr[induced.e_id])


@pytest.mark.parametrize("trim", [False, True])
def test_disjoint_subgraphs_per_seed(trim):
    data = _data(num_nodes=250, num_edges=1500, seed=20)
    model = _sage(data, 2)
    seeds = torch.tensor([3, 3, 17, 40, 41, 99])  # a seed may repeat: its subgraphs are apart
    loader = NeighborLoader(data, [-1, -1], input_nodes=seeds, batch_size=4, disjoint=True,
                            seed=1)
    with torch.no_grad():
        full = model(data.x, data.edge_index)
        got = []
        for batch in loader:
            b = batch.batch_size
            assert torch.equal(batch.batch[:b], torch.arange(b))
            assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
            for i in range(b):  # within one seed's subgraph a node appears once
                own = batch.n_id[batch.batch == i]
                assert own.unique().numel() == own.numel()
            assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
            kwargs = dict(num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                          num_sampled_edges_per_hop=batch.num_sampled_edges) if trim else {}
            out = model(batch.x, batch.edge_index, **kwargs)[:b]
            torch.testing.assert_close(out, full[batch.n_id[:b]], rtol=1e-12, atol=1e-12)
            got.append(batch.n_id[:b])
    assert torch.equal(torch.cat(got), seeds)
    # the two subgraphs of seed 3 are the same nodes under different batch ids
    first = next(iter(loader))
    assert torch.equal(first.n_id[first.batch == 0].sort().values,
                       first.n_id[first.batch == 1].sort().values)


def test_disjoint_link_batches_as_pyg_lays_them_out():
    data = _data(seed=21)
    binary = next(iter(LinkNeighborLoader(data, [2], batch_size=8, neg_sampling="binary",
                                          disjoint=True, seed=3)))
    assert torch.equal(binary.edge_label_index, torch.arange(32).view(2, -1))
    positives = binary.n_id[binary.edge_label_index[:, :8]]
    assert torch.equal(positives, data.edge_index[:, binary.input_id])
    assert int(binary.batch.max()) < 8  # every node belongs to one of the batch's edges
    triplet = next(iter(LinkNeighborLoader(data, [2], batch_size=8, disjoint=True, seed=3,
                                           neg_sampling={"mode": "triplet", "amount": 2})))
    assert torch.equal(triplet.src_index, torch.arange(8))
    assert torch.equal(triplet.dst_pos_index, torch.arange(8, 16))
    assert triplet.dst_neg_index.shape == (8, 2)
    # negatives of edge i sit where the seed position mod 8 is i
    assert torch.equal(triplet.batch[triplet.dst_neg_index],
                       torch.arange(8).view(-1, 1).expand(8, 2))


# ----------------------------------------------------------------- links
def test_binary_link_batches():
    data = _data(seed=10)
    label_index = data.edge_index[:, :500]
    labels = torch.randint(0, 3, (500,))
    loader = LinkNeighborLoader(data, [3, 2], edge_label_index=label_index, edge_label=labels,
                                neg_sampling={"mode": "binary", "amount": 2}, batch_size=64,
                                shuffle=True, seed=12)
    seen = []
    for batch in loader:
        b = batch.input_id.numel()
        num_neg = math.ceil(2 * b)
        assert batch.edge_label_index.size(1) == b + num_neg
        pos = batch.n_id[batch.edge_label_index[:, :b]]
        assert torch.equal(pos, label_index[:, batch.input_id])  # positives are input edges
        # labels starting at 0 are shifted so that 0 means negative, as PyG does
        assert torch.equal(batch.edge_label[:b], labels[batch.input_id] + 1)
        assert (batch.edge_label[b:] == 0).all()
        seeds = batch.n_id[: batch.num_sampled_nodes[0]]
        assert torch.equal(seeds, batch.n_id[batch.edge_label_index].unique())
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])
        seen.append(batch.input_id)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(500))


def test_binary_negatives_are_uniform():
    data = _data(num_nodes=50, num_edges=400, seed=13)
    loader = LinkNeighborLoader(data, [1], batch_size=400, neg_sampling="binary", seed=1)
    ends = []
    for _ in range(30):
        batch = next(iter(loader))
        ends.append(batch.n_id[batch.edge_label_index[:, 400:]].reshape(-1))
    counts = torch.bincount(torch.cat(ends), minlength=50).double()
    from scipy.stats import chisquare

    assert chisquare(counts.numpy()).pvalue > 1e-4


def test_triplet_link_batches_and_determinism():
    data = _data(seed=14)
    kwargs = dict(num_neighbors=[2, 2], neg_sampling={"mode": "triplet", "amount": 3},
                  batch_size=50, seed=15)
    runs = [list(LinkNeighborLoader(data, num_workers=w, **kwargs)) for w in (1, 2)]
    for a, b in pairs(*runs):
        assert torch.equal(a.n_id, b.n_id) and torch.equal(a.dst_neg_index, b.dst_neg_index)
    for batch in runs[0]:
        b = batch.input_id.numel()
        assert batch.src_index.shape == (b,) and batch.dst_pos_index.shape == (b,)
        assert batch.dst_neg_index.shape == (b, 3)
        positives = torch.stack([batch.n_id[batch.src_index], batch.n_id[batch.dst_pos_index]])
        assert torch.equal(positives, data.edge_index[:, batch.input_id])
        assert "edge_label_index" not in batch and "edge_label" not in batch
    one = next(iter(LinkNeighborLoader(data, [2], neg_sampling="triplet", batch_size=10,
                                       seed=1)))
    assert one.dst_neg_index.shape == (10,)


def test_link_batches_without_negatives_and_with_ratio():
    data = _data(seed=16)
    plain = next(iter(LinkNeighborLoader(data, [2], batch_size=30, seed=2)))
    assert plain.edge_label_index.size(1) == 30 and "edge_label" not in plain
    ratio = next(iter(LinkNeighborLoader(data, [2], batch_size=30, neg_sampling_ratio=0.5,
                                         seed=2)))
    assert ratio.edge_label_index.size(1) == 45 and ratio.edge_label.sum() == 30


# -------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors():
    data = _data(seed=17)
    n = data.num_nodes
    cases = [
        (lambda: NeighborLoader(data, [2], input_nodes=torch.zeros(n - 1, dtype=torch.bool)),
         ValueError, "bool mask of 399 entries"),
        (lambda: NeighborLoader(data, [2], input_nodes=torch.tensor([0, n])), ValueError,
         "outside"),
        (lambda: NeighborLoader(data, [2.5]), ValueError, r"num_neighbors\[0\] must be an int"),
        (lambda: NeighborLoader(data, [2], batch_size=0), ValueError, "batch_size must be >= 1"),
        (lambda: NeighborLoader(data, [2], subgraph_type="weird"), ValueError, "subgraph_type"),
        (lambda: NeighborLoader(data, [2], disjoint=True, subgraph_type="induced"),
         NotImplementedError, "induced' with disjoint"),
        (lambda: NeighborLoader(data, [2], input_time=torch.zeros(3)), ValueError,
         "input_time is for temporal sampling"),
        (lambda: NeighborLoader(data, [2], time_attr="t"), ValueError,
         "neither a node-level nor an edge-level"),
        (lambda: NeighborLoader(data, [2], time_attr="score", input_time=torch.zeros(3)),
         ValueError, "one time per input node"),
        (lambda: NeighborLoader(data, [2], time_attr="score", temporal_strategy="first"),
         ValueError, "temporal_strategy"),
        (lambda: NeighborLoader(data, [2], weight_attr="nope"), ValueError,
         "not an edge attribute"),
        (lambda: NeighborLoader(data, [2], weight_attr="edge_attr"), ValueError,
         "one weight per edge"),
        (lambda: NeighborLoader(data, [2], weight_attr="edge_weight", time_attr="score"),
         NotImplementedError, "together"),
        (lambda: NeighborLoader(data, {("a", "b", "c"): [2]}), ValueError,
         "per edge type .* is for HeteroData"),
        (lambda: NeighborLoader(data, [2], input_nodes=("paper", None)), ValueError,
         "is for typed graphs"),
        (lambda: NeighborLoader(data, [2], bogus=1), TypeError, "bogus"),
        (lambda: LinkNeighborLoader(data, [2], edge_label=torch.ones(5)), ValueError,
         "edge_label has 5 entries"),
        (lambda: LinkNeighborLoader(data, [2], edge_label_index=torch.tensor([[0], [n]])),
         ValueError, "outside"),
        (lambda: induced_edges((torch.tensor([0, 1]), torch.tensor([0])), torch.tensor([0]),
                               src_n_id=torch.tensor([0])), ValueError, "needs num_src"),
        (lambda: LinkNeighborLoader(data, [2], neg_sampling="sideways"), ValueError,
         "binary' or 'triplet"),
        (lambda: LinkNeighborLoader(data, [2], neg_sampling="triplet",
                                    edge_label=torch.ones(data.num_edges)), ValueError,
         "must be None for triplet"),
        (lambda: LinkNeighborLoader(data, [2], edge_label_time=torch.zeros(3)),
         ValueError, "edge_label_time is for temporal sampling"),
        (lambda: LinkNeighborLoader(data, [2], time_attr="score"), ValueError,
         "'edge_label_time' is not set"),
        (lambda: NeighborLoader(Data(x=torch.ones(3, 1), edge_index=torch.tensor([[0], [5]])),
                                [2]), ValueError, "outside"),
    ]
    for build, error, message in cases:
        with pytest.raises(error, match=message):
            build()


def test_csc_is_built_once_per_edge_index():
    data = _data(seed=18)
    assert csc_of(data) is csc_of(data)
    rowptr, col = csc_of(data).rowptr.numpy(), csc_of(data).col.numpy()
    dst = data.edge_index[1].numpy()
    np.testing.assert_array_equal(np.diff(rowptr), np.bincount(dst, minlength=data.num_nodes))
    perm = csc_of(data).perm
    np.testing.assert_array_equal(col, data.edge_index[0, perm].numpy())
    assert (np.diff(perm.numpy()[rowptr[5]:rowptr[6]]) > 0).all()  # edge-id order in a row


def test_native_node_wise_matches_a_reference():
    rowptr, col = random_csr(200, 1500, seed=19)
    graph = _native.CSRGraph(rowptr, col)
    seeds = np.arange(0, 200, 9, dtype=np.int64)
    n_id, hops, _, _ = native_sample(graph, seeds, [-1, -1], node_wise=True, return_e_id=True)
    expected = list(seeds)
    seen = set(expected)
    frontier = list(seeds)
    for (edge_index, _, _), _hop in pairs(hops, range(2)):
        new, src, dst = [], [], []
        for v in frontier:
            for e in range(rowptr[v], rowptr[v + 1]):
                u = int(col[e])
                if u not in seen:
                    seen.add(u)
                    expected.append(u)
                    new.append(u)
                src.append(expected.index(u))
                dst.append(expected.index(v))
        np.testing.assert_array_equal(edge_index, np.array([src, dst]).reshape(2, -1))
        frontier = new
    assert n_id.tolist() == [int(v) for v in expected]


# ---------------------------------------------------------------- examples
def test_node_classification_example_learns_cora(planetoid_root):
    from tests.test_pipes import load_example

    example = load_example("pyg_node_classification")
    result = example.main(["--root", str(planetoid_root), "--epochs", "10"])["salient"]
    assert result["test_acc"] > 0.7  # chance is 1/7; PyG's loader gives about 0.79


def test_link_prediction_example_learns_cora(planetoid_root):
    from tests.test_pipes import load_example

    example = load_example("pyg_link_prediction")
    result = example.main(["--root", str(planetoid_root), "--epochs", "4"])["salient"]
    assert result["test_auc"] > 0.7  # chance is 0.5


def test_roc_auc_of_the_example():
    from tests.test_pipes import load_example

    roc_auc = load_example("pyg_link_prediction").roc_auc
    labels = torch.tensor([1, 0, 1, 0, 1])
    assert roc_auc(torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7]), labels) == 1.0
    assert roc_auc(torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3]), labels) == 0.0
    assert roc_auc(torch.tensor([0.9, 0.8, 0.1, 0.2, 0.7]), labels) == pytest.approx(3 / 6)


@pytest.mark.parametrize("subgraph_type", ["directional", "bidirectional", "induced"])
@pytest.mark.parametrize("edge_ids", [False, True])
def test_custom_chain_maps_positions_to_edge_ids_on_unsorted_input(subgraph_type, edge_ids):
    """to_pyg(data, perm) after a sampler that reports positions in the CSR
    (or, given edge_ids, ids): on an edge_index not sorted by destination
    the two differ, and every e_id must name the edge it stands for."""
    from salient_pipes.pipes import NodeIndices

    data = _data(num_nodes=200, num_edges=1500, seed=4)
    csc = csc_of(data)
    assert not torch.equal(csc.perm, torch.arange(csc.perm.numel()))  # the order differs
    pipe = (NodeIndices(torch.arange(200)).batch_nodes(25).seed_nodes(torch.arange(200))
            .sample_neighbors(csc.graph, [4, 3], node_wise=True, return_e_id=True,
                              edge_ids=csc.perm if edge_ids else None)
            .to_pyg(data, csc.perm, subgraph_type=subgraph_type,
                    csc=(csc.rowptr, csc.col)))
    batches = list(pipe)
    assert len(batches) == 8
    for batch in batches:
        n_id, e_id = batch.n_id, batch.e_id
        assert e_id.numel() == batch.edge_index.size(1) > 0
        ends = data.edge_index[:, e_id]
        got = n_id[batch.edge_index]
        if subgraph_type == "bidirectional":  # each edge in its direction or reversed
            assert bool(((ends == got).all(0) | (ends.flip(0) == got).all(0)).all())
        else:
            assert torch.equal(ends, got)
            assert torch.equal(batch.edge_attr, data.edge_attr[e_id])
            assert torch.equal(batch.edge_weight, data.edge_weight[e_id])
