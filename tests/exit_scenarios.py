"""Programs that end while salient_pipes still has work in flight; each must
exit with status 0. Run as ``python tests/exit_scenarios.py SCENARIO``
(``torchrun --nproc-per-node 3 tests/exit_scenarios.py ranks`` for the
distributed one); tests/test_exit.py runs them many times."""

from __future__ import annotations

import sys
import threading
import time

import torch

from salient_pipes import FastDataset, salient_pipeline
from salient_pipes.data import HeteroDataset
from salient_pipes.pipes import NodeIndices
from salient_pipes.pipes._handoff import run_ahead


def consume_forever(pipe) -> None:
    """A daemon thread iterates ``pipe`` epoch after epoch; the program ends
    half a second later."""

    def consume() -> None:
        while True:
            for _ in pipe:
                pass

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(0.5)


def _pipe(**kwargs):
    ds = FastDataset.synthetic(num_nodes=20_000, seed=0)
    return salient_pipeline(ds, batch_size=64, fanouts=(10, 5), device="cpu", **kwargs)


def ranks() -> None:
    """Three gloo ranks: two epochs, destroy the group, exit (the carry of
    the next epoch's first batches still in flight)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    ds = FastDataset.synthetic(num_nodes=3000, seed=0)
    pipe = salient_pipeline(ds, batch_size=128, fanouts=(5, 5), device="cpu",
                            rank=dist.get_rank(), world_size=dist.get_world_size())
    total = torch.zeros(1)
    for _ in range(2):
        for batch in pipe:
            total += batch.batch_size
    dist.all_reduce(total)
    assert int(total) == 2 * ds.split_idx["train"].numel()
    dist.destroy_process_group()


def mid_epoch() -> None:
    """The main thread leaves an epoch after a few batches, iterator held."""
    pipe = _pipe(num_threads=2)
    it = iter(pipe)
    for _ in range(3):
        next(it)
    globals()["held"] = it


def sys_exit() -> None:
    """sys.exit from inside the training loop."""
    for i, _ in enumerate(_pipe()):
        if i == 2:
            sys.exit(0)


def daemon_consumer() -> None:
    """A daemon thread iterates epoch after epoch while the program ends."""
    pipe = _pipe(num_threads=1)

    consume_forever(pipe)


def background_stage() -> None:
    """A stage's background thread (as pin_memory and prefetch_to_device
    run on CUDA) pulls batches while the program ends."""
    ds = FastDataset.synthetic(num_nodes=20_000, seed=0)
    pipe = NodeIndices(ds.split_idx["train"]).batch_nodes(64).sample_neighbors(
        ds, [10, 5], num_threads=1)

    def epochs():
        while True:
            yield from pipe

    it = run_ahead(epochs, 2, threading.Event(), "scenario")
    for _ in range(50):
        next(it)
    globals()["held"] = it


def nodes_loader() -> None:
    """torchdata.nodes' prefetcher thread over our pipe, held in a global."""
    from torchdata.nodes import Loader, Prefetcher

    from salient_pipes.adapters.torchdata import PipeNode

    loader = Loader(Prefetcher(PipeNode(_pipe()), 4))
    it = iter(loader)
    for _ in range(20):
        next(it)
    globals()["held"] = loader, it


def hetero_daemon() -> None:
    """A daemon thread samples a heterogeneous graph while the program ends."""
    ds = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
    pipe = salient_pipeline(ds, batch_size=32, fanouts=[4, 2], device="cpu", num_threads=1)

    consume_forever(pipe)


def lookahead_daemon() -> None:
    """A daemon thread iterates an out-of-core pipe (features read a window
    ahead on three background threads, reads in flight in native code)
    epoch after epoch while the program ends."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "ds"
    FastDataset.synthetic(num_nodes=60_000, num_features=128, seed=0).save(path,
                                                                           progress=False)
    pipe = salient_pipeline(FastDataset.load(path), batch_size=256, fanouts=(10, 5),
                            device="cpu", num_threads=2, out_of_core=True,
                            feature_cache="4MiB")

    consume_forever(pipe)


SCENARIOS = {f.__name__: f for f in (ranks, mid_epoch, sys_exit, daemon_consumer,
                                      background_stage, nodes_loader, hetero_daemon,
                                      lookahead_daemon)}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
