"""Exact mid-epoch resume, torchdata.nodes integration and CLI checkpoints."""

from __future__ import annotations

import gc

import pytest
import torch
from torchdata.nodes import IterableWrapper, Loader, PinMemory, Prefetcher

from salient_pipes import salient_pipeline
from salient_pipes.adapters.torchdata import PipeNode, SeedsFromNode
from salient_pipes.cli import CHECKPOINT_FILE, main
from salient_pipes.pipes import NodeIndices, pipeline_stats
from tests.conftest import pairs


def _pipe(ds):
    return salient_pipeline(ds, batch_size=300, fanouts=(5, 3), device="cpu", seed=11)


def _same(a, b) -> None:
    assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert len(a.adjs) == len(b.adjs)
    for p, q in pairs(a.adjs, b.adjs):
        assert torch.equal(p.edge_index, q.edge_index) and p.size == q.size


def _epoch(ds, epoch):
    pipe = _pipe(ds)
    pipe.set_epoch(epoch)
    return list(pipe)


@pytest.mark.parametrize("k", ["0", "1", "len-1"])
def test_resume_mid_epoch_is_exact(small_dataset, k):
    full = _epoch(small_dataset, 2)
    k = {"0": 0, "1": 1, "len-1": len(full) - 1}[k]
    pipe = _pipe(small_dataset)
    pipe.set_epoch(2)
    it = iter(pipe)
    for _ in range(k):
        next(it)
    state = pipe.state_dict()
    assert state == {"epoch": 2, "batches_done": k}
    del it, pipe
    fresh = _pipe(small_dataset)
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert len(rest) == len(full) - k
    for a, b in pairs(rest, full[k:]):
        _same(a, b)
    # after the resumed epoch, iteration goes on with the next one
    following = list(fresh)
    for a, b in pairs(following, _epoch(small_dataset, 3)):
        _same(a, b)


def test_resume_of_a_resumed_pipe_is_exact(small_dataset):
    full = _epoch(small_dataset, 1)
    assert len(full) >= 6
    first = _pipe(small_dataset)
    first.set_epoch(1)
    it = iter(first)
    got = [next(it) for _ in range(2)]
    state = first.state_dict()
    for stop in (4, None):  # interrupted again after two more batches, then run out
        resumed = _pipe(small_dataset)
        resumed.load_state_dict(state)
        it = iter(resumed)
        while stop is None or len(got) < stop:
            try:
                got.append(next(it))
            except StopIteration:
                break
        state = resumed.state_dict()
        assert state == {"epoch": 1, "batches_done": len(got)}
    for a, b in pairs(got, full):
        _same(a, b)


def test_state_dict_rejects_nonsense(small_dataset):
    with pytest.raises(ValueError, match="batches_done"):
        _pipe(small_dataset).load_state_dict({"epoch": 0, "batches_done": -1})
    with pytest.raises(ValueError, match="epoch"):
        _pipe(small_dataset).load_state_dict({"epoch": -2, "batches_done": 0})
    pipe = _pipe(small_dataset)
    cases = [({"step": 3}, r"a dict with 'epoch' and 'batches_done'; got \['step'\]"),
             (None, "got NoneType"),
             ({"epoch": "1", "batches_done": 0}, r"epoch must be an int, got '1' \(str\)"),
             ({"epoch": 1, "batches_done": 2.0}, "batches_done must be an int"),
             ({"epoch": 1, "batches_done": len(pipe) + 1},
              rf"batches_done={len(pipe) + 1} is past the {len(pipe)} batches")]
    for state, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe.load_state_dict(state)
    with pytest.raises(ValueError, match=r"epoch must be an int, got 1.5 \(float\)"):
        pipe.set_epoch(1.5)
    # A state at an epoch's end (as state_dict() reads after the last batch):
    # nothing is left of that epoch, and the next iteration is the epoch after.
    pipe.load_state_dict({"epoch": 1, "batches_done": len(pipe)})
    assert list(pipe) == []
    after, expected = list(pipe), _epoch(small_dataset, 2)
    assert len(after) == len(expected)
    _same(after[0], expected[0])


def test_pipe_under_torchdata_loader_with_prefetcher(small_dataset):
    direct = [_epoch(small_dataset, e) for e in (0, 1)]
    node = Prefetcher(PipeNode(_pipe(small_dataset)), prefetch_factor=3)
    if torch.cuda.is_available():
        node = PinMemory(node)
    loader = Loader(node)
    for expected in direct:  # each pass over the Loader is the next epoch
        got = list(loader)
        assert len(got) == len(expected)
        for a, b in pairs(got, expected):
            _same(a, b)


@pytest.mark.parametrize("k", [0, 1, 4])
def test_loader_state_round_trips(small_dataset, k):
    expected = _epoch(small_dataset, 0)
    loader = Loader(Prefetcher(PipeNode(_pipe(small_dataset)), prefetch_factor=2))
    it = iter(loader)
    for _ in range(k):
        next(it)
    state = loader.state_dict()
    del it, loader
    gc.collect()  # torchdata's nodes hold a cycle: free them here, not on their thread
    fresh = Loader(Prefetcher(PipeNode(_pipe(small_dataset)), prefetch_factor=2))
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert len(rest) == len(expected) - k
    for a, b in pairs(rest, expected[k:]):
        _same(a, b)


def test_a_node_reset_mid_epoch_closes_the_epoch_it_leaves(small_dataset):
    from salient_pipes.pipes import SampleNeighbors, upstream

    pipe = _pipe(small_dataset)
    sampler = next(s for s in upstream(pipe) if isinstance(s, SampleNeighbors))
    node = PipeNode(pipe)
    node.reset()
    node.next()
    assert sampler._busy is not None  # epoch 0 holds the session, batches in flight
    node.reset()  # leaves epoch 0 for epoch 1
    assert sampler._busy is None
    got = []
    with pytest.raises(StopIteration):
        while True:
            got.append(node.next())
    expected = _epoch(small_dataset, 1)
    assert len(got) == len(expected)
    for a, b in pairs(got, expected):
        _same(a, b)


def test_node_seeds_feed_our_stages(small_dataset):
    ds = small_dataset
    chunks = list(torch.split(ds.split_idx["valid"], 128))
    pipe = SeedsFromNode(IterableWrapper(chunks)).sample_neighbors(ds, [4])
    pipe = pipe.slice_features(ds.x, ds.y)
    reference = NodeIndices(ds.split_idx["valid"]).batch_nodes(128).sample_neighbors(ds, [4])
    reference = reference.slice_features(ds.x, ds.y)
    for _ in range(2):  # the node is reset for every epoch
        got, want = list(pipe), list(reference)
        assert len(got) == len(chunks)
        for a, b in pairs(got, want):
            _same(a, b)
    with pytest.raises(TypeError, match="wraps a salient_pipes pipe"):
        PipeNode(IterableWrapper([]))
    # the chain's epoch and state reach through every stage to the node (a
    # source without a length: walking the chain never asks for one)
    pipe.set_epoch(0)
    it = iter(pipe)
    head = [next(it) for _ in range(2)]
    state = pipe.state_dict()
    rest = list(it)
    again = SeedsFromNode(IterableWrapper(chunks)).sample_neighbors(ds, [4])
    again = again.slice_features(ds.x, ds.y)
    again.load_state_dict(state)
    resumed = list(again)
    assert len(head) + len(resumed) == len(chunks) and len(resumed) == len(rest)
    for a, b in pairs(resumed, rest):
        _same(a, b)
    assert [row["stage"] for row in pipeline_stats(again)] == [
        "SeedsFromNode", "SampleNeighbors", "SliceFeatures"]
    # printed: the node around the chain, the user's node at its source
    assert repr(PipeNode(pipe)) == (
        "PipeNode(SeedsFromNode(IterableWrapper) -> SampleNeighbors(fanouts=[4], "
        f"node_wise=False, num_threads={pipe.source.num_threads}) -> SliceFeatures)")


ARGS = ["train", "--num-nodes", "3000", "--epochs", "3", "--hidden", "32", "--batch-size", "256",
        "--fanouts", "5,5", "--checkpoint-every", "2", "--no-progress"]


def _final_model(directory):
    return torch.load(directory / CHECKPOINT_FILE, weights_only=True)["model"]


def test_killed_training_resumes_to_the_same_parameters(tmp_path, monkeypatch, capsys):
    assert main([*ARGS, "--checkpoint", str(tmp_path / "straight")]) == 0
    straight = _final_model(tmp_path / "straight")

    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 12:  # mid-epoch 1 (7 batches per epoch), after a checkpoint at 10
            raise KeyboardInterrupt("killed")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", dying_step)
    assert main([*ARGS, "--checkpoint", str(tmp_path / "resumed")]) == 130  # one line, no trace
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    capsys.readouterr()
    assert main([*ARGS, "--checkpoint", str(tmp_path / "resumed")]) == 0
    assert "resuming from" in capsys.readouterr().out
    resumed = _final_model(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_checkpoint_from_another_run_is_refused(tmp_path):
    assert main([*ARGS[:4], "1", *ARGS[5:], "--checkpoint", str(tmp_path)]) == 0
    with pytest.raises(SystemExit, match="different run"):
        main([*ARGS, "--seed", "5", "--checkpoint", str(tmp_path)])


def test_resume_of_a_pipe_fed_by_index_batches_skips_the_delivered_batches(small_dataset):
    from torch.utils.data import BatchSampler, SequentialSampler

    from salient_pipes.pipes import IndexBatches

    train = small_dataset.split_idx["train"]
    batches = BatchSampler(SequentialSampler(range(train.numel())), 64, False)

    def pipe():
        return IndexBatches(batches).seed_nodes(train).sample_neighbors(
            small_dataset, [3], node_wise=True, num_threads=1)

    full = [b.n_id["_N"][:b.batch_size].tolist() for b in pipe()]
    first = pipe()
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    resumed = pipe()
    resumed.load_state_dict(state)
    rest = [b.n_id["_N"][:b.batch_size].tolist() for b in resumed]
    assert rest == full[3:] and len(full) > 4
