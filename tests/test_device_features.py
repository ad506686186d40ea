"""Features resident on the device (salient_pipeline(features_on=...)): the
logic on the CPU, exact equality on CUDA where a GPU is present."""

from __future__ import annotations

import pytest
import torch

from salient_pipes import FastDataset, HeteroDataset, salient_pipeline
from salient_pipes.batch import PreparedBatch
from salient_pipes.pipes import NodeIndices
from salient_pipes.pipes.device_features import MARGIN, DeviceFeatures, choose_placement
from salient_pipes.pipes.slice import SliceFeatures


def slice_stage(pipe):
    while not isinstance(pipe, SliceFeatures):
        pipe = pipe.source
    return pipe


@pytest.fixture(scope="module")
def ds():
    return FastDataset.synthetic(num_nodes=3000, avg_degree=6, num_features=12, seed=1)


def test_batches_gathered_on_the_device_equal_the_host_gather(ds):
    kw = dict(batch_size=128, fanouts=(4, 3), device="cpu", num_threads=2)
    on = salient_pipeline(ds, features_on="cpu", **kw)
    host = salient_pipeline(ds, **kw)
    assert slice_stage(on).x == {} and slice_stage(host).x  # the workers gather no rows
    assert on.placement == "features on cpu (as asked)" and host.placement.endswith("host")
    for _ in range(2):
        a, b = list(on), list(host)
        assert len(a) == len(b) == len(on)
        for p, q in zip(a, b):
            assert torch.equal(p.x, q.x) and torch.equal(p.y, q.y)
            assert torch.equal(p.n_id, q.n_id)


def test_heterogeneous_batches_and_the_cast_after_the_gather(ds):
    mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    kw = dict(batch_size=64, fanouts=[3, 2], device="cpu", num_threads=2)
    a = list(salient_pipeline(mag, features_on="cpu", **kw))
    b = list(salient_pipeline(mag, **kw))
    assert len(a) == len(b) > 1
    for p, q in zip(a, b):
        assert p.x.keys() == q.x.keys() and all(torch.equal(p.x[t], q.x[t]) for t in p.x)
    cast = next(iter(salient_pipeline(ds, features_on="cpu", x_dtype=torch.float32,
                                      batch_size=64, fanouts=(3,), device="cpu")))
    assert cast.x.dtype == torch.float32 and torch.equal(cast.x, ds.x[cast.n_id].float())


def test_resume_with_features_on_the_device(ds):
    def pipe():
        return salient_pipeline(ds, batch_size=100, fanouts=(3, 3), device="cpu",
                                num_threads=2, features_on="cpu", overlap_epochs=False)

    whole = list(pipe())
    first = pipe()
    it = iter(first)
    for _ in range(4):
        next(it)
    state = first.state_dict()
    del it
    second = pipe()
    second.load_state_dict(state)
    rest = list(second)
    assert len(rest) == len(whole) - 4
    assert all(torch.equal(p.x, q.x) and torch.equal(p.n_id, q.n_id)
               for p, q in zip(rest, whole[4:]))


def test_auto_placement_follows_free_device_memory():
    gpu = torch.device("cuda", 0)
    where, why = choose_placement("auto", gpu, 10 << 30, free=(10 << 30) + MARGIN)
    assert where == gpu and "10.00 GiB of" in why
    where, why = choose_placement("auto", gpu, 10 << 30, free=(10 << 30) + MARGIN - 1)
    assert where is None and "do not fit" in why
    assert choose_placement("auto", torch.device("cpu"), 1)[0] is None
    assert choose_placement(None, gpu, 1) == (None, "features on the host")
    assert choose_placement("host", gpu, 1)[0] is None
    assert choose_placement("cuda:1", gpu, 1)[0] == torch.device("cuda", 1)


def test_bad_placements_are_refused(ds, tmp_path):
    with pytest.raises(ValueError, match="name the same device"):
        salient_pipeline(ds, device="cpu", features_on="meta")
    ds.save(tmp_path / "d", progress=False)
    loaded = FastDataset.load(tmp_path / "d")
    with pytest.raises(ValueError, match="choose one"):
        salient_pipeline(loaded, device="cpu", features_on="cpu", out_of_core=True)
    with pytest.raises(ValueError, match="must be tensors"):
        DeviceFeatures({"a": [1, 2]}, "cpu")
    with pytest.raises(TypeError, match="PreparedBatch or NodeWiseBatch"):
        DeviceFeatures(ds.x, "cpu").fill(torch.zeros(3))
    with pytest.raises(ValueError, match="DeviceFeatures"):
        NodeIndices(torch.arange(4)).batch_nodes(2).prefetch_to_device("cpu", features="x")
    # a graph without features has nothing to gather
    empty = DeviceFeatures(torch.zeros(5, 0), "cpu")
    batch = PreparedBatch(x=None, y=None, adjs=[], n_id=torch.tensor([1]))
    assert empty.nbytes == 0 and empty.fill(batch) is batch


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_with_resident_features_equal_the_host_gathered_ones(ds):
    kw = dict(batch_size=128, fanouts=(4, 3), device="cuda", num_threads=2, shuffle=False)
    on = salient_pipeline(ds, features_on="cuda", **kw)
    assert on.placement.startswith("features on cuda")
    auto = salient_pipeline(ds, features_on="auto", **kw)
    assert auto.placement.startswith("features on cuda")
    for p, q, r in zip(on, salient_pipeline(ds, **kw), auto):
        assert p.x.is_cuda and torch.equal(p.x.cpu(), q.x.cpu())
        assert torch.equal(r.x.cpu(), q.x.cpu()) and torch.equal(p.y.cpu(), q.y.cpu())


def test_the_cli_places_the_features_and_says_where(tmp_path, capsys):
    import json

    from salient_pipes.cli import main

    out = tmp_path / "summary.json"
    main(["train", "--dataset", "synthetic", "--num-nodes", "2000", "--epochs", "1",
          "--fanouts", "3,2", "--hidden", "8", "--batch-size", "256", "--no-progress",
          "--device", "cpu", "--out", str(out), "--features-on", "cpu"])
    assert "features on cpu (as asked)" in capsys.readouterr().out
    assert 0 <= json.loads(out.read_text())["test_acc"] <= 1
    main(["train", "--dataset", "synthetic", "--num-nodes", "2000", "--epochs", "1",
          "--fanouts", "3,2", "--hidden", "8", "--batch-size", "256", "--no-progress",
          "--device", "cpu", "--out", str(out), "--features-on", "auto"])
    assert "features on the host: the device is the CPU" in capsys.readouterr().out
