"""The ``salient-pipes`` command (also ``python -m salient_pipes``):
``train`` (cli/train.py) and ``partition``; options in cli/args.py,
checkpoints and signals in cli/checkpoint.py."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Optional, Sequence

from salient_pipes.cli.args import build_parser, resolve
from salient_pipes.cli.checkpoint import CHECKPOINT_FILE, Interrupted
from salient_pipes.cli.data import load_dataset
from salient_pipes.cli.train import run_train
from salient_pipes.data import FastDataset
from salient_pipes.data.ogb import DownloadError
from salient_pipes.distributed import partition, process_group
from salient_pipes.pipeline import resolve_device


def run_partition(args: argparse.Namespace) -> None:
    """Writes the dataset ``args`` name, cut into ``args.parts`` parts."""
    dataset = load_dataset(args.dataset, args.root, args.num_nodes, args.seed,
                           not args.no_progress, args.memory_limit)
    assert isinstance(dataset, FastDataset)  # the parser refuses heterogeneous ones
    print(f"dataset  {dataset.summary()}", flush=True)
    start = time.perf_counter()
    partition(dataset, args.parts, args.out, method=args.method, seed=args.seed,
              progress=not args.no_progress)
    meta = json.loads((args.out / "meta.json").read_text())
    print(f"written  {args.out}: {args.parts} parts of {min(meta['part_sizes']):,}-"
          f"{max(meta['part_sizes']):,} rows, training nodes per part "
          f"{meta['split_sizes'].get('train')} ({args.method}, "
          f"{time.perf_counter() - start:.1f} s)", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command ``argv`` names; returns the exit status (130 or 143
    when Ctrl-C or SIGTERM stopped training)."""
    args = resolve(build_parser(), argv)
    try:
        if args.command == "partition":
            run_partition(args)
        elif args.distributed:
            with process_group(args.device) as device:
                run_train(args, device)
        else:
            run_train(args, resolve_device(args.device))
    except Interrupted as stop:
        where = (f"checkpoint saved in {stop.saved.parent}; run the same command to resume"
                 if stop.saved is not None else
                 "no checkpoint (train with --checkpoint DIR to resume later)")
        print(f"salient-pipes: stopped by {signal.Signals(stop.signum).name}: {where}",
              file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:
        print("salient-pipes: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except DownloadError as exc:
        print(f"salient-pipes: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["CHECKPOINT_FILE", "build_parser", "load_dataset", "main", "run_train"]
