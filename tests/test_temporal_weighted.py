"""Temporal and weighted neighbor sampling: the native core against
brute-force references (valid neighbor sets, the latest k, exact
probabilities of weighted draws), statistical tests over many draws,
determinism, and the PyG loaders' temporal and weighted arguments."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from salient_pipes import _native
from tests.conftest import random_csr

ALPHA = 1e-4  # the statistical tests' false-alarm rate (their seeds are fixed)


def _chi_square_ok(observed, expected) -> bool:
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    keep = expected > 0
    statistic = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    return statistic < stats.chi2.ppf(1 - ALPHA, keep.sum() - 1) and observed[~keep].sum() == 0


def _one_row(weights):
    """A graph whose node 0 has len(weights) in-neighbors 1..d."""
    d = len(weights)
    rowptr = np.array([0, d] + [d] * d, dtype=np.int64)
    col = np.arange(1, d + 1, dtype=np.int64)
    return _native.CSRGraph(rowptr, col), np.asarray(weights, dtype=np.float64)


def _draws(graph, weights, fanout, replace, n, **kw):
    session = _native.Session(graph, [fanout], node_wise=True, weights=weights, replace=replace,
                              return_e_id=True, num_threads=1, **kw)
    out = []
    for position in range(n):
        session.submit(np.array([0], dtype=np.int64), 0, position)
        out.append(session.next()[1][0][1].tolist())  # e_id = positions in the row
    return out


# ------------------------------------------------------------------ weights
def test_weighted_with_replacement_is_proportional_and_skips_zero_weights():
    graph, w = _one_row([0.0, 1.0, 2.0, 0.0, 5.0])
    draws = _draws(graph, w, 3, True, 4000)
    assert all(len(d) == 3 for d in draws)
    counts = Counter(q for d in draws for q in d)
    assert _chi_square_ok([counts[q] for q in range(5)], 12000 * w / w.sum())


def _successive_probabilities(w, k):
    """Exact probability of each set of k positions under successive
    weighted draws without replacement (PyG's definition)."""
    out = Counter()
    positive = [q for q in range(len(w)) if w[q] > 0]
    for order in itertools.permutations(positive, k):
        p, left = 1.0, sum(w)
        for q in order:
            p *= w[q] / left
            left -= w[q]
        out[frozenset(order)] += p
    return out


@pytest.mark.parametrize("weights,path", [
    ([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0.0], "rejection"),  # 4 attempts rarely repeat
    ([12.0, 1.0, 3.0, 0.0, 1.0, 1.0], "rejection, then keys"),  # 12 repeats: budget spent
    ([3.0, 1.0, 0.0, 2.0, 1.0], "scans of a short row"),  # take 2 of 4: 2 x 2 >= 4
    ([0.0] * 66 + [3.0, 1.0, 2.0, 1.0], "keys alone"),  # the same, in a row of 70 > 64
])
def test_weighted_without_replacement_matches_successive_sampling(weights, path):
    graph, w = _one_row(weights)
    draws = _draws(graph, w, 2, False, 6000)
    assert all(len(set(d)) == 2 and all(w[q] > 0 for q in d) for d in draws)
    exact = _successive_probabilities(list(w), 2)
    counts = Counter(frozenset(d) for d in draws)
    sets = sorted(exact, key=sorted)
    assert set(counts) <= set(exact), path
    assert _chi_square_ok([counts[s] for s in sets], [6000 * exact[s] for s in sets]), path


def test_weighted_rows_take_every_positive_edge_or_none():
    graph, w = _one_row([0.0, 3.0, 0.0, 1.0])
    assert _draws(graph, w, -1, False, 3) == [[1, 3]] * 3  # -1: all positive-weight edges
    assert _draws(graph, w, 5, False, 2) == [[1, 3]] * 2   # fanout >= positive count
    assert all(len(d) == 4 for d in _draws(graph, w, 4, True, 5))
    zero, wz = _one_row([0.0, 0.0])
    assert _draws(zero, wz, 2, True, 3) == [[]] * 3  # no weight: no neighbor, no error
    assert _draws(zero, wz, 2, False, 3) == [[]] * 3


def test_weighted_rejection_with_many_draws_uses_the_hash_set():
    # take 100 of 1000 equal weights: rejection, beyond the small-set scan
    graph, w = _one_row(np.ones(1000))
    draws = _draws(graph, w, 100, False, 50)
    assert all(len(set(d)) == 100 for d in draws)
    counts = Counter(q for d in draws for q in d)
    assert _chi_square_ok([counts[q] for q in range(1000)], np.full(1000, 5.0))


def test_weighted_batches_repeat_for_any_thread_count_and_per_hop_too():
    rowptr, col = random_csr(300, 3000, seed=5)
    g = _native.CSRGraph(rowptr, col)
    w = np.random.default_rng(0).random(col.size) * (np.random.default_rng(1).random(col.size)
                                                     > 0.3)
    seeds = [np.arange(i * 20, i * 20 + 20, dtype=np.int64) for i in range(6)]

    def run(threads, node_wise):
        s = _native.Session(g, [5, 3], node_wise=node_wise, weights=w, num_threads=threads,
                            return_e_id=True, seed=7)
        for p, batch in enumerate(seeds):
            s.submit(batch, 0, p)
        return [[a.tolist() for a in s.next()[0]] for _ in seeds]

    for node_wise in (True, False):
        one = run(1, node_wise)
        assert run(3, node_wise) == one
    # sampled edges are never of zero weight
    s = _native.Session(g, [5, 3], node_wise=True, weights=w, num_threads=1, return_e_id=True)
    s.submit(seeds[0], 0, 0)
    assert (w[s.next()[1][0][1]] > 0).all()


@pytest.mark.parametrize("bad,message", [
    (np.full(3, np.nan), "finite"), (np.array([1.0, -1.0, 1.0]), ">= 0"),
    (np.array([1.0, np.inf, 1.0]), "finite"), (np.ones(2), "one value per edge"),
    (np.ones(3, dtype=np.float32), "float64"),
])
def test_bad_weights_are_refused(bad, message):
    g = _native.CSRGraph(np.array([0, 3, 3, 3, 3]), np.array([1, 2, 3], dtype=np.int64))
    with pytest.raises(ValueError, match=message):
        _native.Session(g, [2], node_wise=True, weights=bad)


# ----------------------------------------------------------------- temporal
def _temporal_graph(seed=0, n=60, e=600):
    """A CSC with each row sorted by its edges' times."""
    rng = np.random.default_rng(seed)
    dst, src = rng.integers(0, n, e), rng.integers(0, n, e)
    t = rng.integers(0, 100, e)
    order = np.lexsort((t, dst))
    dst, src, t = dst[order], src[order], t[order]
    rowptr = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=n))]).astype(np.int64)
    return rowptr, src.astype(np.int64), t.astype(np.int64)


@pytest.mark.parametrize("strategy", ["uniform", "last"])
def test_temporal_takes_only_valid_neighbors_and_last_the_latest(strategy):
    rowptr, col, t = _temporal_graph()
    g = _native.CSRGraph(rowptr, col)
    session = _native.Session(g, [3, 2], node_wise=True, disjoint=True, times=t,
                              temporal_strategy=strategy, return_e_id=True, num_threads=1)
    seeds = np.arange(0, 40, dtype=np.int64)
    seed_time = np.random.default_rng(1).integers(0, 100, seeds.size).astype(np.int64)
    session.submit(seeds, 0, 0, seed_time=seed_time)
    (keys,), ((edge_index, e_id, _),), (found,), *_ = session.next()
    space = session.key_space
    subgraph, node = keys // space, keys % space
    assert (t[e_id] <= seed_time[subgraph[edge_index[1]]]).all()  # nothing after its seed
    # hop 1 expands the seeds (fanout 3), hop 2 the nodes hop 1 found (fanout 2): each
    # target takes min(fanout, valid) edges; "last" exactly the latest valid ones
    fanout = [3] * found[0] + [2] * found[1]
    assert found[0] == seeds.size
    for target, f in enumerate(fanout):
        v, limit = node[target], seed_time[subgraph[target]]
        valid = [p for p in range(rowptr[v], rowptr[v + 1]) if t[p] <= limit]
        got = sorted(e_id[edge_index[1] == target].tolist())
        assert len(got) == min(f, len(valid)) and set(got) <= set(valid)
        if strategy == "last":
            assert got == valid[len(valid) - len(got):]


def test_temporal_uniform_is_uniform_over_the_valid_prefix():
    graph = _native.CSRGraph(np.array([0, 6] + [6] * 6), np.arange(1, 7, dtype=np.int64))
    times = np.array([1, 2, 3, 5, 8, 9], dtype=np.int64)
    session = _native.Session(graph, [2], node_wise=True, disjoint=True, times=times,
                              return_e_id=True, num_threads=1)
    counts = Counter()
    for position in range(3000):
        session.submit(np.array([0], dtype=np.int64), 0, position,
                       seed_time=np.array([5], dtype=np.int64))
        counts.update(session.next()[1][0][1].tolist())
    assert set(counts) == {0, 1, 2, 3}  # times 1, 2, 3, 5 <= 5
    assert _chi_square_ok([counts[q] for q in range(4)], np.full(4, 1500.0))


def test_temporal_input_is_checked():
    rowptr, col, t = _temporal_graph()
    g = _native.CSRGraph(rowptr, col)
    with pytest.raises(ValueError, match="disjoint"):
        _native.Session(g, [2], node_wise=True, times=t)
    with pytest.raises(ValueError, match="ascend within each row"):
        _native.Session(g, [2], node_wise=True, disjoint=True, times=t[::-1].copy())
    with pytest.raises(ValueError, match="cannot be combined"):
        _native.Session(g, [2], node_wise=True, disjoint=True, times=t,
                        weights=np.ones(t.size))
    with pytest.raises(ValueError, match="temporal_strategy"):
        _native.Session(g, [2], node_wise=True, disjoint=True, times=t, temporal_strategy="x")
    s = _native.Session(g, [2], node_wise=True, disjoint=True, times=t, num_threads=1)
    with pytest.raises(ValueError, match="needs seed_time"):
        s.submit(np.array([1, 2], dtype=np.int64), 0, 0)
    s.submit(np.array([1, 2], dtype=np.int64), 0, 0, seed_time=np.array([5], dtype=np.int64))
    with pytest.raises(ValueError, match="a seed time per subgraph"):
        s.next()
    plain = _native.Session(g, [2], node_wise=True, num_threads=1)
    with pytest.raises(ValueError, match="seed_time is for temporal"):
        plain.submit(np.array([1]), 0, 0, seed_time=np.array([1]))


def test_negatives_by_node_weight():
    cum = np.cumsum([0.0, 1.0, 0.0, 3.0])
    draws = _native.random_nodes(8000, 4, seed=3, cumulative=cum)
    counts = np.bincount(draws, minlength=4)
    assert counts[0] == counts[2] == 0
    assert _chi_square_ok(counts, [0, 2000, 0, 6000])
    with pytest.raises(ValueError, match="sum to 0"):
        _native.random_nodes(3, 2, cumulative=np.zeros(2))
    with pytest.raises(ValueError, match="non-decreasing"):
        _native.random_nodes(3, 2, cumulative=np.array([2.0, 1.0]))
    assert math.isclose(len(draws), 8000)


@pytest.mark.parametrize("form", ["object", "dict"])
def test_link_loader_draws_negatives_by_node_weight(form):
    """PyG's ``src_weight``/``dst_weight``: binary negatives take their
    sources and destinations in proportion to them, triplet negatives their
    destinations; nodes of weight 0 are never drawn."""
    import torch
    from torch_geometric.data import Data
    from torch_geometric.sampler import NegativeSampling

    from salient_pipes.pyg import LinkNeighborLoader

    n = 12
    g = torch.Generator().manual_seed(0)
    data = Data(edge_index=torch.randint(0, n, (2, 400), generator=g), num_nodes=n)
    src_weight = torch.zeros(n)
    src_weight[[1, 4]] = torch.tensor([1.0, 3.0])
    dst_weight = torch.zeros(n)
    dst_weight[[2, 7, 9]] = torch.tensor([2.0, 1.0, 1.0])

    def negative(mode, amount, **weights):
        if form == "dict":
            return {"mode": mode, "amount": amount, **weights}
        return NegativeSampling(mode, amount, **weights)

    loader = LinkNeighborLoader(data, [1], batch_size=50, seed=5, neg_sampling=negative(
        "binary", 2, src_weight=src_weight, dst_weight=dst_weight))
    src, dst = Counter(), Counter()
    for batch in loader:
        ends = batch.n_id[batch.edge_label_index[:, batch.edge_label == 0]]
        src.update(ends[0].tolist())
        dst.update(ends[1].tolist())
    assert sum(src.values()) == 800

    # the same weights at both ends: sources and destinations are drawn
    # independently, not as one draw used twice (every negative a self loop)
    same = LinkNeighborLoader(data, [1], batch_size=50, seed=5, neg_sampling=negative(
        "binary", 2, src_weight=dst_weight, dst_weight=dst_weight))
    pairs = torch.cat([b.n_id[b.edge_label_index[:, b.edge_label == 0]] for b in same], 1)
    assert pairs.size(1) == 800 and float((pairs[0] == pairs[1]).float().mean()) < 0.5
    assert _chi_square_ok([src[v] for v in range(n)], 800 * src_weight / src_weight.sum())
    assert _chi_square_ok([dst[v] for v in range(n)], 800 * dst_weight / dst_weight.sum())

    triplets = LinkNeighborLoader(data, [1], batch_size=50, seed=5,
                                  neg_sampling=negative("triplet", 3, dst_weight=dst_weight))
    dst = Counter()
    for batch in triplets:
        dst.update(batch.n_id[batch.dst_neg_index].view(-1).tolist())
    assert sum(dst.values()) == 1200
    assert _chi_square_ok([dst[v] for v in range(n)], 1200 * dst_weight / dst_weight.sum())


def test_typed_link_loader_draws_negatives_by_node_weight_of_each_end():
    import torch
    from torch_geometric.data import HeteroData

    from salient_pipes.pyg import LinkNeighborLoader

    g = torch.Generator().manual_seed(1)
    data = HeteroData()
    data["a"].num_nodes, data["b"].num_nodes = 6, 9
    edges = torch.stack([torch.randint(0, 6, (300,), generator=g),
                         torch.randint(0, 9, (300,), generator=g)])
    data["a", "to", "b"].edge_index = edges
    src_weight, dst_weight = torch.zeros(6), torch.zeros(9)
    src_weight[[0, 5]] = torch.tensor([1.0, 1.0])
    dst_weight[[3, 8]] = torch.tensor([1.0, 4.0])
    loader = LinkNeighborLoader(data, [1], edge_label_index=("a", "to", "b"), batch_size=60,
                                seed=2, neg_sampling={"mode": "binary", "amount": 1,
                                                      "src_weight": src_weight,
                                                      "dst_weight": dst_weight})
    src, dst = Counter(), Counter()
    for batch in loader:
        store = batch["a", "to", "b"]
        negative = store.edge_label_index[:, store.edge_label == 0]
        src.update(batch["a"].n_id[negative[0]].tolist())
        dst.update(batch["b"].n_id[negative[1]].tolist())
    assert _chi_square_ok([src[v] for v in range(6)], 300 * src_weight / src_weight.sum())
    assert _chi_square_ok([dst[v] for v in range(9)], 300 * dst_weight / dst_weight.sum())
