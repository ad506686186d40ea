"""Training, batchwise inference, the SALIENT tutorial API and the CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

from salient_pipes import (
    SAGE,
    FastDataset,
    PreparedBatch,
    batchwise_test,
    salient_pipeline,
    train_epoch,
)
from salient_pipes.adapters.salient import (
    DevicePrefetcher,
    FastSampler,
    FastSamplerConfig,
    Shuffler,
    Timer,
    test,
)
from salient_pipes.cli import main
from tests.test_pipes import load_example


def test_cora_graphsage_accuracy(cora):
    ds = FastDataset.from_pyg(cora, name="cora")
    accuracies = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = SAGE(ds.num_features, 256, ds.num_classes, num_layers=3)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
        pipe = salient_pipeline(ds, batch_size=140, fanouts=(10, 10, 10), device="cpu", seed=seed)
        for _ in range(40):
            result = train_epoch(model, pipe, optimizer, progress=False)
        assert result.batches == 1 and result.loss > 0
        acc = batchwise_test(model, ds, (-1, -1, -1), sets=("test",), progress=False)
        accuracies.append(acc["test"])
    assert sum(accuracies) / 3 >= 0.78, accuracies


def test_training_and_evaluation_show_progress_bars_unless_asked_not_to(capsys):
    ds = FastDataset.synthetic(num_nodes=800, seed=1)
    model = SAGE(ds.num_features, 8, ds.num_classes, num_layers=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(ds, batch_size=128, fanouts=(3,), device="cpu")
    capsys.readouterr()
    train_epoch(model, pipe, optimizer)  # progress by default
    batchwise_test(model, ds, (3,), sets=("valid",))
    err = capsys.readouterr().err
    assert "train: " in err and "eval valid: " in err, err
    train_epoch(model, pipe, optimizer, progress=False)
    batchwise_test(model, ds, (3,), sets=("valid",), progress=False)
    assert capsys.readouterr().err == ""


def test_training_lowers_loss_and_beats_chance():
    ds = FastDataset.synthetic(num_nodes=6000, seed=1)
    torch.manual_seed(0)
    model = SAGE(ds.num_features, 64, ds.num_classes, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    before = batchwise_test(model, ds, (10, 10), sets=("valid",), progress=False)["valid"]
    pipe = salient_pipeline(ds, batch_size=512, fanouts=(10, 5), device="cpu")
    losses = [train_epoch(model, pipe, optimizer, progress=False).loss for _ in range(3)]
    after = batchwise_test(model, ds, (10, 10), sets=("valid", "test"), progress=False)
    assert losses[-1] < losses[0]
    assert after["valid"] > 3 / ds.num_classes and after["valid"] > before + 0.2


def test_labels_minus_one_are_ignored():
    ds = FastDataset.synthetic(num_nodes=1000, seed=2)
    y = ds.y.clone()
    y[ds.split_idx["valid"][::2]] = -1
    masked = FastDataset(name="masked", x=ds.x, y=y, rowptr=ds.rowptr, col=ds.col,
                         split_idx=ds.split_idx, num_classes=ds.num_classes)
    model = SAGE(ds.num_features, 16, ds.num_classes, num_layers=1)
    full = batchwise_test(model, ds, (-1,), sets=("valid",), progress=False)["valid"]
    half = batchwise_test(model, masked, (-1,), sets=("valid",), progress=False)["valid"]
    kept = ds.split_idx["valid"][1::2]
    with torch.no_grad():
        model.eval()
        pipe = salient_pipeline(ds, "valid", fanouts=(-1,), shuffle=False, device="cpu")
        preds = torch.cat([model(b.x, b.adjs).argmax(-1) for b in pipe])
    expected = (preds[1::2] == ds.y[kept]).float().mean().item()
    assert half == pytest.approx(expected) and 0 <= full <= 1


def _sampled_batch(num_nodes: int, seed: int):
    ds = FastDataset.synthetic(num_nodes=num_nodes, num_features=12, seed=seed)
    pipe = salient_pipeline(ds, batch_size=64, fanouts=(6, 4), device="cpu", seed=seed)
    return ds, next(iter(pipe))


def test_mean_sage_conv_computes_what_pyg_sageconv_does():
    from torch_geometric.nn import SAGEConv

    from salient_pipes.models import MeanSAGEConv

    ds, batch = _sampled_batch(800, 0)
    edge_index, _, (num_src, num_dst) = batch.adjs[0]
    # an isolated target (no edges into it) aggregates to zero in both
    edge_index = edge_index[:, edge_index[1] != 3]
    ours, pyg = MeanSAGEConv(12, 5), SAGEConv(12, 5, bias=False, normalize=True)
    pyg.load_state_dict(ours.state_dict())  # same parameter names
    x = batch.x.float().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out = ours(x, edge_index, num_dst)
    ref = pyg((x_ref, x_ref[:num_dst]), edge_index, size=(num_src, num_dst))
    torch.testing.assert_close(out, ref)
    out.pow(2).sum().backward()
    ref.pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(ours.lin_l.weight.grad, pyg.lin_l.weight.grad)
    torch.testing.assert_close(ours.lin_r.weight.grad, pyg.lin_r.weight.grad)


def test_sage_init_is_torch_linear_init_as_in_pyg():
    torch.manual_seed(0)
    model = SAGE(200, 300, 7, num_layers=2)
    bound = 200 ** -0.5  # kaiming-uniform(a=sqrt(5)) over fan-in 200
    for weight in (model.convs[0].lin_l.weight, model.convs[0].lin_r.weight):
        assert weight.abs().max() <= bound and weight.abs().max() > 0.95 * bound
    before = model.convs[1].lin_r.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.convs[1].lin_r.weight)


# Graphs torch.compile(dynamic=True) makes of SAGE for batches of any size:
# one from torch 2.5 (2.5.1 and 2.13 checked); torch 2.1.2 and 2.3.1 guard on
# the edge count's alignment and make a second graph for odd counts.
ONE_GRAPH = 1 if torch.__version__ >= "2.5" else 2


def test_sage_compiles_once_for_batches_of_every_size():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = SAGE(12, 16, 4, num_layers=2)
    compiled = torch.compile(model, dynamic=True)
    counts = torch._dynamo.utils.counters
    counts.clear()
    model.eval()  # no dropout: eager and compiled outputs compare
    for num_nodes, seed in [(800, 1), (1500, 2), (3000, 3)]:
        _, batch = _sampled_batch(num_nodes, seed)
        torch.testing.assert_close(compiled(batch.x, batch.adjs), model(batch.x, batch.adjs),
                                   rtol=1e-4, atol=1e-5)
    assert counts["stats"]["unique_graphs"] == ONE_GRAPH, dict(counts["stats"])


def _random_adjs(nodes, edges, seed):
    """Hops over levels of ``nodes`` rows (outermost first) with ``edges``
    random edges each: sources below the level's size, targets below the next."""
    from salient_pipes import Adj

    g = torch.Generator().manual_seed(seed)
    adjs = []
    for i, e in enumerate(edges):
        src = torch.randint(0, nodes[i], (e,), generator=g)
        dst = torch.randint(0, nodes[i + 1], (e,), generator=g)
        adjs.append(Adj(torch.stack([src, dst]), None, (nodes[i], nodes[i + 1])))
    return torch.randn(nodes[0], 12, generator=g), adjs


def test_static_shapes_output_and_gradients_are_the_unpadded_ones():
    from salient_pipes.models import StaticShapes

    torch.manual_seed(0)
    model = SAGE(12, 16, 4, num_layers=2, dropout=0.0)
    padded = StaticShapes(model)
    ds = FastDataset.synthetic(num_nodes=3000, num_features=12, seed=4)
    pipe = salient_pipeline(ds, batch_size=100, fanouts=(6, 4), device="cpu", seed=4)
    batches = 0
    for batch in pipe:
        batches += 1
        x, adjs = batch.x.float(), batch.adjs
        out = padded(x, adjs)
        assert out.shape == (batch.batch_size, 4)
        model.zero_grad()
        out.pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        ref = model(x, adjs)
        ref.pow(2).sum().backward()
        torch.testing.assert_close(out, ref)
        for got, want in zip(grads, (p.grad for p in model.parameters())):
            torch.testing.assert_close(got, want)
        nodes, edges = padded.capacity()
        assert nodes[0] >= nodes[1] >= nodes[2] and all(n % 256 == 0 for n in nodes)
        assert nodes[0] >= x.size(0) and nodes[2] > batch.batch_size
        assert all(c >= a.edge_index.size(1) for c, a in zip(edges, adjs))
    # 10 % headroom over the first batch: every full batch fit, only the first resized.
    assert batches >= 5 and padded.resizes == 1
    # Evaluation keeps its own capacities, sized by its own (wider) batches.
    padded.eval()
    wide = next(iter(salient_pipeline(ds, "valid", batch_size=100, fanouts=(20, 20),
                                      device="cpu", shuffle=False)))
    torch.testing.assert_close(padded(wide.x.float(), wide.adjs),
                               model.eval()(wide.x.float(), wide.adjs))
    assert padded.capacity(training=False)[0][0] > padded.capacity(training=True)[0][0]


def test_static_shapes_grows_and_never_pads_into_a_real_row():
    from salient_pipes.models import StaticShapes

    torch.manual_seed(1)
    model = SAGE(12, 8, 3, num_layers=2).eval()
    # headroom 1, multiple 1: the first batch leaves exactly one spare row per level.
    padded = StaticShapes(model, headroom=1.0, multiple=1).eval()
    for nodes, edges, resized in [
        ((10, 5, 2), (20, 6), 1),
        ((10, 5, 2), (9, 1), 1),     # fits: padding edges into the spare rows
        ((11, 6, 3), (20, 5), 2),    # fills every level to capacity: no spare row left
        ((11, 2, 1), (3, 2), 2),     # fits
    ]:
        x, adjs = _random_adjs(nodes, edges, seed=sum(nodes))
        torch.testing.assert_close(padded(x, adjs), model(x, adjs))
        assert padded.resizes == resized
        assert all(c > n for c, n in zip(padded.capacity(False)[0], nodes))
    # A deeper level outgrowing its source level's capacity raises that one too.
    grow = StaticShapes(model, headroom=1.5, multiple=1).eval()
    for nodes, edges in [((10, 2, 1), (5, 2)), ((15, 15, 1), (30, 4))]:
        x, adjs = _random_adjs(nodes, edges, seed=7)
        torch.testing.assert_close(grow(x, adjs), model(x, adjs))
    cap = grow.capacity(False)[0]
    assert cap[0] >= cap[1] > 15


def test_static_shapes_rejects_bad_input():
    from salient_pipes.models import StaticShapes

    model = StaticShapes(SAGE(12, 8, 3, num_layers=1))
    x, adjs = _random_adjs((6, 3), (5,), seed=0)
    with pytest.raises(ValueError, match="x has 5 rows but the outermost hop has 6"):
        model(x[:5], adjs)
    with pytest.raises(ValueError, match="at least one hop"):
        model(x, [])
    with pytest.raises(ValueError, match="headroom must be >= 1"):
        StaticShapes(model, headroom=0.5)
    with pytest.raises(ValueError, match="multiple must be >= 1"):
        StaticShapes(model, multiple=0)


def test_captured_step_trains_as_the_plain_step():
    from salient_pipes.train import CapturedStep

    ds = FastDataset.synthetic(num_nodes=3000, num_features=12, seed=6)
    torch.manual_seed(0)
    plain = SAGE(12, 16, ds.num_classes, num_layers=2, dropout=0.0)
    padded = SAGE(12, 16, ds.num_classes, num_layers=2, dropout=0.0)
    padded.load_state_dict(plain.state_dict())
    opt_plain = torch.optim.Adam(plain.parameters(), lr=0.01)
    step = CapturedStep(padded, torch.optim.Adam(padded.parameters(), lr=0.01), capture=False)
    pipe = salient_pipeline(ds, batch_size=200, fanouts=(6, 4), device="cpu", seed=1)
    for epoch in range(2):
        pipe.set_epoch(epoch)
        want = train_epoch(plain, pipe, opt_plain, progress=False)
        pipe.set_epoch(epoch)
        got = train_epoch(step, pipe, step.optimizer, progress=False)
        assert got.batches == want.batches >= 5
        assert got.loss == pytest.approx(want.loss, rel=1e-5)
    for a, b in zip(plain.parameters(), padded.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # few shapes: most batches share one
    assert step.capacities.resizes <= 3 and step._key == (
        tuple(step.capacities.nodes), tuple(step.capacities.edges))
    assert step.captures == step.replays == 0  # nothing recorded without capture


def test_captured_step_pads_only_into_spare_rows():
    from salient_pipes.train import CapturedStep

    torch.manual_seed(2)
    model = SAGE(12, 8, 3, num_layers=2, dropout=0.0)
    # lr 0: the step computes the loss without moving the weights
    step = CapturedStep(model, torch.optim.SGD(model.parameters(), lr=0.0), capture=False,
                        headroom=1.0, multiple=1)
    shapes = []
    for nodes, edges in [((10, 5, 2), (20, 6)), ((10, 5, 2), (9, 1)), ((11, 6, 3), (20, 5)),
                         ((11, 2, 1), (3, 2))]:  # the one spare row of every level in use
        x, adjs = _random_adjs(nodes, edges, seed=sum(edges))
        y = torch.randint(0, 3, (nodes[-1],))
        batch = PreparedBatch(x=x, y=y, adjs=adjs, n_id=torch.arange(nodes[0]))
        want = torch.nn.functional.nll_loss(model(x, adjs), y)
        torch.testing.assert_close(step(batch), want.detach())
        shapes.append(step._shape)
    assert step.capacities.resizes == 2
    # a batch that fits reuses the buffers (and, when captured, the graph)
    assert shapes[1] is shapes[0] and shapes[3] is shapes[2] and shapes[2] is not shapes[0]


def test_captured_step_rejects_what_it_cannot_record():
    from salient_pipes.batch import NodeWiseBatch
    from salient_pipes.train import CapturedStep

    model = SAGE(12, 8, 3, num_layers=1)
    with pytest.raises(ValueError, match="capturable=True"):
        CapturedStep(model, torch.optim.Adam(model.parameters()), capture=True)
    with pytest.raises(ValueError, match="CUDA device"):
        CapturedStep(model, torch.optim.Adam(model.parameters(), capturable=True), capture=True)
    with pytest.raises(ValueError, match="warmup"):
        CapturedStep(model, torch.optim.Adam(model.parameters()), capture=False, warmup=0)
    assert CapturedStep(model, torch.optim.Adam(model.parameters()), capture=False,
                        warmup=1).warmup == 1  # the fewest runs before recording
    step = CapturedStep(model, torch.optim.Adam(model.parameters()), capture=False)
    x, adjs = _random_adjs((6, 3), (5,), seed=0)
    with pytest.raises(TypeError, match="without y"):
        step(PreparedBatch(x=x, y=None, adjs=adjs, n_id=torch.arange(6)))
    with pytest.raises(TypeError, match="without x"):  # rows still to be gathered
        step(PreparedBatch(x=None, y=torch.zeros(3, dtype=torch.int64), adjs=adjs,
                           n_id=torch.arange(6)))
    hetero = NodeWiseBatch(x={}, y=None, edge_index={}, n_id={}, e_id={}, num_sampled_nodes={},
                         num_sampled_edges={}, input_type="p")
    with pytest.raises(TypeError, match="NodeWiseBatch"):
        step(hetero)
    with pytest.raises(ValueError, match="its own optimizer"):
        train_epoch(step, [], torch.optim.Adam(model.parameters()), progress=False)


def test_model_rejects_hop_mismatch():
    model = SAGE(4, 8, 2, num_layers=2)
    with pytest.raises(ValueError, match="2 layers but the batch has 1 hops"):
        model(torch.randn(3, 4), [None])


def test_model_names_a_feature_count_that_is_not_its_own(small_dataset):
    ds = small_dataset
    model = SAGE(ds.num_features + 1, 8, ds.num_classes, num_layers=2)
    batch = next(iter(salient_pipeline(ds, batch_size=64, fanouts=(3, 3), device="cpu")))
    with pytest.raises(ValueError, match=rf"takes {ds.num_features + 1} features per node but "
                                         rf"the batch's x has shape \[\d+, {ds.num_features}\]"):
        model(batch.x, batch.adjs)
    with pytest.raises(ValueError, match=r"x has shape \[5\]"):
        model(torch.randn(5), batch.adjs)


def test_hetero_model_names_the_node_type_whose_features_it_does_not_take():
    from salient_pipes import HeteroDataset, HeteroSAGE

    ds = HeteroDataset.synthetic_mag(scale=0.001)
    batch = next(iter(salient_pipeline(ds, fanouts=[3, 3], device="cpu", batch_size=64)))
    widths = {**ds.num_features, "paper": ds.num_features["paper"] + 1}
    model = HeteroSAGE((ds.node_types, ds.edge_types), widths, 8, ds.num_classes, 2,
                       target=ds.label_type)
    with pytest.raises(ValueError, match=rf"takes {widths['paper']} features per 'paper' node "
                                         rf"but the batch's x\['paper'\] has shape "):
        model(batch.x, batch.edge_index)
    right = HeteroSAGE((ds.node_types, ds.edge_types), ds.num_features, 8, ds.num_classes, 2,
                       target=ds.label_type)
    assert right(batch.x, batch.edge_index).shape == (batch.n_id["paper"].numel(),
                                                      ds.num_classes)


def test_training_and_evaluation_name_what_they_were_given_wrong(small_dataset):
    from salient_pipes import HeteroSAGE

    ds = small_dataset
    model = SAGE(ds.num_features, 8, ds.num_classes, num_layers=2)
    opt = torch.optim.Adam(model.parameters())
    pipe = salient_pipeline(ds, batch_size=500, fanouts=(3, 3), device="cpu")
    cases = [
        (lambda: train_epoch(None, pipe, opt), TypeError, "model must be a torch.nn.Module"),
        (lambda: train_epoch(model, pipe, None), TypeError, "optimizer must be a torch.optim"),
        (lambda: train_epoch(model, [1, 2], opt), TypeError, "the pipe yielded int$"),
        (lambda: train_epoch(model, pipe.map(lambda b: PreparedBatch(b.x, None, b.adjs,
                                                                      b.n_id)), opt),
         TypeError, "yielded PreparedBatch without y"),
        (lambda: train_epoch(torch.nn.ReLU(), pipe, opt), ValueError,
         "ReLU.* has no parameters"),
        (lambda: batchwise_test(model, None, (3, 3)), TypeError,
         "dataset must be a FastDataset, HeteroDataset or PartitionedDataset"),
        (lambda: SAGE(0, 8, 2, num_layers=2), ValueError, "in_channels must be >= 1"),
        (lambda: SAGE(4, 8.5, 2, num_layers=2), ValueError, "hidden_channels must be an int"),
        (lambda: SAGE(4, 8, 2, num_layers=2, dropout=1.5), ValueError,
         r"dropout must be a probability within \[0, 1\], got 1.5"),
        (lambda: HeteroSAGE((["a"], []), {"a": 4}, 8, 0, 1, "a"), ValueError,
         "out_channels must be >= 1"),
        (lambda: HeteroSAGE((["a"], []), {"a": 4}, 8, 2, 1, "a", dropout=-0.1), ValueError,
         "dropout must be a probability"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    # one split named alone is that split, not its letters
    one = batchwise_test(model, ds, (3, 3), sets="valid", device="cpu", progress=False)
    assert list(one) == ["valid"] and 0.0 <= one["valid"] <= 1.0


def test_tutorial_example_runs_on_cpu(capsys):
    example = load_example("salient_tutorial")
    results = example.main(["--epochs", "2", "--num-nodes", "4000"])
    assert results["valid"] > 2 / 8
    out = capsys.readouterr().out
    assert "('valid', 'Compute') took" in out and "epoch 1: valid accuracy" in out


def test_compat_pieces(small_dataset):
    ds = small_dataset
    shuffler = Shuffler(ds.split_idx["train"], seed=1)
    shuffler.set_epoch(3)
    first = shuffler.get_idx()
    assert torch.equal(first, shuffler.get_idx())
    shuffler.set_epoch(4)
    assert not torch.equal(first, shuffler.get_idx())
    cfg = FastSamplerConfig(x=ds.x, y=ds.y.unsqueeze(-1), rowptr=ds.rowptr, col=ds.col,
                            idx=first, batch_size=300, sizes=[5, 5], skip_nonfull_batch=True)
    loader = FastSampler(2, 4, cfg)
    batches = [b for (b,) in DevicePrefetcher(["cpu"], iter(loader))]
    assert len(batches) == len(loader) == first.numel() // 300
    assert torch.equal(torch.cat([b.n_id[: b.batch_size] for b in batches]),
                       first[: len(batches) * 300])
    assert all(b.y.dim() == 1 for b in batches)
    model = SAGE(ds.num_features, 8, ds.num_classes, num_layers=2)
    seen = []
    correct, total = test.batchwise_test(model, len(loader),
                                         DevicePrefetcher(["cpu"], iter(loader)), seen.append)
    assert total == sum(b.batch_size for b in seen) == len(batches) * 300
    assert 0 <= correct <= total
    lines = []
    with Timer("x", fn=lines.append) as timer:
        pass
    assert timer.seconds is not None and lines[0].startswith("x took")
    with pytest.raises(ValueError, match="exactly one device"):
        DevicePrefetcher(["cpu", "cpu"], [])


def test_cli_trains_and_writes_summary(tmp_path, capsys):
    out = tmp_path / "runs" / "a" / "summary.json"  # its directories made as needed
    assert main(["train", "--epochs", "2", "--num-nodes", "4000", "--hidden", "64",
                 "--batch-size", "512", "--fanouts", "10,5", "--no-progress",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "epoch   1 | loss" in printed and "valid acc" in printed and "test acc" in printed
    summary = json.loads(out.read_text())
    assert summary["epochs"] == 2 and len(summary["history"]) == 2
    assert summary["test_acc"] > 2 * summary["chance"]
    assert summary["test_fanouts"] == [20, 20]


def test_cli_evaluates_the_final_model_on_valid_once(tmp_path, monkeypatch, capsys):
    import salient_pipes.cli.train as cli_train

    calls = []
    real = cli_train.batchwise_test

    def spy(*args, sets, **kwargs):
        calls.append(tuple(sets))
        return real(*args, sets=sets, **kwargs)

    monkeypatch.setattr(cli_train, "batchwise_test", spy)
    out = tmp_path / "summary.json"
    common = ["train", "--num-nodes", "2000", "--hidden", "8", "--fanouts", "4,4",
              "--no-progress", "--out", str(out)]
    assert main([*common, "--epochs", "3", "--eval-every", "2"]) == 0
    # after epoch 1 (every 2nd), after the last epoch, then only test: the
    # last epoch's valid figure is the final one
    assert calls == [("valid",), ("valid",), ("test",)]
    summary = json.loads(out.read_text())
    assert summary["valid_acc"] == summary["history"][-1]["valid_acc"]
    assert "valid_acc" not in summary["history"][0]
    assert f"final    | valid acc {summary['valid_acc']:.4f}" in capsys.readouterr().out

    calls.clear()  # a run resumed after its last epoch evaluates both again
    ckpt = tmp_path / "ckpt"
    assert main([*common, "--epochs", "1", "--checkpoint", str(ckpt)]) == 0
    calls.clear()
    assert main([*common, "--epochs", "1", "--checkpoint", str(ckpt)]) == 0
    assert calls == [("valid", "test")]


def test_cli_compile_trains_through_one_compiled_graph(tmp_path, capsys):
    torch._dynamo.reset()
    counts = torch._dynamo.utils.counters
    counts.clear()
    out = tmp_path / "summary.json"
    assert main(["train", "--compile", "--epochs", "2", "--num-nodes", "3000", "--hidden",
                 "32", "--batch-size", "512", "--fanouts", "10,5", "--no-progress",
                 "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["compiled"] is True and summary["test_acc"] > 2 * summary["chance"]
    # every batch of both epochs ran the one graph (sizes are dynamic)
    assert counts["stats"]["unique_graphs"] == ONE_GRAPH, dict(counts["stats"])


def test_cli_compile_rejects_the_heterogeneous_model(capsys):
    with pytest.raises(SystemExit, match="heterogeneous model does not compile"):
        main(["train", "--compile", "--dataset", "mag-synthetic", "--mag-scale", "0.01",
              "--epochs", "1", "--no-progress", "--device", "cpu"])


def test_cli_cuda_graphs_needs_cuda():
    with pytest.raises(SystemExit, match="needs one process on a CUDA device"):
        main(["train", "--cuda-graphs", "--compile", "--device", "cpu", "--epochs", "1",
              "--num-nodes", "500", "--no-progress"])


def test_cli_cora(planetoid_root, capsys):
    assert main(["train", "--dataset", "cora", "--root", str(planetoid_root), "--epochs", "1",
                 "--batch-size", "140", "--fanouts", "5,5", "--hidden", "16",
                 "--no-progress"]) == 0
    assert "cora: 2,708 nodes" in capsys.readouterr().out


def test_cli_cora_without_its_files_or_network_says_where_to_put_them(tmp_path, monkeypatch,
                                                                     capsys):
    from torch_geometric.datasets import Planetoid

    def offline(self):
        raise OSError("Name or service not known")

    monkeypatch.setattr(Planetoid, "download", offline)
    assert main(["train", "--dataset", "cora", "--root", str(tmp_path), "--epochs", "1",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "could not read or download Cora" in err and "Name or service not known" in err
    assert f"{tmp_path}/Cora/raw" in err and "Traceback" not in err


def test_cli_refuses_a_file_for_a_directory_and_a_directory_for_a_file(tmp_path, capsys):
    file = tmp_path / "a_file"
    file.write_text("")
    for option in ("--checkpoint", "--profile"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", option, str(file), "--no-progress"])
        assert exit_info.value.code == 2
        assert f"{option} names a directory; {file} is a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # and no file where one goes
        main(["train", "--out", str(tmp_path), "--no-progress"])
    assert exit_info.value.code == 2
    assert f"--out names the JSON summary's file; {tmp_path} is a directory" in \
        capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--dataset", "ogbn-nope"], "unknown OGB node-property dataset"),
    (["--batch-size", "0"], "--batch-size: must be > 0"),
    (["--num-nodes", "1"], "--num-nodes: must be >= 2, got 1"),
    (["--seed", "-1"], "--seed: must be >= 0, got -1"),
])
def test_cli_rejects_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_device_that_cannot_be_used_is_named_before_anything_runs(monkeypatch, capsys):
    from salient_pipes.pipeline import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("gpu", "device 'gpu' is not a torch device"),
                            ("cuda", "device cuda requested but CUDA is not available")):
        with pytest.raises(SystemExit) as stop:
            main(["train", "--device", device, "--epochs", "1"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert f"--device: {message}" in err and "Traceback" not in err
        with pytest.raises(ValueError, match=message):
            resolve_device(device)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device cuda:3 requested but this process sees 1 "):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_cli_error_is_a_message_not_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "salient_pipes", "train", "--epochs", "-3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "must be > 0" in proc.stderr and "Traceback" not in proc.stderr


def test_train_epoch_measures_the_wait_for_data():
    import time

    from salient_pipes import SAGE, FastDataset, salient_pipeline, train_epoch

    ds = FastDataset.synthetic(num_nodes=2000, seed=1)
    batches = list(salient_pipeline(ds, batch_size=256, fanouts=(4, 4), device="cpu"))

    def slow():
        for batch in batches:
            time.sleep(0.05)
            yield batch

    model = SAGE(ds.num_features, 16, ds.num_classes, 2)
    optimizer = torch.optim.Adam(model.parameters())
    waited = train_epoch(model, slow(), optimizer, progress=False)
    assert waited.batches == len(batches)
    assert 0.05 * len(batches) <= waited.data_wait_s < waited.seconds
    assert 0.05 <= waited.first_wait_s < 0.05 * 2 <= waited.data_wait_s
    ready = train_epoch(model, iter(batches), optimizer, progress=False)
    assert ready.data_wait_s < 0.05 * len(batches) / 2  # batches in memory: hardly a wait
    assert 0 < ready.data_wait_share < waited.data_wait_share < 1

    def filling():  # only the first batch keeps the loop waiting
        time.sleep(0.2)
        yield from batches

    filled = train_epoch(model, filling(), optimizer, progress=False)
    assert filled.first_wait_s >= 0.2
    assert filled.data_wait_s - filled.first_wait_s < 0.05 * len(batches) / 2


def test_cli_profile_writes_its_report(tmp_path, capsys):
    assert main(["train", "--epochs", "2", "--num-nodes", "3000", "--hidden", "16",
                 "--batch-size", "512", "--fanouts", "5,5", "--no-progress",
                 "--profile", str(tmp_path / "prof")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("% of the epoch; first batch") == 2
    profile = json.loads((tmp_path / "prof" / "profile.json").read_text())
    assert [row["epoch"] for row in profile["epochs"]] == [0, 1]
    assert "idle" not in printed  # not measured on the CPU
    for row in profile["epochs"]:
        assert 0 <= row["first_wait_s"] <= row["data_wait_s"] <= row["train_s"]
        assert abs(row["compute_s"] + row["data_wait_s"] - row["train_s"]) < 1e-9
        # On the CPU the device idles exactly while the loop waits for data.
        assert row["device_busy_s"] is None
        assert abs(row["device_idle_share"] - row["data_wait_s"] / row["train_s"]) < 1e-9
        assert [s["stage"] for s in row["stages"]][-3:] == ["SampleNeighbors", "SliceFeatures",
                                                           "PrefetchToDevice"]
    plot = tmp_path / "prof" / "stages.png"
    if importlib.util.find_spec("matplotlib") is None:  # the [bench] extra's
        assert not plot.exists() and "the plot needs matplotlib" in printed
    else:
        assert plot.stat().st_size > 1000


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_epoch_measures_gpu_busy_time_by_events():
    ds = FastDataset.synthetic(num_nodes=5000, seed=0)
    model = SAGE(ds.num_features, 64, ds.num_classes, 2).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cuda")
    result = train_epoch(model, pipe, optimizer, progress=False)
    assert result.device_busy_s is not None and 0 < result.device_busy_s <= result.seconds
    assert 0 <= result.device_idle_share < 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphed_sage_trains_and_matches_eager():
    from salient_pipes.models import compile_model

    torch._dynamo.reset()
    ds = FastDataset.synthetic(num_nodes=5000, seed=0)
    torch.manual_seed(0)
    model = SAGE(ds.num_features, 64, ds.num_classes, 2).cuda()
    graphed = compile_model(model, cuda_graphs=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
    pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cuda")
    losses = [train_epoch(graphed, pipe, optimizer, progress=False).loss for _ in range(3)]
    assert losses[-1] < losses[0], losses
    assert graphed.resizes <= 3, graphed.resizes  # a few shapes, not one per batch
    graphed.eval()
    model.eval()
    with torch.no_grad():
        for batch in pipe:
            torch.testing.assert_close(graphed(batch.x, batch.adjs), model(batch.x, batch.adjs),
                                       rtol=1e-3, atol=1e-4)
    acc = batchwise_test(graphed, ds, fanouts=(5, 5), progress=False)["valid"]
    assert acc > 2 / ds.num_classes


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_captured_step_replays_and_trains_as_the_uncaptured_one():
    from salient_pipes.train import CapturedStep

    ds = FastDataset.synthetic(num_nodes=5000, seed=0)
    torch.manual_seed(0)
    models = [SAGE(ds.num_features, 64, ds.num_classes, 2, dropout=0.0).cuda()
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    steps = [CapturedStep(m, torch.optim.Adam(m.parameters(), lr=0.01, capturable=True),
                          capture=capture) for m, capture in zip(models, (True, False))]
    pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cuda")
    for epoch in range(3):
        losses = []
        for step in steps:
            pipe.set_epoch(epoch)
            losses.append(train_epoch(step, pipe, step.optimizer, progress=False).loss)
        assert losses[0] == pytest.approx(losses[1], rel=1e-3), (epoch, losses)
    for a, b in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    captured = steps[0]
    assert 1 <= captured.captures <= 3 and captured.replays > 3 * len(pipe) - 10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_sage_trains_on_one_graph_and_matches_eager():
    torch._dynamo.reset()
    counts = torch._dynamo.utils.counters
    counts.clear()
    ds = FastDataset.synthetic(num_nodes=5000, seed=0)
    torch.manual_seed(0)
    model = SAGE(ds.num_features, 64, ds.num_classes, 2).cuda()
    compiled = torch.compile(model, dynamic=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 5), device="cuda")
    losses = [train_epoch(compiled, pipe, optimizer, progress=False).loss for _ in range(3)]
    assert losses[-1] < losses[0] and counts["stats"]["unique_graphs"] == 1
    model.eval()
    with torch.no_grad():
        batch = next(iter(pipe))
        torch.testing.assert_close(compiled(batch.x, batch.adjs), model(batch.x, batch.adjs),
                                   rtol=1e-3, atol=1e-4)


def test_epoch_loss_is_the_seed_weighted_mean_of_the_batch_losses():
    import torch.nn.functional as F

    from salient_pipes.train import forward

    ds = FastDataset.synthetic(num_nodes=700, seed=3)
    torch.manual_seed(0)
    model = SAGE(ds.num_features, 16, ds.num_classes, num_layers=2, dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the model stays as it is
    pipe = salient_pipeline(ds, batch_size=100, fanouts=(4, 3), device="cpu")
    pipe.set_epoch(5)
    batches = list(pipe)
    sizes = [b.batch_size for b in batches]
    assert len(set(sizes)) > 1  # a smaller last batch: the weights matter
    with torch.no_grad():
        want = sum(F.nll_loss(forward(model, b), b.y, ignore_index=-1).item() * n
                   for b, n in zip(batches, sizes)) / sum(sizes)
    pipe.set_epoch(5)
    got = train_epoch(model, pipe, optimizer, progress=False)
    assert got.batches == len(batches)
    assert got.loss == pytest.approx(want, rel=1e-5)
    # an epoch of no batch has no mean loss (not a loss of 0)
    empty = salient_pipeline(ds, torch.tensor([], dtype=torch.int64), batch_size=100,
                             fanouts=(4, 3), device="cpu")
    nothing = train_epoch(model, empty, optimizer, progress=False)
    assert nothing.batches == 0 and math.isnan(nothing.loss)
