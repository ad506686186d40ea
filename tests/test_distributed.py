"""Data-parallel training over torch.distributed (gloo, 2 CPU processes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from salient_pipes import SAGE, FastDataset, batchwise_test, salient_pipeline
from salient_pipes.distributed import process_group
from tests.doc_blocks import doc_block, run_shell
from tests.ranks import run_ranks

WORLD = 2
BATCH = 128
# 1300 nodes → 702 train nodes: not a multiple of WORLD * BATCH, shards of 351
NUM_NODES = 1300


def _dataset() -> FastDataset:
    return FastDataset.synthetic(num_nodes=NUM_NODES, num_features=16, seed=3)


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    with process_group("cpu", init_method=f"file://{init_file}", rank=rank, world_size=world):
        _train(rank, out_dir)


def _train(rank: int, out_dir: str) -> None:
    torch.manual_seed(0)
    ds = _dataset()
    core = SAGE(ds.num_features, 16, ds.num_classes, num_layers=2)
    model = torch.nn.parallel.DistributedDataParallel(core)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    pipe = salient_pipeline(ds, batch_size=BATCH, fanouts=(5, 5), device="cpu")  # rank from dist
    seeds, counts = [], []
    for epoch in range(2):
        pipe.set_epoch(epoch)
        epoch_seeds = []
        for batch in pipe:
            epoch_seeds.append(batch.n_id[: batch.batch_size])
            optimizer.zero_grad()
            torch.nn.functional.nll_loss(model(batch.x, batch.adjs), batch.y).backward()
            optimizer.step()
        seeds.append(torch.cat(epoch_seeds))
        counts.append(len(epoch_seeds))
    acc = batchwise_test(core, ds, (-1, -1), batch_size=100, sets=("valid", "test"),
                         progress=False)
    torch.save({"seeds": seeds, "counts": counts, "params": core.state_dict(), "acc": acc,
                "len": len(pipe)}, Path(out_dir) / f"rank{rank}.pt")


def test_two_process_gloo_training(tmp_path):
    assert run_ranks(_worker, WORLD, str(tmp_path / "init"), str(tmp_path)) == [0] * WORLD
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    ds = _dataset()
    train = ds.split_idx["train"]
    assert train.numel() % (WORLD * BATCH) != 0
    for epoch in range(2):
        counts = [r["counts"][epoch] for r in results]
        assert counts[0] == counts[1] == results[0]["len"], counts
        union = torch.cat([r["seeds"][epoch] for r in results])
        assert torch.equal(union.sort().values, train.sort().values)
    for name, value in results[0]["params"].items():
        assert torch.equal(value, results[1]["params"][name]), name
    assert results[0]["acc"] == results[1]["acc"]
    single = SAGE(ds.num_features, 16, ds.num_classes, num_layers=2)
    single.load_state_dict(results[0]["params"])
    expected = batchwise_test(single, ds, (-1, -1), batch_size=100, sets=("valid", "test"),
                              progress=False)
    for split in ("valid", "test"):
        assert abs(results[0]["acc"][split] - expected[split]) < 1e-9


def test_cli_under_torchrun(tmp_path):
    """docs/distributed.md's command, as written: two gloo ranks learn, and
    rank 0 alone prints and writes the summary."""
    proc = run_shell(doc_block("docs/distributed.md", "--distributed --num-nodes"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("final    |") == 1  # only rank 0 prints
    assert "x 2 process(es)" in proc.stdout
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["processes"] == 2 and summary["test_acc"] > 2 * summary["chance"]


def test_distributed_flag_needs_torchrun(capsys):
    from salient_pipes.cli import main

    env_world = os.environ.pop("WORLD_SIZE", None)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--distributed"])
        assert exit_info.value.code == 2
        assert "runs under torchrun" in capsys.readouterr().err
    finally:
        if env_world is not None:
            os.environ["WORLD_SIZE"] = env_world
