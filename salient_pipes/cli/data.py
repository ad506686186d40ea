"""The datasets the command line names."""

from __future__ import annotations

from typing import Optional, Union

from salient_pipes.cli.args import CORA, MAG_SYNTHETIC, SYNTHETIC
from salient_pipes.data import FastDataset, HeteroDataset


def load_dataset(name: str, root: Optional[str], num_nodes: int, seed: int,
                 progress: bool, memory_limit: Optional[int] = None,
                 mag_scale: float = 0.02) -> Union[FastDataset, HeteroDataset]:
    """The dataset the CLI names: synthetic, mag-synthetic, Cora from a
    Planetoid root, or OGB (homogeneous or heterogeneous)."""
    if name == SYNTHETIC:
        return FastDataset.synthetic(num_nodes=num_nodes, seed=seed)
    if name == MAG_SYNTHETIC:
        return HeteroDataset.synthetic_mag(scale=mag_scale, seed=seed)
    if name.lower() == CORA:
        from torch_geometric.datasets import Planetoid

        data = Planetoid(root or "data/planetoid", "Cora")[0]
        return FastDataset.from_pyg(data, name="cora")
    from salient_pipes.data.ogb import is_hetero

    if is_hetero(name):
        return HeteroDataset.from_path(root or "data", name, progress=progress,
                                       memory_limit=memory_limit)
    return FastDataset.from_path(root or "data", name, progress=progress,
                                 memory_limit=memory_limit)
