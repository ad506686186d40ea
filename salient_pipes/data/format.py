"""The on-disk format of a dataset: ``.npy`` files and ``meta.json`` in one
directory, written atomically, each file with a stamp that lets opening
skip the O(E) validation.

A stamp is a file's size, its modification time and a CRC of 17 spread
4 KiB blocks: O(1) to check. A size or CRC that differs refuses the copy
(truncated or overwritten); a modification time that differs alone (the copy
was copied elsewhere) makes opening validate the data once and renew the
stamp.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import struct
import uuid
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from salient_pipes.data.memory import huge_pages

PathLike = Union[str, os.PathLike]

FORMAT_NAME = "salient_pipes.FastDataset"
FORMAT_VERSION = 1
HETERO_FORMAT = "salient_pipes.hetero"
HETERO_VERSION = 1
PARTITION_FORMAT = "salient_pipes.PartitionedDataset"
PARTITION_VERSION = 1
# what opens a copy of each format (named when another class is asked to)
OPENED_BY = {FORMAT_NAME: "FastDataset.load", HETERO_FORMAT: "HeteroDataset.load",
             PARTITION_FORMAT: "PartitionedDataset.load"}
EdgeType = Tuple[str, str, str]
HEADER_BYTES = 128  # fixed .npy header size: a file's shape can shrink in place
_BLOCK = 4096
_BLOCKS = 17


class DatasetCacheError(ValueError):
    """A saved copy that cannot be used; the message says how to rebuild it."""


def parse_bytes(value: Union[int, str], name: str = "memory_limit") -> int:
    """Bytes from an int or a string such as ``"1GiB"``, ``"512 MB"``, ``"2e9"``.

    Example:
        >>> parse_bytes("1.5GiB"), parse_bytes("10MB"), parse_bytes(4096)
        (1610612736, 10000000, 4096)
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a byte count or a string like '1GiB', got {value!r}")
    if isinstance(value, (int, np.integer)):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[0-9]+)?)\s*([KMGT]i?B|B)?\s*",
                             value, re.I)
        if not match:
            raise ValueError(f"{name} must be a byte count or a string like '1GiB', "
                             f"got {value!r}")
        number, unit = float(match.group(1)), (match.group(2) or "").upper()
    else:
        raise ValueError(f"{name} must be a byte count or a string like '1GiB', got {value!r}")
    scale = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(number * scale)


def physical_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ------------------------------------------------------------------ .npy
def _header(dtype: np.dtype, shape: Sequence[int]) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": tuple(int(s) for s in shape)}).encode("latin1")
    pad = HEADER_BYTES - 10 - len(text) - 1
    if pad < 0:
        raise ValueError(f"shape {tuple(shape)} does not fit a {HEADER_BYTES}-byte header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", HEADER_BYTES - 10) + text + b" " * pad + b"\n"


def create_npy(file: Path, dtype: Any, shape: Sequence[int]) -> np.memmap:
    """A new zero-filled ``.npy`` file of ``shape``, mapped for writing (the
    pages are the file's, not anonymous memory)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    header = _header(dtype, shape)  # before the file: a shape that does not fit leaves none
    with open(file, "wb") as f:
        f.write(header)
        f.truncate(HEADER_BYTES + count * dtype.itemsize)
    if count == 0:
        return np.zeros(shape, dtype=dtype).view(np.memmap)  # mmap cannot map 0 bytes
    return np.memmap(file, dtype=dtype, mode="r+", offset=HEADER_BYTES, shape=tuple(shape))


def shrink_npy(file: Path, dtype: Any, shape: Sequence[int]) -> None:
    """Cuts a file made by :func:`create_npy` to a smaller ``shape``."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    with open(file, "r+b") as f:
        f.write(_header(dtype, shape))
        f.truncate(HEADER_BYTES + count * dtype.itemsize)


# ----------------------------------------------------------------- stamps
def _sample_crc(file: Path, size: int) -> int:
    crc = 0
    with open(file, "rb") as f:
        for i in range(_BLOCKS):
            f.seek(max(0, size - _BLOCK) * i // (_BLOCKS - 1))
            crc = zlib.crc32(f.read(_BLOCK), crc)
    return crc


def stamp(file: Path) -> Dict[str, int]:
    """The stamp of a finished file: size, modification time, sampled CRC."""
    st = file.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "crc": _sample_crc(file, st.st_size)}


def check_stamp(file: Path, recorded: Dict[str, Any], rebuild: str) -> bool:
    """Refuses a file whose size or sampled CRC differs from its stamp; True
    when it also has the recorded modification time (trusted as validated)."""
    try:
        st = file.stat()
    except OSError as exc:
        raise DatasetCacheError(f"{file} is missing ({exc}); {rebuild}") from exc
    if st.st_size != recorded["bytes"]:
        raise DatasetCacheError(f"{file} has {st.st_size} bytes, expected {recorded['bytes']} "
                                f"(truncated or overwritten); {rebuild}")
    if "crc" not in recorded:  # written before stamps existed
        return False
    if _sample_crc(file, st.st_size) != recorded["crc"]:
        raise DatasetCacheError(f"{file} was changed after it was written "
                                f"(its checksum differs); {rebuild}")
    return st.st_mtime_ns == recorded["mtime_ns"]


def dataset_meta(directory: Path, name: str, num_nodes: int, num_edges: int, num_classes: int,
                 splits: Sequence[str], dtypes: Dict[str, str]) -> Dict[str, Any]:
    """``meta.json``'s content for the finished files in ``directory``."""
    files = {key: {"dtype": dtype, **stamp(directory / f"{key}.npy")}
             for key, dtype in dtypes.items()}
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "name": name,
            "num_nodes": num_nodes, "num_edges": num_edges, "num_classes": num_classes,
            "splits": list(splits), "files": files}


def read_meta(path: Path, fmt: str, version: int, rebuild: str,
              written_by: str = "save() or from_edges()") -> Dict[str, Any]:
    """``path/meta.json``, refused (``DatasetCacheError``) when unreadable or
    of another format or version; ``FileNotFoundError`` when ``path`` holds
    no saved dataset at all (nothing there to delete and rebuild)."""
    if not (path / "meta.json").is_file():
        what = "does not exist" if not path.exists() else "holds no saved dataset (no meta.json)"
        raise FileNotFoundError(f"{path} {what}: give the directory that {written_by} wrote")
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as exc:
        raise DatasetCacheError(f"{path} holds no readable dataset ({exc}); {rebuild}") from exc
    if not isinstance(meta, dict):
        meta = {}
    other = meta.get("format")
    if other != fmt and other in OPENED_BY:  # a sound copy of another kind
        raise DatasetCacheError(f"{path} is a {other} copy, not a {fmt} one: open it with "
                                f"{OPENED_BY[other]}")
    if other != fmt or meta.get("version") != version:
        raise DatasetCacheError(f"{path} is not a {fmt} v{version} copy (format "
                                f"{meta.get('format')!r}, version {meta.get('version')!r}); "
                                f"{rebuild}")
    return meta


@contextmanager
def reading_copy(path: Path, rebuild: str) -> Iterator[None]:
    """Turns any error while opening the saved copy at ``path`` into a
    ``DatasetCacheError`` that says it is damaged and how to rebuild it."""
    try:
        yield
    except DatasetCacheError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetCacheError(f"{path} is damaged ({exc}); {rebuild}") from exc


def write_meta(directory: Path, meta: Dict[str, Any]) -> None:
    """Writes ``meta.json`` atomically (temp file, fsync, rename)."""
    tmp = directory / f".meta.json.{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        f.write(json.dumps(meta, indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / "meta.json")


# ------------------------------------------------------------- atomicity
def fsync_dir(path: Path, *, files: bool = True) -> None:
    for file in path.iterdir() if files else ():
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yields a fresh temporary sibling of ``path`` to fill; when the block
    ends normally it replaces ``path`` (fsynced first). On any error the
    temporary directory is removed and a previous copy at ``path`` stays as
    it was. Only a copy this library wrote, or an empty directory, is ever
    replaced (:func:`check_replaceable`), checked before and after the
    block."""
    path = Path(path)
    check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        try:
            yield tmp
            fsync_dir(tmp)
        except OSError as exc:
            raise OSError(exc.errno, f"writing {path} failed ({exc.strerror or exc}); "
                          "any previous copy there is intact") from exc
        old = None
        check_replaceable(path)
        if path.exists():  # moved aside, not deleted, until the new copy is in place
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent, files=False)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_replaceable(path: Path) -> None:
    """Nothing, when ``path`` is absent, an empty directory, or a copy this
    library wrote (a ``meta.json`` naming one of its formats); else a
    ``FileExistsError``: a file, a link or a user's directory that a write
    to ``path`` would have replaced is left alone."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        if not any(path.iterdir()):
            return
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError):
            meta = None
        if isinstance(meta, dict) and meta.get("format") in OPENED_BY:
            return
        what = "a directory that holds no copy salient_pipes wrote (no readable meta.json)"
    else:
        what = "a symbolic link" if path.is_symlink() else "a file"
    raise FileExistsError(f"{path} is {what}: it is left as it is; write to another path, or "
                          "remove it first")


def edge_dir(edge_type: EdgeType) -> str:
    """The directory name of an edge type: ``src__rel__dst``."""
    return "__".join(edge_type)


def hetero_meta(directory: Path, name: str, num_nodes: Mapping[str, int],
                edge_types: Sequence[EdgeType], label_type: str, num_classes: int,
                splits: Sequence[str], dtypes: Dict[str, str]) -> Dict[str, Any]:
    """``meta.json``'s content for the finished files in ``directory``."""
    return {"format": HETERO_FORMAT, "version": HETERO_VERSION, "name": name,
            "num_nodes": dict(num_nodes), "edge_types": [list(e) for e in edge_types],
            "label_type": label_type, "num_classes": num_classes, "splits": list(splits),
            "files": {k: {"dtype": d, **stamp(directory / f"{k}.npy")}
                      for k, d in dtypes.items()}}


# ------------------------------------------------------------ reading a copy
def to_numpy(t: Tensor) -> np.ndarray:
    """``t`` as a numpy array for a ``.npy`` file."""
    # numpy has no bfloat16: such arrays are stored as their 16-bit pattern.
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.contiguous().numpy()


def from_numpy(array: np.ndarray, dtype: str) -> Tensor:
    with warnings.catch_warnings():  # read-only mappings of large files; see load()
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        t = torch.from_numpy(array)
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def open_files(path: Path, files: Dict[str, Dict[str, Any]], rebuild: str, *, mmap: bool,
               random_access: Optional[Dict[str, Optional[bool]]] = None,
               graph: Sequence[str] = (),
               graph_in_memory: Optional[bool] = None) -> Tuple[Dict[str, Tensor], bool]:
    """The arrays ``meta.json`` lists (``key`` → ``path/key.npy``), checked
    against their stamps and memory-mapped (read-only above half of
    physical memory, copy-on-write below); and whether every file still has
    its recorded modification time (trusted as validated). Keys in
    ``random_access`` get random-access advice when ``True``, or when
    ``None`` and the file is larger than half of memory. The ``graph`` keys
    (the CSR) are read into huge pages with ``graph_in_memory`` (by default
    ``not mmap``)."""
    in_memory = not mmap if graph_in_memory is None else graph_in_memory
    advice = random_access or {}
    arrays = {}
    trusted = True
    for key, info in files.items():
        file = path / f"{key}.npy"
        trusted &= check_stamp(file, info, rebuild)
        large = file.stat().st_size > physical_memory() // 2
        if in_memory and key in graph:
            mapped = from_numpy(np.load(file, mmap_mode="r", allow_pickle=False), info["dtype"])
            moved = huge_pages(mapped)
            arrays[key] = moved.clone() if moved is mapped else moved  # small: a plain copy
            continue
        array = np.load(file, mmap_mode=("r" if large else "c") if mmap else None,
                        allow_pickle=False)
        if mmap and key in advice:
            advise = advice[key]
            if large if advise is None else advise:
                advise_random(array)
        arrays[key] = from_numpy(array, info["dtype"])
    return arrays, trusted


def renew_stamps(path: Path, meta: Dict[str, Any]) -> None:
    """After a full validation: records the files' stamps, so the next open
    is O(1) again. A read-only copy keeps validating on every open."""
    try:
        meta["files"] = {key: {"dtype": info["dtype"], **stamp(path / f"{key}.npy")}
                         for key, info in meta["files"].items()}
        write_meta(path, meta)
    except OSError:
        pass


def advise_random(array: np.ndarray) -> None:
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_RANDOM"):
        mapping.madvise(mmap.MADV_RANDOM)
