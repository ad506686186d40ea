"""Feature rows partitioned across ranks: partition(), PartitionedDataset,
the fetch_features exchange over gloo (2 and 3 processes), failures."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from salient_pipes import SAGE, FastDataset, batchwise_test, salient_pipeline
from salient_pipes.batch import EDGE_TYPE
from salient_pipes.data.feature_cache import cache_budget, expected_access
from salient_pipes.distributed import (
    FetchError,
    PartitionedDataset,
    PartitionLoadError,
    partition,
    process_group,
)
from salient_pipes.distributed.partition import (
    METHODS,
    assign_parts,
    balance_training,
    fill_empty_parts,
    local_rows,
    write_parts,
)
from salient_pipes.pipes import NodeIndices, pipeline_stats
from tests.doc_blocks import doc_block, run_shell
from tests.ranks import run_ranks

NUM_NODES = 2400
BATCH = 100
FANOUTS = (5, 5)


def _dataset() -> FastDataset:
    return FastDataset.synthetic(num_nodes=NUM_NODES, num_features=12, seed=5)


# --------------------------------------------------------------- one process
@pytest.mark.parametrize("method", ["random", "metis"])
def test_partition_writes_every_row_once_and_balances_training(tmp_path, method):
    ds = _dataset()
    out = partition(ds, 3, tmp_path / "p", method=method, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    train = meta["split_sizes"]["train"]
    assert max(train) - min(train) <= 1 and sum(train) == ds.split_idx["train"].numel()
    seen = []
    for rank in range(3):
        part = PartitionedDataset.load(out, rank)
        assert torch.equal(part.x, ds.x[part.ids]) and torch.equal(part.y, ds.y[part.ids])
        assert torch.equal(part.ids, part.ids.sort().values)
        assert bool((part.owner[part.ids] == rank).all())
        assert torch.equal(part.local[part.ids].to(torch.int64), torch.arange(part.ids.numel()))
        for name, idx in part.split_idx.items():
            assert torch.equal(idx, ds.split_idx[name][part.owner[ds.split_idx[name]] == rank])
        assert torch.equal(part.rowptr, ds.rowptr) and torch.equal(part.col, ds.col)
        seen.append(part.ids)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(ds.num_nodes))


def test_metis_cuts_fewer_edges_than_random():
    # A graph of 4 communities with few edges between them.
    rng = np.random.default_rng(0)
    n, k = 800, 4
    src = rng.integers(0, n, 8000)
    same = rng.random(8000) < 0.97
    dst = np.where(same, (src // (n // k)) * (n // k) + rng.integers(0, n // k, 8000),
                   rng.integers(0, n, 8000))
    perm = rng.permutation(n)  # hide the communities behind random ids
    edge_index = torch.as_tensor(np.stack([perm[src], perm[dst]]))
    ds = FastDataset.from_pyg(_pyg_data(edge_index, n), name="communities")
    cuts = {}
    for method in ("random", "metis"):
        owner = assign_parts(ds, k, method=method).to(torch.int64)
        dst_of = torch.repeat_interleave(torch.arange(n), ds.rowptr[1:] - ds.rowptr[:-1])
        cuts[method] = int((owner[ds.col.to(torch.int64)] != owner[dst_of]).sum())
    assert cuts["metis"] < 0.3 * cuts["random"], cuts


def _pyg_data(edge_index, n):
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(n, generator=gen) < 0.5
    return Data(x=torch.randn(n, 4, generator=gen), y=torch.randint(0, 3, (n,), generator=gen),
                edge_index=edge_index, train_mask=mask, val_mask=~mask, test_mask=~mask)


def test_balance_training_moves_only_surplus_training_nodes():
    gen = torch.Generator().manual_seed(1)
    owner = torch.tensor([0] * 10 + [1] * 3 + [2] * 5, dtype=torch.int32)
    train = torch.tensor([True] * 9 + [False] + [True] * 2 + [False] + [True] * 4 + [False])
    out = balance_training(owner, train, 3, gen)
    assert torch.bincount(out[train].to(torch.int64), minlength=3).tolist() == [5, 5, 5]
    assert torch.equal(out[~train], owner[~train])  # others stay
    assert int((out != owner).sum()) == 4  # 9 - 5 moved, no more


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("num_nodes,num_parts", [(8, 8), (20, 16), (100, 64), (1000, 7)])
def test_no_part_is_left_empty_and_training_nodes_are_balanced(method, num_nodes, num_parts):
    ds = FastDataset.synthetic(num_nodes=num_nodes, seed=0)
    owner = assign_parts(ds, num_parts, method=method).to(torch.int64)
    sizes = torch.bincount(owner, minlength=num_parts)
    assert int(sizes.min()) >= 1 and owner.max() < num_parts
    trained = torch.bincount(owner[ds.split_idx["train"]], minlength=num_parts)
    assert int(trained.max() - trained.min()) <= 1
    if method == "random":  # one round robin: the parts' sizes differ by one at most
        assert int(sizes.max() - sizes.min()) <= 1, sizes.tolist()


def test_fill_empty_parts_moves_one_node_of_the_largest_part_into_each():
    owner = torch.tensor([0] * 6 + [3] * 2, dtype=torch.int32)
    out = fill_empty_parts(owner, 4, torch.Generator().manual_seed(0))
    assert torch.bincount(out.to(torch.int64), minlength=4).tolist() == [4, 1, 1, 2]
    assert int((out != owner).sum()) == 2 and bool((owner[out != owner] == 0).all())


def test_few_training_nodes_for_the_parts_are_warned_about(tmp_path):
    ds = FastDataset.synthetic(num_nodes=40, seed=0)
    ds.split_idx["train"] = ds.split_idx["train"][:2]
    with pytest.warns(UserWarning, match="the train split has 2 nodes for 3 parts: 1 parts"):
        out = partition(ds, 3, tmp_path / "p", method="random", progress=False)
    # Training would leave one rank without seeds: every rank refuses it up
    # front (not the seedless one alone, with the others waiting for it).
    parts = [PartitionedDataset.load(out, rank) for rank in range(3)]
    assert sorted(p.split_sizes["train"][p.rank] for p in parts) == [0, 1, 1]
    for part in parts:
        with pytest.raises(ValueError, match="holds none of the split's nodes"):
            salient_pipeline(part, "train", device="cpu", fanouts=(2,))
        evaluation = salient_pipeline(part, "train", device="cpu", fanouts=(2,), shuffle=False)
        assert len(evaluation) == part.split_sizes["train"][part.rank]


def test_local_rows_number_each_part_in_id_order():
    owner = torch.tensor([2, 0, 2, 1, 0, 2], dtype=torch.int32)
    assert local_rows(owner, 3).tolist() == [0, 0, 1, 0, 1, 2]


def test_partition_rejects_bad_input(tmp_path, monkeypatch):
    ds = _dataset()
    with pytest.raises(ValueError, match="method must be one of"):
        partition(ds, 2, tmp_path / "a", method="spectral", progress=False)
    with pytest.raises(ValueError, match="num_parts"):
        partition(ds, 0, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="cannot cut"):
        partition(FastDataset.synthetic(num_nodes=3, seed=0), 4, tmp_path / "c",
                  progress=False)
    for method in METHODS:  # as many parts as nodes: one each, all written
        out = partition(FastDataset.synthetic(num_nodes=3, seed=0), 3, tmp_path / method,
                        method=method, progress=False)
        assert sorted(PartitionedDataset.load(out, rank=2).owner.tolist()) == [0, 1, 2]
    with pytest.raises(TypeError, match="FastDataset"):
        partition(ds.x, 2, tmp_path / "d")
    monkeypatch.setitem(sys.modules, "pymetis", None)
    with pytest.raises(ImportError, match="pip install pymetis"):
        partition(ds, 2, tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()


def test_load_rejects_bad_parts_and_damaged_files(tmp_path):
    ds = _dataset()
    out = partition(ds, 2, tmp_path / "p", method="random", progress=False)
    with pytest.raises(PartitionLoadError, match="no part 2"):
        PartitionedDataset.load(out, rank=2)
    with pytest.raises(ValueError, match="cache_policy"):
        PartitionedDataset.load(out, rank=0, cache_policy="lru")
    with pytest.raises(RuntimeError, match="process group"):
        PartitionedDataset.load(out, rank=0, cache="10%")  # remote rows need the group
    from salient_pipes import salient_pipeline

    part = PartitionedDataset.load(out, rank=0)
    for bad in ({"features_on": "cpu"}, {"out_of_core": True}):
        with pytest.raises(ValueError, match="cut across ranks"):
            salient_pipeline(part, device="cpu", rank=0, world_size=2, **bad)
    with open(out / "part1" / "x.npy", "r+b") as f:
        f.truncate(200)
    PartitionedDataset.load(out, rank=0)  # another part's file is not this rank's business
    with pytest.raises(PartitionLoadError, match="part1/x.npy"):
        PartitionedDataset.load(out, rank=1)
    with pytest.raises(PartitionLoadError, match="holds no saved dataset.*partition"):
        PartitionedDataset.load(tmp_path, rank=0)


def test_cache_budget_parses_sizes_and_shares():
    assert cache_budget("25%", 40_000) == 10_000
    assert cache_budget(0, 40_000) == 0 and cache_budget(None, 40_000) == 0
    assert cache_budget("2KiB", 40_000) == 2048
    assert cache_budget("100%", 40_000) == 40_000 and cache_budget("0%", 40_000) == 0
    for bad in ("150%", "100.5%", "-1%", "x%", "-3"):
        with pytest.raises(ValueError):
            cache_budget(bad, 40_000)


def test_expected_access_takes_fanout_of_degree_neighbours():
    # 0 has neighbours 1-4 and 1 has 0 and 5; seeds {0}, one batch, fanout 2
    rowptr, col = torch.tensor([0, 4, 6, 6, 6, 6, 6]), torch.tensor([1, 2, 3, 4, 0, 5])
    p = expected_access(rowptr, col, torch.tensor([0]), [2], batch_size=1)
    assert p.tolist() == pytest.approx([1, 0.5, 0.5, 0.5, 0.5, 0])
    # a second hop samples every node found so far: 0 again (each of 1-4 missed
    # twice with 1/2: found with 3/4), and 1 (found with 1/2) takes 5
    p = expected_access(rowptr, col, torch.tensor([0]), [2, 2], batch_size=1)
    assert p.tolist() == pytest.approx([1, 0.75, 0.75, 0.75, 0.75, 0.5])
    # two seeds, a batch of one: each seed is in the batch with 1/2, and 2 is
    # also 0's neighbour (missed both ways with 1/2: found with 3/4)
    p = expected_access(rowptr, col, torch.tensor([0, 2]), [4], batch_size=1)
    assert p.tolist() == pytest.approx([0.5, 0.5, 0.75, 0.5, 0.5, 0])


def test_expected_access_with_every_neighbour_is_the_reachable_set():
    ds = _dataset()
    seeds = ds.split_idx["train"][:40]
    p = expected_access(ds.rowptr, ds.col, seeds, [-1, -1], batch_size=seeds.numel())
    sub = next(iter(NodeIndices(seeds).batch_nodes(seeds.numel())
                    .sample_neighbors(ds, [-1, -1])))
    reached = torch.zeros(ds.num_nodes, dtype=torch.bool)
    reached[sub.n_id] = True
    assert torch.allclose(p[reached], torch.ones(int(reached.sum()), dtype=torch.float64))
    assert bool((p[~reached] == 0).all())


@pytest.mark.parametrize("chunk_edges", [1, 7, 500])
def test_expected_access_is_the_same_in_chunks_of_rows(chunk_edges):
    # graphs of more than chunk_edges edges are walked a chunk of rows at a time
    ds = _dataset()
    seeds = ds.split_idx["train"][:300]
    whole = expected_access(ds.rowptr, ds.col, seeds, [5, 3], batch_size=64)
    assert ds.num_edges > 500 and bool((whole > 0).any())
    chunked = expected_access(ds.rowptr, ds.col, seeds, [5, 3], batch_size=64,
                              chunk_edges=chunk_edges)
    assert torch.allclose(chunked, whole, rtol=1e-12, atol=0)


def test_expected_access_ranks_nodes_as_sampling_finds_them():
    ds = _dataset()
    seeds = ds.split_idx["train"]
    p = expected_access(ds.rowptr, ds.col, seeds, FANOUTS, BATCH)
    counts = torch.zeros(ds.num_nodes)
    pipe = NodeIndices(seeds).shuffle_nodes(seed=0).batch_nodes(BATCH).sample_neighbors(
        ds, FANOUTS)
    batches = 0
    for epoch in range(3):
        pipe.set_epoch(epoch)
        for sub in pipe:
            counts[sub.n_id] += 1
            batches += 1
    measured = counts / batches
    # The predicted probability tracks the measured frequency closely.
    assert torch.corrcoef(torch.stack([p.float(), measured]))[0, 1] > 0.9
    assert abs(float(p.mean()) - float(measured.mean())) < 0.25 * float(measured.mean())


def test_shuffle_pad_to_repeats_seeds_from_the_start():
    pipe = NodeIndices(torch.arange(5)).shuffle_nodes(seed=3, pad_to=7)
    idx = next(iter(pipe))
    assert idx.numel() == 7 and torch.equal(idx[5:], idx[:2])
    assert sorted(idx[:5].tolist()) == list(range(5))
    assert len(pipe.batch_nodes(3)) == 3
    empty = NodeIndices(torch.empty(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty seed set"):
        next(iter(empty.shuffle_nodes(pad_to=2)))
    # unpadded, on one rank, an empty split is an empty epoch, not an error
    for pipe in (empty.shuffle_nodes(seed=1), empty.shuffle_nodes(seed=1).shard_nodes(0, 1)):
        assert list(pipe.batch_nodes(4)) == [] and len(pipe.batch_nodes(4)) == 0


def test_single_part_pipeline_equals_the_full_gather(tmp_path):
    ds = _dataset()
    part = PartitionedDataset.load(partition(ds, 1, tmp_path / "p", method="random",
                                             progress=False))
    # fanouts may name the one edge type, as for any dataset
    pipe = salient_pipeline(part, batch_size=BATCH, fanouts={EDGE_TYPE: FANOUTS}, device="cpu")
    full = salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device="cpu")
    batches = 0
    for got, want in zip(pipe, full):
        assert torch.equal(got.n_id, want.n_id)
        assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)
        batches += 1
    assert batches == len(pipe) == len(full)
    # a split given as ids or as a mask, not by name
    ids = torch.arange(0, ds.num_nodes, 7)
    mask = torch.zeros(ds.num_nodes, dtype=torch.bool)
    mask[ids] = True
    for split in (ids, mask):
        got = salient_pipeline(part, split, batch_size=BATCH, fanouts=FANOUTS, device="cpu")
        want = salient_pipeline(ds, split, batch_size=BATCH, fanouts=FANOUTS, device="cpu")
        pairs = list(zip(got, want))
        assert len(pairs) == len(want) > 1
        for a, b in pairs:
            assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x)
    with pytest.raises(ValueError, match="chosen when it is loaded"):
        salient_pipeline(part, feature_cache="1MiB")


def test_fetch_rejects_seeds_of_another_part(tmp_path):
    ds = _dataset()
    out = partition(ds, 2, tmp_path / "p", method="random", progress=False)
    part = PartitionedDataset.load(out, rank=0)
    foreign = ds.split_idx["train"][part.owner[ds.split_idx["train"]] == 1][:10]
    pipe = NodeIndices(foreign).batch_nodes(10).sample_neighbors(part, [2]).fetch_features(part)
    with pytest.raises(ValueError, match="owned by other ranks"):
        next(iter(pipe))


# ------------------------------------------------------------- gloo ranks
def _init(tmp: str, rank: int, world: int):
    return process_group("cpu", init_method=f"file://{tmp}/init", rank=rank, world_size=world)


def _data_worker(rank: int, world: int, tmp: str, budget) -> None:
    torch.set_num_threads(1)
    with _init(tmp, rank, world):
        ds = _dataset()
        part = PartitionedDataset.load(Path(tmp) / "parts", cache=budget, fanouts=FANOUTS,
                                       batch_size=BATCH, timeout=60)
        pipe = salient_pipeline(part, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                                num_threads=1)
        result = {"len": len(pipe), "rows": part.x.size(0),
                  "cached": 0 if part.cache is None else part.cache.num_cached,
                  "feature_nbytes": part.feature_nbytes, "epochs": []}
        for epoch in range(2):
            pipe.set_epoch(epoch)
            seeds, count = [], 0
            for batch in pipe:
                assert torch.equal(batch.x, ds.x[batch.n_id]), f"rank {rank} x differs"
                assert torch.equal(batch.y, ds.y[batch.n_id[: batch.batch_size]])
                seeds.append(batch.n_id[: batch.batch_size])
                count += 1
                if epoch == 0 and rank == 0 and count == 1:
                    break  # stops early: its exchange keeps serving the others
            stats, = [s for s in pipeline_stats(pipe) if "remote_bytes" in s]
            result["epochs"].append({"seeds": torch.cat(seeds).tolist(), "count": count,
                                     "stats": stats})
        model = SAGE(ds.num_features, 8, ds.num_classes, 2)
        torch.manual_seed(0)
        for p in model.parameters():
            torch.nn.init.normal_(p)
        result["acc"] = batchwise_test(model, part, (-1, -1), batch_size=BATCH,
                                       sets=("valid", "test"), progress=False)
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.parametrize("world,method,budget", [(2, "metis", None), (3, "random", "25%")])
def test_ranks_fetch_exact_rows_and_cover_the_training_split(tmp_path, world, method, budget):
    ds = _dataset()
    partition(ds, world, tmp_path / "parts", method=method, progress=False)
    assert run_ranks(_data_worker, world, str(tmp_path), budget) == [0] * world
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    train = ds.split_idx["train"]
    # Equal batch counts, the padded tail at most one batch.
    assert len({r["len"] for r in results}) == 1
    sizes = json.loads((tmp_path / "parts" / "meta.json").read_text())["split_sizes"]["train"]
    assert results[0]["len"] == -(-max(sizes) // BATCH)
    epoch = [r["epochs"][1] for r in results]
    assert all(e["count"] == results[0]["len"] for e in epoch)
    union = torch.tensor(sorted({s for e in epoch for s in e["seeds"]}))
    assert torch.equal(union, train.sort().values)
    for e in epoch:
        assert len(e["seeds"]) - len(set(e["seeds"])) < BATCH  # repeats: under one batch
    # Rank 0 stopped its first epoch after one batch; the others finished theirs.
    assert results[0]["epochs"][0]["count"] == 1
    assert all(r["epochs"][0]["count"] == r["len"] for r in results[1:])
    # Memory: about 1/W of the rows, plus the cache within its budget.
    row_bytes = ds.num_features * ds.x.element_size()
    for r in results:
        assert abs(r["rows"] - ds.num_nodes / world) < 0.05 * ds.num_nodes / world
        limit = r["rows"] * row_bytes + cache_budget(budget, ds.num_nodes * row_bytes)
        assert r["feature_nbytes"] <= limit
    stats = [e["stats"] for e in epoch]
    assert all(s["remote_rows"] > 0 and s["remote_bytes"] == s["remote_rows"] * row_bytes
               for s in stats)
    if budget is None:
        assert all(r["cached"] == 0 and s["cached_rows"] == 0 for r, s in zip(results, stats))
    else:
        assert all(r["cached"] > 0 and s["cached_rows"] > 0 for r, s in zip(results, stats))
    # Evaluation: each rank its part's nodes once; the counts all-reduced.
    model = SAGE(ds.num_features, 8, ds.num_classes, 2)
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    expected = batchwise_test(model, ds, (-1, -1), batch_size=BATCH, sets=("valid", "test"),
                              progress=False, device="cpu")
    for r in results:
        for name in ("valid", "test"):
            assert abs(r["acc"][name] - expected[name]) < 1e-9


def test_cache_cuts_the_bytes_fetched(tmp_path):
    ds = _dataset()
    partition(ds, 2, tmp_path / "parts", method="random", progress=False)
    fetched = {}
    for budget in (None, "25%"):
        assert run_ranks(_data_worker, 2, str(tmp_path), budget) == [0, 0]
        r1 = json.loads((tmp_path / "rank1.json").read_text())
        fetched[budget] = r1["epochs"][1]["stats"]["remote_bytes"]
        (tmp_path / "init").unlink(missing_ok=True)
    assert fetched["25%"] < 0.8 * fetched[None], fetched


def _dying_worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    with _init(tmp, rank, world):
        part = PartitionedDataset.load(Path(tmp) / "parts", timeout=30)
        pipe = salient_pipeline(part, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                                num_threads=1)
        started = time.monotonic()
        try:
            for i, _ in enumerate(pipe):
                if rank == world - 1 and i == 1:
                    os._exit(3)  # dies without a word
        except FetchError as exc:
            (Path(tmp) / f"rank{rank}.err").write_text(
                f"{time.monotonic() - started:.1f}\n{exc}")
            raise SystemExit(1) from None


def _given_seeds_worker(rank: int, world: int, tmp: str) -> None:
    """Seeds given as ids: ranks agree on the largest share (to pad to) and
    all refuse to train when one rank's share is empty."""
    torch.set_num_threads(1)
    with _init(tmp, rank, world):
        part = PartitionedDataset.load(Path(tmp) / "parts", timeout=30)
        of_part = [(part.owner == r).nonzero().view(-1) for r in range(world)]
        seeds = torch.cat([of_part[0][:7], of_part[1][:12]])  # the same ids on every rank
        result = {"len": len(salient_pipeline(part, seeds, batch_size=4, fanouts=FANOUTS,
                                              device="cpu", num_threads=1))}
        lonely = of_part[0][:5]  # rank 1 owns none of these
        try:
            salient_pipeline(part, lonely, batch_size=4, fanouts=FANOUTS, device="cpu")
        except ValueError as exc:
            result["error"] = str(exc)
        (Path(tmp) / f"rank{rank}.json").write_text(json.dumps(result))


def test_ranks_given_seed_ids_pad_to_the_largest_share_or_all_refuse(tmp_path):
    partition(_dataset(), 2, tmp_path / "parts", method="random", progress=False)
    assert run_ranks(_given_seeds_worker, 2, str(tmp_path), timeout=120) == [0, 0]
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["len"] == 3  # both pad to rank 1's 12 seeds: 3 batches of 4
        assert "holds none of the split's nodes" in result["error"]


def test_a_rank_that_dies_ends_the_others_with_a_clear_error(tmp_path):
    partition(_dataset(), 3, tmp_path / "parts", method="random", progress=False)
    codes = run_ranks(_dying_worker, 3, str(tmp_path), timeout=120)
    assert codes == [1, 1, 3], codes
    for rank in (0, 1):
        seconds, message = (tmp_path / f"rank{rank}.err").read_text().split("\n", 1)
        assert "feature fetch on rank" in message and "died" in message
        # the exchange that failed: the dying rank had been served its first batch
        assert int(re.search(r"at exchange (\d+)", message).group(1)) >= 1, message
        assert float(seconds) < 60  # the group's timeout bounds it; no hang


def _missing_part_worker(rank: int, world: int, tmp: str) -> None:
    with _init(tmp, rank, world):
        try:
            PartitionedDataset.load(Path(tmp) / "parts", timeout=30)
        except PartitionLoadError as exc:
            (Path(tmp) / f"rank{rank}.err").write_text(str(exc))
            raise SystemExit(1) from None


def _own_copy_worker(rank: int, world: int, tmp: str) -> None:
    """Each rank opens its own directory, ``copy<rank>``."""
    with _init(tmp, rank, world):
        try:
            part = PartitionedDataset.load(Path(tmp) / f"copy{rank}", timeout=30)
        except PartitionLoadError as exc:
            (Path(tmp) / f"rank{rank}.err").write_text(str(exc))
            raise SystemExit(1) from None
        assert part.fetch_group is not None


def test_ranks_that_open_different_partitionings_all_fail_saying_so(tmp_path):
    import shutil

    ds = _dataset()
    partition(ds, 2, tmp_path / "copy0", method="random", progress=False)
    # A copy of the same output (another machine's, say) is the same partitioning...
    shutil.copytree(tmp_path / "copy0", tmp_path / "copy1")
    assert run_ranks(_own_copy_worker, 2, str(tmp_path), timeout=120) == [0, 0]
    # ...one partitioned again (another seed) is not: its rows are numbered otherwise.
    shutil.rmtree(tmp_path / "copy1")
    (tmp_path / "init").unlink(missing_ok=True)
    partition(ds, 2, tmp_path / "copy1", method="random", seed=1, progress=False)
    assert run_ranks(_own_copy_worker, 2, str(tmp_path), timeout=120) == [1, 1]
    for rank in range(2):
        message = (tmp_path / f"rank{rank}.err").read_text()
        assert "different partitionings" in message and "ranks 0;" in message, message
        assert f"copy{rank}" in message


def test_a_missing_part_file_fails_every_rank_with_its_name(tmp_path):
    partition(_dataset(), 2, tmp_path / "parts", method="random", progress=False)
    (tmp_path / "parts" / "part1" / "y.npy").unlink()
    assert run_ranks(_missing_part_worker, 2, str(tmp_path), timeout=120) == [1, 1]
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.err").read_text()
        assert "rank 1" in message and "part1/y.npy" in message and "rank 0:" not in message


def test_cli_trains_a_partitioned_dataset_under_torchrun(tmp_path):
    """docs/distributed.md's commands, as written: partition, then two gloo
    ranks train on their parts, fetching the other part's rows."""
    proc = run_shell(doc_block("docs/distributed.md", "--partitioned parts"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(random, " in proc.stdout  # the method the command names
    assert "part 0/2" in proc.stdout and "remote rows" in proc.stdout
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["processes"] == 2 and summary["test_acc"] > 2 * summary["chance"]
    assert 0 < summary["history"][-1]["fetch"]["remote_share"] < 1


@pytest.mark.parametrize("depth", [1, 3])
def test_fetch_runs_at_most_depth_batches_ahead(tmp_path, depth):
    ds = _dataset()
    part = PartitionedDataset.load(partition(ds, 1, tmp_path / "p", method="random",
                                             progress=False))
    pipe = (NodeIndices(part.split_idx["train"]).batch_nodes(50)
            .sample_neighbors(part, [3]).fetch_features(part, depth=depth))
    assert len(pipe) > depth + 3
    items = iter(pipe)
    next(items)
    deadline = time.monotonic() + 10
    while pipe.fetch_stats.batches < depth + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # room to overrun the bound, if it did not hold
    # One batch handed out, ``depth`` queued, one waiting to be queued.
    assert pipe.fetch_stats.batches == depth + 2
    assert sum(1 for _ in items) == len(pipe) - 1
    assert pipe.fetch_stats.batches == len(pipe)


def test_a_stopped_fetch_samples_no_further_batches(tmp_path):
    ds = _dataset()
    part = PartitionedDataset.load(partition(ds, 1, tmp_path / "p", method="random",
                                             progress=False))
    pipe = (NodeIndices(part.split_idx["train"]).batch_nodes(50)
            .sample_neighbors(part, [3]).fetch_features(part, depth=1))
    assert len(pipe) > 6
    items = iter(pipe)
    next(items)
    items.close()  # the consumer stops: the worker ends its exchanges
    pipe._worker.join(timeout=30)
    assert not pipe._worker.is_alive()
    # the batch handed out, one queued, one waiting to be queued; no more
    assert pipe.fetch_stats.batches <= 3


def test_every_rank_pads_its_seeds_to_the_largest_parts_training_split(tmp_path):
    ds = _dataset()
    train = torch.zeros(ds.num_nodes, dtype=torch.bool)
    train[ds.split_idx["train"]] = True
    owner = torch.zeros(ds.num_nodes, dtype=torch.int32)
    train_ids = train.nonzero().view(-1)
    owner[train_ids[: 3 * BATCH + 5]] = 1  # part 1: 3 batches and a bit; part 0: the rest
    owner[~train & (torch.arange(ds.num_nodes) % 2 == 1)] = 1
    write_parts(ds, owner, tmp_path / "p", num_parts=2, progress=False)
    sizes = [int((owner[train_ids] == r).sum()) for r in range(2)]
    assert sizes[0] > 2 * sizes[1]
    for rank in range(2):
        part = PartitionedDataset.load(tmp_path / "p", rank=rank)
        assert part.max_split_size("train") == max(sizes)
        pipe = salient_pipeline(part, batch_size=BATCH, fanouts=FANOUTS, device="cpu")
        assert len(pipe) == -(-max(sizes) // BATCH)


def test_partitioned_pipeline_resumes_mid_epoch_exactly(tmp_path):
    ds = _dataset()
    part = PartitionedDataset.load(partition(ds, 1, tmp_path / "p", method="random",
                                             progress=False))

    def pipe():
        return salient_pipeline(part, batch_size=BATCH, fanouts=FANOUTS, device="cpu", seed=4)

    whole = pipe()
    whole.set_epoch(1)
    expected = [(b.n_id, b.x) for b in whole]
    first = pipe()
    first.set_epoch(1)
    items = iter(first)
    for _ in range(3):
        next(items)
    state = first.state_dict()
    assert state == {"epoch": 1, "batches_done": 3}
    resumed = pipe()
    resumed.load_state_dict(state)
    rest = [(b.n_id, b.x) for b in resumed]
    assert len(rest) == len(expected) - 3
    for (n_a, x_a), (n_b, x_b) in zip(rest, expected[3:]):
        assert torch.equal(n_a, n_b) and torch.equal(x_a, x_b)
