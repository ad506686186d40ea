"""Writing a dataset from an edge list of any size within a memory budget.

The CSR is built externally (``_native/csr_build.hpp``): one pass over the
edges counts every row's raw entries straight into the memory-mapped
``rowptr`` file; the rows are then cut into buckets whose raw entries fit
``memory_limit``, and one pass per bucket gathers its entries, sorts and
deduplicates each row and appends it to the memory-mapped ``col`` file.
Features and labels are copied and cast in chunks. Inputs are read through
memory maps where they are files, so the only anonymous memory is one bucket
or one chunk, plus a fixed overhead. The result equals
:func:`~salient_pipes.data.dataset.csr_from_edge_index`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from salient_pipes import _native
from salient_pipes._checks import as_node_ids, check_int
from salient_pipes.data.csr import first_bad_weight
from salient_pipes.data.format import (
    EdgeType,
    atomic_directory,
    create_npy,
    dataset_meta,
    edge_dir,
    hetero_meta,
    parse_bytes,
    physical_memory,
    shrink_npy,
    write_meta,
)

ArrayLike = Union[Tensor, np.ndarray, str, os.PathLike]
ROW_OVERHEAD = 24  # bytes per bucket row: offset, cursor and distinct count (int64 each)
CHUNK_BYTES = 64 << 20  # largest chunk of features or labels converted at once
_PLAN_BLOCK = 1 << 20  # rows of counts read at once while planning buckets


def default_memory_limit() -> int:
    """A quarter of physical memory."""
    return physical_memory() // 4


def open_array(name: str, value: ArrayLike) -> Union[np.ndarray, Tensor]:
    """``value`` without reading it: a ``.npy`` path is memory-mapped
    read-only; tensors and arrays are used in place."""
    if isinstance(value, (str, os.PathLike)):
        try:
            return np.load(value, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{name}: {value} is not a readable .npy file ({exc})") from exc
    if isinstance(value, Tensor):
        if value.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got a tensor on {value.device}")
        return value.detach()
    if isinstance(value, np.ndarray):
        return value
    raise ValueError(f"{name} must be a tensor, a numpy array or the path of a .npy file, "
                     f"got {type(value).__name__}")


def _edge_rows(edge_index: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    edges = open_array("edge_index", edge_index)
    if isinstance(edges, Tensor):
        edges = edges.numpy()
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edges.shape)}")
    if edges.dtype not in (np.int32, np.int64):
        raise ValueError(f"edge_index must hold int32 or int64 node ids, got {edges.dtype}")
    src, dst = edges[0], edges[1]
    if not (src.flags.c_contiguous and dst.flags.c_contiguous):
        raise ValueError("edge_index must be a row-major [2, E] array (each row contiguous); "
                         "a transposed view would have to be copied whole")
    return src, dst


def plan_buckets(counts: np.ndarray, col_bytes: int, limit: int) -> List[Tuple[int, int]]:
    """Cuts rows ``[0, len(counts))`` into consecutive buckets whose cost
    (``counts[r] * col_bytes + ROW_OVERHEAD`` per row) stays within
    ``limit``. A single row costlier than ``limit`` gets a bucket alone.

    Example:
        >>> plan_buckets(np.array([10, 10, 10, 50]), 4, 130)
        [(0, 2), (2, 3), (3, 4)]
    """
    n = len(counts)
    buckets: List[Tuple[int, int]] = []
    start, used = 0, 0
    for block in range(0, n, _PLAN_BLOCK):
        cost = np.asarray(counts[block:block + _PLAN_BLOCK], dtype=np.int64) * col_bytes
        cum = np.cumsum(cost + ROW_OVERHEAD) + used
        while True:
            fit = int(np.searchsorted(cum, limit, side="right"))  # rows that still fit
            if fit >= len(cum):
                used = int(cum[-1])
                break
            end = max(block + fit, start + 1)
            buckets.append((start, end))
            cum -= cum[end - block - 1]
            start = end
    if start < n or not buckets:
        buckets.append((start, n))
    return buckets


def build_csr(directory: Path, edge_index: ArrayLike, num_nodes: int, *, to_undirected: bool,
              memory_limit: int, num_threads: int, progress: bool,
              num_src: Optional[int] = None,
              edge_values: Optional[Mapping[str, ArrayLike]] = None) -> int:
    """Writes ``rowptr.npy`` and ``col.npy`` into ``directory``; returns the
    number of edges (CSR entries). ``num_nodes`` rows (destinations);
    ``num_src``: the sources' node count when they are of another node set
    (an edge type of a heterogeneous graph; directed builds only).

    ``edge_values`` (``{"edge_weight": ..., "edge_time": ...}``, one value
    per input edge) makes a build that keeps every edge (parallel edges are
    not merged: their values may differ), sorts each row by ``edge_time``
    when given, and writes each value per CSR position
    (``edge_weight.npy`` float32, ``edge_time.npy`` int64)."""
    src, dst = _edge_rows(edge_index)
    values = {k: open_array(k, v) for k, v in (edge_values or {}).items()}
    for name, value in values.items():
        if tuple(value.shape) != (src.shape[0],):
            raise ValueError(f"{name} must hold one value per edge ({src.shape[0]}), "
                             f"got shape {tuple(value.shape)}")
    bound = num_nodes if num_src is None else num_src
    col_dtype = np.int32 if bound < 2**31 else np.int64
    # A kept edge's bucket entry: its time, neighbor and input index.
    entry_bytes = 24 if values else np.dtype(col_dtype).itemsize
    rowptr = create_npy(directory / "rowptr.npy", np.int64, (num_nodes + 1,))
    native_src = -1 if num_src is None else num_src
    _native.csr_count(src, dst, num_nodes, to_undirected, rowptr, native_src)
    raw_total = int(rowptr.sum())
    col = create_npy(directory / "col.npy", col_dtype, (raw_total,))
    edge_of = create_npy(directory / "edge_of.npy", np.int64, (raw_total,)) if values else None
    time = _int64_times(directory, values["edge_time"]) if "edge_time" in values else None
    buckets = plan_buckets(rowptr[1:], entry_bytes, memory_limit)
    written = 0
    bar = tqdm(total=num_nodes, desc="building CSR", unit="row", unit_scale=True,
               disable=not progress)
    with bar:
        for begin, end in buckets:
            raw = np.array(rowptr[begin + 1:end + 1])
            degree = np.empty(end - begin, dtype=np.int64)
            count = _native.csr_fill(src, dst, num_nodes, to_undirected, begin, end, raw,
                                     col[written:], degree, num_threads, native_src,
                                     None if edge_of is None else edge_of[written:], time)
            rowptr[begin + 1:end + 1] = written + np.cumsum(degree)
            written += count
            bar.update(end - begin)
    rowptr[0] = 0
    rowptr.flush()
    col.flush()
    del rowptr, col, time
    shrink_npy(directory / "col.npy", col_dtype, (written,))
    if edge_of is not None:
        for name, value in values.items():
            _write_per_position(directory, name, value, edge_of, progress)
        del edge_of
        (directory / "edge_of.npy").unlink()
        (directory / ".edge_time_input.npy").unlink(missing_ok=True)
    return written


def _int64_times(directory: Path, source: Union[np.ndarray, Tensor]) -> np.ndarray:
    """``source`` (integer times, one per input edge) as a contiguous int64
    array for the native build: in place when it is one, else converted in
    chunks into a scratch file next to the build."""
    array = source.numpy() if isinstance(source, Tensor) else source
    if array.dtype.kind not in "iu":
        raise ValueError(f"edge_time must hold integer times, got {array.dtype}")
    if array.dtype == np.int64 and array.flags.c_contiguous:
        return array
    out = create_npy(directory / ".edge_time_input.npy", np.int64, tuple(array.shape))
    step = _chunk_rows(8)
    for begin in range(0, array.shape[0], step):
        out[begin:begin + step] = array[begin:begin + step]
    return out


def _write_per_position(directory: Path, name: str, source: Union[np.ndarray, Tensor],
                        edge_of: np.ndarray, progress: bool) -> None:
    """``name.npy``: the input edge's value at every CSR position, checked,
    in chunks of positions."""
    dtype = np.float32 if name == "edge_weight" else np.int64
    out = create_npy(directory / f"{name}.npy", dtype, (edge_of.shape[0],))
    step = _chunk_rows(8)
    for begin in tqdm(range(0, edge_of.shape[0], step), desc=f"writing {name}", unit="chunk",
                      disable=not progress or edge_of.shape[0] <= step):
        edges = np.asarray(edge_of[begin:begin + step])
        part = torch.as_tensor(np.asarray(source[edges]) if isinstance(source, np.ndarray)
                               else source[torch.from_numpy(edges)])
        if name == "edge_weight":
            if part.dtype == torch.bool or part.is_complex():
                raise ValueError(f"edge_weight must hold real numbers, got {part.dtype}")
            part = part.to(torch.float64)
            k = first_bad_weight(part)
            if k is not None:
                raise ValueError(f"edge_weight of edge {int(edges[k])} is {float(part[k])}: "
                                 "weights must be finite and >= 0")
        out[begin:begin + step] = part.numpy().astype(dtype, copy=False)
    if isinstance(out, np.memmap):
        out.flush()


def _rows(source: Union[np.ndarray, Tensor], begin: int, end: int) -> Tensor:
    part = source[begin:end]
    return part if isinstance(part, Tensor) else torch.from_numpy(np.array(part))


def _chunk_rows(row_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def write_features(directory: Path, x: Optional[ArrayLike], num_nodes: int,
                   feature_dtype: torch.dtype, progress: bool) -> None:
    """``x.npy``: ``x`` cast to ``feature_dtype`` chunk by chunk ([N, 0] without ``x``)."""
    out_dtype = np.int16 if feature_dtype == torch.bfloat16 else \
        torch.empty(0, dtype=feature_dtype).numpy().dtype
    if x is None:
        create_npy(directory / "x.npy", out_dtype, (num_nodes, 0))
        return
    source = open_array("x", x)
    if source.ndim != 2 or source.shape[0] != num_nodes:
        raise ValueError(f"x must have shape [num_nodes={num_nodes}, F], "
                         f"got {tuple(source.shape)}")
    width = int(source.shape[1])
    out = create_npy(directory / "x.npy", out_dtype, (num_nodes, width))
    step = _chunk_rows(width * 8)
    for begin in tqdm(range(0, num_nodes, step), desc="copying features", unit="chunk",
                      disable=not progress or num_nodes <= step):
        rows = _rows(source, begin, begin + step).to(feature_dtype)
        out[begin:begin + step] = (rows.view(torch.int16) if feature_dtype == torch.bfloat16
                                   else rows).numpy()
    if isinstance(out, np.memmap):
        out.flush()


def write_labels(directory: Path, y: Optional[ArrayLike], num_nodes: int,
                 num_classes: Optional[int]) -> int:
    """``y.npy``: int64 labels, NaN and missing as -1, checked chunk by
    chunk against ``num_classes``; returns ``num_classes`` (computed as
    ``max(y) + 1`` when not given)."""
    out = create_npy(directory / "y.npy", np.int64, (num_nodes,))
    if y is None:
        out[:] = -1
        return 1 if num_classes is None else check_int("num_classes", num_classes, minimum=1)
    source = open_array("y", y)
    shape = tuple(source.shape)
    if not (shape == (num_nodes,) or shape == (num_nodes, 1)):
        raise ValueError(f"y must hold one label per node ([{num_nodes}] or [{num_nodes}, 1]), "
                         f"got {shape}")
    top = -1
    step = _chunk_rows(8)
    for begin in range(0, num_nodes, step):
        labels = _rows(source, begin, begin + step).reshape(-1)
        if labels.is_floating_point():
            labels = torch.where(torch.isnan(labels), torch.full_like(labels, -1), labels)
            if not torch.equal(labels, labels.round()):
                raise ValueError("y must hold integer class labels (or NaN for none)")
        elif labels.dtype == torch.bool or labels.is_complex():
            raise ValueError(f"y must hold integer class labels, got {labels.dtype}")
        labels = labels.to(torch.int64)
        if labels.numel():
            if int(labels.min()) < -1:
                raise ValueError(f"y holds label {int(labels.min())} near node {begin}: "
                                 "-1 marks unlabeled nodes, no other negative label is allowed")
            top = max(top, int(labels.max()))
        out[begin:begin + step] = labels.numpy()
    if isinstance(out, np.memmap):
        out.flush()
    if num_classes is None:
        return max(1, top + 1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if top >= num_classes:
        raise ValueError(f"y holds label {top} but num_classes is {num_classes}")
    return num_classes


def write_dataset(path: Union[str, os.PathLike], edge_index: ArrayLike, num_nodes: int, *,
                  x: Optional[ArrayLike] = None, y: Optional[ArrayLike] = None,
                  split_idx: Optional[Mapping[str, Any]] = None,
                  num_classes: Optional[int] = None, to_undirected: bool = True,
                  memory_limit: Union[int, str, None] = None,
                  feature_dtype: torch.dtype = torch.float16, name: Optional[str] = None,
                  num_threads: Optional[int] = None, progress: bool = True,
                  edge_weight: Optional[ArrayLike] = None,
                  edge_time: Optional[ArrayLike] = None,
                  node_time: Optional[ArrayLike] = None) -> None:
    """Writes a dataset at ``path`` (atomically) within ``memory_limit``;
    :meth:`FastDataset.from_edges` documents the arguments."""
    num_nodes = check_int("num_nodes", num_nodes, minimum=0)
    limit = default_memory_limit() if memory_limit is None else parse_bytes(memory_limit)
    if limit < 1:
        raise ValueError(f"memory_limit must be at least one byte, got {memory_limit!r}")
    if num_threads is None:
        num_threads = max(1, len(os.sched_getaffinity(0)))
    num_threads = check_int("num_threads", num_threads, minimum=1)
    splits: Dict[str, Tensor] = {
        split: as_node_ids(f"split_idx[{split!r}]", idx, num_nodes)
        for split, idx in (split_idx or {}).items()}
    _edge_rows(edge_index)  # argument errors before anything is written
    path = Path(path)
    values = {k: v for k, v in (("edge_weight", edge_weight), ("edge_time", edge_time))
              if v is not None}
    with atomic_directory(path) as tmp:
        num_edges = build_csr(tmp, edge_index, num_nodes, to_undirected=to_undirected,
                              memory_limit=limit, num_threads=num_threads, progress=progress,
                              edge_values=values)
        write_features(tmp, x, num_nodes, feature_dtype, progress)
        num_classes = write_labels(tmp, y, num_nodes, num_classes)
        for split, idx in splits.items():
            np.save(tmp / f"split_{split}.npy", idx.numpy())
        dtypes = {"rowptr": "int64", "col": "int32" if num_nodes < 2**31 else "int64",
                  "x": str(feature_dtype).replace("torch.", ""), "y": "int64",
                  **{f"split_{k}": "int64" for k in splits},
                  **{k: "float32" if k == "edge_weight" else "int64" for k in values}}
        if node_time is not None:
            _write_node_times(tmp, node_time, num_nodes)
            dtypes["node_time"] = "int64"
        write_meta(tmp, dataset_meta(tmp, name or path.name, num_nodes, num_edges, num_classes,
                                     list(splits), dtypes))


def _write_node_times(directory: Path, node_time: ArrayLike, num_nodes: int) -> None:
    """``node_time.npy``: one integer time per node, copied in chunks."""
    source = open_array("node_time", node_time)
    if tuple(source.shape) != (num_nodes,):
        raise ValueError(f"node_time must hold one time per node ({num_nodes}), "
                         f"got shape {tuple(source.shape)}")
    out = create_npy(directory / "node_time.npy", np.int64, (num_nodes,))
    step = _chunk_rows(8)
    for begin in range(0, num_nodes, step):
        part = _rows(source, begin, begin + step)
        if part.is_floating_point() or part.dtype == torch.bool or part.is_complex():
            raise ValueError(f"node_time must hold integer times, got {part.dtype}")
        out[begin:begin + step] = part.to(torch.int64).numpy()
    if isinstance(out, np.memmap):
        out.flush()


def edge_type_of(value: Any, name: str) -> EdgeType:
    """``value`` checked to be an edge type ``(src, rel, dst)`` of strings."""
    if not (isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, str)
                                                                   for v in value)):
        raise ValueError(f"{name} must be an edge type (src, rel, dst) of strings, got {value!r}")
    return value


def write_hetero_dataset(path: Union[str, os.PathLike], num_nodes: Mapping[str, int],
                         edge_index: Mapping[EdgeType, ArrayLike], *, label_type: str,
                         x: Optional[Mapping[str, ArrayLike]] = None,
                         y: Optional[ArrayLike] = None,
                         split_idx: Optional[Mapping[str, Any]] = None,
                         num_classes: Optional[int] = None,
                         memory_limit: Union[int, str, None] = None,
                         feature_dtype: torch.dtype = torch.float16, name: Optional[str] = None,
                         num_threads: Optional[int] = None, progress: bool = True,
                         edge_weight: Optional[Mapping[EdgeType, ArrayLike]] = None,
                         edge_time: Optional[Mapping[EdgeType, ArrayLike]] = None,
                         node_time: Optional[Mapping[str, ArrayLike]] = None) -> None:
    """Writes a heterogeneous dataset at ``path`` (atomically), every edge
    type's CSR within ``memory_limit``; :meth:`HeteroDataset.from_edges`
    documents the arguments."""
    counts = {t: check_int(f"num_nodes[{t!r}]", n, minimum=0) for t, n in num_nodes.items()}
    if label_type not in counts:
        raise ValueError(f"label_type {label_type!r} is not a node type {list(counts)}")
    limit = default_memory_limit() if memory_limit is None else parse_bytes(memory_limit)
    threads = num_threads or max(1, len(os.sched_getaffinity(0)))
    splits = {s: as_node_ids(f"split_idx[{s!r}]", idx, counts[label_type])
              for s, idx in (split_idx or {}).items()}
    types = {edge_type_of(e, "each key of edge_index"): value
             for e, value in edge_index.items()}
    for e in types:
        for end in (e[0], e[2]):
            if end not in counts:
                raise ValueError(f"edge type {e} names node type {end!r}, which is not "
                                 f"in num_nodes")
    for what, names, known in (("x", x, counts), ("node_time", node_time, counts),
                               ("edge_weight", edge_weight, types),
                               ("edge_time", edge_time, types)):
        unknown = [k for k in (names or {}) if k not in known]
        if unknown:
            raise ValueError(f"{what} names types that are not in the graph: {unknown}")
    path = Path(path)
    with atomic_directory(path) as tmp:
        dtypes: Dict[str, str] = {}
        for e, value in types.items():
            d = tmp / "edges" / edge_dir(e)
            d.mkdir(parents=True)
            values = {k: v[e] for k, v in (("edge_weight", edge_weight),
                                           ("edge_time", edge_time)) if v and e in v}
            try:
                build_csr(d, value, counts[e[2]], num_src=counts[e[0]],
                          to_undirected=False, memory_limit=limit, num_threads=threads,
                          progress=progress, edge_values=values)
            except ValueError as exc:
                raise ValueError(f"edge type {e}: {exc}") from None
            dtypes[f"edges/{edge_dir(e)}/rowptr"] = "int64"
            dtypes[f"edges/{edge_dir(e)}/col"] = \
                "int32" if counts[e[0]] < 2**31 else "int64"
            dtypes.update({f"edges/{edge_dir(e)}/{k}": "float32" if k == "edge_weight"
                           else "int64" for k in values})
        for t, n in counts.items():
            d = tmp / "nodes" / t
            d.mkdir(parents=True)
            write_features(d, (x or {}).get(t), n, feature_dtype, progress)
            dtypes[f"nodes/{t}/x"] = str(feature_dtype).replace("torch.", "")
            if node_time and t in node_time:
                _write_node_times(d, node_time[t], n)
                dtypes[f"nodes/{t}/node_time"] = "int64"
        classes = write_labels(tmp, y, counts[label_type], num_classes)
        dtypes["y"] = "int64"
        for s, idx in splits.items():
            np.save(tmp / f"split_{s}.npy", idx.numpy())
            dtypes[f"split_{s}"] = "int64"
        meta = hetero_meta(tmp, name or path.name, counts, list(types), label_type,
                           classes, list(splits), dtypes)
        write_meta(tmp, meta)


__all__ = ["default_memory_limit", "edge_type_of", "plan_buckets", "write_dataset",
           "write_hetero_dataset"]
