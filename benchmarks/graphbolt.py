"""Per-epoch batch preparation: salient_pipeline() against DGL's GraphBolt.

The same graphs, split, fanouts (15/10/5, the seeds' hop first), batch
size (1024), fp16 features and thread budget (2) on both sides; one epoch
= every train seed once, shuffled, each batch sampled and its feature rows
and labels gathered, nothing trained. GraphBolt runs its usual node
classification pipeline (``ItemSampler → sample_neighbor → fetch_feature
→ DataLoader``) in a process of its own (benchmarks/graphbolt_worker.py)
with 0 worker processes (sampling on 2 torch threads in the main process)
and with 2 worker processes, once as they come and once with each batch's
DGL blocks built (what a DGL model reads). Ours: ``salient_pipeline()``
on 2 sampling threads (its batches hold the per-hop adjacencies a model
reads). Medians of ``--epochs`` epochs after a warm-up, one after the other
on the same machine.

GraphBolt's wheels on PyPI (DGL 2.1.0) load beside torch <= 2.2.1 only
and need torchdata < 0.8, so the benchmark runs in an environment of its
own; run all of it there so that both sides use the same torch:

    python -m venv /tmp/gb && /tmp/gb/bin/pip install torch==2.2.1 "numpy<2" \
        dgl==2.1.0 torchdata==0.7.1 pydantic pandas pyyaml psutil tqdm scipy
    PYTHONPATH=. /tmp/gb/bin/python -m benchmarks.graphbolt

(our native core built in place first: ``bash scripts/setup.sh``.)

(``--python`` runs GraphBolt's side under another interpreter instead.)
Writes benchmarks/results/graphbolt.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from benchmarks.common import (
    BATCH,
    FANOUTS,
    THREADS,
    arxiv_like,
    machine,
    median,
    pipeline_epoch,
    save_json,
    slashdot,
    time_epochs,
    write_section,
)

WORKER = Path(__file__).with_name("graphbolt_worker.py")
GRAPHBOLT_RUNS = [(0, False), (2, False), (0, True), (2, True)]  # (workers, blocks)


def write_graph(ds, directory: Path) -> None:
    """The graph as GraphBolt reads it: our CSR rows list the neighbors a
    node samples from, which is GraphBolt's CSC (``indptr``, ``indices``)."""
    arrays = {"indptr": ds.rowptr, "indices": ds.col.long(), "x": ds.x, "y": ds.y,
              "train": ds.split_idx["train"]}
    for name, tensor in arrays.items():
        np.save(directory / f"{name}.npy", tensor.numpy())


def graphbolt_epochs(python: str, directory: Path, workers: int, blocks: bool,
                     epochs: int) -> Dict[str, object]:
    cmd = [python, str(WORKER), "--data", str(directory), "--fanouts", *map(str, FANOUTS),
           "--batch-size", str(BATCH), "--threads", str(THREADS), "--workers", str(workers),
           "--epochs", str(epochs)] + (["--blocks"] if blocks else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"GraphBolt's run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter whose environment has DGL's GraphBolt")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    rows: List[Dict[str, object]] = []
    versions: Dict[str, object] = {}
    for name, make in (("arxiv-like", arxiv_like), ("soc-Slashdot0902", slashdot)):
        ds = make()
        ours = time_epochs(pipeline_epoch(ds), args.epochs)
        row: Dict[str, object] = {"graph": name, "ours_s": ours, "graphbolt_s": {}}
        with tempfile.TemporaryDirectory() as tmp:
            write_graph(ds, Path(tmp))
            for workers, blocks in GRAPHBOLT_RUNS:
                run = graphbolt_epochs(args.python, Path(tmp), workers, blocks, args.epochs)
                versions = {"graphbolt_torch": run["torch"], "dgl": run["dgl"]}
                row["graphbolt_s"][f"{workers} workers" + (", blocks" if blocks else "")] = \
                    run["epochs"]
        print(name, median(ours), {k: median(v) for k, v in row["graphbolt_s"].items()},
              flush=True)
        rows.append(row)
    save_json("graphbolt", {"machine": machine(), **versions, "threads": THREADS,
                            "fanouts": FANOUTS, "batch_size": BATCH, "rows": rows})
    render(rows, versions, args.epochs)


def render(rows: List[Dict[str, object]], versions: Dict[str, object], epochs: int) -> None:
    names = [f"{w} workers" + (", blocks" if b else "") for w, b in GRAPHBOLT_RUNS]
    lines = [
        "`python -m benchmarks.graphbolt` (in an environment with DGL "
        f"{versions['dgl']} and torch {versions['graphbolt_torch']}, which both sides use): "
        "per-epoch batch preparation (every train seed once, shuffled; 15/10/5, batch 1024, "
        "fp16 features and labels gathered; nothing trained) with a budget of 2 threads. "
        "GraphBolt: `ItemSampler → sample_neighbor → fetch_feature → DataLoader` with 0 "
        "worker processes (2 torch threads) and 2, as its batches come and with their DGL "
        "blocks built (what a DGL model reads). Ours: `salient_pipeline()` on 2 sampling "
        f"threads. Medians of {epochs} epochs after a warm-up; speed-up: GraphBolt's fastest "
        "over ours.", "",
        "| graph | salient_pipeline() | " + " | ".join(f"GraphBolt, {n}" for n in names)
        + " | speed-up |",
        "| --- | ---: | " + "---: | " * len(names) + "---: |"]
    for row in rows:
        ours = median(row["ours_s"])  # type: ignore[arg-type]
        theirs = {n: median(t) for n, t in row["graphbolt_s"].items()}  # type: ignore[union-attr]
        lines.append(f"| {row['graph']} | {ours:.3f} s | "
                     + " | ".join(f"{theirs[n]:.3f} s" for n in names)
                     + f" | **{min(theirs.values()) / ours:.1f}x** |")
    write_section("graphbolt", "\n".join(lines))


if __name__ == "__main__":
    main()
