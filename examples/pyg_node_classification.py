"""PyG's GraphSAGE node classification on Cora, with PyG's NeighborLoader
or ours: the training code is the same, only the import differs.

    from torch_geometric.loader import NeighborLoader     # PyG
    from salient_pipes.pyg import NeighborLoader          # salient_pipes

Run: python examples/pyg_node_classification.py --root data/planetoid [--loader both]
(``--root`` holds or receives Planetoid's Cora.) Prints the test accuracy
and the seconds per training epoch of each loader.
"""

import argparse
import importlib
import time

import torch
import torch.nn.functional as F
from torch_geometric.datasets import Planetoid
from torch_geometric.nn.models import GraphSAGE

LOADERS = {"salient": "salient_pipes.pyg", "pyg": "torch_geometric.loader"}


def run(data, module: str, epochs: int, seed: int) -> dict:
    NeighborLoader = importlib.import_module(module).NeighborLoader  # noqa: N806 - the import
    torch.manual_seed(seed)
    train_loader = NeighborLoader(data, num_neighbors=[10, 10], batch_size=128, shuffle=True,
                                  input_nodes=data.train_mask)
    test_loader = NeighborLoader(data, num_neighbors=[-1, -1], batch_size=512,
                                 input_nodes=data.test_mask)
    model = GraphSAGE(data.num_features, 64, num_layers=2, out_channels=7, dropout=0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    seconds = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for batch in train_loader:
            optimizer.zero_grad()
            out = model(batch.x, batch.edge_index)[: batch.batch_size]
            F.cross_entropy(out, batch.y[: batch.batch_size]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in test_loader:
            pred = model(batch.x, batch.edge_index)[: batch.batch_size].argmax(-1)
            correct += int((pred == batch.y[: batch.batch_size]).sum())
            total += batch.batch_size
    return {"test_acc": correct / total, "epoch_s": sorted(seconds)[len(seconds) // 2]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/planetoid")
    parser.add_argument("--loader", choices=["salient", "pyg", "both"], default="salient")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Planetoid(args.root, "Cora")[0]
    names = ["salient", "pyg"] if args.loader == "both" else [args.loader]
    results = {}
    for name in names:
        results[name] = run(data, LOADERS[name], args.epochs, args.seed)
        print(f"{name:8s} test accuracy {results[name]['test_acc']:.4f}, "
              f"{results[name]['epoch_s'] * 1000:.1f} ms per epoch")
    return results


if __name__ == "__main__":
    main()
