"""Out-of-core features read a window ahead: rows read from the feature file
ahead (FeatureFile, RowSet, LookAhead, salient_pipeline(out_of_core=...)),
on small files forced into the out-of-core mode."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from salient_pipes import FastDataset, HeteroDataset, _native, pipeline_stats, salient_pipeline
from salient_pipes.batch import NODE_TYPE
from salient_pipes.data.feature_file import FeatureFile, FeatureFileError
from salient_pipes.pipes import NodeIndices
from salient_pipes.pipes.lookahead import LookAhead
from salient_pipes.pipes.slice import SliceFeatures
from tests.conftest import take_then_resume


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ooc") / "ds"
    FastDataset.synthetic(num_nodes=3000, avg_degree=6, num_features=24, num_classes=5,
                          seed=3).save(path, progress=False)
    return path


def table(tmp_path: Path, rows: int = 5000, width: int = 37) -> tuple:
    x = np.random.default_rng(0).standard_normal((rows, width)).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy", x


def slice_stage(pipe):
    while not isinstance(pipe, SliceFeatures):
        pipe = pipe.source
    return pipe


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(p, q) for p, q in zip(a, b))
    if hasattr(a, "__dataclass_fields__"):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b


# ------------------------------------------------------------- the file
@pytest.mark.parametrize("direct", [True, False])
def test_rows_read_from_the_file_equal_the_table(tmp_path, direct):
    path, x = table(tmp_path)
    f = FeatureFile(path, direct=direct, num_threads=4)
    if not direct:
        assert not f.direct
    else:  # the default: past the page cache wherever the file system allows it
        assert FeatureFile(path).direct == f.direct
    ids = torch.from_numpy(np.unique(np.random.default_rng(1).integers(0, 5000, 900)))
    staged = f.read(ids)
    assert torch.equal(staged.rows, torch.from_numpy(x[ids.numpy()]))
    assert torch.equal(staged.ids, ids)
    assert f.totals["rows_read"] == ids.numel() and f.totals["bytes"] >= ids.numel() * 74


def test_nearby_rows_share_a_read_and_far_ones_do_not(tmp_path):
    path, x = table(tmp_path, rows=20000, width=64)  # 128-byte rows, 32 per 4 KiB page
    f = FeatureFile(path)
    spread = np.arange(0, 20000, 1000, dtype=np.int64)  # 128 KB apart
    out = np.empty((spread.size, 64), np.float16)
    apart = f.native.read(spread, out.view(np.uint8), max_gap=0, max_read=1 << 22)
    assert apart["reads"] == spread.size and (out == x[spread]).all()
    swept = f.native.read(spread, out.view(np.uint8), max_gap=1 << 30, max_read=1 << 30)
    assert swept["reads"] == 1 and (out == x[spread]).all()
    # capped reads split a sweep, never a row
    pieces = f.native.read(spread, out.view(np.uint8), max_gap=1 << 30, max_read=1 << 18)
    assert 1 < pieces["reads"] <= spread.size and (out == x[spread]).all()


@pytest.mark.parametrize("width, dtype", [(1, np.uint8), (37, np.float16), (2500, np.float16),
                                          (3, np.int64)])
def test_random_windows_of_any_row_size_read_exactly(tmp_path, width, dtype):
    # rows of 1 byte, rows that straddle pages, rows larger than a page
    rng = np.random.default_rng(width)
    rows = 3000
    x = rng.integers(0, 100, (rows, width)).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    f = _native.FeatureFile(str(tmp_path / "x.npy"), 128, rows, width * x.itemsize, True)
    for trial in range(6):
        ids = np.unique(rng.integers(0, rows, rng.integers(1, 400)))
        out = np.empty((ids.size, width), dtype)
        stats = f.read(ids, out.view(np.uint8), num_threads=int(rng.integers(1, 9)),
                       max_gap=int(rng.choice([0, 4096, 1 << 20])),
                       max_read=int(rng.choice([1, 8192, 1 << 16, 1 << 22])))
        assert (out == x[ids]).all(), trial
        assert stats["rows_read"] == ids.size and stats["reads"] >= 1


def test_rows_of_the_previous_window_are_copied_not_read(tmp_path):
    path, x = table(tmp_path)
    f = FeatureFile(path)
    first = f.read(torch.arange(0, 5000, 3))
    second = f.read(torch.arange(0, 5000, 2), previous=first)
    assert torch.equal(second.rows, torch.from_numpy(x[0:5000:2]))
    both = len(range(0, 5000, 6))
    assert f.totals["rows_copied"] == both
    assert f.totals["rows_read"] == len(range(0, 5000, 3)) + len(range(0, 5000, 2)) - both


def test_bad_reads_are_refused(tmp_path):
    path, _ = table(tmp_path, rows=100, width=4)
    f = FeatureFile(path)
    with pytest.raises(ValueError, match="ascend strictly"):
        f.read(torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="ascend strictly"):
        f.read(torch.tensor([5, 5]))
    with pytest.raises(ValueError, match=r"within \[0, 100\)"):
        f.read(torch.tensor([1, 100]))
    with pytest.raises(ValueError, match="out must be"):
        f.native.read(np.arange(3, dtype=np.int64), np.empty(5, np.uint8))
    with pytest.raises(ValueError, match="prev_slot"):
        f.native.read(np.arange(3, dtype=np.int64), np.empty(24, np.uint8),
                      np.zeros(7, np.int32), np.empty(8, np.uint8))
    with pytest.raises(ValueError, match="prev_slot\\[0\\] = 5"):
        f.native.read(np.arange(3, dtype=np.int64), np.empty(24, np.uint8),
                      np.full(100, 5, np.int32), np.empty(8, np.uint8))
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="3-D"):
        FeatureFile(tmp_path / "cube.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.zeros((4, 3), np.float32)))
    with pytest.raises(ValueError, match="Fortran"):
        FeatureFile(tmp_path / "f.npy")


def test_a_truncated_file_is_named_when_opened_and_when_read(tmp_path):
    path, _ = table(tmp_path, rows=1000, width=8)
    f = FeatureFile(path)
    os.truncate(path, os.path.getsize(path) - 4096)
    with pytest.raises(FeatureFileError, match=f"{path}.*truncated"):
        FeatureFile(path)
    with pytest.raises(OSError, match=f"{path}.*truncated"):
        f.read(torch.tensor([0, 999]))
    with pytest.raises(FeatureFileError, match="cannot be opened"):
        FeatureFile.__new__(FeatureFile)  # (the class itself stays usable)
        _native.FeatureFile(str(tmp_path / "missing.npy"), 128, 1, 8, True)


def test_a_failed_read_and_bad_layouts_are_named(tmp_path):
    f = _native.FeatureFile(str(tmp_path), 0, 2, 8, True)  # a directory: reads fail
    with pytest.raises(FeatureFileError, match=f"{tmp_path}: read of bytes 0..4096 failed"):
        f.read(np.array([1], dtype=np.int64), np.empty(8, np.uint8))
    with pytest.raises(ValueError, match="at most 2\\*\\*63 bytes"):
        _native.FeatureFile(str(tmp_path), 128, 2**62, 8, True)
    with pytest.raises(ValueError, match="row bytes positive"):
        _native.FeatureFile(str(tmp_path), 0, 1, 0, True)


def test_row_set_counts_new_rows_and_hands_them_sorted():
    s = _native.RowSet(200)
    assert s.add(np.array([7, 150, 7, 3], dtype=np.int64)) == 3
    assert s.add(np.array([150, 64, 63], dtype=np.int64)) == 2 and s.count == 5
    assert s.take().tolist() == [3, 7, 63, 64, 150]
    assert s.count == 0 and s.take().tolist() == []
    with pytest.raises(ValueError, match="outside"):
        s.add(np.array([200], dtype=np.int64))


def test_measured_disk_rates_are_reported(tmp_path):
    path, _ = table(tmp_path)
    f = FeatureFile(path)
    rates = f.measure(seconds=0.05)
    assert rates.sequential_bytes_s > 0 and rates.random_reads_s > 0
    assert f.disk_rates is rates and "GB/s" in str(rates)


# ------------------------------------------------------------- the pipe
def test_lookahead_batches_equal_the_in_memory_gather_over_epochs(saved):
    ds = FastDataset.load(saved)
    ref = salient_pipeline(ds, batch_size=64, fanouts=(5, 3), device="cpu", num_threads=2,
                           out_of_core=False)
    ooc = salient_pipeline(ds, batch_size=64, fanouts=(5, 3), device="cpu", num_threads=2,
                           out_of_core=True, feature_cache="300KiB")
    ahead = slice_stage(ooc).lookahead
    assert isinstance(ahead, LookAhead) and slice_stage(ref).lookahead is None
    for _ in range(2):
        a, b = list(ooc), list(ref)
        assert len(a) == len(b) == len(ooc) and all(same(p, q) for p, q in zip(a, b))
    stats = pipeline_stats(ooc)[-2]  # the slice stage, before prefetch
    assert stats["windows"] > 2 and stats["bytes_read"] > 0
    assert stats["rows_read"] + stats["rows_copied"] >= ahead.rows_delivered / 10


@pytest.mark.parametrize("alive", [1, 2])
def test_windows_alive_bound_memory_and_two_copy_shared_rows(saved, alive, monkeypatch):
    import weakref

    ds = FastDataset.load(saved)
    f = FeatureFile(saved / "x.npy")
    made, dead_at_read = [], []
    real = FeatureFile.read

    memory = []

    def read(self, ids, previous=None, into=None):
        # windows made before the last `alive` ones must be gone by now
        dead_at_read.append([ref() is None for ref in made[:max(0, len(made) - alive + 1)]])
        staged = real(self, ids, previous, into)
        assert staged.rows.untyped_storage().data_ptr() == into.data_ptr()
        memory.append(into.data_ptr())
        made.append(weakref.ref(staged))
        return staged

    monkeypatch.setattr(FeatureFile, "read", read)
    ahead = LookAhead(f, "60KiB", windows=alive)
    pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(40)
            .sample_neighbors(ds, [4, 4], num_threads=2)
            .slice_features(ds.x, ds.y, lookahead=ahead))
    ref = (NodeIndices(ds.split_idx["train"]).batch_nodes(40)
           .sample_neighbors(ds, [4, 4], num_threads=2).slice_features(ds.x, ds.y))
    assert all(same(p, q) for p, q in zip(pipe, ref)) and len(list(ref)) == len(pipe)
    assert ahead.windows > 3 and all(all(d) for d in dead_at_read)
    # batches of one window more than those whose rows are held: the next one
    assert ahead.most_held == alive + 1
    # a released window's memory serves a later one (not faulted in again)
    assert len(set(memory)) < len(memory)
    stats = ahead.stats()
    if alive == 2:  # rows the next window needs again are copied, not read again
        assert stats["rows_copied"] > 0 and 0 < stats["rows_read_per_row_delivered"] < 1
    else:
        assert stats["rows_copied"] == 0


def test_windows_alive_follows_the_density_of_a_window():
    from salient_pipes.pipes.lookahead import windows_alive

    class F:
        num_rows, row_bytes = 1_000_000, 64  # 64 rows per page

    table = 64_000_000
    assert windows_alive(table // 200, {"t": F()}) == 2  # 0.25 % of rows: 15 % of pages
    assert windows_alive(table // 20, {"t": F()}) == 1  # 2.5 % of rows: 80 % of pages
    with pytest.raises(ValueError, match="windows must be 1 or 2"):
        LookAhead(FeatureFile.__new__(FeatureFile), "1MiB", windows=3)


def test_a_released_windows_memory_is_reused_when_it_holds_the_next(saved):
    f = FeatureFile(saved / "x.npy")
    ahead = LookAhead(f, "1MiB", windows=1)
    need = 100 * f.row_bytes
    fresh = ahead._spare_for(NODE_TYPE, 100, None)
    assert fresh.numel() == need + need // 20  # new memory: 5 % to spare
    exact = torch.empty(need, dtype=torch.uint8)
    ahead._spare[NODE_TYPE] = exact
    assert ahead._spare_for(NODE_TYPE, 100, None).data_ptr() == exact.data_ptr()  # just fits
    assert NODE_TYPE not in ahead._spare  # handed out once
    ahead._spare[NODE_TYPE] = exact
    assert ahead._spare_for(NODE_TYPE, 101, None).data_ptr() != exact.data_ptr()  # a row short
    # never the previous window's memory, which the read copies rows from
    ahead._spare[NODE_TYPE] = exact
    previous = SimpleNamespace(rows=exact.view(torch.float32))
    assert ahead._spare_for(NODE_TYPE, 100, previous).data_ptr() != exact.data_ptr()


def test_window_sizes_follow_the_budget_and_the_batch_cap(saved):
    ds = FastDataset.load(saved)

    def windows(budget, cap):
        ahead = LookAhead(FeatureFile(saved / "x.npy"), budget, max_batches=cap, windows=1)
        pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(50)
                .sample_neighbors(ds, [4, 4], num_threads=2)
                .slice_features(ds.x, ds.y, lookahead=ahead))
        batches = list(pipe)
        return len(batches), ahead.windows

    n, w = windows(1, 4096)  # every batch overflows it: a window each
    assert w == n
    slots = 4 * ds.num_nodes
    n, w = windows(slots, 4096)  # the slot map alone fills it
    assert w == n
    n, w = windows(slots + ds.x.numel() * 2 + (8 << 20), 4096)  # every row and array fit
    assert w == 1
    n, w = windows("1GiB", 3)  # the cap decides
    assert w == -(-n // 3)
    n, w = windows("1GiB", 4096)  # one window holds the epoch
    assert w == 1


def test_resume_and_resume_of_a_resumed_pipe(saved):
    ds = FastDataset.load(saved)

    def pipe():
        return salient_pipeline(ds, batch_size=40, fanouts=(4, 4), device="cpu",
                                num_threads=2, out_of_core=True, feature_cache="200KiB",
                                overlap_epochs=False)

    whole = list(pipe())
    _, second = take_then_resume(pipe, pipe(), 5)
    part, third = take_then_resume(pipe, second, 4)  # a resumed pipe, resumed
    rest = list(third)
    assert all(same(p, q) for p, q in zip(part + rest, whole[5:]))
    assert len(part) + len(rest) == len(whole) - 5


def test_temporal_and_heterogeneous_batches_read_ahead_too(tmp_path):
    g = torch.Generator().manual_seed(0)
    n = 800
    ei = torch.randint(0, n, (2, 6000), generator=g)
    ds = FastDataset.from_edges(tmp_path / "t", ei, n, x=torch.randn(n, 8),
                                y=torch.randint(0, 3, (n,), generator=g),
                                split_idx={"train": torch.arange(300)},
                                edge_time=torch.randint(0, 50, (6000,), generator=g),
                                node_time=torch.randint(0, 50, (n,), generator=g),
                                progress=False)
    ds = FastDataset.load(tmp_path / "t")
    kw = dict(batch_size=32, fanouts=(4, 4), device="cpu", num_threads=2, temporal="last")
    a = list(salient_pipeline(ds, out_of_core=True, feature_cache="40KiB", **kw))
    b = list(salient_pipeline(ds, out_of_core=False, **kw))
    assert len(a) == len(b) > 3 and all(same(p, q) for p, q in zip(a, b))

    mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    mag.save(tmp_path / "mag", progress=False)
    mag = HeteroDataset.load(tmp_path / "mag")
    assert set(mag.x_files) == {t for t, x in mag.x.items() if x.size(1)}
    kw = dict(batch_size=64, fanouts=[3, 2], device="cpu", num_threads=2)
    ooc = salient_pipeline(mag, out_of_core=True, feature_cache="200KiB", **kw)
    a, b = list(ooc), list(salient_pipeline(mag, out_of_core=False, **kw))
    assert len(a) == len(b) > 1 and all(same(p, q) for p, q in zip(a, b))
    assert slice_stage(ooc).lookahead.windows > 1


def test_a_file_cut_short_mid_epoch_raises_naming_it_and_stops_the_threads(tmp_path, saved):
    import shutil

    copy = tmp_path / "cut"
    shutil.copytree(saved, copy)
    ds = FastDataset.load(copy)
    before = threading.active_count()
    pipe = salient_pipeline(ds, batch_size=64, fanouts=(4, 4), device="cpu", num_threads=2,
                            out_of_core=True, feature_cache="100KiB")
    it = iter(pipe)
    next(it)
    os.truncate(copy / "x.npy", 4096)
    with pytest.raises(FeatureFileError, match=f"{copy / 'x.npy'}"):
        for _ in it:
            pass
    del it
    for _ in range(100):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.02)
    assert threading.active_count() <= before, [t.name for t in threading.enumerate()]


def test_an_epoch_left_early_starts_cleanly_again(saved):
    ds = FastDataset.load(saved)
    pipe = salient_pipeline(ds, batch_size=64, fanouts=(4, 4), device="cpu", num_threads=2,
                            out_of_core=True, feature_cache="100KiB", shuffle=False)
    first = next(iter(pipe))
    again = next(iter(pipe))
    assert torch.equal(first.x, ds.x[first.n_id]) and torch.equal(again.x, ds.x[again.n_id])


def test_out_of_core_is_chosen_when_the_features_exceed_memory(saved, monkeypatch):
    import salient_pipes.pipeline as pipeline

    ds = FastDataset.load(saved)
    assert slice_stage(salient_pipeline(ds, device="cpu")).lookahead is None
    monkeypatch.setattr(pipeline, "physical_memory", lambda: 2 * ds.x.numel())
    chosen = slice_stage(salient_pipeline(ds, device="cpu")).lookahead
    assert chosen is not None and chosen.budget == 2 * ds.x.numel() // 3
    assert slice_stage(salient_pipeline(ds, device="cpu", feature_cache="10%")
                       ).lookahead.budget == int(0.1 * ds.x.numel() * 2)
    with pytest.raises(ValueError, match="FastDataset.load"):
        salient_pipeline(FastDataset.synthetic(num_nodes=100), device="cpu", out_of_core=True)


def test_lookahead_arguments_are_checked(saved, tmp_path):
    ds = FastDataset.load(saved)
    sampled = NodeIndices(ds.split_idx["train"]).batch_nodes(8).sample_neighbors(ds, [2])
    with pytest.raises(ValueError, match="LookAhead"):
        sampled.slice_features(ds.x, lookahead="yes")
    with pytest.raises(ValueError, match="FeatureFile"):
        LookAhead({"_N": saved / "x.npy"}, "1MiB")
    path, _ = table(tmp_path, rows=ds.num_nodes, width=3)
    with pytest.raises(ValueError, match="holds 3000 rows of 6 bytes"):
        sampled.slice_features(ds.x, lookahead=LookAhead(FeatureFile(path), "1MiB"))
    ahead = LookAhead(FeatureFile(saved / "x.npy"), "1MiB")
    with pytest.raises(ValueError, match="no cache"):
        from salient_pipes import FeatureCache
        sampled.slice_features(ds.x, cache=FeatureCache(ds.x, "1KiB"), lookahead=ahead)
    with pytest.raises(ValueError, match="not a built FeatureCache"):
        from salient_pipes import FeatureCache
        salient_pipeline(ds, device="cpu", out_of_core=True,
                         feature_cache=FeatureCache(ds.x, "1KiB"))


def test_the_cli_reads_ahead_and_reports_the_reads(saved, tmp_path, monkeypatch, capsys):
    import json

    import salient_pipes.cli.train as cli_train
    from salient_pipes.cli import main

    monkeypatch.setattr(cli_train, "load_dataset", lambda *a, **k: FastDataset.load(saved))
    out = tmp_path / "summary.json"
    base = ["train", "--dataset", "synthetic", "--epochs", "1", "--fanouts", "4,3",
            "--hidden", "8", "--batch-size", "128", "--no-progress", "--device", "cpu",
            "--out", str(out)]
    main(base + ["--out-of-core", "on", "--feature-cache", "200KiB"])
    row = json.loads(out.read_text())["history"][0]
    assert row["read_ahead"]["bytes_read"] > 0 and row["read_ahead"]["windows"] > 1
    assert "GiB in" in capsys.readouterr().out
    main(base + ["--out-of-core", "off"])
    assert "read_ahead" not in json.loads(out.read_text())["history"][0]
    monkeypatch.undo()
    with pytest.raises(ValueError, match="FastDataset.load"):
        main(base + ["--out-of-core", "on"])
