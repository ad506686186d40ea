"""A user's own stage between slice_features and pin_memory: feature noise.

Run: python examples/custom_stage.py
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import FastDataset, PreparedBatch, pipeline_stats
from salient_pipes.pipes import NodeIndices, Stage


@functional_datapipe("feature_noise")
class FeatureNoise(Stage):
    """Adds Gaussian noise of scale ``std`` to every batch's features, seeded
    by (seed, epoch, batch) so that reruns see the same noise."""

    def __init__(self, source: IterDataPipe, std: float, seed: int = 0) -> None:
        super().__init__(source)
        self.std, self.seed = std, seed

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[PreparedBatch]:
        for position, batch in enumerate(self.source, start):
            gen = torch.Generator().manual_seed(hash((self.seed, epoch, position)))
            noise = torch.randn(batch.x.shape, generator=gen) * self.std
            yield PreparedBatch(x=(batch.x.float() + noise).to(batch.x.dtype), y=batch.y,
                                adjs=batch.adjs, n_id=batch.n_id)

    def __len__(self) -> int:
        return len(self.source)


def build(dataset: FastDataset, device: str = "cpu"):
    pipe = (NodeIndices(dataset.split_idx["train"])
            .shuffle_nodes(seed=0)
            .batch_nodes(512)
            .sample_neighbors(dataset, [10, 5])
            .slice_features(dataset.x, dataset.y)
            .feature_noise(std=0.1))
    if device != "cpu":
        pipe = pipe.pin_memory()
    return pipe.prefetch_to_device(device)


if __name__ == "__main__":
    ds = FastDataset.synthetic(num_nodes=20_000, seed=0)
    pipe = build(ds)
    batches = sum(1 for _ in pipe)
    print(f"{batches} noisy batches")
    for row in pipeline_stats(pipe):
        print(f"{row['stage']:>18}: waited {row['self_s'] * 1e3:7.1f} ms")
