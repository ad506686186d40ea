"""Temporal link prediction: why neighbor sampling must respect time.

A synthetic stream of time-stamped interactions with a planted temporal
signal: a node mostly returns to partners it met before, so its past
neighborhood predicts its next partner. The task: score each interaction of
the last 20 % of the stream (against a random partner) from what happened
before it. Both models see the whole graph, as a graph built from the full
log holds it; they differ in what their loader lets them sample:

- leaky: ``LinkNeighborLoader`` without times samples any edge, so a
  prediction's subgraph can hold the very interaction it predicts, and its
  later repeats;
- temporal: ``time_attr="time"`` with ``edge_label_time`` one tick before
  each interaction: only edges that already happened are sampled, the
  latest first (``temporal_strategy="last"``).

Each model is scored twice on the test interactions: with its own loader
(the figure a leaky pipeline reports) and with the temporal loader (what it
would achieve in deployment, where the future is not yet in the graph).

Run: python examples/temporal_link_prediction.py [--epochs 3] [--num-nodes 2000]
         [--num-events 12000]
Prints the two AUCs of each model.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.nn.models import GraphSAGE

from salient_pipes.pyg import LinkNeighborLoader


def interaction_stream(num_nodes: int = 2000, num_events: int = 12_000, repeat: float = 0.6,
                       seed: int = 0) -> Data:
    """Interactions ``(u, v)`` at times ``0..num_events-1``: with probability
    ``repeat`` ``u`` returns to one of its last 5 partners, else it meets a
    random node. Random node features carry no signal of their own."""
    rng = np.random.default_rng(seed)
    recent = [[] for _ in range(num_nodes)]
    src = rng.integers(0, num_nodes, num_events)
    dst = np.empty(num_events, dtype=np.int64)
    for t, u in enumerate(src):
        if recent[u] and rng.random() < repeat:
            v = recent[u][rng.integers(len(recent[u]))]
        else:
            v = int(rng.integers(num_nodes))
        dst[t] = v
        for a, b in ((u, v), (v, u)):
            recent[a] = (recent[a] + [b])[-5:]
    events = torch.stack([torch.from_numpy(src), torch.from_numpy(dst)])
    time = torch.arange(num_events)
    generator = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(num_nodes, 64, generator=generator), num_nodes=num_nodes,
                edge_index=torch.cat([events, events.flip(0)], 1),  # both directions
                time=torch.cat([time, time]), events=events, event_time=time)


def loader(data: Data, events: torch.Tensor, temporal: bool, shuffle: bool,
           seed: int) -> LinkNeighborLoader:
    times = dict(time_attr="time", edge_label_time=data.event_time[events] - 1,
                 temporal_strategy="last") if temporal else {}
    return LinkNeighborLoader(data, num_neighbors=[10, 5], edge_label_index=data.events[:, events],
                              neg_sampling="binary", batch_size=128, shuffle=shuffle,
                              seed=seed, **times)


def scores(model: torch.nn.Module, batch) -> torch.Tensor:
    h = model(batch.x, batch.edge_index)
    src, dst = batch.edge_label_index
    return (h[src] * h[dst]).sum(-1)


def roc_auc(score: torch.Tensor, label: torch.Tensor) -> float:
    """The chance that a positive outscores a negative."""
    ranks = torch.empty_like(score, dtype=torch.float64)
    ranks[score.argsort()] = torch.arange(1, score.numel() + 1, dtype=torch.float64)
    pos = label > 0
    num_pos, num_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches) -> float:
    model.eval()
    out, labels = [], []
    for batch in batches:
        out.append(scores(model, batch))
        labels.append(batch.edge_label)
    return roc_auc(torch.cat(out), torch.cat(labels))


def train(data: Data, train_events: torch.Tensor, temporal: bool, epochs: int,
          seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = GraphSAGE(data.num_features, 64, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = loader(data, train_events, temporal, shuffle=True, seed=seed)
    for _ in range(epochs):
        model.train()
        for batch in batches:
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(scores(model, batch),
                                                      batch.edge_label.float())
            loss.backward()
            optimizer.step()
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-nodes", type=int, default=2000)
    parser.add_argument("--num-events", type=int, default=12_000)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    data = interaction_stream(args.num_nodes, args.num_events, seed=args.seed)
    num_events = data.events.size(1)
    first_test = int(0.8 * num_events)
    # training interactions after the first tenth: each has a past to learn from
    train_events = torch.arange(num_events // 10, first_test)
    test_events = torch.arange(first_test, num_events)
    results = {}
    for name, temporal in (("leaky", False), ("temporal", True)):
        model = train(data, train_events, temporal, args.epochs, args.seed)
        results[name] = {
            "reported": evaluate(model, loader(data, test_events, temporal, False, args.seed)),
            "deployed": evaluate(model, loader(data, test_events, True, False, args.seed)),
        }
        print(f"{name:8s} model: test AUC {results[name]['reported']:.3f} with its own "
              f"loader, {results[name]['deployed']:.3f} with only the past in reach")
    return results


if __name__ == "__main__":
    main()
