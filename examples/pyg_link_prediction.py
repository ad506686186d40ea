"""PyG's link prediction on Cora (RandomLinkSplit, a GraphSAGE encoder, a
dot-product decoder), with PyG's LinkNeighborLoader or ours: the training
code is the same, only the import differs.

    from torch_geometric.loader import LinkNeighborLoader    # PyG
    from salient_pipes.pyg import LinkNeighborLoader         # salient_pipes

Run: python examples/pyg_link_prediction.py --root data/planetoid [--loader both]
Prints the test AUC and the seconds per training epoch of each loader.
"""

import argparse
import importlib
import time

import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch_geometric import seed_everything
from torch_geometric.datasets import Planetoid
from torch_geometric.nn.models import GraphSAGE

LOADERS = {"salient": "salient_pipes.pyg", "pyg": "torch_geometric.loader"}


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a positive outscores a negative."""
    ranks = torch.empty_like(scores, dtype=torch.float64)
    ranks[scores.argsort()] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    positive = labels > 0
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def run(splits, module: str, epochs: int, seed: int) -> dict:
    LinkNeighborLoader = importlib.import_module(module).LinkNeighborLoader  # noqa: N806
    train, _, test = splits
    torch.manual_seed(seed)
    train_loader = LinkNeighborLoader(
        train, num_neighbors=[10, 10], edge_label_index=train.edge_label_index,
        edge_label=train.edge_label, neg_sampling="binary", batch_size=256, shuffle=True)
    test_loader = LinkNeighborLoader(
        test, num_neighbors=[-1, -1], edge_label_index=test.edge_label_index,
        edge_label=test.edge_label, batch_size=1024)
    model = GraphSAGE(train.num_features, 64, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    seconds = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for batch in train_loader:
            optimizer.zero_grad()
            h = model(batch.x, batch.edge_index)
            src, dst = batch.edge_label_index
            score = (h[src] * h[dst]).sum(-1)
            # binary negative sampling: positives are labelled 1 (or label + 1), negatives 0
            F.binary_cross_entropy_with_logits(score, (batch.edge_label > 0).float()).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for batch in test_loader:
            h = model(batch.x, batch.edge_index)
            src, dst = batch.edge_label_index
            scores.append((h[src] * h[dst]).sum(-1).sigmoid())
            labels.append(batch.edge_label)
    auc = roc_auc(torch.cat(scores), torch.cat(labels))
    return {"test_auc": auc, "epoch_s": sorted(seconds)[len(seconds) // 2]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/planetoid")
    parser.add_argument("--loader", choices=["salient", "pyg", "both"], default="salient")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # Python's and NumPy's RNGs too: RandomLinkSplit draws its negatives with them.
    seed_everything(args.seed)
    split = T.RandomLinkSplit(num_val=0.05, num_test=0.1, is_undirected=True,
                              add_negative_train_samples=False)
    splits = split(Planetoid(args.root, "Cora")[0])
    names = ["salient", "pyg"] if args.loader == "both" else [args.loader]
    results = {}
    for name in names:
        results[name] = run(splits, LOADERS[name], args.epochs, args.seed)
        print(f"{name:8s} test AUC {results[name]['test_auc']:.4f}, "
              f"{results[name]['epoch_s'] * 1000:.1f} ms per epoch")
    return results


if __name__ == "__main__":
    main()
