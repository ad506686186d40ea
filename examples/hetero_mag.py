"""Heterogeneous node classification on ogbn-mag (or a graph with its schema).

Trains the same R-GCN-style ``HeteroSAGE`` twice in one run, fed once by
``salient_pipeline()`` on our ``HeteroDataset`` and once by PyG's
heterogeneous ``NeighborLoader`` on the same graph as ``HeteroData``, and
prints per-epoch time and validation accuracy of each.

    python examples/hetero_mag.py                       # mag-like synthetic graph
    python examples/hetero_mag.py --root data --ogb     # the real ogbn-mag
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

from salient_pipes import HeteroDataset, HeteroSAGE, salient_pipeline
from salient_pipes.train import batchwise_test, train_epoch


def pyg_epoch(model, loader, optimizer) -> float:
    model.train()
    start = time.perf_counter()
    for batch in loader:
        optimizer.zero_grad()
        size = batch["paper"].batch_size
        x = {t: batch[t].x if "x" in batch[t] else torch.zeros(batch[t].num_nodes, 0)
             for t in batch.node_types}
        out = model(x, batch.edge_index_dict)[:size]
        F.nll_loss(out, batch["paper"].y[:size]).backward()
        optimizer.step()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data")
    parser.add_argument("--ogb", action="store_true", help="use the real ogbn-mag under --root")
    parser.add_argument("--scale", type=float, default=0.05, help="size of the synthetic graph")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[10, 5])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pyg-lib.*")
    from torch_geometric.loader import NeighborLoader

    ds = HeteroDataset.from_path(args.root, "ogbn-mag") if args.ogb else \
        HeteroDataset.synthetic_mag(scale=args.scale, seed=0)
    print(ds.summary())

    def new_model():
        torch.manual_seed(0)
        model = HeteroSAGE((ds.node_types, ds.edge_types), ds.num_features, 64,
                           ds.num_classes, len(args.fanouts), target=ds.label_type)
        return model, torch.optim.Adam(model.parameters(), lr=0.01)

    accuracy = {"salient": [], "pyg": []}
    model, opt = new_model()
    pipe = salient_pipeline(ds, batch_size=1024, fanouts=args.fanouts, device="cpu",
                            num_threads=args.threads)
    for epoch in range(args.epochs):
        result = train_epoch(model, pipe, opt, progress=False)
        acc = batchwise_test(model, ds, args.fanouts, device="cpu", progress=False)["valid"]
        accuracy["salient"].append(acc)
        print(f"salient_pipes epoch {epoch}: {result.seconds:6.2f} s, loss {result.loss:.3f}, "
              f"valid acc {acc:.3f}")

    data = ds.to_pyg()
    model, opt = new_model()
    loader = NeighborLoader(data, num_neighbors=args.fanouts, batch_size=1024, shuffle=True,
                            input_nodes=("paper", data["paper"].train_mask),
                            num_workers=args.threads, persistent_workers=True)
    for epoch in range(args.epochs):
        seconds = pyg_epoch(model, loader, opt)
        acc = batchwise_test(model, ds, args.fanouts, device="cpu", progress=False)["valid"]
        accuracy["pyg"].append(acc)
        print(f"PyG loader    epoch {epoch}: {seconds:6.2f} s, valid acc {acc:.3f}")
    return accuracy


if __name__ == "__main__":
    main()
