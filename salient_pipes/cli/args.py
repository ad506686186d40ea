"""The command line: options of ``train`` and ``partition``, their types and
defaults, and the checks that need more than one option."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

import salient_pipes
from salient_pipes.data import POLICIES, cache_budget, parse_bytes
from salient_pipes.data.format import check_replaceable
from salient_pipes.distributed.partition import METHODS
from salient_pipes.pipeline import resolve_device

SYNTHETIC = "synthetic"
MAG_SYNTHETIC = "mag-synthetic"
CORA = "cora"

DESCRIPTION = ("salient-pipes: train GraphSAGE on salient_pipes' pipelines, or cut a "
               "dataset's feature rows into parts for partitioned training.")

# Options whose default depends on the dataset. The heterogeneous model
# runs a layer per edge type (7 on mag-synthetic), so its defaults are
# smaller: an epoch of mag-synthetic at its default scale takes about a
# minute on a 2-core CPU (docs/datasets.md).
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "homogeneous": {"fanouts": [15, 10, 5], "hidden": 256},
    MAG_SYNTHETIC: {"fanouts": [10, 5], "hidden": 64},
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds each option's default once: not where the help already states it,
    not for flags, and lists as ``15 10 5``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _fanout_tokens(text: str) -> List[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"fanouts must be integers, got {text!r}") from None


class Fanouts(argparse.Action):
    """``--fanouts 15 10 5`` or ``--fanouts 15,10,5``: one list of hops."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        hops = [v for token in values for v in token]
        if not hops:
            raise argparse.ArgumentError(self, "fanouts must name at least one hop")
        if any(v == 0 or v < -1 for v in hops):
            raise argparse.ArgumentError(
                self, f"each fanout must be positive or -1, got {' '.join(map(str, hops))}")
        setattr(namespace, self.dest, hops)


def _positive(kind: type) -> Callable[[str], Any]:
    return _at_least(kind, 0, strict=True)


def _at_least(kind: type, low: int, strict: bool = False) -> Callable[[str], Any]:
    """A parser of ``kind`` values >= ``low`` (> ``low`` when ``strict``)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, "
                                             f"got {text}")
        return value
    return parse


def _bytes(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4GiB or 512MB, got {text!r}") from None


def _cache_size(text: str) -> Union[int, str]:
    if text.strip().endswith("%"):
        try:
            cache_budget(text, 1, "the cache")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text.strip()
    return _bytes(text)


_SECONDS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}


def every(text: str) -> Tuple[str, float]:
    """``"50"`` → ``("batches", 50)``; ``"10min"``, ``"30s"``, ``"1h"`` →
    ``("seconds", ...)``.

    Example:
        >>> every("50"), every("10min")
        (('batches', 50), ('seconds', 600.0))
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", text.lower())
    if match is None or match.group(2) not in ("", *_SECONDS):
        raise argparse.ArgumentTypeError(
            f"expected a number of batches (50) or a time (30s, 10min, 1h), got {text!r}")
    number, unit = float(match.group(1)), match.group(2)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    if not unit:
        if not number.is_integer():
            raise argparse.ArgumentTypeError(f"a number of batches is whole, got {text!r}")
        return "batches", int(number)
    return "seconds", number * _SECONDS[unit]


def _dataset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=SYNTHETIC,
                        help="'synthetic' (built in, no download), 'mag-synthetic' (built in, "
                             "heterogeneous, ogbn-mag's schema), 'cora' (a Planetoid root), "
                             "or an OGB node-property name such as ogbn-arxiv or ogbn-mag")
    parser.add_argument("--root", default=None,
                        help="data directory (default: data for OGB, data/planetoid for cora)")
    parser.add_argument("--num-nodes", type=_at_least(int, 2), default=50_000,
                        help="nodes of the synthetic graph")
    parser.add_argument("--seed", type=_at_least(int, 0), default=0,
                        help="seed of the synthetic graphs, the weights and the batch order")
    parser.add_argument("--memory-limit", type=_bytes, default=None, metavar="SIZE",
                        help="memory for converting an OGB dataset the first time "
                             "(default: a quarter of physical memory)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def version_line() -> str:
    """What ``salient-pipes --version`` prints (what a bug report needs)."""
    return (f"salient-pipes {salient_pipes.__version__} (torch {torch.__version__}, "
            f"Python {platform.python_version()})")


def build_parser() -> argparse.ArgumentParser:
    """The ``salient-pipes`` parser with its ``train`` and ``partition`` commands."""
    parser = argparse.ArgumentParser(prog="salient-pipes", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_line(),
                        help="show the versions of salient_pipes, torch and Python, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,partition}")
    train = sub.add_parser("train", help="train GraphSAGE through salient_pipeline()",
                           description="Train GraphSAGE (or, on a heterogeneous dataset, "
                                       "HeteroSAGE) through salient_pipeline().",
                           formatter_class=HelpFormatter)
    _dataset_options(train)
    train.add_argument("--mag-scale", type=_positive(float), default=0.02,
                       help="size of mag-synthetic relative to ogbn-mag (1.0: 1.9 M nodes, "
                            "21 M edges); an epoch grows about in proportion")
    train.add_argument("--epochs", type=_positive(int), default=5, help="epochs to train")
    train.add_argument("--batch-size", type=_positive(int), default=1024,
                       help="seed nodes per batch")
    train.add_argument("--fanouts", nargs="+", type=_fanout_tokens, action=Fanouts,
                       default=None, metavar="N",
                       help="neighbors sampled per hop, seeds' hop first, e.g. 15 10 5 or "
                            "15,10,5; -1 = all neighbors (default: 15 10 5; mag-synthetic: "
                            "10 5)")
    train.add_argument("--test-fanouts", nargs="+", type=_fanout_tokens, action=Fanouts,
                       default=None, metavar="N",
                       help="fanouts for evaluation (default: 20 per hop)")
    train.add_argument("--hidden", type=_positive(int), default=None,
                       help="hidden channels (default: 256; mag-synthetic: 64)")
    train.add_argument("--lr", type=_positive(float), default=0.01, help="Adam's learning rate")
    train.add_argument("--device", default=None,
                       help="cuda, cuda:1, cpu (default: cuda when available)")
    train.add_argument("--num-threads", type=_positive(int), default=None,
                       help="native sampling threads (default: cores / local processes)")
    train.add_argument("--feature-cache", type=_cache_size, default=None, metavar="SIZE",
                       help="keep this many bytes of feature rows in memory (e.g. 4GiB, or "
                            "10%% of the feature table): hot rows of a file larger than "
                            "memory, or remote rows of a --partitioned dataset")
    train.add_argument("--features-on", default=None, metavar="WHERE",
                       help="host (the default: the sampling workers gather the rows), auto "
                            "(the GPU when its free memory holds the features with 1 GiB to "
                            "spare, else a cache of what is free) or a device such as cuda: "
                            "the features copied there once, each batch's rows gathered there")
    train.add_argument("--gpu-cache", "--device-cache", dest="device_cache", type=_cache_size,
                       default=None, metavar="SIZE",
                       help="keep the hottest feature rows (by --cache-policy) on the GPU "
                            "within SIZE (e.g. 20GiB, or 50%% of the features): only the "
                            "other rows of a batch cross from the host")
    train.add_argument("--out-of-core", choices=("auto", "on", "off"), default="auto",
                       help="read the features from their file a window of batches ahead, "
                            "within --feature-cache bytes: 'auto' when a dataset opened from "
                            "disk has features larger than half of memory")
    train.add_argument("--cache-policy", choices=POLICIES, default=None,
                       help="which rows --feature-cache or --gpu-cache keeps: the highest "
                            "in-degree, the "
                            "most often sampled, or the likeliest to be sampled by the "
                            "fanouts (default: degree; vip for --partitioned)")
    train.add_argument("--partitioned", type=Path, default=None, metavar="DIR",
                       help="train on a dataset written by 'salient-pipes partition': each "
                            "rank holds its part's feature rows and fetches the rest")
    train.add_argument("--eval-every", type=_positive(int), default=1,
                       help="evaluate on the validation split every N epochs")
    train.add_argument("--out", type=Path, default=None, help="write a JSON summary here")
    train.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                       help="save model, optimizer and pipeline state in DIR and resume from "
                            "it when it holds a checkpoint; Ctrl-C or SIGTERM saves one at "
                            "the next batch and exits")
    train.add_argument("--checkpoint-every", type=every, default=every("10min"),
                       metavar="N|TIME",
                       help="a checkpoint every N batches or every TIME (30s, 10min, 1h), and "
                            "one after each epoch (default: 10min)")
    train.add_argument("--profile", type=Path, default=None, metavar="DIR",
                       help="report per epoch how long training waited for data, and write "
                            "DIR/profile.json and, with matplotlib, DIR/stages.png")
    train.add_argument("--compile", action="store_true",
                       help="train through torch.compile(model, dynamic=True): fused kernels, "
                            "one compilation for every batch size (GraphSAGE, not the "
                            "heterogeneous model)")
    train.add_argument("--cuda-graphs", action="store_true",
                       help="with --compile on CUDA: pad batches to rarely changing shapes "
                            "and replay each step as recorded CUDA graphs (single process)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training under torchrun: one process per GPU "
                            "(NCCL) or per CPU worker (gloo)")
    train.add_argument("--system-malloc", action="store_true",
                       help="on a CPU device, keep the C library's allocator settings (by "
                            "default freed memory is kept for the next step: "
                            "salient_pipes.allocator)")
    part = sub.add_parser("partition", help="cut a dataset's feature rows into parts, one "
                                            "per rank, for train --partitioned",
                          description="Cut a dataset's feature rows into parts, one per "
                                      "rank, for train --partitioned.",
                          formatter_class=HelpFormatter)
    _dataset_options(part)
    part.add_argument("--parts", type=_positive(int), required=True,
                      help="number of parts: the world size of the training run")
    part.add_argument("--method", choices=METHODS, default="metis",
                      help="METIS (pip install pymetis) keeps neighbours together; random "
                           "needs no graph in memory")
    part.add_argument("--out", type=Path, required=True, help="directory to write")
    parser.subcommands = {"train": train, "partition": part}  # type: ignore[attr-defined]
    return parser


def dataset_kind(name: str) -> str:
    return MAG_SYNTHETIC if name == MAG_SYNTHETIC else "homogeneous"


def resolve(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parses ``argv`` and checks what one option alone cannot say; an error
    prints the subcommand's usage and exits with status 2."""
    args = parser.parse_args(argv)
    command = parser.subcommands[args.command]  # type: ignore[attr-defined]
    _check_dataset_name(command, args.dataset)
    if args.command == "partition":
        if _is_hetero(args.dataset):
            command.error(f"--dataset: {args.dataset} is heterogeneous; partitioning takes a "
                          "graph of one node type")
        try:
            check_replaceable(args.out)
        except FileExistsError as exc:
            command.error(f"--out: {exc}")
        _check_writable(command, "--out", args.out.parent)  # written beside it, then moved
    if args.command != "train":
        return args
    for key, value in DEFAULTS[dataset_kind(args.dataset)].items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)
    if args.test_fanouts is not None and len(args.test_fanouts) != len(args.fanouts):
        command.error("--test-fanouts must name as many hops as --fanouts")
    if args.partitioned is not None and not args.distributed:
        try:
            parts = json.loads((args.partitioned / "meta.json").read_text())["num_parts"]
        except (OSError, ValueError, KeyError) as exc:
            command.error(f"--partitioned: {args.partitioned} holds no partitioned "
                          f"dataset ({exc})")
        if parts > 1:
            command.error(f"--partitioned: {args.partitioned} has {parts} parts; train it "
                          f"with --distributed under torchrun --nproc-per-node {parts}")
    if args.distributed and "WORLD_SIZE" not in os.environ:
        command.error("--distributed runs under torchrun, e.g. "
                      "torchrun --nproc-per-node 2 -m salient_pipes train --distributed")
    if args.cuda_graphs and not args.compile:
        command.error("--cuda-graphs records the compiled model: add --compile")
    for option in ("checkpoint", "profile"):
        where = getattr(args, option)
        if where is not None and where.exists() and not where.is_dir():
            command.error(f"--{option} names a directory; {where} is a file")
        if where is not None:
            _check_writable(command, f"--{option}", where)
    if args.out is not None and args.out.is_dir():
        command.error(f"--out names the JSON summary's file; {args.out} is a directory")
    if args.out is not None:
        _check_writable(command, "--out", args.out.parent)
    device = None
    if args.device is not None:
        try:
            device = resolve_device(args.device)
        except ValueError as exc:
            command.error(f"--device: {exc}")
    if args.features_on not in (None, "host", "auto"):
        try:
            placed = resolve_device(args.features_on)
        except ValueError as exc:
            command.error(f"--features-on: {exc}")
        device = device or resolve_device(None)
        if placed.type != device.type:
            command.error(f"--features-on {args.features_on}: the batches go to {device} "
                          "(--device): name the same device, or 'host' or 'auto'")
    return args


def _check_writable(command: argparse.ArgumentParser, option: str, directory: Path) -> None:
    """``directory`` made if missing and writable, or a usage error now,
    before training rather than at its first write."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        command.error(f"{option}: cannot create {directory} ({exc.strerror})")
    if not os.access(directory, os.W_OK | os.X_OK):
        command.error(f"{option}: {directory} is not writable")


def _is_hetero(name: str) -> bool:
    if name == MAG_SYNTHETIC:
        return True
    if name == SYNTHETIC or name.lower() == CORA:
        return False
    from salient_pipes.data.ogb import is_hetero

    return is_hetero(name)


def _check_dataset_name(parser: argparse.ArgumentParser, name: str) -> None:
    if name in (SYNTHETIC, MAG_SYNTHETIC) or name.lower() == CORA:
        return
    from salient_pipes.data.ogb import dataset_info, is_hetero, known_names

    try:
        dataset_info(name, hetero=is_hetero(name))
    except ValueError:
        parser.error(f"--dataset: unknown OGB node-property dataset {name!r}; the CLI takes "
                     f"{SYNTHETIC}, {MAG_SYNTHETIC}, {CORA} or one of {', '.join(known_names())}")
