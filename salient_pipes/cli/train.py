"""``salient-pipes train``: load the data, build the model, train epoch by
epoch with checkpoints, evaluate, report."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from salient_pipes.allocator import keep_freed_memory
from salient_pipes.cli.checkpoint import (
    Interrupted,
    Schedule,
    StopSignals,
    load_checkpoint,
    save_checkpoint,
)
from salient_pipes.cli.data import load_dataset
from salient_pipes.cli.profile import write_profile
from salient_pipes.data import FastDataset, HeteroDataset
from salient_pipes.distributed import PartitionedDataset
from salient_pipes.models import SAGE, HeteroSAGE, compile_model
from salient_pipes.pipeline import salient_pipeline
from salient_pipes.pipes import pipeline_stats
from salient_pipes.train import EpochResult, EpochSoFar, batchwise_test, train_epoch

Dataset = Union[FastDataset, HeteroDataset, PartitionedDataset]


@dataclass
class Run:
    """What the steps of a training run share."""

    args: argparse.Namespace
    device: torch.device
    lead: bool  # the process that prints and saves (rank 0)
    world: int
    dataset: Any = None
    core: Any = None  # the model as built (what is saved and evaluated)
    model: Any = None  # what trains: the core, wrapped by DDP or compiled
    optimizer: Any = None
    pipe: Any = None  # the pipeline's last stage, once built
    history: List[dict] = field(default_factory=list)
    final_valid: Optional[float] = None  # valid accuracy of the model as it ends training

    @property
    def progress(self) -> bool:
        return self.lead and not self.args.no_progress

    def log(self, text: str) -> None:
        if self.lead:
            print(text, flush=True)

    def key(self) -> dict:
        """What a checkpoint must agree with to be resumed by this run."""
        a = self.args
        return {"dataset": self.dataset.name, "fanouts": a.fanouts, "batch_size": a.batch_size,
                "hidden": a.hidden, "seed": a.seed}


def load_data(run: Run) -> Union[int, str, None]:
    """Opens the dataset; returns the feature cache budget for the pipeline."""
    args, start = run.args, time.perf_counter()
    cache = args.feature_cache
    if args.partitioned is not None:
        run.dataset = PartitionedDataset.load(
            args.partitioned, cache=cache, cache_policy=args.cache_policy or "vip",
            fanouts=args.fanouts, batch_size=args.batch_size, seed=args.seed)
        cache = None  # chosen and filled by load()
    else:
        run.dataset = load_dataset(args.dataset, args.root, args.num_nodes, args.seed,
                                   run.progress, args.memory_limit, args.mag_scale)
    run.log(f"dataset  {run.dataset.summary()} (ready in {time.perf_counter() - start:.1f} s)")
    return cache


def build_model(run: Run) -> None:
    """The model (DDP-wrapped or compiled as asked) and its optimizer."""
    args, ds, device = run.args, run.dataset, run.device
    layers = len(args.fanouts)
    if isinstance(ds, HeteroDataset):
        if args.compile:
            raise SystemExit("salient-pipes: --compile: the heterogeneous model does not "
                             "compile; train it without --compile")
        run.core = HeteroSAGE((ds.node_types, ds.edge_types), ds.num_features, args.hidden,
                              ds.num_classes, layers, target=ds.label_type).to(device)
    else:
        run.core = SAGE(ds.num_features, args.hidden, ds.num_classes, layers).to(device)
    if args.cuda_graphs and (device.type != "cuda" or args.distributed):
        raise SystemExit("salient-pipes: --cuda-graphs needs one process on a CUDA device; "
                         "train without it here")
    run.model = run.core
    if args.distributed:
        run.model = torch.nn.parallel.DistributedDataParallel(
            run.core, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        run.model = compile_model(run.model, cuda_graphs=args.cuda_graphs)
    # On CUDA, Adam's fused kernel: a few launches per step instead of several per tensor.
    run.optimizer = torch.optim.Adam(run.model.parameters(), lr=args.lr,
                                     fused=True if device.type == "cuda" else None)


def resume(run: Run) -> Tuple[int, Optional[EpochSoFar]]:
    """Loads ``--checkpoint``'s state when it holds one: the epoch to start
    at and what that epoch had done."""
    args = run.args
    state = load_checkpoint(args.checkpoint, run.key()) if args.checkpoint else None
    if state is None:
        return 0, None
    run.core.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    run.pipe.load_state_dict(state["pipeline"])
    run.history = state["history"]
    epoch, done = state["pipeline"]["epoch"], state["pipeline"]["batches_done"]
    run.log(f"resuming from {args.checkpoint}: epoch {epoch}, batch {done}")
    so_far = state.get("epoch_so_far")
    return epoch, None if so_far is None else EpochSoFar.from_state(so_far)


def checkpoint(run: Run, so_far: Optional[EpochSoFar] = None) -> Optional[Any]:
    """Saves the run's state (rank 0 only), mid-epoch when ``so_far`` is given."""
    if not (run.lead and run.args.checkpoint):
        return None
    pipeline = run.pipe.state_dict() if so_far is not None else \
        {"epoch": run.pipe.epoch + 1, "batches_done": 0}
    return save_checkpoint(run.args.checkpoint, {
        "run": run.key(), "model": run.core.state_dict(),
        "optimizer": run.optimizer.state_dict(), "rng": torch.get_rng_state(),
        "pipeline": pipeline, "history": run.history,
        "epoch_so_far": None if so_far is None else so_far.state_dict()})


def batch_hook(run: Run, stop: StopSignals) -> Callable[[Callable[[], EpochSoFar]], None]:
    """What runs after each training step: a checkpoint when one is due, and
    a stop (after a checkpoint) when a signal asked for one."""
    schedule = Schedule(run.args.checkpoint_every)
    start = run.pipe.state_dict()["batches_done"]

    def on_batch(so_far: Callable[[], EpochSoFar]) -> None:
        batch = run.pipe.state_dict()["batches_done"]
        signum = stop.agreed(batch - start)
        if signum is not None:
            raise Interrupted(signum, checkpoint(run, so_far()))
        if run.args.checkpoint and schedule.due(batch):
            checkpoint(run, so_far())

    return on_batch


def report(run: Run, epoch: int, result: EpochResult) -> Tuple[dict, str]:
    """The epoch's history row and printed line (training part)."""
    args, device = run.args, run.device
    row: Dict[str, Any] = {"epoch": epoch, "loss": result.loss, "train_s": result.seconds}
    line = f"epoch {epoch:3d} | loss {result.loss:.4f} | train {result.seconds:6.2f} s"
    stats = pipeline_stats(run.pipe)
    if args.profile is not None:
        row.update(data_wait_s=result.data_wait_s, first_wait_s=result.first_wait_s,
                   compute_s=result.compute_s, device_busy_s=result.device_busy_s,
                   device_idle_share=result.device_idle_share, stages=stats)
        line += (f" | data wait {result.data_wait_s:5.2f} s "
                 f"({result.data_wait_share:.0%} of the epoch; first batch "
                 f"{result.first_wait_s:.3f} s) | compute {result.compute_s:5.2f} s")
        if result.device_busy_s is not None:  # measured by events on a GPU only
            line += f" | {device.type} idle {result.device_idle_share:.0%}"
    cached = [s["cache_hit_rate"] for s in stats if "cache_hit_rate" in s]
    if cached:
        row["cache_hit_rate"] = cached[0]
        line += f" | cache hits {cached[0]:.1%}"
    held = [s["device_cache_hit_rate"] for s in stats if "device_cache_hit_rate" in s]
    if held:
        row["device_cache_hit_rate"] = held[0]
        line += f" | {device.type} cache hits {held[0]:.1%}"
    read = [s for s in stats if "bytes_read" in s]
    if read:
        keys: Tuple[str, ...] = ("windows", "bytes_read", "rows_read_per_row_delivered",
                                 "read_bytes_s")
        row["read_ahead"] = {k: read[0][k] for k in keys}
        line += (f" | read {read[0]['bytes_read'] / 2**30:,.1f} GiB in {read[0]['windows']} "
                 f"windows ({read[0]['read_bytes_s'] / 1e9:.2f} GB/s)")
    fetched = [s for s in stats if "remote_bytes" in s]
    if fetched:
        keys = ("local_rows", "cached_rows", "remote_rows", "remote_bytes",
                "remote_bytes_per_batch", "remote_share")
        row["fetch"] = {k: fetched[0][k] for k in keys}
        line += (f" | fetched {fetched[0]['remote_bytes'] / 2**20:,.1f} MiB "
                 f"({fetched[0]['remote_share']:.1%} of rows)")
    return row, line


def evaluate(run: Run, sets: Tuple[str, ...]) -> Dict[str, float]:
    args = run.args
    fanouts = args.test_fanouts or [20] * len(args.fanouts)
    return batchwise_test(run.core, run.dataset, fanouts, args.batch_size, sets=sets,
                          device=run.device, num_threads=args.num_threads,
                          progress=run.progress)


def train_epochs(run: Run, first_epoch: int, so_far: Optional[EpochSoFar]) -> None:
    """The epochs from ``first_epoch`` on (the first one continued from
    ``so_far`` after a resume), each followed by evaluation every
    ``--eval-every`` epochs and a checkpoint."""
    args = run.args
    with StopSignals(distributed=args.distributed) as stop:
        for epoch in range(first_epoch, args.epochs):
            if epoch != first_epoch or so_far is None:
                run.pipe.set_epoch(epoch)
            result = train_epoch(run.model, run.pipe, run.optimizer, progress=run.progress,
                                 desc=f"epoch {epoch}", on_batch=batch_hook(run, stop),
                                 resume=so_far if epoch == first_epoch else None)
            row, line = report(run, epoch, result)
            if (epoch + 1) % args.eval_every == 0 or epoch == args.epochs - 1:
                start = time.perf_counter()
                acc = evaluate(run, ("valid",))
                row.update(valid_acc=acc["valid"], eval_s=time.perf_counter() - start)
                line += f" | eval {row['eval_s']:5.2f} s | valid acc {acc['valid']:.4f}"
                if epoch == args.epochs - 1:
                    run.final_valid = acc["valid"]
            run.log(line)
            run.history.append(row)
            saved = checkpoint(run)
            signum = stop.agreed()
            if signum is not None and epoch + 1 < args.epochs:
                raise Interrupted(signum, saved)


def finish(run: Run) -> dict:
    """Final accuracies, the summary, and the profile and summary files."""
    args = run.args
    if run.final_valid is not None:  # evaluated after the last epoch: not again
        final = {"valid": run.final_valid, **evaluate(run, ("test",))}
    else:
        final = evaluate(run, ("valid", "test"))
    summary = {"dataset": run.dataset.name, "device": str(run.device), "processes": run.world,
               "epochs": args.epochs, "compiled": args.compile,
               "cuda_graphs": args.cuda_graphs, "fanouts": args.fanouts,
               "test_fanouts": args.test_fanouts or [20] * len(args.fanouts),
               "batch_size": args.batch_size, "history": run.history,
               "valid_acc": final["valid"], "test_acc": final["test"],
               "chance": 1.0 / run.dataset.num_classes}
    run.log(f"final    | valid acc {final['valid']:.4f} | test acc {final['test']:.4f} "
            f"(chance {summary['chance']:.4f})")
    run.log(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    if args.profile is not None and run.lead:
        plot = write_profile(args.profile, run.history, str(run.device))
        run.log(f"profile  written to {args.profile / 'profile.json'}" + (
            f" and {plot}" if plot is not None else
            " (the plot needs matplotlib: pip install matplotlib)"))
    if args.out is not None and run.lead:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))
    return summary


def run_train(args: argparse.Namespace, device: torch.device) -> dict:
    """Trains as ``args`` say on ``device``; under ``--distributed`` inside a
    joined process group (its DDP model is freed when this returns)."""
    torch.manual_seed(args.seed)
    distributed = args.distributed
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    run = Run(args, device, lead=rank == 0, world=world)
    cache = load_data(run)
    if device.type == "cpu" and not args.system_malloc and keep_freed_memory():
        run.log("host allocator keeps freed memory for the next step (--system-malloc: "
                "the C library's defaults)")
    build_model(run)
    run.pipe = salient_pipeline(run.dataset, "train", batch_size=args.batch_size,
                                fanouts=args.fanouts, feature_cache=cache,
                                cache_policy=args.cache_policy or "degree", device=device,
                                num_threads=args.num_threads, seed=args.seed,
                                out_of_core={"auto": None, "on": True, "off": False}[
                                    args.out_of_core], features_on=args.features_on,
                                device_cache=args.device_cache)
    run.log(run.pipe.placement)
    run.log(f"training {len(args.fanouts)}-layer {type(run.core).__name__} on {device} x "
            f"{world} process(es), {len(run.pipe)} batches per epoch per process")
    first_epoch, so_far = resume(run)
    train_epochs(run, first_epoch, so_far)
    return finish(run)
