"""The datasets the command line names."""

from __future__ import annotations

from typing import Optional, Union

from salient_pipes.cli.args import CORA, MAG_SYNTHETIC, SYNTHETIC
from salient_pipes.data import FastDataset, HeteroDataset
from salient_pipes.data.ogb import DownloadError, is_hetero


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

        where = root or "data/planetoid"
        try:
            data = Planetoid(where, "Cora")[0]
        except OSError as exc:  # network errors too (urllib's, aiohttp's)
            raise DownloadError(
                f"could not read or download Cora in {where} ({exc}). To work offline, put "
                f"Planetoid's raw Cora files (ind.cora.x, ind.cora.y, ind.cora.graph, ...) "
                f"in {where}/Cora/raw") from None
        return FastDataset.from_pyg(data, name="cora")
    if is_hetero(name):
        return HeteroDataset.from_path(root or "data", name, progress=progress,
                                       memory_limit=memory_limit)
    return FastDataset.from_path(root or "data", name, progress=progress,
                                 memory_limit=memory_limit)
