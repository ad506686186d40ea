"""``salient_pipes.pyg.NeighborSampler``: PyG's older loader of
``(batch_size, n_id, adjs)`` on our per-hop sampler. With every neighbor
taken, its hops hold exactly the edges of PyG's own loader; sampled, each
hop keeps the per-hop contract; the ``SparseTensor`` form carries PyG's
values and ids; seeds, threads, epochs and resume behave as in our other
loaders."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch_geometric.loader as pyg_loader
from torch.utils.data import BatchSampler, SequentialSampler
from torch_geometric.loader.neighbor_sampler import EdgeIndex

from salient_pipes.pyg import NeighborSampler

N, E = 60, 400


def _edge_index(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, N, (2, E), generator=torch.Generator().manual_seed(seed))


def _hops(batch):
    """Per hop (outermost first): its size and its edges as (global
    source, global target, e_id) triples."""
    batch_size, n_id, adjs = batch
    adjs = adjs if isinstance(adjs, list) else [adjs]
    return [(size, Counter(zip(n_id[ei[0]].tolist(), n_id[ei[1]].tolist(),
                               [None] * ei.size(1) if e is None else e.tolist())))
            for ei, e, size in adjs]


@pytest.mark.parametrize("sizes", [[-1], [-1, -1], [-1, -1, -1]])
def test_every_neighbor_gives_pygs_own_hops(sizes):
    pytest.importorskip("torch_sparse")
    edge_index = _edge_index(1)
    node_idx = torch.tensor([3, 17, 42, 5, 59, 0, 31])
    ours = NeighborSampler(edge_index, sizes, node_idx=node_idx, batch_size=3)
    theirs = pyg_loader.NeighborSampler(edge_index, sizes, node_idx=node_idx, batch_size=3)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert a[0] == b[0]
        assert torch.equal(a[1][:a[0]], b[1][:b[0]])  # the seeds, first
        assert sorted(a[1].tolist()) == sorted(b[1].tolist())
        assert isinstance(a[2], EdgeIndex) == (len(sizes) == 1)  # one hop: not a list
        assert _hops(a) == _hops(b)


def test_full_neighborhoods_give_the_full_graph_outputs_on_cora(cora):
    from torch_geometric.nn import SAGEConv

    torch.manual_seed(0)
    convs = torch.nn.ModuleList([SAGEConv(cora.num_features, 16), SAGEConv(16, 16),
                                 SAGEConv(16, 7)])
    seeds = torch.tensor([0, 7, 100, 2000, 2707])
    _, n_id, adjs = next(iter(NeighborSampler(cora.edge_index, [-1, -1, -1], node_idx=seeds,
                                              batch_size=5)))
    x = cora.x[n_id]
    for conv, (edge_index, _, size) in zip(convs, adjs):
        x = conv((x, x[:size[1]]), edge_index)
    full = cora.x
    for conv in convs:
        full = conv(full, cora.edge_index)
    torch.testing.assert_close(x, full[seeds], atol=1e-5, rtol=1e-5)


def test_sampled_hops_keep_the_per_hop_contract():
    edge_index = _edge_index(2)
    loader = NeighborSampler(edge_index, [4, 2], batch_size=8, shuffle=True, seed=5)
    batches = list(loader)
    assert len(batches) == len(loader) == 8 and sum(b[0] for b in batches) == N
    seen = []
    for batch_size, n_id, adjs in batches:
        assert n_id.unique().numel() == n_id.numel()
        assert adjs[-1].size[1] == batch_size and adjs[0].size[0] == n_id.numel()
        assert adjs[0].size[1] == adjs[1].size[0]  # a hop's sources are the next's targets
        seen += n_id[:batch_size].tolist()
        for (ei, e_id, (num_src, num_dst)), fanout in zip(adjs, [2, 4]):
            assert int(ei[0].max()) < num_src and int(ei[1].max()) < num_dst
            # each edge is the graph's edge e_id, and no target takes more than its fanout
            assert torch.equal(edge_index[:, e_id], n_id[ei])
            assert int(torch.bincount(ei[1]).max()) <= fanout
            for target in ei[1].unique():
                assert e_id[ei[1] == target].unique().numel() == int((ei[1] == target).sum())
    assert sorted(seen) == list(range(N))  # every node once, shuffled
    assert seen != list(range(N))


@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("return_e_id", [True, False])
def test_a_sparse_tensor_gives_pygs_adj_t_values_and_ids(values, return_e_id):
    torch_sparse = pytest.importorskip("torch_sparse")
    edge_index = _edge_index(3)
    adj_t = torch_sparse.SparseTensor.from_edge_index(
        edge_index, torch.rand(E) if values else None, sparse_sizes=(N, N)).t()
    kw = dict(node_idx=torch.arange(0, N, 7), batch_size=4, return_e_id=return_e_id)
    ours = NeighborSampler(adj_t, [-1, -1], **kw)
    theirs = pyg_loader.NeighborSampler(adj_t, [-1, -1], **kw)

    def triples(batch):
        _, n_id, adjs = batch
        out = []
        for adj, e_id, size in adjs:
            assert tuple(adj.sparse_sizes()) == (size[1], size[0])  # rows: the targets
            row, col, value = adj.coo()
            assert (e_id is None) == (value is None) == (not values and not return_e_id)
            out.append(Counter(zip(n_id[col].tolist(), n_id[row].tolist(),
                                   [] if value is None else value.tolist(),
                                   [] if e_id is None else e_id.tolist()))
                       if value is not None else Counter(zip(n_id[col].tolist(),
                                                             n_id[row].tolist())))
        return out

    for a, b in zip(ours, theirs):
        assert triples(a) == triples(b)


def test_transform_sample_and_collate_take_node_ids_or_positions():
    edge_index = _edge_index(4)
    node_idx = torch.tensor([5, 7, 9, 11])
    calls = []
    loader = NeighborSampler(edge_index, [3], node_idx=node_idx, batch_size=2, seed=1,
                             transform=lambda bs, n_id, adjs: calls.append(bs) or (n_id, adjs))
    n_id, adj = loader.sample(torch.tensor([9, 5]))
    assert n_id[:2].tolist() == [9, 5] and calls == [2] and isinstance(adj, EdgeIndex)
    n_id, _ = loader.collate_fn([3, 0])  # positions in node_idx
    assert n_id[:2].tolist() == [11, 5]
    picked = NeighborSampler(edge_index, [3], node_idx=node_idx, seed=1,
                             batch_sampler=[[2, 0], [1]])
    assert [b[1][:b[0]].tolist() for b in picked] == [[9, 5], [7]]
    one_by_one = NeighborSampler(edge_index, [3], node_idx=node_idx, seed=1, batch_size=3,
                                 sampler=SequentialSampler(range(4)), drop_last=True)
    assert [b[1][:b[0]].tolist() for b in one_by_one] == [[5, 7, 9]]
    by_batch_sampler = NeighborSampler(edge_index, [3], node_idx=node_idx, seed=1,
                                       batch_sampler=BatchSampler(SequentialSampler(range(4)),
                                                                  3, False))
    assert len(by_batch_sampler) == 2


def test_seeds_threads_epochs_and_resume():
    edge_index = _edge_index(5)

    def run(**kw):
        return [(b[1].tolist(), [a.e_id.tolist() for a in b[2]])
                for b in NeighborSampler(edge_index, [3, 2], batch_size=6, shuffle=True, **kw)]

    assert run(seed=3, num_workers=1) == run(seed=3, num_workers=3)
    assert run(seed=3) != run(seed=4)
    loader = NeighborSampler(edge_index, [3, 2], batch_size=6, shuffle=True, seed=3)
    first, second = list(loader), list(loader)  # iterating again: the next epoch
    assert [b[1].tolist() for b in first] != [b[1].tolist() for b in second]
    loader.set_epoch(0)
    assert [b[1].tolist() for b in loader] == [b[1].tolist() for b in first]
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = loader.state_dict()
    rest = [b[1].tolist() for b in it]
    resumed = NeighborSampler(edge_index, [3, 2], batch_size=6, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    assert [b[1].tolist() for b in resumed] == rest and len(rest) == len(loader) - 4


def test_is_pygs_class_and_reads_like_it():
    edge_index = _edge_index(6)
    loader = NeighborSampler(edge_index, [2, 4], batch_size=7)
    assert isinstance(loader, pyg_loader.NeighborSampler)
    assert repr(loader) == "NeighborSampler(sizes=[2, 4])" and len(loader) == 9
    # as PyG infers it: one past the largest id, or a bool mask's length
    assert NeighborSampler(torch.tensor([[0], [3]]), [1]).num_nodes == 4
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[2, 8]] = True
    masked = NeighborSampler(torch.tensor([[0], [3]]), [1], node_idx=mask, batch_size=5)
    assert masked.num_nodes == 10 and next(iter(masked))[1][:2].tolist() == [2, 8]
    # PyTorch Lightning passes these; PyG drops them
    NeighborSampler(edge_index, [1], dataset=None, collate_fn=None)


def test_bad_arguments_are_named():
    edge_index = _edge_index(7)
    with pytest.raises(ValueError, match="edge_index must be a \\[2, E\\] tensor"):
        NeighborSampler([[0, 1], [1, 0]], [2])
    with pytest.raises(ValueError, match="edge_index must be a \\[2, E\\] tensor"):
        NeighborSampler(torch.sparse_coo_tensor(edge_index, torch.ones(E), (N, N)), [2])
    with pytest.raises(ValueError, match="integer tensor of shape \\[2, E\\]"):
        NeighborSampler(edge_index.float(), [2])
    with pytest.raises(ValueError, match=f"node_idx holds node ids outside \\[0, {N}\\)"):
        NeighborSampler(edge_index, [2], node_idx=torch.tensor([1, N]), num_nodes=N)
    with pytest.raises(ValueError, match="edge_index\\[0\\] holds ids outside"):
        NeighborSampler(edge_index, [2], num_nodes=10)
    with pytest.raises(ValueError, match="sizes\\[0\\] = -2: each fanout must be a positive"):
        NeighborSampler(edge_index, [-2], batch_size=4)
    for sizes in (5, [2.5], "25"):
        with pytest.raises(ValueError, match="sizes"):
            NeighborSampler(edge_index, sizes)
    with pytest.raises(ValueError, match="sizes must name at least one hop"):
        NeighborSampler(edge_index, [])
    with pytest.raises(ValueError, match="not a dict"):
        NeighborSampler(edge_index, {("a", "to", "a"): [2]})
    with pytest.raises(ValueError, match="transform must be callable"):
        NeighborSampler(edge_index, [2], transform=3)
    with pytest.raises(TypeError, match="unexpected keyword arguments: \\['bogus'\\]"):
        NeighborSampler(edge_index, [2], bogus=1)
    loader = NeighborSampler(edge_index, [2], num_nodes=N)
    with pytest.raises(ValueError, match="batch"):
        loader.sample(torch.tensor([N]))
