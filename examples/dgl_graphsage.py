"""A DGL GraphSAGE model (``dgl.nn.SAGEConv`` over blocks) trained on
batches from ``salient_pipeline()``: the model code of a GraphBolt
training loop, our batches in place of GraphBolt's ``MiniBatch``.

Needs DGL (its PyPI release, 2.1.0, loads beside torch <= 2.2.1; see
docs/dgl.md), so it is not part of the test suite.

Run: python examples/dgl_graphsage.py [--epochs 3] [--num-nodes 20000]
"""

from __future__ import annotations

import argparse
from typing import List

import dgl
import torch
import torch.nn.functional as F
from dgl.nn import SAGEConv

from salient_pipes import FastDataset, salient_pipeline
from salient_pipes.batch import PreparedBatch


def to_blocks(batch: PreparedBatch) -> List[dgl.DGLGraph]:
    """The batch's hops as DGL blocks, input layer first, as GraphBolt's
    ``MiniBatch.blocks`` lists them: a hop's targets are its first sources
    in both libraries, so the local ids carry over as they are."""
    return [dgl.create_block((adj.edge_index[0], adj.edge_index[1]),
                             num_src_nodes=adj.size[0], num_dst_nodes=adj.size[1])
            for adj in batch.adjs]


class SAGE(torch.nn.Module):
    """DGL's usual GraphSAGE for mini-batches: one SAGEConv per block."""

    def __init__(self, in_feats: int, hidden: int, classes: int, layers: int = 3) -> None:
        super().__init__()
        sizes = [in_feats] + [hidden] * (layers - 1) + [classes]
        self.layers = torch.nn.ModuleList(SAGEConv(a, b, "mean")
                                          for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, blocks: List[dgl.DGLGraph], x: torch.Tensor) -> torch.Tensor:
        h = F.normalize(x.float(), dim=-1)  # the built-in graph's features are not scaled
        for i, (layer, block) in enumerate(zip(self.layers, blocks)):
            h = layer(block, h)
            if i < len(self.layers) - 1:
                h = F.dropout(F.relu(h), 0.5, self.training)
        return h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-nodes", type=int, default=20_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = FastDataset.synthetic(num_nodes=args.num_nodes)
    pipe = salient_pipeline(dataset, "train", batch_size=1024, fanouts=(15, 10, 5))
    valid = salient_pipeline(dataset, "valid", batch_size=1024, fanouts=(20, 20, 20),
                             shuffle=False, device=pipe.device)
    model = SAGE(dataset.num_features, 256, dataset.num_classes).to(pipe.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    for epoch in range(args.epochs):
        model.train()
        for batch in pipe:
            logits = model([b.to(pipe.device) for b in to_blocks(batch)], batch.x)
            loss = F.cross_entropy(logits, batch.y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in valid:
                logits = model([b.to(pipe.device) for b in to_blocks(batch)], batch.x)
                correct += int((logits.argmax(-1) == batch.y).sum())
                total += batch.batch_size
        print(f"epoch {epoch}: last loss {float(loss):.4f}, valid accuracy {correct / total:.4f}")


if __name__ == "__main__":
    main()
