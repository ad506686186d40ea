"""The ``salient-pipes`` command (also ``python -m salient_pipes``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch

from salient_pipes.data import FastDataset, HeteroDataset, parse_bytes
from salient_pipes.data.features import POLICIES
from salient_pipes.distributed import PartitionedDataset, partition, process_group
from salient_pipes.distributed.partition import METHODS
from salient_pipes.distributed.partitioned import CACHE_POLICIES, cache_budget
from salient_pipes.models import SAGE, HeteroSAGE, compile_model
from salient_pipes.pipeline import resolve_device, salient_pipeline
from salient_pipes.pipes import pipeline_stats
from salient_pipes.train import batchwise_test, train_epoch

SYNTHETIC = "synthetic"
MAG_SYNTHETIC = "mag-synthetic"
CORA = "cora"


def _fanouts(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"fanouts must be integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("fanouts must name at least one hop")
    if any(v == 0 or v < -1 for v in values):
        raise argparse.ArgumentTypeError(f"each fanout must be positive or -1, got {text!r}")
    return values


def _positive(kind: type, allow_zero: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"must be {'>= 0' if allow_zero else '> 0'}, got {text}")
        return value
    return parse


def _cache_size(text: str) -> Union[int, str]:
    if text.strip().endswith("%"):
        try:
            cache_budget(text, 1, 1)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text.strip()
    return _bytes(text)


def _bytes(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4GiB or 512MB, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salient-pipes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train GraphSAGE through salient_pipeline()",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--dataset", default=SYNTHETIC,
                       help="'synthetic' (built in, no download), 'mag-synthetic' (built in, "
                            "heterogeneous, ogbn-mag's schema), 'cora' (a Planetoid root), "
                            "or an OGB node-property name such as ogbn-arxiv or ogbn-mag")
    train.add_argument("--root", default=None,
                       help="data directory (default: data/ for OGB, data/planetoid for cora)")
    train.add_argument("--num-nodes", type=_positive(int), default=50_000,
                       help="nodes of the synthetic graph")
    train.add_argument("--mag-scale", type=_positive(float), default=0.05,
                       help="size of mag-synthetic relative to ogbn-mag (1.0: 1.9 M nodes)")
    train.add_argument("--epochs", type=_positive(int, allow_zero=True), default=5)
    train.add_argument("--batch-size", type=_positive(int), default=1024)
    train.add_argument("--fanouts", type=_fanouts, default=[15, 10, 5],
                       help="per hop, seeds' hop first, e.g. 15,10,5; -1 = all neighbors")
    train.add_argument("--test-fanouts", type=_fanouts, default=None,
                       help="fanouts for evaluation (default: 20 per hop)")
    train.add_argument("--hidden", type=_positive(int), default=256)
    train.add_argument("--lr", type=_positive(float), default=0.01)
    train.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if any)")
    train.add_argument("--num-threads", type=_positive(int), default=None,
                       help="native sampling threads (default: cores / local processes)")
    train.add_argument("--feature-cache", type=_cache_size, default=None, metavar="SIZE",
                       help="keep this many bytes of feature rows in memory (e.g. 4GiB, or "
                            "10%% of the feature table): hot rows of a file larger than "
                            "memory, or remote rows of a --partitioned dataset")
    train.add_argument("--cache-policy", choices=sorted(set(POLICIES) | set(CACHE_POLICIES)),
                       default=None,
                       help="which rows --feature-cache keeps (default: degree; vip for "
                            "--partitioned)")
    train.add_argument("--partitioned", type=Path, default=None, metavar="DIR",
                       help="train on a dataset written by 'salient-pipes partition': each "
                            "rank holds its part's feature rows and fetches the rest")
    train.add_argument("--memory-limit", type=_bytes, default=None, metavar="SIZE",
                       help="memory for converting an OGB dataset the first time "
                            "(default: a quarter of physical memory)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--eval-every", type=_positive(int), default=1,
                       help="evaluate on valid every N epochs")
    train.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    train.add_argument("--checkpoint", type=Path, default=None,
                       help="save model, optimizer and pipeline state in this directory and "
                            "resume from it when it holds a checkpoint")
    train.add_argument("--checkpoint-every", type=_positive(int), default=50,
                       help="batches between checkpoints (one is also saved after each epoch)")
    train.add_argument("--profile", type=Path, default=None, metavar="DIR",
                       help="report per epoch how long training waited for data, and write "
                            "DIR/profile.json and DIR/stages.png (per-stage wait times)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--compile", action="store_true",
                       help="train through torch.compile(model, dynamic=True): fused kernels, "
                            "one compilation for every batch size (GraphSAGE, not the "
                            "heterogeneous model)")
    train.add_argument("--cuda-graphs", action="store_true",
                       help="with --compile on CUDA: pad batches to rarely changing shapes "
                            "and replay each step as recorded CUDA graphs (one launch instead "
                            "of one per kernel; single process)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training under torchrun: one process per GPU "
                            "(NCCL) or per CPU worker (gloo)")
    part = sub.add_parser("partition", help="cut a dataset's feature rows into parts, one "
                                            "per rank, for train --partitioned",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    part.add_argument("--dataset", default=SYNTHETIC,
                      help="'synthetic', 'cora' or an OGB node-property name")
    part.add_argument("--root", default=None, help="where OGB datasets live")
    part.add_argument("--num-nodes", type=_positive(int), default=50_000,
                      help="nodes of the synthetic dataset")
    part.add_argument("--seed", type=int, default=0)
    part.add_argument("--memory-limit", type=_bytes, default=None, metavar="SIZE",
                      help="memory for converting an OGB dataset the first time")
    part.add_argument("--parts", type=_positive(int), required=True,
                      help="number of parts: the world size of the training run")
    part.add_argument("--method", choices=METHODS, default="metis",
                      help="METIS (pip install pymetis) keeps neighbours together; random "
                           "needs no graph in memory")
    part.add_argument("--out", type=Path, required=True, help="directory to write")
    part.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_partition(args: argparse.Namespace) -> None:
    """Writes the dataset ``args`` name, cut into ``args.parts`` parts."""
    dataset = load_dataset(args.dataset, args.root, args.num_nodes, args.seed,
                           not args.no_progress, args.memory_limit)
    if not isinstance(dataset, FastDataset):
        raise SystemExit("salient-pipes: partitioning heterogeneous datasets is not "
                         "supported yet")
    print(f"dataset  {dataset.summary()}", flush=True)
    start = time.perf_counter()
    partition(dataset, args.parts, args.out, method=args.method, seed=args.seed,
              progress=not args.no_progress)
    meta = json.loads((args.out / "meta.json").read_text())
    print(f"written  {args.out}: {args.parts} parts of {min(meta['part_sizes']):,}-"
          f"{max(meta['part_sizes']):,} rows, training nodes per part "
          f"{meta['split_sizes'].get('train')} ({args.method}, "
          f"{time.perf_counter() - start:.1f} s)", flush=True)


def load_dataset(name: str, root: Optional[str], num_nodes: int, seed: int,
                 progress: bool, memory_limit: Optional[int] = None,
                 mag_scale: float = 0.05) -> Union[FastDataset, HeteroDataset]:
    """The dataset the CLI names: synthetic, mag-synthetic, Cora from a
    Planetoid root, or OGB (homogeneous or heterogeneous)."""
    if name == SYNTHETIC:
        return FastDataset.synthetic(num_nodes=num_nodes, seed=seed)
    if name == MAG_SYNTHETIC:
        return HeteroDataset.synthetic_mag(scale=mag_scale, seed=seed)
    if name.lower() == CORA:
        from torch_geometric.datasets import Planetoid

        data = Planetoid(root or "data/planetoid", "Cora")[0]
        return FastDataset.from_pyg(data, name="cora")
    from salient_pipes.data.ogb import is_hetero

    if is_hetero(name):
        return HeteroDataset.from_path(root or "data", name, progress=progress,
                                       memory_limit=memory_limit)
    return FastDataset.from_path(root or "data", name, progress=progress,
                                 memory_limit=memory_limit)


def _check_dataset_name(parser: argparse.ArgumentParser, name: str) -> None:
    if name in (SYNTHETIC, MAG_SYNTHETIC) or name.lower() == CORA:
        return
    from salient_pipes.data.ogb import dataset_info, is_hetero

    try:
        dataset_info(name, hetero=is_hetero(name))
    except ValueError as exc:
        parser.error(f"--dataset: {exc}")


CHECKPOINT_FILE = "checkpoint.pt"


def _run_key(args: argparse.Namespace, dataset: Union[FastDataset, HeteroDataset]) -> dict:
    """What a checkpoint must agree with to be resumed by this run."""
    return {"dataset": dataset.name, "fanouts": args.fanouts, "batch_size": args.batch_size,
            "hidden": args.hidden, "seed": args.seed}


def save_checkpoint(directory: Path, state: dict) -> None:
    """Writes ``state`` to ``directory/checkpoint.pt`` atomically (temp + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT_FILE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, directory / CHECKPOINT_FILE)


def load_checkpoint(directory: Path, key: dict) -> Optional[dict]:
    """The checkpoint in ``directory``, or None; refuses one from another run."""
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    if state.get("run") != key:
        raise SystemExit(f"salient-pipes: {path} was written by a different run "
                         f"({state.get('run')}); use another --checkpoint directory")
    return state


def run_train(args: argparse.Namespace, device: torch.device) -> dict:
    """Trains as ``args`` say on ``device``; under ``--distributed`` inside a
    joined process group (its DDP model is freed when this returns)."""
    torch.manual_seed(args.seed)
    rank = torch.distributed.get_rank() if args.distributed else 0
    lead = rank == 0  # only the first process prints and saves
    progress = lead and not args.no_progress

    def log(text: str) -> None:
        if lead:
            print(text, flush=True)

    t0 = time.perf_counter()
    dataset: Union[FastDataset, HeteroDataset, PartitionedDataset]
    feature_cache = args.feature_cache
    if args.partitioned is not None:
        dataset = PartitionedDataset.load(
            args.partitioned, cache=feature_cache, cache_policy=args.cache_policy or "vip",
            fanouts=args.fanouts, batch_size=args.batch_size, seed=args.seed)
        feature_cache = None  # chosen and filled by load()
    else:
        dataset = load_dataset(args.dataset, args.root, args.num_nodes, args.seed, progress,
                               args.memory_limit, args.mag_scale)
        if isinstance(feature_cache, str):  # a share of the feature table
            feature_cache = cache_budget(feature_cache, dataset.num_nodes,
                                         dataset.num_features * dataset.x.element_size()) \
                if isinstance(dataset, FastDataset) else feature_cache
    log(f"dataset  {dataset.summary()} (ready in {time.perf_counter() - t0:.1f} s)")
    layers = len(args.fanouts)
    test_fanouts = args.test_fanouts or [20] * layers
    if isinstance(dataset, HeteroDataset):
        if isinstance(feature_cache, str):  # a share of all node types' features
            table = sum(x.numel() * x.element_size() for x in dataset.x.values())
            feature_cache = cache_budget(feature_cache, 1, table)
        core: torch.nn.Module = HeteroSAGE(
            (dataset.node_types, dataset.edge_types), dataset.num_features, args.hidden,
            dataset.num_classes, layers, target=dataset.label_type).to(device)
    else:
        core = SAGE(dataset.num_features, args.hidden, dataset.num_classes, layers).to(device)
    model = core
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None)
    if args.cuda_graphs and not args.compile:
        raise SystemExit("--cuda-graphs records the compiled model: add --compile")
    if args.cuda_graphs and (device.type != "cuda" or args.distributed):
        raise SystemExit("--cuda-graphs needs one process on a CUDA device; "
                         "train without it here")
    if args.compile:
        if isinstance(dataset, HeteroDataset):
            raise SystemExit("--compile: the heterogeneous model does not compile; "
                             "train it without --compile")
        model = compile_model(model, cuda_graphs=args.cuda_graphs)
    # On CUDA, Adam's fused kernel: a few launches per step instead of several per tensor.
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 fused=True if device.type == "cuda" else None)
    pipe = salient_pipeline(dataset, "train", batch_size=args.batch_size, fanouts=args.fanouts,
                            feature_cache=feature_cache,
                            cache_policy=args.cache_policy or "degree",
                            device=device, num_threads=args.num_threads, seed=args.seed)
    world = torch.distributed.get_world_size() if args.distributed else 1
    log(f"training {layers}-layer {type(core).__name__} on {device} x {world} process(es), "
        f"{len(pipe)} batches per epoch per process")
    history: list = []
    first_epoch = 0
    key = _run_key(args, dataset)
    resumed = load_checkpoint(args.checkpoint, key) if args.checkpoint else None
    if resumed is not None:
        core.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        torch.set_rng_state(resumed["rng"])
        pipe.load_state_dict(resumed["pipeline"])
        first_epoch, history = resumed["pipeline"]["epoch"], resumed["history"]
        log(f"resuming from {args.checkpoint}: epoch {first_epoch}, "
            f"batch {resumed['pipeline']['batches_done']}")

    def checkpoint(pipeline_state: dict) -> None:
        if not lead:
            return
        save_checkpoint(args.checkpoint, {
            "run": key, "model": core.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(), "pipeline": pipeline_state, "history": history})

    def every_n(batch: int) -> None:
        if args.checkpoint and batch % args.checkpoint_every == 0:
            checkpoint(pipe.state_dict())

    for epoch in range(first_epoch, args.epochs):
        if not (resumed is not None and epoch == first_epoch):
            pipe.set_epoch(epoch)
        result = train_epoch(model, pipe, optimizer, progress=progress, desc=f"epoch {epoch}",
                             on_batch=every_n)
        row = {"epoch": epoch, "loss": result.loss, "train_s": result.seconds}
        line = f"epoch {epoch:3d} | loss {result.loss:.4f} | train {result.seconds:6.2f} s"
        if args.profile is not None:
            row.update(data_wait_s=result.data_wait_s, first_wait_s=result.first_wait_s,
                       compute_s=result.compute_s,
                       device_busy_s=result.device_busy_s,
                       device_idle_share=result.device_idle_share, stages=pipeline_stats(pipe))
            line += (f" | data wait {result.data_wait_s:5.2f} s "
                     f"({result.data_wait_share:.0%} of the epoch; first batch "
                     f"{result.first_wait_s:.3f} s)"
                     f" | compute {result.compute_s:5.2f} s"
                     f" | {device.type} idle {result.device_idle_share:.0%}")
        cached = [s["cache_hit_rate"] for s in pipeline_stats(pipe) if "cache_hit_rate" in s]
        if cached:
            row["cache_hit_rate"] = cached[0]
            line += f" | cache hits {cached[0]:.1%}"
        fetched = [s for s in pipeline_stats(pipe) if "remote_bytes" in s]
        if fetched:
            keys = ("local_rows", "cached_rows", "remote_rows", "remote_bytes",
                    "remote_bytes_per_batch", "remote_share")
            row["fetch"] = {k: fetched[0][k] for k in keys}
            line += (f" | fetched {fetched[0]['remote_bytes'] / 2**20:,.1f} MiB "
                     f"({fetched[0]['remote_share']:.1%} of rows)")
        if (epoch + 1) % args.eval_every == 0 or epoch == args.epochs - 1:
            t = time.perf_counter()
            acc = batchwise_test(core, dataset, test_fanouts, args.batch_size, sets=("valid",),
                                 device=device, num_threads=args.num_threads, progress=progress)
            row.update(valid_acc=acc["valid"], eval_s=time.perf_counter() - t)
            line += f" | eval {row['eval_s']:5.2f} s | valid acc {acc['valid']:.4f}"
        log(line)
        history.append(row)
        if args.checkpoint:
            checkpoint({"epoch": epoch + 1, "batches_done": 0})
    final = batchwise_test(core, dataset, test_fanouts, args.batch_size, sets=("valid", "test"),
                           device=device, num_threads=args.num_threads, progress=progress)
    summary = {"dataset": dataset.name, "device": str(device), "processes": world,
               "epochs": args.epochs, "compiled": args.compile, "cuda_graphs": args.cuda_graphs,
               "fanouts": args.fanouts, "test_fanouts": test_fanouts,
               "batch_size": args.batch_size, "history": history,
               "valid_acc": final["valid"], "test_acc": final["test"],
               "chance": 1.0 / dataset.num_classes}
    log(f"final    | valid acc {final['valid']:.4f} | test acc {final['test']:.4f} "
        f"(chance {summary['chance']:.4f})")
    log(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    if args.profile is not None and lead:
        write_profile(args.profile, history, str(device))
        log(f"profile  written to {args.profile}/profile.json and stages.png")
    if args.out is not None and lead:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))
    return summary


def write_profile(directory: Path, history: list, device: str) -> None:
    """``profile.json`` (per epoch: seconds, data wait, per-stage waits) and,
    with matplotlib, ``stages.png``: each epoch's time split into the wait
    for data and the steps, and the last epoch's per-stage waits."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.json").write_text(json.dumps({"device": device,
                                                        "epochs": history}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot is optional (pip install matplotlib)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [row["epoch"] for row in history]
    waits = [row["data_wait_s"] for row in history]
    steps = [row["train_s"] - row["data_wait_s"] for row in history]
    left.bar(epochs, steps, label="training steps")
    left.bar(epochs, waits, bottom=steps, label="waiting for data")
    left.set_xlabel("epoch")
    left.set_ylabel("seconds")
    left.legend()
    stages = history[-1]["stages"] if history else []
    right.barh([s["stage"] for s in stages], [s["self_s"] for s in stages])
    right.invert_yaxis()
    right.set_xlabel("seconds its consumer waited on it (last epoch)")
    fig.tight_layout()
    fig.savefig(directory / "stages.png", dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        _check_dataset_name(parser, args.dataset)
        if args.test_fanouts is not None and len(args.test_fanouts) != len(args.fanouts):
            parser.error("--test-fanouts must name as many hops as --fanouts")
        if args.cache_policy is not None and \
                (args.cache_policy == "vip") != (args.partitioned is not None):
            parser.error(f"--cache-policy {args.cache_policy} is for "
                         f"{'' if args.cache_policy == 'vip' else 'un'}partitioned datasets")
        if args.partitioned is not None and not args.distributed:
            try:
                parts = json.loads((args.partitioned / "meta.json").read_text())["num_parts"]
            except (OSError, ValueError, KeyError) as exc:
                parser.error(f"--partitioned: {args.partitioned} holds no partitioned "
                             f"dataset ({exc})")
            if parts > 1:
                parser.error(f"--partitioned: {args.partitioned} has {parts} parts; train "
                             f"it with --distributed under torchrun --nproc-per-node {parts}")
        if args.distributed and "WORLD_SIZE" not in os.environ:
            parser.error("--distributed runs under torchrun, e.g. "
                         "torchrun --nproc-per-node 2 -m salient_pipes train --distributed")
        if args.distributed:
            with process_group(args.device) as device:
                run_train(args, device)
        else:
            run_train(args, resolve_device(args.device))
    elif args.command == "partition":
        _check_dataset_name(parser, args.dataset)
        run_partition(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
