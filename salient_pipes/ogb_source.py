"""OGB node-property datasets, read with ogb's own file readers.

ogb's ``NodePropPredDataset`` asks on stdin before large downloads and when a
release marker is missing, and reopens its processed file with a bare
``torch.load`` that torch >= 2.6 refuses. We use ogb's dataset table, its
downloader and its raw-file readers instead, so a conversion never prompts,
works offline when the raw files are present, and leaves torch's settings
alone.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Union

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from salient_pipes.data import FastDataset, csr_from_edge_index

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class OgbInfo:
    name: str
    dir_name: str
    download_name: str
    url: str
    split: str
    num_classes: int
    binary: bool
    add_inverse_edge: bool


def _master() -> pd.DataFrame:
    import ogb.nodeproppred

    table = Path(ogb.nodeproppred.__file__).with_name("master.csv")
    return pd.read_csv(table, index_col=0, keep_default_na=False)


def dataset_info(name: str) -> OgbInfo:
    """ogb's description of ``name``; ``ValueError`` listing the known names."""
    master = _master()
    if name not in master:
        raise ValueError(f"unknown OGB node-property dataset {name!r}; known: "
                         f"{', '.join(master.keys())}")
    meta = master[name]
    if meta["is hetero"] == "True":
        raise ValueError(f"{name} is heterogeneous; FastDataset handles homogeneous graphs")
    return OgbInfo(
        name=name,
        dir_name=name.replace("-", "_"),
        download_name=meta["download_name"],
        url=meta["url"],
        split=meta["split"],
        num_classes=int(meta["num classes"]),
        binary=meta["binary"] == "True",
        add_inverse_edge=meta["add_inverse_edge"] == "True",
    )


def _has_raw(raw_dir: Path, info: OgbInfo) -> bool:
    return (raw_dir / ("data.npz" if info.binary else "edge.csv.gz")).exists()


def download(root: PathLike, info: OgbInfo) -> Path:
    """Downloads and unpacks ``info``'s archive under ``root`` unless its raw
    files are already there; returns the dataset directory."""
    from ogb.utils.url import download_url, extract_zip

    root = Path(root)
    target = root / info.dir_name
    if _has_raw(target / "raw", info):
        return target
    root.mkdir(parents=True, exist_ok=True)
    print(f"downloading {info.name} from {info.url}", file=sys.stderr)
    archive = download_url(info.url, str(root))
    extract_zip(archive, str(root))
    os.unlink(archive)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(root / info.download_name), str(target))
    return target


def _read_split(split_dir: Path) -> Dict[str, torch.Tensor]:
    split = {}
    for name in ("train", "valid", "test"):
        values = pd.read_csv(split_dir / f"{name}.csv.gz", compression="gzip", header=None).values
        split[name] = torch.from_numpy(values.reshape(-1).astype(np.int64))
    return split


def _labels(raw: np.ndarray) -> torch.Tensor:
    labels = np.asarray(raw).reshape(-1)
    if labels.dtype.kind == "f":  # papers100M marks unlabeled nodes with NaN
        labels = np.where(np.isnan(labels), -1, labels)
    return torch.from_numpy(labels.astype(np.int64))


def convert(root: PathLike, info: OgbInfo, *, feature_dtype: torch.dtype = torch.float16,
            progress: bool = True) -> FastDataset:
    """Reads ``info``'s raw files (downloading them if needed) and returns the
    converted dataset: symmetrized, deduplicated CSR, ``feature_dtype``
    row-major features, int64 labels (-1 for none), the official split."""
    from ogb.io.read_graph_raw import read_binary_graph_raw, read_csv_graph_raw

    directory = download(root, info)
    raw_dir = directory / "raw"
    steps = tqdm(total=4, desc=f"converting {info.name}", disable=not progress, unit="step")
    if info.binary:
        graph = read_binary_graph_raw(str(raw_dir), add_inverse_edge=info.add_inverse_edge)[0]
        labels = np.load(raw_dir / "node-label.npz")["node_label"]
    else:
        graph = read_csv_graph_raw(str(raw_dir), add_inverse_edge=info.add_inverse_edge)[0]
        labels = pd.read_csv(raw_dir / "node-label.csv.gz", compression="gzip",
                             header=None).values
    steps.update()
    num_nodes = int(graph["num_nodes"])
    rowptr, col = csr_from_edge_index(torch.from_numpy(graph["edge_index"]), num_nodes)
    steps.update()
    x = torch.from_numpy(np.ascontiguousarray(graph["node_feat"])).to(feature_dtype)
    del graph
    steps.update()
    split = _read_split(directory / "split" / info.split)
    steps.update()
    steps.close()
    return FastDataset(name=info.name, x=x, y=_labels(labels), rowptr=rowptr, col=col,
                       split_idx=split, num_classes=info.num_classes)
