"""Datasets that carry edge weights, edge times and node times: checks on
construction, the on-disk round trip, from_pyg keeping each edge's values,
and weighted and temporal sampling reading them (salient_pipeline's
per-hop batches, the node-wise stage)."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

from salient_pipes import FastDataset, salient_pipeline
from salient_pipes.data.dataset import sort_rows_by_time
from salient_pipes.pipes import NodeIndices


def _base(seed: int = 0, **extra) -> FastDataset:
    ds = FastDataset.synthetic(num_nodes=400, avg_degree=8, num_features=4, num_classes=3,
                               seed=seed)
    return FastDataset(name="t", x=ds.x, y=ds.y, rowptr=ds.rowptr, col=ds.col,
                       split_idx=ds.split_idx, num_classes=3, **extra)


def _values(ds: FastDataset, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.rand(ds.num_edges, generator=g)
    weight[torch.rand(ds.num_edges, generator=g) < 0.3] = 0.0
    time = torch.randint(0, 50, (ds.num_edges,), generator=g)
    time = time[sort_rows_by_time(ds.rowptr, time)]
    return weight, time, torch.randint(0, 50, (ds.num_nodes,), generator=g)


def test_values_survive_save_and_load(tmp_path):
    weight, time, node_time = _values(_base())
    ds = _base(edge_weight=weight, edge_time=time, node_time=node_time)
    assert "with edge_weight, edge_time, node_time" in ds.summary()
    ds.save(tmp_path / "d", progress=False)
    for mmap in (True, False):
        back = FastDataset.load(tmp_path / "d", mmap=mmap)
        assert torch.equal(back.edge_weight, weight)
        assert torch.equal(back.edge_time, time) and torch.equal(back.node_time, node_time)
    plain = _base()
    plain.save(tmp_path / "p", progress=False)
    back = FastDataset.load(tmp_path / "p")
    assert back.edge_weight is None and back.edge_time is None and back.node_time is None


def test_bad_values_are_refused_by_name():
    ds = _base()
    weight, time, node_time = _values(ds)
    with pytest.raises(ValueError, match="edge_weight must be a 1-D float tensor"):
        _base(edge_weight=weight[:-1])
    with pytest.raises(ValueError, match="edge_weight must be a 1-D float tensor"):
        _base(edge_weight=time)
    bad = weight.clone()
    bad[7] = float("nan")
    with pytest.raises(ValueError, match="edge_weight holds nan at CSR position 7"):
        _base(edge_weight=bad)
    bad[7] = -1.0
    with pytest.raises(ValueError, match="at CSR position 7"):
        _base(edge_weight=bad)
    with pytest.raises(ValueError, match="edge_time must be a 1-D integer tensor"):
        _base(edge_time=time.float())
    with pytest.raises(ValueError, match="node_time must be a 1-D integer tensor of 400"):
        _base(node_time=node_time[:10])
    first_row = int(ds.rowptr[1])
    assert first_row >= 2
    shuffled = time.clone()
    shuffled[:first_row] = torch.arange(first_row, 0, -1)  # row 0 descends
    with pytest.raises(ValueError, match="ascend within each CSR row.*sort_rows_by_time"):
        _base(edge_time=shuffled)
    # the last position of a row may exceed the next row's first one
    across = torch.cat([torch.full((first_row,), 99), torch.zeros(ds.num_edges - first_row,
                                                                  dtype=torch.int64)])
    assert _base(edge_time=across).edge_time[first_row - 1] == 99


def test_sort_rows_by_time_sorts_within_rows_only():
    rowptr = torch.tensor([0, 3, 3, 6])
    time = torch.tensor([9, 2, 2, 1, 8, 0])
    order = sort_rows_by_time(rowptr, time)
    assert order.tolist() == [1, 2, 0, 5, 3, 4]  # stable: the two 2s keep their order


@pytest.mark.parametrize("to_undirected", [True, False])
def test_from_pyg_keeps_each_edges_weight_and_time(to_undirected):
    g = torch.Generator().manual_seed(1)
    edge_index = torch.randint(0, 30, (2, 200), generator=g)
    edge_index[:, 1] = edge_index[:, 0]  # a parallel edge, with its own values
    data = Data(x=torch.randn(30, 2), y=torch.randint(0, 2, (30,)), edge_index=edge_index,
                w=torch.rand(200, generator=g), t=torch.randint(0, 100, (200,), generator=g),
                train_mask=torch.ones(30, dtype=torch.bool))
    ds = FastDataset.from_pyg(data, weight_attr="w", time_attr="t",
                              to_undirected=to_undirected)
    rows = torch.repeat_interleave(torch.arange(30), ds.rowptr.diff())
    got = sorted(zip(ds.col.tolist(), rows.tolist(), ds.edge_weight.tolist(),
                     ds.edge_time.tolist()))
    src, dst = edge_index
    w = data.w.to(torch.float32).tolist()
    want = list(zip(src.tolist(), dst.tolist(), w, data.t.tolist()))
    if to_undirected:
        want += list(zip(dst.tolist(), src.tolist(), w, data.t.tolist()))
    assert got == sorted(want)  # every edge once per direction, none merged
    node_level = Data(x=data.x, y=data.y, edge_index=edge_index, train_mask=data.train_mask,
                      when=torch.arange(30))
    ds = FastDataset.from_pyg(node_level, time_attr="when")
    assert torch.equal(ds.node_time, torch.arange(30)) and ds.edge_time is None
    with pytest.raises(ValueError, match="'nope'"):
        FastDataset.from_pyg(data, weight_attr="nope")
    with pytest.raises(ValueError, match="must be an edge attribute"):
        FastDataset.from_pyg(node_level, weight_attr="when")


def test_weighted_pipeline_never_takes_a_zero_weight_edge():
    weight, _, _ = _values(_base(), seed=2)
    ds = _base(edge_weight=weight)
    pipe = salient_pipeline(ds, batch_size=64, fanouts=(4, 3), device="cpu", weighted=True,
                            return_e_id=True, num_threads=2)
    taken = torch.cat([adj.e_id for batch in pipe for adj in batch.adjs])
    assert taken.numel() > 500 and (weight[taken] > 0).all()
    uniform = salient_pipeline(ds, batch_size=64, fanouts=(4, 3), device="cpu",
                               return_e_id=True, num_threads=2)
    assert not (weight[torch.cat([a.e_id for b in uniform for a in b.adjs])] > 0).all()
    with pytest.raises(ValueError, match="weighted=True needs a FastDataset with edge_weight"):
        salient_pipeline(_base(), device="cpu", weighted=True)


def test_temporal_stages_read_the_datasets_times():
    _, time, node_time = _values(_base(), seed=3)
    ds = _base(edge_time=time, node_time=node_time)
    seeds = torch.arange(0, 400, 3)
    pipe = (NodeIndices(torch.arange(seeds.numel())).batch_nodes(32)
            .seed_nodes(seeds, input_time=ds.node_time[seeds])
            .sample_neighbors(ds, [4, 4], node_wise=True, disjoint=True, time=ds.edge_time,
                              temporal_strategy="last", return_e_id=True))
    edges = 0
    for batch in pipe:
        e_id = batch.e_id[("_N", "_E", "_N")]
        target = batch.edge_index[("_N", "_E", "_N")][1]
        subgraph = batch.batch["_N"][target]
        limit = ds.node_time[batch.n_id["_N"][:batch.batch_size]][subgraph]
        assert (ds.edge_time[e_id] <= limit).all()
        edges += e_id.numel()
    assert edges > 200
