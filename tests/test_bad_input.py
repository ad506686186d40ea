"""Each argument check the public API makes, reached with the input it is
there to refuse: the error's type and the words that name the problem.
A check that stops firing, or fires with a message that no longer names
what is wrong, fails here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salient_pipes import FastDataset, HeteroDataset
from salient_pipes._checks import as_node_ids, check_fanouts, check_input_id
from salient_pipes.pipes import IndexBatches, NodeIndices, SeedEdges, SeedNodes, gather

CITES = ("paper", "cites", "paper")


@pytest.fixture(scope="module")
def ds():
    return FastDataset.synthetic(num_nodes=300, avg_degree=6, num_features=8, num_classes=3,
                                 seed=1)


def _fields(ds, **changes):
    """The keyword arguments that rebuild ``ds``, with ``changes``."""
    kwargs = dict(name="t", x=ds.x, y=ds.y, rowptr=ds.rowptr, col=ds.col,
                  split_idx=ds.split_idx, num_classes=ds.num_classes)
    return {**kwargs, **changes}


def _same(item):
    return item


def _drain(pipe):
    for _ in pipe:
        pass


# ------------------------------------------------------------ shared checks
def test_fanouts_are_checked_hop_by_hop():
    assert check_fanouts([3, -1]) == [3, -1]
    for bad in ("15", 15, None):
        with pytest.raises(ValueError, match="fanouts must be a sequence of ints"):
            check_fanouts(bad)
    with pytest.raises(ValueError, match="must name at least one hop"):
        check_fanouts([])
    with pytest.raises(ValueError, match=r"fanouts\[1\] = 0: each fanout must be a positive"):
        check_fanouts([5, 0])
    with pytest.raises(ValueError, match=r"fanouts\[0\] = -2"):
        check_fanouts([-2])


def test_fanouts_per_edge_type_and_byte_sizes(mag):
    from salient_pipes.data import parse_bytes
    from salient_pipes.pipes import fanouts_per_edge_type

    with pytest.raises(ValueError, match="fanouts must name at least one edge type"):
        fanouts_per_edge_type({}, mag.edge_types)
    assert fanouts_per_edge_type({}, []) == []  # a graph without edges samples nothing
    assert parse_bytes("1.5KiB") == 1536 and parse_bytes(".5KiB") == 512
    assert parse_bytes("2.MB") == 2 * 10**6 and parse_bytes("2e3") == 2000
    with pytest.raises(ValueError, match="budget must be >= 0, got -5"):
        parse_bytes(-5, "budget")
    for bad in ("-1GiB", "1.2.3GiB", ".", "GiB", True, 1.5):
        with pytest.raises(ValueError, match="budget must be a byte count or a string like "
                                             "'1GiB'"):
            parse_bytes(bad, "budget")


def test_node_ids_come_as_tensors_lists_arrays_or_masks():
    assert as_node_ids("ids", np.array([2, 0]), 3).tolist() == [2, 0]
    assert as_node_ids("ids", range(2), 3).tolist() == [0, 1]
    assert as_node_ids("ids", [], 3).dtype == torch.int64
    with pytest.raises(ValueError, match="ids must be a tensor of node ids or a bool mask, "
                                         "got str"):
        as_node_ids("ids", "0,1", 3)
    with pytest.raises(ValueError, match=r"ids must be 1-D, got shape \(1, 2\)"):
        as_node_ids("ids", torch.tensor([[0, 1]]), 3)
    with pytest.raises(ValueError, match="on the meta device"):
        as_node_ids("ids", torch.empty(2, dtype=torch.int64, device="meta"), 3)
    with pytest.raises(ValueError, match="must hold integer node ids or be a bool mask, got "
                                         "torch.float32"):
        as_node_ids("ids", torch.tensor([0.0]), 3)
    with pytest.raises(ValueError, match=r"holds node ids outside \[0, 3\)"):
        as_node_ids("ids", [0, 3], 3)
    with pytest.raises(ValueError, match=r"holds node ids outside \[0, 3\)"):
        as_node_ids("ids", [-1], 3)


def test_input_id_is_one_integer_per_input():
    assert check_input_id([4, 9], 2, "input_nodes").dtype == torch.int64
    with pytest.raises(ValueError, match="input_id must be a 1-D tensor of integers, got "
                                         "torch.float32"):
        check_input_id([0.0, 1.0], 2, "input_nodes")
    with pytest.raises(ValueError, match="input_id must be a 1-D tensor of integers, got "
                                         "torch.bool"):
        check_input_id([True, False], 2, "input_nodes")
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        check_input_id([[0, 1]], 2, "input_nodes")
    with pytest.raises(ValueError, match="input_id has 3 entries but input_nodes has 2"):
        check_input_id([0, 1, 2], 2, "input_nodes")


# --------------------------------------------------------------- index stages
def test_index_batches_refuse_what_is_not_integer_batches():
    with pytest.raises(TypeError, match="BatchSampler or an iterable of index lists, got int"):
        IndexBatches(5)
    with pytest.raises(TypeError, match="got Tensor"):
        IndexBatches(torch.arange(4))
    # floats are refused, in a list as in a tensor, never truncated to ids
    for bad in ([[0.5, 1.7]], [torch.tensor([0.0, 1.0])]):
        with pytest.raises(ValueError, match="an index batch must be a 1-D list or tensor of "
                                             "integers, got torch.float32"):
            _drain(IndexBatches(bad))
    with pytest.raises(ValueError, match=r"got torch.int64 of shape \(1, 2\)"):
        _drain(IndexBatches([torch.tensor([[0, 1]])]))
    assert [b.tolist() for b in IndexBatches([[], (3, 1)])] == [[], [3, 1]]


def test_len_of_batches_needs_a_source_that_plans_its_epoch():
    pipe = IndexBatches([[0, 1]]).batch_nodes(1)
    with pytest.raises(TypeError, match="len\\(\\) needs a source that knows its nodes per epoch"):
        len(pipe)
    assert len(NodeIndices(torch.arange(5)).batch_nodes(2)) == 3


def test_seed_nodes_checks_its_times():
    src = NodeIndices(torch.arange(3)).batch_nodes(2)
    for bad in (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 2]),
                torch.tensor([True, False, True])):
        with pytest.raises(ValueError, match=r"input_time must hold one integer time per input "
                                             r"node \(3\)"):
            SeedNodes(src, torch.tensor([4, 5, 6]), input_time=bad)
    pipe = SeedNodes(src, torch.tensor([4, 5, 6]), input_time=torch.tensor([7, 8, 9]))
    assert [b.payload["seed_time"].tolist() for b in pipe] == [[7, 8], [9]]


def test_seed_edges_checks_its_arguments():
    src = NodeIndices(torch.arange(2)).batch_nodes(2)
    eli = torch.tensor([[0, 1], [1, 2]])
    for bad in (torch.tensor([0, 1]), torch.tensor([[0.0, 1.0], [1.0, 2.0]]),
                torch.ones(3, 2, dtype=torch.int64)):
        with pytest.raises(ValueError, match="edge_label_index must be an integer tensor of "
                                             r"shape \[2, L\]"):
            SeedEdges(src, bad, num_nodes=5)
    for row, bad in ((0, torch.tensor([[0, 5], [1, 2]])), (1, torch.tensor([[0, 1], [-1, 2]]))):
        with pytest.raises(ValueError, match=rf"edge_label_index\[{row}\] holds node ids outside "
                                             r"\[0, 5\)"):
            SeedEdges(src, bad, num_nodes=5)
    with pytest.raises(ValueError, match=r"edge_label_index\[1\] holds node ids outside \[0, 2\)"):
        SeedEdges(src, eli, num_nodes=5, num_dst_nodes=2, edge_type=("a", "to", "b"))
    with pytest.raises(ValueError, match="neg_sampling must be None, 'binary' or 'triplet', "
                                         "got 'both'"):
        SeedEdges(src, eli, num_nodes=5, neg_sampling="both")
    for amount in (0, -1.5, True, "2"):
        with pytest.raises(ValueError, match="the negative sampling amount must be a number > 0"):
            SeedEdges(src, eli, num_nodes=5, neg_sampling="binary", amount=amount)
    for bad in (torch.tensor([1.0, 2.0]), torch.tensor([1])):
        with pytest.raises(ValueError, match=r"edge_label_time must hold one integer time per "
                                             r"edge of edge_label_index \(2\)"):
            SeedEdges(src, eli, num_nodes=5, edge_label_time=bad, disjoint=True)
    with pytest.raises(ValueError, match="temporal link batches are disjoint"):
        SeedEdges(src, eli, num_nodes=5, edge_label_time=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="node times filter negatives by their edge's time"):
        SeedEdges(src, eli, num_nodes=5, src_node_time=torch.arange(5))
    with pytest.raises(ValueError, match=r"src_weight must hold one weight per node \(5\), got "
                                         r"shape \(4,\)"):
        SeedEdges(src, eli, num_nodes=5, src_weight=torch.ones(4))
    for bad in (torch.zeros(5), torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]),
                torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="dst_weight must be finite, >= 0 and not all 0"):
            SeedEdges(src, eli, num_nodes=5, dst_weight=bad)


# -------------------------------------------------------------- the sampler
def test_sampler_arguments_per_edge_type(ds, mag):
    src = NodeIndices(torch.arange(4)).batch_nodes(2)
    with pytest.raises(ValueError, match="weight of a graph with edge types .* must be a dict "
                                         "per edge type"):
        src.sample_neighbors(mag, [2], weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"weight names edge type \('paper', 'likes', 'paper'\), "
                                         "which the graph does not have"):
        src.sample_neighbors(mag, [2], weight={("paper", "likes", "paper"): torch.ones(3)})
    with pytest.raises(ValueError, match=r"weight must be 1-D \(one value per edge\), got shape "
                                         r"\(2, 3\)"):
        src.sample_neighbors(ds, [2], weight=torch.ones(2, 3))
    for bad in (torch.ones(3), torch.ones(3, dtype=torch.bool)):
        with pytest.raises(ValueError, match="time must hold integers"):
            src.sample_neighbors(ds, [2], node_wise=True, disjoint=True, time=bad)
    edges = ds.col.numel()
    with pytest.raises(ValueError, match=rf"weights must hold one value per edge of its edge "
                                         rf"type \({edges}\), got 3"):
        src.sample_neighbors(ds, [2], weight=torch.ones(3))
    with pytest.raises(ValueError, match=rf"edge_ids must hold one id per edge .*\({edges}\), "
                                         "got 3"):
        src.sample_neighbors(ds, [2], edge_ids=torch.arange(3))


def test_sampler_modes_that_do_not_combine(ds, mag):
    src = NodeIndices(torch.arange(4)).batch_nodes(2)
    with pytest.raises(ValueError, match="several node or edge types is sampled node-wise"):
        src.sample_neighbors(mag, [2], node_wise=False)
    with pytest.raises(ValueError, match="disjoint=True needs node_wise=True"):
        src.sample_neighbors(ds, [2], disjoint=True)
    with pytest.raises(ValueError, match="duplicate_seeds=True needs node_wise=True"):
        src.sample_neighbors(ds, [2], duplicate_seeds=True)
    times = torch.zeros(ds.col.numel(), dtype=torch.int64)
    with pytest.raises(ValueError, match="weighted and temporal sampling cannot be combined"):
        src.sample_neighbors(ds, [2], node_wise=True, disjoint=True, time=times,
                             weight=torch.ones(ds.col.numel()))
    with pytest.raises(ValueError, match="temporal sampling is node-wise and disjoint"):
        src.sample_neighbors(ds, [2], node_wise=True, time=times)
    with pytest.raises(ValueError, match="temporal_strategy must be 'uniform' or 'last'"):
        src.sample_neighbors(ds, [2], node_wise=True, disjoint=True, time=times,
                             temporal_strategy="first")


def test_sampler_payloads_and_seed_times(ds):
    times = torch.zeros(ds.col.numel(), dtype=torch.int64)
    seeds = NodeIndices(torch.arange(4)).batch_nodes(2).seed_nodes(torch.arange(4))
    with pytest.raises(ValueError, match="a SeedBatch's payload travels with node-wise, ordered "
                                         "sampling only"):
        _drain(seeds.sample_neighbors(ds, [2]))
    with pytest.raises(ValueError, match="temporal sampling needs each batch's seed times"):
        _drain(NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(
            ds, [2], node_wise=True, disjoint=True, time=times))
    timed = FastDataset(**_fields(ds, node_time=torch.arange(ds.num_nodes)))
    pipe = IndexBatches([[0, ds.num_nodes]]).sample_neighbors(
        timed, [2], node_wise=True, disjoint=True, time=times)
    with pytest.raises(ValueError, match=rf"seeds hold node ids outside \[0, {ds.num_nodes}\)"):
        _drain(pipe)
    # in range, each seed takes its own node time from the dataset: with every
    # edge at time 150, a seed before it samples nothing, one after it does
    linked = torch.nonzero(ds.rowptr.diff() > 0).view(-1)
    early, late = int(linked[linked < 150][0]), int(linked[linked > 150][0])
    batch = next(iter(IndexBatches([[early, late]]).sample_neighbors(
        timed, [2], node_wise=True, disjoint=True, time=torch.full_like(times, 150))))
    (owner,) = batch.batch.values()
    assert owner[:2].tolist() == [0, 1] and owner.numel() > 2 and bool((owner[2:] == 1).all())


# ------------------------------------------------------------ feature slicing
def test_slice_features_checks_its_tables(ds, mag):
    sampled = NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(ds, [2])
    with pytest.raises(ValueError, match="src must be a torch.Tensor, got ndarray"):
        gather(ds.x.numpy(), torch.tensor([0]))
    with pytest.raises(ValueError, match="x must be a 1-D or 2-D CPU tensor, got 3-D on cpu"):
        sampled.slice_features(ds.x.view(ds.num_nodes, 2, -1), ds.y)
    with pytest.raises(ValueError, match="y must be a torch.Tensor, got list"):
        sampled.slice_features(ds.x, ds.y.tolist())
    with pytest.raises(ValueError, match=f"x has {ds.num_nodes} rows but y has 5"):
        sampled.slice_features(ds.x, ds.y[:5])
    typed = NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(mag, [2])
    with pytest.raises(ValueError, match="features of a graph with several node types are a "
                                         "dict per node type"):
        typed.slice_features(mag.x["paper"], mag.y)
    with pytest.raises(TypeError, match="slice_features takes SampledSubgraph or NodeWiseBatch "
                                        "items, got Tensor"):
        _drain(NodeIndices(torch.arange(4)).batch_nodes(2).slice_features(ds.x, ds.y))


def test_caches_across_tables_take_the_most_priority_per_byte():
    from salient_pipes.data.feature_cache import FeatureCache, FeatureCaches

    # a's rows cost 8 bytes at priority 2, b's 32 at priority 4: per byte a
    # wins, and the 32 bytes left after the slot maps hold all of a
    x = {"a": torch.zeros(4, 2), "b": torch.zeros(2, 8)}
    priority = {"a": torch.full((4,), 2.0), "b": torch.tensor([4.0, 0.0])}
    caches = FeatureCaches.by_priority(x, priority, 32 + 4 * 4 + 2 * 4)
    assert caches["a"].num_cached == 4 and caches["b"].num_cached == 0
    for bad in ([1.0, 2.0], torch.zeros(2, 2, 2), torch.zeros(4, 2, device="meta")):
        with pytest.raises(ValueError, match="x must be a 1-D or 2-D CPU tensor"):
            FeatureCache(bad, "everything")


def test_slice_features_checks_its_cache(ds):
    from salient_pipes.data.feature_cache import FeatureCache

    sampled = NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(ds, [2])
    with pytest.raises(ValueError, match="cache must be a FeatureCache .* got Tensor"):
        sampled.slice_features(ds.x, ds.y, cache={"paper": torch.zeros(3)})
    other = FeatureCache(ds.x[:10], "everything")
    with pytest.raises(ValueError, match=f"cache holds rows of a table of 10 rows, x has "
                                         f"{ds.num_nodes}"):
        sampled.slice_features(ds.x, ds.y, cache=other)



# ---------------------------------------------------------------- datasets
def test_dataset_checks_its_csr(ds):
    with pytest.raises(ValueError, match="rowptr must be a 1-D int64 tensor"):
        FastDataset(**_fields(ds, rowptr=ds.rowptr.int()))
    with pytest.raises(ValueError, match="rowptr must be a 1-D int64 tensor"):
        FastDataset(**_fields(ds, rowptr=ds.rowptr.view(1, -1)))
    with pytest.raises(ValueError, match="col must be int32 or int64, got torch.float32"):
        FastDataset(**_fields(ds, col=ds.col.float()))
    # 2**31 nodes (an expanded rowptr takes no memory): int32 ids cannot name them all
    huge = torch.zeros(1, dtype=torch.int64).expand(2**31 + 1)
    with pytest.raises(ValueError, match="col must be int64 for graphs of 2\\*\\*31 nodes"):
        FastDataset(**_fields(ds, rowptr=huge, col=ds.col.int()))


def test_from_pyg_names_what_data_lacks(ds):
    from torch_geometric.data import Data, HeteroData

    edge_index = torch.stack([ds.col.long(), torch.repeat_interleave(
        torch.arange(ds.num_nodes), ds.rowptr.diff())])
    with pytest.raises(ValueError, match="for a HeteroData use HeteroDataset.from_pyg"):
        FastDataset.from_pyg(HeteroData())
    multi = Data(x=ds.x, y=ds.y.view(-1, 1).repeat(1, 2), edge_index=edge_index)
    with pytest.raises(ValueError, match=r"single-label node classification \(y of shape \[N\]\)"):
        FastDataset.from_pyg(multi, split_idx={"train": torch.arange(3)})
    bare = Data(x=ds.x, y=ds.y, edge_index=edge_index)
    with pytest.raises(ValueError, match="data has no train/val/test masks; pass split_idx"):
        FastDataset.from_pyg(bare)
    bare.val_mask = torch.zeros(ds.num_nodes, dtype=torch.bool)
    assert list(FastDataset.from_pyg(bare).split_idx) == ["valid"]  # the masks it has


def test_hetero_dataset_checks_its_fields(mag):
    edges = {e: (mag.rowptr[e], mag.col[e]) for e in mag.edge_types}
    kwargs = dict(name="t", num_nodes=mag.num_nodes, edges=edges, x=mag.x, y=mag.y,
                  label_type="paper", split_idx=mag.split_idx, num_classes=mag.num_classes)
    with pytest.raises(ValueError, match="needs at least one node type"):
        HeteroDataset(**{**kwargs, "num_nodes": {}})
    with pytest.raises(ValueError, match=r"x names node types that are not in num_nodes: "
                                         r"\['venue'\]"):
        HeteroDataset(**{**kwargs, "x": {**mag.x, "venue": torch.zeros(2, 2)}})
    for bad in (mag.y.int(), mag.y[:-1], mag.y.tolist()):
        with pytest.raises(ValueError, match=f"y must be a 1-D int64 tensor of "
                                             f"{mag.num_nodes['paper']} labels"):
            HeteroDataset(**{**kwargs, "y": bad})
    cites = ("paper", "cites", "paper")
    with pytest.raises(ValueError, match=r"edge_weight names edge type \('paper', 'likes', "
                                         r"'paper'\), which is not in edges"):
        HeteroDataset(**kwargs, edge_weight={("paper", "likes", "paper"): torch.ones(2)})
    with pytest.raises(ValueError, match="node_time names node type 'venue'"):
        HeteroDataset(**kwargs, node_time={"venue": torch.arange(2)})
    with pytest.raises(ValueError, match="each key of edge_time must be an edge type"):
        HeteroDataset(**kwargs, edge_time={"cites": torch.arange(2)})
    timed = HeteroDataset(**kwargs, node_time={"paper": torch.arange(mag.num_nodes["paper"])},
                          edge_weight={cites: torch.ones(mag.num_edges[cites])})
    assert list(timed.node_time) == ["paper"] and list(timed.edge_weight) == [cites]


def test_hetero_from_pyg_names_what_data_lacks(mag_pyg):
    from torch_geometric.data import Data

    with pytest.raises(ValueError, match=r"from_pyg takes a HeteroData \(FastDataset.from_pyg "
                                         r"takes a Data\), got Data"):
        HeteroDataset.from_pyg(Data())
    two = mag_pyg.clone()
    two["author"].y = torch.zeros(two["author"].num_nodes, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"pass label_type: node types with y: \['paper', "
                                         r"'author'\]"):
        HeteroDataset.from_pyg(two)
    with pytest.raises(ValueError, match="label_type 'venue' is not a node type of data"):
        HeteroDataset.from_pyg(mag_pyg, "venue")
    with pytest.raises(ValueError, match=r"data\['institution'\] has no y"):
        HeteroDataset.from_pyg(mag_pyg, "institution")
    floats = mag_pyg.clone()
    floats["paper"].y = floats["paper"].y.float()
    with pytest.raises(ValueError, match="y must hold one integer class label per node"):
        HeteroDataset.from_pyg(floats)
    wide = mag_pyg.clone()  # a column per node is fine, two are not
    wide["paper"].y = wide["paper"].y.view(-1, 1).repeat(1, 2)
    with pytest.raises(ValueError, match="y must hold one integer class label per node"):
        HeteroDataset.from_pyg(wide)
    unsplit = mag_pyg.clone()
    for mask in ("train_mask", "val_mask", "test_mask"):
        if mask in unsplit["paper"]:
            del unsplit["paper"][mask]
    with pytest.raises(ValueError, match=r"data\['paper'\] has no train/val/test masks; pass "
                                         "split_idx"):
        HeteroDataset.from_pyg(unsplit)
    unsplit["paper"].val_mask = torch.zeros(unsplit["paper"].num_nodes, dtype=torch.bool)
    assert list(HeteroDataset.from_pyg(unsplit).split_idx) == ["valid"]  # the masks it has
    column = mag_pyg.clone()
    column["paper"].y = column["paper"].y.view(-1, 1)
    assert torch.equal(HeteroDataset.from_pyg(column).y, mag_pyg["paper"].y)
    no_edges = mag_pyg.clone()
    del no_edges["paper", "cites", "paper"].edge_index
    no_edges["paper", "cites", "paper"].weight = torch.ones(3)
    with pytest.raises(ValueError, match=r"edge type \('paper', 'cites', 'paper'\) has no "
                                         "edge_index"):
        HeteroDataset.from_pyg(no_edges)
    outside = mag_pyg.clone()
    outside["paper", "cites", "paper"].edge_index = torch.tensor([[0], [10**6]])
    with pytest.raises(ValueError, match=r"edge type \('paper', 'cites', 'paper'\): "
                                         r"edge_index\[1, 0\] = 1000000 is outside"):
        HeteroDataset.from_pyg(outside)
    with pytest.raises(ValueError, match="weight_attr 'w' is on no edge type"):
        HeteroDataset.from_pyg(mag_pyg, weight_attr="w")
    with pytest.raises(ValueError, match="time_attr 't' is on no node or edge type"):
        HeteroDataset.from_pyg(mag_pyg, time_attr="t")


def test_edge_list_builds_check_their_inputs(tmp_path, ds):
    edges = torch.tensor([[0, 1, 2], [1, 2, 0]])
    meta = torch.empty(2, 3, dtype=torch.int64, device="meta")
    with pytest.raises(ValueError, match="edge_index must be on the CPU, got a tensor on meta"):
        FastDataset.from_edges(tmp_path / "a", meta, 3, progress=False)
    for bad in (torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.complex64)):
        with pytest.raises(ValueError, match=f"edge_weight must hold real numbers, got "
                                             f"{bad.dtype}"):
            FastDataset.from_edges(tmp_path / "b", edges, 3, edge_weight=bad, progress=False)
    with pytest.raises(ValueError, match="y must hold integer class labels, got torch.bool"):
        FastDataset.from_edges(tmp_path / "c", edges, 3, y=torch.ones(3, dtype=torch.bool),
                               progress=False)
    assert not any(tmp_path.iterdir())  # a refused build leaves nothing behind
    typed = {("a", "to", "b"): edges}
    with pytest.raises(ValueError, match=r"label_type 'c' is not a node type \['a', 'b'\]"):
        HeteroDataset.from_edges(tmp_path / "d", {"a": 3, "b": 3}, typed, label_type="c",
                                 progress=False)
    with pytest.raises(ValueError, match="each key of edge_index must be an edge type"):
        HeteroDataset.from_edges(tmp_path / "d", {"a": 3, "b": 3}, {"to": edges},
                                 label_type="a", progress=False)
    with pytest.raises(ValueError, match=r"edge type \('a', 'to', 'c'\) names node type 'c', "
                                         "which is not in num_nodes"):
        HeteroDataset.from_edges(tmp_path / "d", {"a": 3, "b": 3}, {("a", "to", "c"): edges},
                                 label_type="a", progress=False)


def test_a_missing_split_is_named_with_the_splits_there_are(ds, mag):
    from salient_pipes import batchwise_test, salient_pipeline
    from salient_pipes.models import SAGE

    with pytest.raises(ValueError, match=r"has no split 'val'; it has \['test', 'train', "
                                         r"'valid'\] \(did you mean 'valid'\?\)"):
        salient_pipeline(ds, "val", device="cpu")
    with pytest.raises(ValueError, match=r"has no split 'dev'; it has \[.*\]$"):
        salient_pipeline(mag, "dev", device="cpu")  # nothing like it: no guess
    with pytest.raises(ValueError, match=r"has no split 'tst'.*did you mean 'test'"):
        batchwise_test(SAGE(ds.num_features, 4, ds.num_classes, 1), ds, (2,), sets="tst",
                       device="cpu", progress=False)


def test_synthetic_graphs_check_their_shares():
    for kwargs in (dict(homophily=1.5), dict(homophily=-0.1), dict(split=(0.0, 0.1)),
                   dict(split=(0.6, 0.5)), dict(split=(0.5, -0.1))):
        with pytest.raises(ValueError, match="homophily must lie in \\[0, 1\\] and split shares"):
            FastDataset.synthetic(num_nodes=50, **kwargs)
    # the bounds themselves are shares: no class bias, every edge in its class, no
    # validation split
    for kwargs in (dict(homophily=0.0), dict(homophily=1.0), dict(split=(0.5, 0.0))):
        assert FastDataset.synthetic(num_nodes=50, **kwargs).num_nodes == 50


# ------------------------------------------------------------- PyG loaders
def _data(num_nodes=30, num_edges=120, **attrs):
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    return Data(x=torch.randn(num_nodes, 4, generator=g),
                edge_index=torch.randint(0, num_nodes, (2, num_edges), generator=g), **attrs)


def test_node_loader_seed_forms(mag_pyg):
    from salient_pipes.pyg import NeighborLoader

    for bad in ([3, 5], (torch.tensor([0]), torch.tensor([1])), 7):
        with pytest.raises(ValueError, match="for typed graphs, input_nodes must be a node type "
                                             r"or \(node_type, ids \| mask \| None\)"):
            NeighborLoader(mag_pyg, [2], input_nodes=bad)
    from salient_pipes.data.csr import csr_from_edge_index

    for bad in (torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.complex64)):
        with pytest.raises(ValueError, match="edge_index must be"):
            csr_from_edge_index(bad, 3)


def _remote(data):
    """``data``'s features and edges in PyG's test FeatureStore and GraphStore."""
    from torch_geometric.testing import MyFeatureStore, MyGraphStore

    fs, gs = MyFeatureStore(), MyGraphStore()
    fs.put_tensor(data.x, group_name=None, attr_name="x", index=None)
    gs.put_edge_index((data.edge_index[0], data.edge_index[1]), edge_type=None, layout="coo",
                      size=(data.num_nodes, data.num_nodes))
    return fs, gs


def test_link_loader_arguments(mag_pyg):
    from salient_pipes.pyg import LinkNeighborLoader

    data = _data()
    with pytest.raises(ValueError, match=r"edge_label_index as \(edge_type, index\) is for typed "
                                         "graphs"):
        LinkNeighborLoader(data, [2], edge_label_index=(("a", "to", "b"), None))
    for bad in (torch.tensor([0, 1, 2]), torch.zeros(3, 2, dtype=torch.int64)):
        with pytest.raises(ValueError, match=r"edge_label_index must be a \[2, L\] tensor, got "
                                             f"shape {tuple(bad.shape)}".replace("(", r"\(")
                           .replace(")", r"\)")):
            LinkNeighborLoader(data, [2], edge_label_index=bad)
    for bad in (torch.tensor([[0, 1], [1, 2]]), ("paper", torch.tensor([[0], [1]]))):
        with pytest.raises(ValueError, match="for typed graphs, edge_label_index must be an edge "
                                             "type or"):
            LinkNeighborLoader(mag_pyg, [2], edge_label_index=bad)
    for bad in (("paper",), ("a", "b", "c", "d")):
        with pytest.raises(ValueError, match="an edge type is \\(src, relation, dst\\) or "
                                             "\\(src, dst\\)"):
            LinkNeighborLoader(mag_pyg, [2], edge_label_index=(bad, None))
    # an edge type the graph has no edges of: no labelled edges, no batches
    none = LinkNeighborLoader(mag_pyg, [2], edge_label_index=(("paper", "likes", "paper"), None))
    assert len(none) == 0 and list(none) == []
    with pytest.raises(ValueError, match="neg_sampling must be None, 'binary', 'triplet', a dict "
                                         "or a NegativeSampling, got int"):
        LinkNeighborLoader(data, [2], neg_sampling=3)
    for amount in (0, float("inf"), float("nan"), "1"):
        with pytest.raises(ValueError, match="the negative sampling amount must be a number > 0"):
            LinkNeighborLoader(data, [2], neg_sampling={"mode": "binary", "amount": amount})


def test_loader_weights_and_times_are_checked():
    from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader

    fs, gs = _remote(_data())
    with pytest.raises(NotImplementedError, match="weight_attr with a \\(FeatureStore, "
                                                  "GraphStore\\) is not supported"):
        NeighborLoader((fs, gs), [2], input_nodes=torch.arange(4), weight_attr="w")
    with pytest.raises(ValueError, match="time_attr 'time' is not in the feature store"):
        NeighborLoader((fs, gs), [2], input_nodes=torch.arange(4), time_attr="time")
    for bad in (torch.tensor([1.0] * 119 + [-1.0]), torch.tensor([1.0] * 119 + [float("inf")])):
        with pytest.raises(ValueError, match=r"weight_attr 'w' holds (-1.0|inf) at edge \d+: "
                                             "weights must be finite and >= 0"):
            NeighborLoader(_data(w=bad), [2], weight_attr="w")
    with pytest.raises(ValueError, match="time_attr 'time' of .* must be a 1-D tensor of "
                                         "integer times, got torch.float32"):
        NeighborLoader(_data(time=torch.rand(120)), [2], time_attr="time")
    with pytest.raises(ValueError, match="temporal sampling by edge times needs input_time"):
        NeighborLoader(_data(time=torch.arange(120)), [2], time_attr="time")
    with pytest.raises(ValueError, match=r"input_time must hold one time per input node \(30\), "
                                         r"got shape \(29,\)"):
        NeighborLoader(_data(time=torch.arange(120)), [2], time_attr="time",
                       input_time=torch.arange(29))
    with pytest.raises(ValueError, match="temporal link batches need each labelled edge's time"):
        LinkNeighborLoader(_data(time=torch.arange(120)), [2], time_attr="time")


def test_hetero_time_attr_on_nodes_and_edges_is_refused(mag_pyg):
    from salient_pipes.pyg import NeighborLoader

    data = mag_pyg.clone()
    data["paper"].t = torch.arange(data["paper"].num_nodes)
    cites = data["paper", "cites", "paper"]
    cites.t = torch.arange(cites.edge_index.size(1))
    with pytest.raises(ValueError, match="time_attr 't' holds both node-level and edge-level "
                                         "times"):
        NeighborLoader(data, [2], input_nodes="paper", time_attr="t")


def test_graphs_the_loaders_cannot_read():
    from torch_geometric.data import Data, HeteroData
    from torch_geometric.testing import MyFeatureStore, MyGraphStore

    from salient_pipes.pyg import NeighborLoader, csc_of, hetero_csc_of

    with pytest.raises(ValueError, match="csc_of takes a Data; for a HeteroData use "
                                         "hetero_csc_of"):
        csc_of(HeteroData())
    with pytest.raises(ValueError, match="expected a HeteroData, got Data"):
        hetero_csc_of(Data())
    typed = HeteroData()
    typed["a", "to", "b"].edge_index = torch.tensor([[0], [0]])
    with pytest.raises(ValueError, match=r"data\[\('a', 'to', 'b'\)\] joins node type 'a', "
                                         r"which data does not have \(set data\['a'\]"):
        hetero_csc_of(typed)
    typed["b"].num_nodes = 1
    typed["a"].name = "a store without node attributes"
    with pytest.raises(ValueError, match=r"data\['a'\] has no nodes count"), \
            pytest.warns(UserWarning, match="infer 'num_nodes'"):  # PyG's, as it counts them
        hetero_csc_of(typed)
    typed["a"].num_nodes = 1
    assert hetero_csc_of(typed).rowptr[("a", "to", "b")].tolist() == [0, 1]
    fs, gs = MyFeatureStore(), MyGraphStore()
    fs.put_tensor(torch.zeros(5, 2), group_name=None, attr_name="x", index=None)
    with pytest.raises(ValueError, match="the GraphStore holds no edges"):
        NeighborLoader((fs, gs), [2], input_nodes=torch.arange(4))
    # an unsized typed store: node counts come from the features, which are too few
    fs, gs = MyFeatureStore(), MyGraphStore()
    fs.put_tensor(torch.zeros(3, 2), group_name="a", attr_name="x", index=None)
    fs.put_tensor(torch.zeros(5, 2), group_name="b", attr_name="x", index=None)
    gs.put_edge_index((torch.tensor([0]), torch.tensor([9])), edge_type=("a", "to", "b"),
                      layout="coo")
    with pytest.raises(ValueError, match=r"the GraphStore's \('a', 'to', 'b'\) has edges into "
                                         "node 9, but the node type has 5 nodes"):
        NeighborLoader((fs, gs), [2], input_nodes=("b", torch.arange(4)))
    for bad in (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1])):
        with pytest.raises(ValueError, match=r"edge_index must be an integer tensor of shape "
                                             r"\[2, E\]"):
            NeighborLoader(Data(x=torch.zeros(2, 1), edge_index=bad), [2])
    with pytest.raises(ValueError, match="adj_t must be a 2-D sparse tensor, got 3-D"):
        NeighborLoader(Data(x=torch.zeros(2, 1), adj_t=torch.zeros(2, 2, 2).to_sparse()), [2])


def test_features_on_the_device_need_features_in_memory():
    from salient_pipes.pyg import NeighborLoader

    fs, gs = _remote(_data())
    with pytest.raises(ValueError, match="features_on and device_cache take a Data or "
                                         "HeteroData; a FeatureStore keeps its features itself"):
        NeighborLoader((fs, gs), [2], input_nodes=torch.arange(4), features_on="cpu")


def test_to_pyg_says_what_it_needs():
    from salient_pipes.pipes.device_features import DeviceFeatures
    from salient_pipes.pyg import csc_of

    data = _data(num_nodes=40, num_edges=200)
    csc = csc_of(data)
    seeds = NodeIndices(torch.arange(40)).batch_nodes(10).seed_nodes(torch.arange(40))
    node_wise = seeds.sample_neighbors(csc.graph, [3], node_wise=True, return_e_id=True)
    on_cpu = DeviceFeatures(data.x, "cpu")
    with pytest.raises(ValueError, match="sampler_output yields samples, not batches"):
        node_wise.to_pyg(data, csc.perm, features=on_cpu, sampler_output=True)
    with pytest.raises(ValueError, match="features on the device take a Data or HeteroData whose "
                                         "x the sampling workers gather"):
        node_wise.map(_same).to_pyg(data, csc.perm, features=on_cpu)
    with pytest.raises(ValueError, match="subgraph_type='induced' needs the sampled CSR and its "
                                         "positions' edge ids"):
        node_wise.to_pyg(data, csc.perm, subgraph_type="induced")
    with pytest.raises(ValueError, match="to_pyg needs to map CSR positions to edge ids: give "
                                         "perm"):
        _drain(node_wise.to_pyg(data))
    without_ids = seeds.sample_neighbors(csc.graph, [3], node_wise=True)
    with pytest.raises(ValueError, match="to_pyg needs edge ids: sample with return_e_id=True"):
        _drain(without_ids.to_pyg(data, csc.perm))
    per_hop = NodeIndices(torch.arange(40)).batch_nodes(10).sample_neighbors(csc.graph, [3])
    with pytest.raises(TypeError, match=r"to_pyg takes node-wise samples \(sample_neighbors"
                                        r"\(\.\.\., node_wise=True\)\), got SampledSubgraph"):
        _drain(per_hop.to_pyg(data, csc.perm))
    # ids and positions are one and the same when the sampler reports ids
    with_ids = seeds.sample_neighbors(csc.graph, [3], node_wise=True, return_e_id=True,
                                      edge_ids=csc.perm)
    batch = next(iter(with_ids.to_pyg(data)))
    assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index])


def test_to_pyg_of_stores_needs_their_graph():
    from torch_geometric.testing import MyFeatureStore, MyGraphStore

    fs, gs = MyFeatureStore(), MyGraphStore()
    with pytest.raises(ValueError, match=r"to_pyg of a \(FeatureStore, GraphStore\) needs its "
                                         "graph"):
        NodeIndices(torch.arange(4)).batch_nodes(2).to_pyg((fs, gs))


def test_torchdata_adapters_check_their_use(ds):
    from salient_pipes import salient_pipeline
    from salient_pipes.adapters.torchdata import PipeNode, SeedsFromNode

    node = PipeNode(salient_pipeline(ds, batch_size=64, fanouts=(2,), device="cpu"))
    with pytest.raises(RuntimeError, match=r"PipeNode.next\(\) before reset\(\)"):
        node.next()
    node.reset()
    assert node.next().batch_size == 64
    with pytest.raises(TypeError, match="SeedsFromNode reads a torchdata.nodes.BaseNode, got "
                                        "list"):
        SeedsFromNode([torch.arange(3)])


def test_native_reads_only_host_tensors(ds, tmp_path):
    from salient_pipes.data.feature_file import FeatureFile
    from salient_pipes.pipes.lookahead import LookAhead

    with pytest.raises(ValueError, match="the native core reads CPU tensors, got one on meta"):
        gather(torch.empty(4, 2, device="meta"), torch.tensor([0]))
    np.save(tmp_path / "x.npy", np.zeros((ds.num_nodes, 8), np.float16))
    sampled = NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(ds, [2])
    ahead = LookAhead({"author": FeatureFile(tmp_path / "x.npy")}, "1MiB")
    with pytest.raises(ValueError, match="lookahead reads features of node type 'author', which "
                                         "x lacks"):
        sampled.slice_features(ds.x, ds.y, lookahead=ahead)
    with pytest.raises(ValueError, match="holds float16 values; dtype torch.float32 has another "
                                         "size"):
        FeatureFile(tmp_path / "x.npy", dtype=torch.float32)
    assert FeatureFile(tmp_path / "x.npy", dtype=torch.bfloat16).dtype == torch.bfloat16


# ------------------------------------------------- models and partitioned data
def test_hetero_model_names_its_target(mag):
    from salient_pipes import HeteroSAGE

    metadata = (mag.node_types, mag.edge_types)
    with pytest.raises(ValueError, match="target 'venue' is not one of the node types"):
        HeteroSAGE(metadata, mag.num_features, 8, mag.num_classes, num_layers=2, target="venue")


def test_own_part_assignments_are_checked(ds, tmp_path):
    from salient_pipes.distributed.partition import write_parts

    n = ds.num_nodes
    for bad in (torch.zeros(n - 1, dtype=torch.int32), torch.zeros(n),
                torch.zeros(n, 1, dtype=torch.int64)):
        with pytest.raises(ValueError, match=rf"owner must hold one integer part per node \({n}\)"):
            write_parts(ds, bad, tmp_path / "p", progress=False)
    negative = torch.zeros(n, dtype=torch.int64)
    negative[7] = -1
    with pytest.raises(ValueError, match="owner holds a negative part"):
        write_parts(ds, negative, tmp_path / "p", progress=False)
    gap = torch.zeros(n, dtype=torch.int64)
    gap[:5] = 2  # part 1 is empty
    with pytest.raises(ValueError, match="part 1 would hold no node"):
        write_parts(ds, gap, tmp_path / "p", progress=False)
    two = torch.zeros(n, dtype=torch.int64)
    two[:5] = 1
    with pytest.raises(ValueError, match="part 2 would hold no node"):  # the last part empty
        write_parts(ds, two, tmp_path / "p", num_parts=3, progress=False)
    with pytest.raises(ValueError, match="owner names part 2, but there are 2 parts"):
        write_parts(ds, gap, tmp_path / "p", num_parts=2, progress=False)
    assert not (tmp_path / "p").exists()


def test_parts_that_disagree_with_their_meta_are_refused(ds, tmp_path):
    import json

    from salient_pipes.distributed import PartitionedDataset, PartitionLoadError, partition

    out = partition(ds, 2, tmp_path / "p", method="random", progress=False)
    part = PartitionedDataset.load(out, rank=0)
    with pytest.raises(TypeError, match="fetch_features takes a PartitionedDataset, got "
                                        "FastDataset"):
        NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(part, [2]) \
            .fetch_features(ds)
    meta = json.loads((out / "meta.json").read_text())
    meta["part_sizes"][0] += 1
    (out / "meta.json").write_text(json.dumps(meta))
    rows = part.x.size(0)
    with pytest.raises(PartitionLoadError, match=f"rank 0: DatasetCacheError: .*: x has {rows} "
                                                 f"rows, expected {rows + 1}"):
        PartitionedDataset.load(out, rank=0)


def test_what_is_not_a_batch_is_named(tmp_path):
    from salient_pipes.batch import ids_per_type, with_features
    from salient_pipes.data.format import create_npy

    for fn in (ids_per_type, lambda b: with_features(b, {})):
        with pytest.raises(TypeError, match="features fill PreparedBatch or NodeWiseBatch items, "
                                            "got dict"):
            fn({"x": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"shape \(1, 1, .*\) does not fit a 128-byte header"):
        create_npy(tmp_path / "x.npy", np.float32, (1,) * 40)
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("module,old,new", [
    ("salient_pipes", "HeteroBatch", "NodeWiseBatch"),
    ("salient_pipes.batch", "HeteroBatch", "NodeWiseBatch"),
    ("salient_pipes.data", "HeteroFeatureCache", "FeatureCaches"),
    ("salient_pipes.pipes", "SampleHeteroNeighbors", "SampleNeighbors"),
    ("salient_pipes.pipes", "hetero_fanouts", "fanouts_per_edge_type"),
])
def test_old_names_still_work_with_a_warning(module, old, new):
    import importlib

    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}.* goes in the next release"):
        assert getattr(mod, old) is getattr(mod, new)
    with pytest.raises(AttributeError, match=f"module '{module}' has no attribute 'Nope'"):
        assert mod.Nope is None  # raises first


def test_sampler_gathers_a_single_table_itself(ds, mag):
    # with_features takes a tensor for a graph of one node type, a dict otherwise
    sampled = NodeIndices(torch.arange(40)).batch_nodes(10).sample_neighbors(ds, [3])
    batches = list(sampled.with_features(ds.x, ds.y))
    assert len(batches) == 4
    for b in batches:
        assert torch.equal(b.x, ds.x[b.n_id]) and torch.equal(b.y, ds.y[b.n_id[:10]])
    typed = NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(mag, [2])
    with pytest.raises(ValueError, match="x of a graph with node types .* must be a dict per "
                                         "node type"):
        _drain(typed.with_features(mag.x["paper"], mag.y))
    with pytest.raises(ValueError, match="x names node type 'venue'; the graph's node types"):
        _drain(typed.with_features({"venue": mag.x["paper"]}, mag.y))


def test_reprs_name_what_they_hold(ds, mag, tmp_path):
    from salient_pipes.data.feature_cache import FeatureCache, FeatureCaches
    from salient_pipes.data.feature_file import FeatureFile
    from salient_pipes.pipes.device_features import DeviceFeatures

    text = repr(ds)
    assert text.startswith("FastDataset(") and f"{ds.num_nodes} nodes" in text
    assert f"{ds.num_classes} classes" in text and f"train {ds.split_idx['train'].numel()}" in text
    text = repr(mag)
    assert text.startswith("HeteroDataset(") and f"{len(mag.edge_types)} types" in text
    assert "on 'paper'" in text
    cache = FeatureCache(ds.x, "50%")
    assert repr(cache).startswith(f"FeatureCache({cache.num_cached} rows")
    assert "hit rate 0.000" in repr(cache)
    caches = FeatureCaches.for_dataset(mag, "10%")
    assert all(f"{t}: {caches[t].num_cached:,} rows" in repr(caches) for t in mag.node_types)
    np.save(tmp_path / "x.npy", ds.x.numpy())
    file = FeatureFile(tmp_path / "x.npy")
    assert repr(file).startswith(f"FeatureFile({str(tmp_path / 'x.npy')!r}, {ds.num_nodes} rows "
                                 f"x {ds.x[0].numel() * 2} bytes")
    on = DeviceFeatures(ds.x, "cpu", cache=cache)
    assert repr(on) == f"DeviceFeatures(0.0 MiB on cpu, {cache.num_cached} rows cached)"
    assert repr(DeviceFeatures(ds.x, "cpu")) == "DeviceFeatures(0.0 MiB on cpu)"
