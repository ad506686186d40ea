"""DGL GraphBolt's side of benchmarks/graphbolt.py, run in a process of its
own (DGL's GraphBolt and salient_pipes are not imported together: the
torchdata releases GraphBolt 2.1 needs register a ``pin_memory`` datapipe
of their own, and GraphBolt loads only beside the torch it was built for).

Reads the graph the driver wrote (``indptr``, ``indices``, ``x``, ``y``,
``train`` as .npy files in ``--data``), builds GraphBolt's usual node
classification pipeline (``ItemSampler`` over the train split, shuffled →
``sample_neighbor`` → ``fetch_feature`` → ``DataLoader``) and prints one
JSON line: the seconds of each timed epoch, after a warm-up epoch.

Run by the driver: python benchmarks/graphbolt_worker.py --data DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--fanouts", type=int, nargs="+", required=True,
                        help="the seeds' hop first, as SALIENT and PyG order them")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--blocks", action="store_true",
                        help="also build each batch's DGL blocks, as a DGL model reads them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import dgl.graphbolt as gb

    def load(name: str) -> torch.Tensor:
        return torch.from_numpy(np.load(args.data / f"{name}.npy"))

    graph = gb.fused_csc_sampling_graph(load("indptr"), load("indices"))
    features = gb.BasicFeatureStore({("node", None, "feat"): gb.TorchBasedFeature(load("x"))})
    train, y = load("train"), load("y")
    items = gb.ItemSet((train, y[train]), names=("seed_nodes", "labels"))
    pipe = gb.ItemSampler(items, batch_size=args.batch_size, shuffle=True)
    # GraphBolt lists fanouts from the input layer to the seeds' hop.
    pipe = pipe.sample_neighbor(graph, list(reversed(args.fanouts)))
    pipe = pipe.fetch_feature(features, node_feature_keys=["feat"])
    loader = gb.DataLoader(pipe, num_workers=args.workers)
    times, batches = [], 0
    for _ in range(args.epochs + 1):
        start = time.perf_counter()
        batches = 0
        for batch in loader:
            _ = batch.node_features["feat"], batch.labels  # what a training step reads
            if args.blocks:
                _ = batch.blocks  # built when first read
            batches += 1
        times.append(time.perf_counter() - start)
    print(json.dumps({"epochs": times[1:], "batches": batches,
                      "torch": torch.__version__, "dgl": __import__("dgl").__version__}))


if __name__ == "__main__":
    main()
