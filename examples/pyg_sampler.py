"""The same chain with PyG's neighbor sampler in place of ours.

A small adapter stage turns each seed batch into our ``SampledSubgraph``
with torch_sparse's sampler (what PyG's ``NeighborSampler`` calls); every
other stage stays as it is. Needs torch-sparse installed.

Run: python examples/pyg_sampler.py
"""

from __future__ import annotations

from typing import Any, Iterator, List, Sequence

import torch
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import Adj, FastDataset, SampledSubgraph
from salient_pipes.pipes import NodeIndices, Stage


@functional_datapipe("pyg_sample_neighbors")
class PyGSampleNeighbors(Stage):
    """Seed tensors → ``SampledSubgraph`` through ``torch_sparse.neighbor_sample``."""

    def __init__(self, source: IterDataPipe, dataset: FastDataset, fanouts: Sequence[int],
                 replace: bool = False) -> None:
        super().__init__(source)
        import torch_sparse  # noqa: F401  (registers torch.ops.torch_sparse)

        self.rowptr, self.col = dataset.rowptr, dataset.col.to(torch.int64)
        self.fanouts, self.replace = list(fanouts), replace

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[SampledSubgraph]:
        for seeds in self.source:
            node, src, dst, edge = torch.ops.torch_sparse.neighbor_sample(
                self.rowptr, self.col, seeds, self.fanouts, self.replace, True)
            yield SampledSubgraph(node, self._adjs(src, dst, edge, seeds.numel()))

    def _adjs(self, src, dst, edge, batch_size: int) -> List[Adj]:
        # torch_sparse samples each hop for the nodes the previous hop found
        # (local ids [lo, hi)). Our contract wants, per layer, the edges into
        # all of its targets: the union of the hops so far, sorted by target.
        adjs: List[Adj] = []
        lo, hi = 0, batch_size
        for _ in self.fanouts:
            frontier = (dst >= lo) & (dst < hi)
            num_src = max(hi, int(src[frontier].max()) + 1 if frontier.any() else 0)
            upto = (dst < hi).nonzero().view(-1)
            upto = upto[torch.argsort(dst[upto], stable=True)]
            adjs.append(Adj(torch.stack([src[upto], dst[upto]]), edge[upto], (num_src, hi)))
            lo, hi = hi, num_src
        return adjs[::-1]

    def __len__(self) -> int:
        return len(self.source)


def build(dataset: FastDataset, fanouts=(10, 5), batch_size: int = 512):
    return (NodeIndices(dataset.split_idx["train"])
            .shuffle_nodes(seed=0)
            .batch_nodes(batch_size)
            .pyg_sample_neighbors(dataset, fanouts)
            .slice_features(dataset.x, dataset.y)
            .prefetch_to_device("cpu"))


if __name__ == "__main__":
    ds = FastDataset.synthetic(num_nodes=20_000, seed=0)
    print(sum(batch.batch_size for batch in build(ds)), "seeds prepared by PyG's sampler")
