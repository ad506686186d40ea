"""OGB node-property datasets, converted within a memory budget.

ogb's ``NodePropPredDataset`` asks on stdin before large downloads and when a
release marker is missing, reopens its processed file with a bare
``torch.load`` that torch >= 2.6 refuses, and reads every raw file whole
(papers100M needs more than 256 GB). We use ogb's dataset table and
downloader, and read the raw files ourselves in chunks: CSV files through
pandas' chunked reader, the compressed ``.npz`` archives of the binary
datasets by streaming each member out of the archive. Both land in scratch
``.npy`` files next to the raw ones, from which :mod:`build` writes the
dataset; nothing is held whole in memory. Conversions never prompt, work
offline when the raw files are present, and leave torch's settings alone.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from salient_pipes.data.build import (
    CHUNK_BYTES,
    edge_type_of,
    write_dataset,
    write_hetero_dataset,
)
from salient_pipes.data.format import EdgeType, create_npy

if TYPE_CHECKING:
    import pandas as pd

PathLike = Union[str, os.PathLike]


def _read_csv(path: Any, **options: Any) -> pd.DataFrame:
    """``pandas.read_csv``. pandas is imported here, on first use: it takes
    a third of a second that importing the library need not pay."""
    import pandas

    return pandas.read_csv(path, **options)


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
    return _read_csv(table, index_col=0, keep_default_na=False)


def known_names() -> Sequence[str]:
    """OGB's node-property datasets, by name."""
    return list(_master().keys())


def is_hetero(name: str) -> bool:
    """Whether OGB's node-property dataset ``name`` is heterogeneous (ogbn-mag)."""
    master = _master()
    return name in master and master[name]["is hetero"] == "True"


def dataset_info(name: str, hetero: bool = False) -> OgbInfo:
    """ogb's description of ``name``; ``ValueError`` listing the known names.
    A heterogeneous one (ogbn-mag) is refused unless ``hetero``."""
    master = _master()
    if name not in master:
        raise ValueError(f"unknown OGB node-property dataset {name!r}; known: "
                         f"{', '.join(known_names())}. Other graphs (Cora and the rest of "
                         "PyG's datasets, your own) convert with FastDataset.from_pyg(data) "
                         "or FastDataset.from_edges(...)")
    meta = master[name]
    if (meta["is hetero"] == "True") != hetero:
        raise ValueError(f"{name} is heterogeneous: open it with HeteroDataset.from_path"
                         if not hetero else f"{name} is homogeneous: open it with "
                         "FastDataset.from_path")
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
    if (raw_dir / "triplet-type-list.csv.gz").exists():
        return True
    return (raw_dir / ("data.npz" if info.binary else "edge.csv.gz")).exists()


class DownloadError(OSError):
    """A dataset's files (OGB's; Cora's for the command line) could not be
    downloaded; the message says where to put them to work offline."""


def download(root: PathLike, info: OgbInfo) -> Path:
    """Downloads and unpacks ``info``'s archive under ``root`` unless its raw
    files are already there; returns the dataset directory. A failed download
    raises :class:`DownloadError` and leaves no directory it created behind."""
    from ogb.utils.url import download_url, extract_zip

    root = Path(root)
    target = root / info.dir_name
    if _has_raw(target / "raw", info):
        return target
    created = next((p for p in reversed([root, *root.parents]) if not p.exists()), None)
    try:
        root.mkdir(parents=True, exist_ok=True)
        print(f"downloading {info.name} from {info.url}", file=sys.stderr)
        archive = download_url(info.url, str(root))
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; ogb raises RuntimeError
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        archive = info.url.rpartition("/")[2]
        raise DownloadError(
            f"could not download {info.name} from {info.url} ({exc}). To work offline, "
            f"fetch {archive} elsewhere, unpack it in {root} and rename its folder "
            f"{info.download_name} to {info.dir_name}, so that {target / 'raw'} holds its raw "
            f"files and {target / 'split' / info.split} its split") from exc
    extract_zip(archive, str(root))
    os.unlink(archive)
    if target.exists():
        shutil.rmtree(target)
    shutil.move(str(root / info.download_name), str(target))
    return target


def _read_split(split_dir: Path) -> Dict[str, torch.Tensor]:
    split = {}
    for name in ("train", "valid", "test"):
        values = _read_csv(split_dir / f"{name}.csv.gz", compression="gzip", header=None).values
        split[name] = torch.from_numpy(values.reshape(-1).astype(np.int64))
    return split


def _csv_total(file: Path) -> int:
    return int(_read_csv(file, compression="gzip", header=None).values.sum())


def csv_to_npy(file: Path, out: Path, num_rows: int, dtype: np.dtype, *,
               transpose: bool = False, desc: str = "", progress: bool = True) -> Path:
    """Streams a gzipped CSV of ``num_rows`` rows into a ``.npy`` file
    (``[num_rows, width]``, or ``[width, num_rows]`` with ``transpose``),
    one chunk at a time."""
    target = None
    begin = 0
    bar = tqdm(total=num_rows, desc=desc, unit="row", unit_scale=True, disable=not progress)
    reader = _read_csv(file, compression="gzip", header=None, dtype=dtype,
                       chunksize=max(1, CHUNK_BYTES // 256))
    with bar, reader:
        for chunk in reader:
            values = chunk.values
            if target is None:
                width = values.shape[1]
                target = create_npy(out, dtype, (width, num_rows) if transpose else
                                    (num_rows, width))
            end = begin + len(values)
            if end > num_rows:
                raise ValueError(f"{file} has more than the {num_rows} rows its dataset lists")
            if transpose:
                target[:, begin:end] = values.T
            else:
                target[begin:end] = values
            begin = end
            bar.update(len(values))
    if begin != num_rows:
        raise ValueError(f"{file} has {begin} rows, its dataset lists {num_rows}")
    del target
    return out


def npz_member_to_npy(archive: Path, member: str, out: Path) -> Path:
    """Streams one array out of a (compressed) ``.npz`` archive into a
    ``.npy`` file, a chunk at a time: numpy would decompress it whole."""
    with zipfile.ZipFile(archive) as zf, zf.open(f"{member}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(stream)
        if fortran and len(shape) > 1:
            raise ValueError(f"{archive}:{member} is stored column-major, which is not supported")
        target = create_npy(out, dtype, shape)
        flat = target.reshape(-1).view(np.uint8) if target.size else np.empty(0, np.uint8)
        total = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        done = 0
        while done < total:
            data = stream.read(min(CHUNK_BYTES, total - done))
            if not data:
                raise ValueError(f"{archive}:{member} ends after {done} of {total} bytes")
            flat[done:done + len(data)] = np.frombuffer(data, dtype=np.uint8)
            done += len(data)
        del flat, target
    return out


def _npz_scalar_sum(archive: Path, member: str) -> int:
    with np.load(archive) as npz:  # a few entries: read whole
        return int(np.asarray(npz[member]).sum())


def convert(root: PathLike, info: OgbInfo, dest: PathLike, *,
            feature_dtype: torch.dtype = torch.float16,
            memory_limit: Union[int, str, None] = None, progress: bool = True) -> Path:
    """Reads ``info``'s raw files (downloading them if needed) and writes the
    converted dataset at ``dest``: symmetrized, deduplicated CSR,
    ``feature_dtype`` row-major features, int64 labels (-1 for none), the
    official split; within ``memory_limit`` (see :func:`build.write_dataset`).
    Inverse edges are never materialized: the CSR build adds both directions."""
    directory = download(root, info)
    raw = directory / "raw"
    scratch = directory / f".scratch-{uuid.uuid4().hex}"
    scratch.mkdir()
    try:
        if info.binary:
            num_nodes = _npz_scalar_sum(raw / "data.npz", "num_nodes_list")
            edges = npz_member_to_npy(raw / "data.npz", "edge_index", scratch / "edges.npy")
            x: Optional[Path] = npz_member_to_npy(raw / "data.npz", "node_feat",
                                                  scratch / "x.npy")
            y = npz_member_to_npy(raw / "node-label.npz", "node_label", scratch / "y.npy")
        else:
            num_nodes = _csv_total(raw / "num-node-list.csv.gz")
            num_edges = _csv_total(raw / "num-edge-list.csv.gz")
            edges = csv_to_npy(raw / "edge.csv.gz", scratch / "edges.npy", num_edges,
                               np.dtype(np.int64), transpose=True, desc="reading edges",
                               progress=progress)
            x = None
            if (raw / "node-feat.csv.gz").exists():
                x = csv_to_npy(raw / "node-feat.csv.gz", scratch / "x.npy", num_nodes,
                               np.dtype(np.float32), desc="reading features", progress=progress)
            y = csv_to_npy(raw / "node-label.csv.gz", scratch / "y.npy", num_nodes,
                           np.dtype(np.float64), desc="reading labels", progress=progress)
        write_dataset(dest, edges, num_nodes, x=x, y=y,
                      split_idx=_read_split(directory / "split" / info.split),
                      num_classes=info.num_classes, feature_dtype=feature_dtype,
                      memory_limit=memory_limit, name=info.name, progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Path(dest)


def convert_hetero(root: PathLike, info: OgbInfo, dest: PathLike, *,
                   feature_dtype: torch.dtype = torch.float16,
                   memory_limit: Union[int, str, None] = None, progress: bool = True) -> Path:
    """Converts a heterogeneous OGB node-property dataset (ogbn-mag's raw
    layout: ``num-node-dict.csv.gz``, ``triplet-type-list.csv.gz``,
    ``relations/<src>___<rel>___<dst>/edge.csv.gz``,
    ``node-feat/<type>/node-feat.csv.gz``, ``node-label/<type>/...``,
    ``split/<kind>/<type>/{train,valid,test}.csv.gz``) into a
    :class:`~salient_pipes.data.hetero.HeteroDataset` at ``dest``, streaming
    every file (see :meth:`HeteroDataset.from_edges` for the memory bound).
    Edge types are kept as OGB lists them (no reverse types are added)."""
    directory = download(root, info)
    raw = directory / "raw"
    counts = {t: int(v[0]) for t, v in
              _read_csv(raw / "num-node-dict.csv.gz", compression="gzip").to_dict("list").items()}
    triplets = [edge_type_of(tuple(str(v) for v in row), "a row of triplet-type-list.csv.gz")
                for row in _read_csv(raw / "triplet-type-list.csv.gz", compression="gzip",
                                     header=None).values]
    labelled = [t for t in counts if (raw / "node-label" / t / "node-label.csv.gz").exists()]
    if len(labelled) != 1:
        raise ValueError(f"{raw} should label exactly one node type, found {labelled}")
    label_type = labelled[0]
    split_dir = directory / "split" / info.split / label_type
    scratch = directory / f".scratch-{uuid.uuid4().hex}"
    scratch.mkdir()
    try:
        edges: Dict[EdgeType, Path] = {}
        for triplet in triplets:
            folder = raw / "relations" / "___".join(triplet)
            num_edges = _csv_total(folder / "num-edge-list.csv.gz")
            edges[triplet] = csv_to_npy(folder / "edge.csv.gz",
                                        scratch / f"{'__'.join(triplet)}.npy", num_edges,
                                        np.dtype(np.int64), transpose=True,
                                        desc=f"reading {triplet[1]} edges", progress=progress)
        x = {}
        for t in counts:
            file = raw / "node-feat" / t / "node-feat.csv.gz"
            if file.exists():
                x[t] = csv_to_npy(file, scratch / f"x_{t}.npy", counts[t], np.dtype(np.float32),
                                  desc=f"reading {t} features", progress=progress)
        y = csv_to_npy(raw / "node-label" / label_type / "node-label.csv.gz", scratch / "y.npy",
                       counts[label_type], np.dtype(np.float64), desc="reading labels",
                       progress=progress)
        write_hetero_dataset(dest, counts, edges, label_type=label_type, x=x, y=y,
                             split_idx=_read_split(split_dir), num_classes=info.num_classes,
                             memory_limit=memory_limit, feature_dtype=feature_dtype,
                             name=info.name, progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Path(dest)


__all__: Sequence[str] = ["DownloadError", "OgbInfo", "convert", "convert_hetero",
                          "dataset_info", "download", "is_hetero", "known_names"]
