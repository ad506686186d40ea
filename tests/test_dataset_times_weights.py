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
    if to_undirected:  # the reverse of every edge but a self-loop
        want += [(d, s, wi, ti) for s, d, wi, ti in want if s != d]
    assert got == sorted(want)  # every edge once per direction, none merged
    node_level = Data(x=data.x, y=data.y, edge_index=edge_index, train_mask=data.train_mask,
                      when=torch.arange(30))
    ds = FastDataset.from_pyg(node_level, time_attr="when")
    assert torch.equal(ds.node_time, torch.arange(30)) and ds.edge_time is None
    with pytest.raises(ValueError, match="'nope'"):
        FastDataset.from_pyg(data, weight_attr="nope")
    with pytest.raises(ValueError, match=r"'when' must be an edge attribute \(one value per "
                                         r"edge\)$"):  # a weight is never a node's
        FastDataset.from_pyg(node_level, weight_attr="when")
    graph_level = node_level.clone()
    graph_level.odd = torch.arange(7)  # one value neither per edge nor per node
    with pytest.raises(ValueError, match=r"'odd' must be an edge attribute \(one value per "
                                         r"edge\) or a node attribute$"):
        FastDataset.from_pyg(graph_level, time_attr="odd")


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
    with pytest.raises(ValueError, match="weighted=True needs a dataset with edge_weight"):
        salient_pipeline(_base(), device="cpu", weighted=True)


def test_a_dataset_without_times_or_weights_is_told_how_its_kind_gets_them():
    from salient_pipes import HeteroDataset

    plain, typed = _base(), HeteroDataset.synthetic_mag(scale=0.001)
    for ds in (plain, typed):
        kind = type(ds).__name__
        with pytest.raises(ValueError, match=rf"needs a dataset with edge_weight \({kind}\(.*"
                                             rf"{kind}.from_pyg\(data, weight_attr"):
            salient_pipeline(ds, device="cpu", weighted=True)
        with pytest.raises(ValueError, match=rf"needs a dataset with edge_time .*{kind}.from_pyg"
                                             rf".*{kind}.from_edges\(\.\.\., edge_time="):
            salient_pipeline(ds, device="cpu", temporal="last")
    with pytest.raises(ValueError, match="an attribute of the edge types and of the seeds' "):
        salient_pipeline(typed, device="cpu", temporal="uniform")
    only_edges = _base(edge_time=_values(_base(), seed=3)[1])  # no node_time: refused too
    with pytest.raises(ValueError, match="FastDataset.from_pyg.* plus node_time="):
        salient_pipeline(only_edges, device="cpu", temporal="last")


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


def _stream(seed: int = 4, nodes: int = 60, edges: int = 700):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, nodes, (2, edges), generator=g)
    edge_index[:, 1] = edge_index[:, 0]  # a parallel edge with its own values
    edge_index[:, 3] = edge_index[:, 2].flip(0)  # and one each way, at the same time
    time = torch.randint(0, 1000, (edges,), generator=g)
    time[3] = time[2]
    return edge_index, torch.rand(edges, generator=g), time


def _entries(ds: FastDataset):
    rows = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr.diff())
    return sorted(zip(ds.col.tolist(), rows.tolist(), ds.edge_weight.tolist(),
                      ds.edge_time.tolist()))


@pytest.mark.parametrize("to_undirected", [True, False])
def test_from_edges_within_a_budget_keeps_each_edges_values(tmp_path, to_undirected):
    edge_index, weight, time = _stream()
    built = FastDataset.from_edges(tmp_path / "b", edge_index, 60, edge_weight=weight,
                                   edge_time=time.to(torch.int32).numpy(),  # converted in chunks
                                   node_time=torch.arange(60), to_undirected=to_undirected,
                                   memory_limit="2KiB", progress=False)  # many buckets
    data = Data(x=torch.zeros(60, 1), y=torch.zeros(60, dtype=torch.long),
                edge_index=edge_index, w=weight, t=time,
                train_mask=torch.ones(60, dtype=torch.bool))
    reference = FastDataset.from_pyg(data, weight_attr="w", time_attr="t",
                                     to_undirected=to_undirected)
    assert built.num_edges == reference.num_edges
    assert torch.equal(built.rowptr, reference.rowptr)
    assert _entries(built) == _entries(reference)
    # the same order too, ties (one neighbor at one time) by input edge
    assert torch.equal(built.col, reference.col)
    assert torch.equal(built.edge_time, reference.edge_time)
    assert torch.equal(built.edge_weight, reference.edge_weight)
    rows = torch.repeat_interleave(torch.arange(60), built.rowptr.diff())
    assert torch.equal(built.edge_time, built.edge_time[sort_rows_by_time(built.rowptr,
                                                                          built.edge_time)])
    assert int(rows.numel()) == (2 * 700 - int((edge_index[0] == edge_index[1]).sum())
                                 if to_undirected else 700)
    assert torch.equal(built.node_time, torch.arange(60))


def test_from_edges_with_weights_alone_and_from_files(tmp_path):
    import numpy as np

    edge_index, weight, time = _stream(seed=5)
    np.save(tmp_path / "edges.npy", edge_index.numpy())
    np.save(tmp_path / "time.npy", time.numpy())  # int64: read in place
    ds = FastDataset.from_edges(tmp_path / "w", tmp_path / "edges.npy", 60,
                                edge_time=tmp_path / "time.npy", progress=False)
    assert ds.edge_weight is None and ds.edge_time.numel() == ds.num_edges
    ds = FastDataset.from_edges(tmp_path / "v", edge_index, 60, edge_weight=weight.double(),
                                to_undirected=False, memory_limit="1KiB", progress=False)
    assert ds.edge_time is None and ds.num_edges == 700  # parallel edges kept
    rows = torch.repeat_interleave(torch.arange(60), ds.rowptr.diff())
    assert ((rows * 60 + ds.col.long()).diff() >= 0).all()  # rows sorted by neighbor
    assert sorted(ds.edge_weight.tolist()) == sorted(weight.tolist())


def test_from_edges_refuses_bad_values_by_name(tmp_path):
    edge_index, weight, time = _stream(seed=6)
    bad = weight.clone()
    bad[42] = -0.5
    with pytest.raises(ValueError, match="edge_weight of edge 42 is -0.5"):
        FastDataset.from_edges(tmp_path / "a", edge_index, 60, edge_weight=bad, progress=False)
    with pytest.raises(ValueError, match="edge_time must hold one value per edge"):
        FastDataset.from_edges(tmp_path / "a", edge_index, 60, edge_time=time[:5],
                               progress=False)
    with pytest.raises(ValueError, match="edge_time must hold integer times"):
        FastDataset.from_edges(tmp_path / "a", edge_index, 60, edge_time=time.float(),
                               progress=False)
    with pytest.raises(ValueError, match="node_time must hold integer times"):
        FastDataset.from_edges(tmp_path / "a", edge_index, 60, node_time=torch.zeros(60),
                               progress=False)
    with pytest.raises(ValueError, match="node_time must hold one time per node"):
        FastDataset.from_edges(tmp_path / "a", edge_index, 60,
                               node_time=torch.zeros(5, dtype=torch.long), progress=False)
    assert not (tmp_path / "a").exists()  # nothing half-written is left


def _typed_stream(seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    num = {"user": 40, "item": 30}
    writes = ("user", "buys", "item")
    follows = ("user", "follows", "user")
    edges = {writes: torch.stack([torch.randint(0, 40, (300,), generator=g),
                                  torch.randint(0, 30, (300,), generator=g)]),
             follows: torch.randint(0, 40, (2, 200), generator=g)}
    weight = {writes: torch.rand(300, generator=g)}
    time = {writes: torch.randint(0, 100, (300,), generator=g),
            follows: torch.randint(0, 100, (200,), generator=g)}
    node_time = {"user": torch.randint(0, 100, (40,), generator=g)}
    return num, edges, weight, time, node_time


def test_hetero_dataset_values_from_edges_from_pyg_save_and_load(tmp_path):
    from salient_pipes import HeteroDataset

    num, edges, weight, time, node_time = _typed_stream()
    y = torch.zeros(30, dtype=torch.long)
    built = HeteroDataset.from_edges(tmp_path / "h", num, edges, label_type="item", y=y,
                                     edge_weight=weight, edge_time=time, node_time=node_time,
                                     memory_limit="1KiB", progress=False)
    assert "with edge_weight, edge_time, node_time" in built.summary()
    writes, follows = list(edges)
    assert set(built.edge_weight) == {writes} and set(built.edge_time) == {writes, follows}
    data = built.to_pyg()  # the values as PyG attributes, read back by from_pyg
    again = HeteroDataset.from_pyg(data, "item", weight_attr="edge_weight",
                                   time_attr="edge_time", split_idx={})
    for e in edges:
        rows = torch.repeat_interleave(torch.arange(num[e[2]]), built.rowptr[e].diff())
        src, dst = edges[e]
        want = sorted(zip(src.tolist(), dst.tolist(), time[e].tolist()))
        got = sorted(zip(built.col[e].tolist(), rows.tolist(), built.edge_time[e].tolist()))
        assert got == want  # every edge kept, each with its time
        assert torch.equal(built.edge_time[e], again.edge_time[e])
        assert torch.equal(built.col[e].long(), again.col[e].long())
    rows = torch.repeat_interleave(torch.arange(30), built.rowptr[writes].diff())
    assert sorted(zip(built.col[writes].tolist(), rows.tolist(),
                      built.edge_weight[writes].tolist())) == sorted(
        zip(edges[writes][0].tolist(), edges[writes][1].tolist(),
            weight[writes].to(torch.float32).tolist()))
    built.save(tmp_path / "s", progress=False)
    back = HeteroDataset.load(tmp_path / "s")
    assert torch.equal(back.node_time["user"], node_time["user"])
    assert torch.equal(back.edge_weight[writes], built.edge_weight[writes])
    with pytest.raises(ValueError, match=r"edge_time\[\('user', 'follows', 'user'\)\] must "
                                         "ascend"):
        HeteroDataset(name="b", num_nodes=num, edges={follows: (built.rowptr[follows],
                                                                built.col[follows])},
                      x={}, y=y, label_type="item", split_idx={}, num_classes=1,
                      edge_time={follows: built.edge_time[follows].flip(0)})
    with pytest.raises(ValueError, match="edge_weight names types that are not in the graph"):
        HeteroDataset.from_edges(tmp_path / "x", num, edges, label_type="item", y=y,
                                 edge_weight={("item", "no", "user"): weight[writes]},
                                 progress=False)


def test_hetero_sampling_reads_the_datasets_weights_and_times(tmp_path):
    from salient_pipes import HeteroDataset

    num, edges, weight, time, node_time = _typed_stream(seed=8)
    writes = ("user", "buys", "item")
    weight[writes][weight[writes] < 0.5] = 0.0
    ds = HeteroDataset.from_edges(tmp_path / "h", num, edges, label_type="item",
                                  y=torch.zeros(30, dtype=torch.long), edge_weight=weight,
                                  edge_time=time, progress=False)
    seeds = torch.arange(30)
    pipe = (NodeIndices(seeds).batch_nodes(10)
            .sample_neighbors(ds, [5], input_type="item", weight=ds.edge_weight,
                              return_e_id=True))
    taken = torch.cat([b.e_id[writes] for b in pipe])
    assert taken.numel() > 20 and (ds.edge_weight[writes][taken] > 0).all()
    limit = torch.full((30,), 50)
    pipe = (NodeIndices(torch.arange(30)).batch_nodes(10)
            .seed_nodes(seeds, input_time=limit)
            .sample_neighbors(ds, [5, 5], node_wise=True, disjoint=True, time=ds.edge_time,
                              return_e_id=True, input_type="item"))
    seen = 0
    for batch in pipe:
        for e in ds.edge_time:
            assert (ds.edge_time[e][batch.e_id[e]] <= 50).all()
            seen += batch.e_id[e].numel()
    assert seen > 20
    # salient_pipeline: the seeds' times from the dataset's node_time
    ds.node_time["item"] = torch.full((30,), 50)
    pipe = salient_pipeline(ds, torch.arange(30), batch_size=10, fanouts=[5, 5],
                            device="cpu", temporal="uniform", return_e_id=True)
    for batch in pipe:
        for e in ds.edge_time:
            assert (ds.edge_time[e][batch.e_id[e]] <= 50).all()


@pytest.mark.parametrize("strategy", ["uniform", "last"])
def test_temporal_pipeline_takes_seed_times_from_the_dataset(strategy):
    _, time, node_time = _values(_base(), seed=9)
    ds = _base(edge_time=time, node_time=node_time)
    pipe = salient_pipeline(ds, batch_size=32, fanouts=(4, 4), device="cpu",
                            temporal=strategy, return_e_id=True, num_threads=2)
    edges = seeds = 0
    for batch in pipe:
        n_id, e = batch.n_id["_N"], ("_N", "_E", "_N")
        seed_ids = n_id[:batch.batch_size]
        assert torch.equal(batch.batch["_N"][:batch.batch_size], torch.arange(batch.batch_size))
        limit = ds.node_time[seed_ids][batch.batch["_N"][batch.edge_index[e][1]]]
        assert (ds.edge_time[batch.e_id[e]] <= limit).all()
        assert torch.equal(batch.x["_N"], ds.x[n_id])  # gathered in the workers
        assert torch.equal(batch.y, ds.y[seed_ids])
        edges += batch.e_id[e].numel()
        seeds += batch.batch_size
    assert seeds == ds.split_idx["train"].numel() and edges > 100
    with pytest.raises(ValueError, match="needs a dataset with edge_time"):
        salient_pipeline(_base(edge_time=time), device="cpu", temporal="last")
    with pytest.raises(ValueError, match="'uniform', 'last' or None"):
        salient_pipeline(ds, device="cpu", temporal="latest")
    weight, _, _ = _values(_base())
    with pytest.raises(ValueError, match="cannot be combined"):
        salient_pipeline(_base(edge_weight=weight, edge_time=time, node_time=node_time),
                         device="cpu", temporal="last", weighted=True)


@pytest.mark.parametrize("rowptr,times,falls_at", [
    ([0, 2], [5, 1], 1),                      # two positions, one row
    ([0, 0, 3], [1, 2, 0], 2),                # an empty first row; the fall is the last position
    ([0, 2, 4, 4, 4], [1, 2, 0, 3], None),    # empty last rows; rows ascend, boundaries fall
    ([0, 0, 2, 2], [7, 7], None),             # equal times ascend
])
def test_rows_ascend_at_every_position_and_row_layout(rowptr, times, falls_at):
    from salient_pipes.data.csr import check_rows_ascend

    rowptr, times = torch.tensor(rowptr), torch.tensor(times)
    if falls_at is None:
        check_rows_ascend(rowptr, times)
    else:
        with pytest.raises(ValueError, match=f"position {falls_at} holds"):
            check_rows_ascend(rowptr, times)
