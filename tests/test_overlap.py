"""overlap_epochs: the next epoch's first batches are sampled before it
begins, and they are exactly the batches it would have sampled; whatever
steers the next iteration elsewhere (set_epoch, load_state_dict, an epoch
left early, a failing source) drops them and leaves the chain on the right
epoch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import IterDataPipe

from salient_pipes import HeteroDataset, pipeline_stats, salient_pipeline
from salient_pipes.pipes import NodeIndices
from tests.conftest import pairs


def _pipe(ds, overlap, **kw):
    options = dict(batch_size=300, fanouts=(5, 3), device="cpu", seed=5, num_threads=2)
    options.update(kw)
    return salient_pipeline(ds, overlap_epochs=overlap, **options)


def _sampler(pipe):
    stage = pipe
    while not hasattr(stage, "overlap_epochs"):
        stage = stage.source
    return stage


def _same(a, b) -> None:
    assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    for p, q in pairs(a.adjs, b.adjs):
        assert torch.equal(p.edge_index, q.edge_index) and p.size == q.size


def _same_epochs(got, expected) -> None:
    for a, b in pairs(got, expected):
        _same(a, b)


def _reference(ds, epoch, **kw):
    pipe = _pipe(ds, False, **kw)
    pipe.set_epoch(epoch)
    return list(pipe)


def test_epochs_are_those_without_overlap_and_begin_before_they_are_asked_for(small_dataset):
    pipe = _pipe(small_dataset, True)
    sampler = _sampler(pipe)
    for epoch in range(3):
        got = list(pipe)
        _same_epochs(got, _reference(small_dataset, epoch))
        carry = sampler._carry
        assert carry is not None and carry.epoch == epoch + 1
        assert carry.pending > 0  # already in flight, within the bound
        assert sampler._busy is None
        assert carry.session.in_flight == carry.pending <= sampler.max_in_flight


def test_default_is_on_for_training_and_off_for_evaluation(small_dataset):
    train = salient_pipeline(small_dataset, batch_size=300, fanouts=(5,), device="cpu")
    valid = salient_pipeline(small_dataset, "valid", batch_size=300, fanouts=(5,),
                             device="cpu", shuffle=False)
    assert _sampler(train).overlap_epochs and not _sampler(valid).overlap_epochs
    list(valid)
    assert _sampler(valid)._carry is None


def test_in_flight_bound_holds_across_the_epoch_boundary(small_dataset):
    pipe = _pipe(small_dataset, True, batch_size=100, max_in_flight=3)
    sampler = _sampler(pipe)
    seen = []
    for _ in range(2):
        for _batch in pipe:
            session = sampler._busy
            seen.append(session.in_flight)
    assert max(seen) <= 3
    assert sampler._carry.pending == 3  # the places freed by the tail went to the next epoch
    _same_epochs(list(pipe), _reference(small_dataset, 2, batch_size=100, max_in_flight=3))


def test_set_epoch_to_the_carried_epoch_uses_it_and_the_one_after_is_right(small_dataset):
    pipe = _pipe(small_dataset, True)
    sampler = _sampler(pipe)
    list(pipe)
    carry = sampler._carry
    pipe.set_epoch(1)  # what a DDP loop calls before every epoch
    it = iter(pipe)
    first = next(it)
    assert sampler._carry is None and sampler._busy is carry.session
    _same_epochs([first] + list(it), _reference(small_dataset, 1))
    # the stages above began epoch 2 after the set_epoch(1): still epoch 2
    _same_epochs(list(pipe), _reference(small_dataset, 2))


def test_set_epoch_elsewhere_drops_the_carry_and_sets_the_source_back(small_dataset):
    pipe = _pipe(small_dataset, True)
    list(pipe)
    assert _sampler(pipe)._carry.epoch == 1
    pipe.set_epoch(4)
    _same_epochs(list(pipe), _reference(small_dataset, 4))
    _same_epochs(list(pipe), _reference(small_dataset, 5))


def test_set_epoch_during_an_epoch_makes_no_carry(small_dataset):
    pipe = _pipe(small_dataset, True)
    it = iter(pipe)
    next(it)
    pipe.set_epoch(7)
    rest = list(it)
    assert rest and _sampler(pipe)._carry is None
    _same_epochs(list(pipe), _reference(small_dataset, 7))


def test_resume_after_a_carry_is_exact(small_dataset):
    pipe = _pipe(small_dataset, True)
    list(pipe)  # epoch 0; epoch 1 carried
    pipe.load_state_dict({"epoch": 1, "batches_done": 2})
    _same_epochs(list(pipe), _reference(small_dataset, 1)[2:])
    _same_epochs(list(pipe), _reference(small_dataset, 2))


def test_an_epoch_left_early_carries_nothing_and_the_next_is_right(small_dataset):
    pipe = _pipe(small_dataset, True, batch_size=100)
    sampler = _sampler(pipe)
    it = iter(pipe)
    batches = len(pipe)
    for _ in range(batches - 1):  # the source is done: the carry has begun
        next(it)
    assert sampler._source_ahead
    it.close()
    assert sampler._carry is None
    _same_epochs(list(pipe), _reference(small_dataset, 1, batch_size=100))


def test_stats_report_the_epoch_that_ended(small_dataset):
    pipe = _pipe(small_dataset, True, batch_size=100)
    batches = len(pipe)
    for _ in range(2):
        list(pipe)
        rows = pipeline_stats(pipe)
        assert [r["items"] for r in rows if r["stage"] in ("ShuffleNodes", "BatchNodes")] \
            == [1, batches]
        assert all(r["items"] == batches for r in rows
                   if r["stage"] not in ("NodeIndices", "ShuffleNodes", "ShardNodes"))
    it = iter(pipe)
    next(it)  # mid-epoch the stages above report this epoch's batches so far
    pulled = {r["stage"]: r["items"] for r in pipeline_stats(pipe)}["BatchNodes"]
    assert 1 <= pulled < batches


class _BreaksAfterFirstEpoch(IterDataPipe):
    """Passes seed batches on in its first iteration; fails in every later one."""

    def __init__(self, source):
        self.source, self.iterations = source, 0

    def __iter__(self):
        self.iterations += 1
        for item in self.source:
            if self.iterations > 1:
                raise RuntimeError("source failed after its first epoch")
            yield item


def test_a_source_failing_in_the_carried_epoch_fails_that_epoch_not_this_one(small_dataset):
    seeds = small_dataset.split_idx["train"]
    batched = NodeIndices(seeds).shuffle_nodes(seed=1).batch_nodes(200)
    source = _BreaksAfterFirstEpoch(batched)
    pipe = source.sample_neighbors(
        small_dataset, (4,), num_threads=2, seed=1, overlap_epochs=True)
    first = list(pipe)  # the carry's pull fails: this epoch is unharmed
    assert len(first) == len(batched) and pipe._carry is None and source.iterations == 2
    with pytest.raises(RuntimeError, match="source failed after its first epoch"):
        list(pipe)
    plain = NodeIndices(seeds).shuffle_nodes(seed=1).batch_nodes(200).sample_neighbors(
        small_dataset, (4,), num_threads=2, seed=1)
    for a, b in pairs(first, list(plain)):
        assert torch.equal(a.n_id, b.n_id)


def test_unordered_sampling_carries_nothing(small_dataset):
    pipe = NodeIndices(small_dataset.split_idx["train"]).batch_nodes(200).sample_neighbors(
        small_dataset, (4,), num_threads=2, ordered=False, overlap_epochs=True)
    list(pipe)
    assert pipe._carry is None and not pipe._source_ahead


def test_a_new_session_drops_the_carry(small_dataset):
    pipe = _pipe(small_dataset, True)
    sampler = _sampler(pipe)
    list(pipe)
    old = sampler._carry.session
    sampler._inject_failure(-1)  # a new session for the next iteration
    assert sampler._carry is None and old.in_flight == 0
    _same_epochs(list(pipe), _reference(small_dataset, 1))


def test_heterogeneous_epochs_are_those_without_overlap():
    ds = HeteroDataset.synthetic_mag(scale=0.002, seed=0)

    def pipe(overlap):
        return salient_pipeline(ds, batch_size=64, fanouts=[3, 2], device="cpu",
                                num_threads=2, overlap_epochs=overlap)

    on, off = pipe(True), pipe(False)
    for _ in range(2):
        for a, b in pairs(list(on), list(off)):
            for t in b.n_id:
                assert torch.equal(a.n_id[t], b.n_id[t])
            assert torch.equal(a.y, b.y)
    assert _sampler(on)._carry is not None


@pytest.mark.parametrize("kind", ["node", "link"])
def test_pyg_loaders_overlap_when_shuffling_with_the_same_epochs(kind):
    from torch_geometric.data import Data

    from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader

    gen = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(300, 4, generator=gen),
                edge_index=torch.randint(0, 300, (2, 2400), generator=gen))

    def loader(shuffle):
        if kind == "node":
            return NeighborLoader(data, [3, 2], batch_size=40, shuffle=shuffle, seed=3)
        return LinkNeighborLoader(data, [3, 2], batch_size=200, shuffle=shuffle, seed=3,
                                  neg_sampling="binary")

    on, off = loader(True), loader(True)
    _sampler(off.pipe).overlap_epochs = False
    assert not _sampler(loader(False).pipe).overlap_epochs
    for _ in range(3):
        for a, b in pairs(list(on), list(off)):
            assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)
            if kind == "link":
                assert torch.equal(a.edge_label_index, b.edge_label_index)
        assert _sampler(on.pipe)._carry is not None
        assert _sampler(off.pipe)._carry is None


def test_pygs_older_neighbor_sampler_overlaps_when_shuffling_but_not_for_one_batch():
    from salient_pipes.pyg import NeighborSampler

    edge_index = torch.randint(0, 300, (2, 2400), generator=torch.Generator().manual_seed(1))

    def loader():
        return NeighborSampler(edge_index, [3, 2], batch_size=40, shuffle=True, seed=3)

    on, off = loader(), loader()
    _sampler(off.pipe).overlap_epochs = False
    for _ in range(2):
        for a, b in pairs(list(on), list(off)):
            assert torch.equal(a[1], b[1])
        assert _sampler(on.pipe)._carry is not None
    one = loader()  # sample(): one batch now, nothing sampled ahead of it
    for seeds in ([5, 9], [7], [5, 9]):
        assert one.sample(torch.tensor(seeds))[1][:len(seeds)].tolist() == seeds
        assert _sampler(one._one)._carry is None and not _sampler(one._one).overlap_epochs


def test_epochs_overlap_through_the_prefetch_thread(monkeypatch, small_dataset):
    from salient_pipes.pipes import PinnedPool
    from tests.test_pinned import _FakeCuda

    fake = _FakeCuda()
    fake.install(monkeypatch)
    seeds = small_dataset.split_idx["train"]

    def chain(overlap, pool=None):
        return (NodeIndices(seeds).shuffle_nodes(seed=2).batch_nodes(100)
                .sample_neighbors(small_dataset, (4, 3), num_threads=2, seed=2,
                                  overlap_epochs=overlap)
                .slice_features(small_dataset.x, small_dataset.y, pinned=pool))

    pool = PinnedPool(num_slots=12, slot_bytes=1 << 20, pin=False)
    pipe = chain(True, pool).prefetch_to_device("cpu")
    pipe.device = torch.device("cuda")  # the device path, with the fakes above
    plain = chain(False)
    sampler = _sampler(pipe)
    for epoch in range(3):
        _same_epochs(list(pipe), list(plain))
        assert sampler._carry is not None and sampler._carry.epoch == epoch + 1
    assert "salient_pipes-prefetch" in fake.issuers  # the thread that began them
