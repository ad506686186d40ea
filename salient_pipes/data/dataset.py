"""FastDataset: a graph in the form the native sampler is fast on.

A ``FastDataset`` holds a CSR graph (``rowptr`` int64, ``col`` int32 below
2**31 nodes), row-major features (float16 by default), int64 labels with -1
for unlabeled nodes and an index split. It comes from OGB (``from_path``), an
edge list of any size (``from_edges``), a PyG ``Data`` (``from_pyg``),
generated data (``synthetic``) or tensors, and is saved to and reopened from
a memory-mapped copy on disk.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from salient_pipes import _native
from salient_pipes._checks import as_node_ids
from salient_pipes.batch import NODE_TYPE
from salient_pipes.data import build, ogb, synthetic
from salient_pipes.data.csr import (
    CARRIED,
    PYG_MASKS,
    CSRViews,
    check_rows_ascend,
    csr_from_edge_index,
    csr_with_attributes,
    edge_weights,
    sort_rows_by_time,
    times,
)
from salient_pipes.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    DatasetCacheError,
    atomic_directory,
    dataset_meta,
    open_files,
    read_meta,
    reading_copy,
    renew_stamps,
    to_numpy,
    write_meta,
)

PathLike = Union[str, os.PathLike]
CACHE_DIR = "salient_pipes"
SPLITS = ("train", "valid", "test")


class FastDataset(CSRViews):
    """A node-classification graph in SALIENT's fast format.

    Construction validates every field and raises ``ValueError`` naming the
    problem. ``graph`` is the validated native CSR the samplers read.

    Example:
        >>> ds = FastDataset.synthetic(num_nodes=1000, avg_degree=8, num_features=16,
        ...                            num_classes=4, seed=0)
        >>> ds.num_nodes, ds.x.dtype
        (1000, torch.float16)
    """

    def __init__(
        self,
        *,
        name: str,
        x: Tensor,
        y: Tensor,
        rowptr: Tensor,
        col: Tensor,
        split_idx: Mapping[str, Tensor],
        num_classes: int,
        edge_weight: Optional[Tensor] = None,
        edge_time: Optional[Tensor] = None,
        node_time: Optional[Tensor] = None,
        validate: bool = True,
    ) -> None:
        """``edge_weight`` (non-negative floats) and ``edge_time`` (integers,
        ascending within each row: :func:`sort_rows_by_time`) hold one value
        per CSR position, ``node_time`` one integer per node: what weighted
        and temporal sampling read (``sample_neighbors(ds, ...,
        weight=ds.edge_weight)``, ``salient_pipeline(ds, weighted=True)``).
        ``validate=False`` skips the O(E) checks; :meth:`load` passes it for
        copies whose validation is on record in their stamps."""
        for field, value in (("x", x), ("y", y), ("rowptr", rowptr), ("col", col)):
            if not isinstance(value, Tensor):
                raise ValueError(f"{field} must be a torch.Tensor, got {type(value).__name__}")
        if rowptr.dim() != 1 or rowptr.dtype != torch.int64:
            raise ValueError("rowptr must be a 1-D int64 tensor")
        num_nodes = rowptr.numel() - 1
        if col.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"col must be int32 or int64, got {col.dtype}")
        if col.dtype == torch.int32 and num_nodes >= 2**31:
            raise ValueError("col must be int64 for graphs of 2**31 nodes or more")
        if x.dim() != 2 or x.size(0) != num_nodes:
            raise ValueError(f"x must have shape [num_nodes={num_nodes}, F], got {tuple(x.shape)}")
        if y.dim() != 1 or y.dtype != torch.int64 or y.numel() != num_nodes:
            raise ValueError(
                f"y must be a 1-D int64 tensor of {num_nodes} labels, "
                f"got {y.dtype} {tuple(y.shape)}"
            )
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if validate and y.numel() and int(y.max()) >= num_classes:
            raise ValueError(f"y holds label {int(y.max())} but num_classes is {num_classes}")
        if validate and y.numel() and int(y.min()) < -1:
            raise ValueError("y may hold -1 (unlabeled) but no other negative label")
        if not isinstance(split_idx, Mapping):
            raise ValueError("split_idx must map split names to node ids or masks, "
                             f"got {type(split_idx).__name__}")
        # Node ids or bool masks (PyG's train_mask style) of one entry per node.
        self.split_idx: Dict[str, Tensor] = {
            split: as_node_ids(f"split_idx[{split!r}]", idx, num_nodes if validate else None)
            for split, idx in split_idx.items()}
        self.name = name
        self.x = x.contiguous()
        self.y = y.contiguous()
        self.rowptr = rowptr.contiguous()
        self.col = col.contiguous()
        self.num_classes = num_classes
        self.graph = _native.CSRGraph(self.rowptr.numpy(), self.col.numpy(), validate=validate)
        self.edge_weight = edge_weights(edge_weight, self.num_edges, validate)
        self.edge_time = times("edge_time", edge_time, self.num_edges)
        if validate and self.edge_time is not None:
            check_rows_ascend(self.rowptr, self.edge_time)
        self.node_time = times("node_time", node_time, num_nodes)
        self.x_files: Dict[str, Path] = {}  # x's file, when loaded memory-mapped

    # ------------------------------------------------------------------ views
    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._arrays().values())

    def summary(self) -> str:
        """One line: nodes, edges, features, classes, split sizes, memory."""
        splits = ", ".join(f"{k} {v.numel():,}" for k, v in self.split_idx.items())
        extras = [name for name in CARRIED if getattr(self, name) is not None]
        return (
            f"{self.name}: {self.num_nodes:,} nodes, {self.num_edges:,} edges"
            f"{' with ' + ', '.join(extras) if extras else ''}, "
            f"{self.num_features} features ({str(self.x.dtype).replace('torch.', '')}), "
            f"{self.num_classes} classes; {splits}; {self.nbytes / 2**20:,.1f} MiB"
        )

    def __repr__(self) -> str:
        return f"FastDataset({self.summary()})"

    def _arrays(self) -> Dict[str, Tensor]:
        arrays = {"rowptr": self.rowptr, "col": self.col, "x": self.x, "y": self.y}
        arrays.update({f"split_{k}": v for k, v in self.split_idx.items()})
        arrays.update({name: getattr(self, name) for name in CARRIED
                       if getattr(self, name) is not None})
        return arrays

    # ------------------------------------------------------------ save / load
    def save(self, path: PathLike, *, progress: bool = True) -> None:
        """Writes the dataset to directory ``path`` atomically: files go to a
        temporary sibling that replaces ``path`` only once complete, each
        with a stamp so that :meth:`load` opens it in O(1)."""
        with atomic_directory(path) as tmp:
            arrays = self._arrays()
            dtypes = {}
            for key, tensor in tqdm(arrays.items(), desc=f"saving {self.name}",
                                    disable=not progress, unit="array"):
                np.save(tmp / f"{key}.npy", to_numpy(tensor))
                dtypes[key] = str(tensor.dtype).replace("torch.", "")
            write_meta(tmp, dataset_meta(tmp, self.name, self.num_nodes, self.num_edges,
                                         self.num_classes, list(self.split_idx), dtypes))

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = True,
             random_access: Optional[bool] = None,
             graph_in_memory: Optional[bool] = None) -> FastDataset:
        """Opens a copy written by :meth:`save` or :meth:`from_edges`. With
        ``mmap`` the arrays are memory-mapped copy-on-write: nothing is read
        until it is touched, so a graph larger than memory can still be
        sampled. ``random_access`` advises the kernel that ``x`` is read by
        random rows, so a row costs a page instead of a read-ahead window;
        by default it does so when ``x`` is larger than half of physical
        memory (then read-ahead only evicts rows that will be needed; for a
        smaller file it warms the page cache faster).

        ``graph_in_memory`` reads the CSR (``rowptr``, ``col``) into private
        memory in 2 MiB pages, whatever ``mmap`` does with the other arrays;
        by default it follows ``not mmap``. The sampler reads the CSR at
        random, and a file mapping's small pages cost it TLB misses: on a
        10 M-node graph the copy sampled 1.08x to 1.45x faster, depending
        on how the page cache held the file (docs/benchmarks.md,
        ``latency``). It costs the CSR's size in memory per process, where a
        file mapping is shared through the page cache: worth it for one
        process, or a few, whose memory holds it.

        Example:
            >>> import tempfile
            >>> path = Path(tempfile.mkdtemp()) / "small"
            >>> FastDataset.synthetic(num_nodes=500, avg_degree=4, num_features=8,
            ...                       num_classes=3).save(path, progress=False)
            >>> ds = FastDataset.load(path, graph_in_memory=True)  # x stays mapped
            >>> ds.num_nodes, bool(ds.rowptr[-1] == ds.col.numel())
            (500, True)

        Files larger than half of physical memory are mapped read-only: a
        private (copy-on-write) mapping of them would need that much memory
        committed, which the kernel refuses. Copy such an array before
        modifying it.

        Opening costs O(1): sizes and stamps are checked, and the O(E)
        validation done when the copy was written is not repeated. A copy
        whose files were copied elsewhere (new modification times, same
        contents) is validated once and its stamps renewed."""
        path = Path(path)
        rebuild = f"delete {path} and run the conversion again"
        meta = read_meta(path, FORMAT_NAME, FORMAT_VERSION, rebuild)
        with reading_copy(path, rebuild):
            arrays, trusted = open_files(path, meta["files"], rebuild, mmap=mmap,
                                         random_access={"x": random_access},
                                         graph=("rowptr", "col"),
                                         graph_in_memory=graph_in_memory)
            dataset = cls(
                name=meta["name"], x=arrays["x"], y=arrays["y"], rowptr=arrays["rowptr"],
                col=arrays["col"], num_classes=meta["num_classes"],
                split_idx={k: arrays[f"split_{k}"] for k in meta["splits"]}, validate=not trusted,
                **{name: arrays[name] for name in CARRIED if name in arrays},
            )
        if not trusted:
            renew_stamps(path, meta)
        if mmap:  # where out-of-core reading finds the rows (salient_pipeline(out_of_core=))
            dataset.x_files = {NODE_TYPE: path / "x.npy"}
        return dataset

    # ---------------------------------------------------------------- sources
    @classmethod
    def from_path(
        cls, root: PathLike, name: str, *, feature_dtype: torch.dtype = torch.float16,
        progress: bool = True, mmap: bool = True, memory_limit: Union[int, str, None] = None,
    ) -> FastDataset:
        """An OGB node-property dataset (``ogbn-arxiv``, ``ogbn-products``,
        ``ogbn-papers100M``, ...) in its converted form under ``root``.

        The first call converts OGB's files (downloading them if ``root`` does
        not hold them yet) within ``memory_limit`` (default: a quarter of
        physical memory; see :meth:`from_edges`) and saves the result in
        ``root/<dir>/salient_pipes``; later calls open that copy in O(1).

        Example:
            >>> ds = FastDataset.from_path("data", "ogbn-arxiv")  # doctest: +SKIP
        """
        info = ogb.dataset_info(name)
        cached = Path(root) / info.dir_name / CACHE_DIR
        if not cached.exists():
            ogb.convert(root, info, cached, feature_dtype=feature_dtype,
                        memory_limit=memory_limit, progress=progress)
        dataset = cls.load(cached, mmap=mmap)
        if progress:
            print(dataset.summary(), file=sys.stderr)
        return dataset

    @classmethod
    def from_edges(
        cls, path: PathLike, edge_index: Any, num_nodes: int, *, x: Any = None, y: Any = None,
        split_idx: Optional[Mapping[str, Any]] = None, num_classes: Optional[int] = None,
        to_undirected: bool = True, memory_limit: Union[int, str, None] = None,
        feature_dtype: torch.dtype = torch.float16, name: Optional[str] = None,
        num_threads: Optional[int] = None, progress: bool = True,
        edge_weight: Any = None, edge_time: Any = None, node_time: Any = None,
    ) -> FastDataset:
        """Writes a dataset at ``path`` from an edge list of any size and
        returns it opened (memory-mapped). Rows are sorted and deduplicated:
        the same CSR as :func:`csr_from_edge_index`. Beyond a fixed overhead,
        at most ``memory_limit`` bytes of anonymous memory are used; more
        buckets, and so more passes over the edges, keep a smaller limit.
        The write is atomic: on any error a previous copy at ``path`` is left
        as it was.

        Args:
            path: the directory to write.
            edge_index: ``[2, E]`` int32/int64 (source, target) pairs. It,
                ``x`` and ``y`` may each be a tensor, a numpy array, a
                memory-mapped array or the path of a ``.npy`` file; none is
                read whole.
            num_nodes: nodes of the graph.
            x: ``[N, F]`` features of any dtype, cast to ``feature_dtype``.
            y: ``[N]`` or ``[N, 1]`` integer labels, or floats with NaN for none.
            split_idx: split names to node ids or bool masks.
            num_classes: default: the largest label + 1.
            to_undirected: take every edge both ways.
            memory_limit: an int or a string like ``"1GiB"`` (default: a
                quarter of physical memory).
            feature_dtype: the stored features' dtype.
            name: the dataset's name (default: the directory's).
            num_threads: threads of the build (default: the process's cores).
            progress: progress bars.
            edge_weight, edge_time: one weight (float) or time (integer) per
                input edge, like ``edge_index`` of any size. With either, the
                build keeps every edge (parallel edges are not merged, their
                values may differ; with ``to_undirected`` both directions
                carry the edge's values), each row sorted by time when times
                are given, and the dataset gets them per CSR position.
            node_time: one integer time per node.

        Example:
            >>> import tempfile
            >>> edges = torch.tensor([[0, 1, 2], [1, 2, 0]])
            >>> ds = FastDataset.from_edges(tempfile.mkdtemp() + "/tri", edges, 3,
            ...                             memory_limit="1MiB", progress=False)
            >>> ds.rowptr.tolist(), ds.col.tolist()
            ([0, 2, 4, 6], [1, 2, 0, 2, 0, 1])
        """
        build.write_dataset(path, edge_index, num_nodes, x=x, y=y, split_idx=split_idx,
                            num_classes=num_classes, to_undirected=to_undirected,
                            memory_limit=memory_limit, feature_dtype=feature_dtype, name=name,
                            num_threads=num_threads, progress=progress,
                            edge_weight=edge_weight, edge_time=edge_time, node_time=node_time)
        return cls.load(path)

    @classmethod
    def from_pyg(
        cls, data: Any, split_idx: Optional[Mapping[str, Any]] = None, *, name: str = "pyg",
        num_classes: Optional[int] = None, feature_dtype: torch.dtype = torch.float16,
        to_undirected: bool = True, weight_attr: Optional[str] = None,
        time_attr: Optional[str] = None,
    ) -> FastDataset:
        """From a ``torch_geometric.data.Data`` with ``x``, ``y`` and
        ``edge_index``. The split comes from ``split_idx`` (node ids or bool
        masks per split) or, when not given, from
        ``train_mask``/``val_mask``/``test_mask``.

        ``weight_attr`` names an edge attribute kept as ``edge_weight``;
        ``time_attr`` a node attribute (kept as ``node_time``) or an edge
        attribute (kept as ``edge_time``, each row sorted by it). With edge
        attributes the CSR keeps every edge (with ``to_undirected`` both
        ways, each carrying its attributes): parallel edges are not merged,
        since their weights or times may differ.

        Example:
            >>> from torch_geometric.datasets import Planetoid  # doctest: +SKIP
            >>> cora = Planetoid("data", "Cora")[0]  # doctest: +SKIP
            >>> ds = FastDataset.from_pyg(cora, name="cora")  # doctest: +SKIP
        """
        if type(data).__name__ == "HeteroData":
            raise ValueError("FastDataset.from_pyg takes a homogeneous Data; for a HeteroData "
                             "use HeteroDataset.from_pyg")
        for field in ("x", "y", "edge_index"):
            if getattr(data, field, None) is None:
                raise ValueError(f"data has no {field!r}")
        x, y = data.x, data.y
        if y.is_floating_point():
            raise ValueError("from_pyg handles node classification: data.y must hold integer "
                             f"class labels, got {y.dtype}")
        num_nodes = int(data.num_nodes)
        if x.size(0) != num_nodes or y.size(0) != num_nodes:
            raise ValueError(
                f"data has {num_nodes} nodes but x has {x.size(0)} rows and y {y.size(0)} labels"
            )
        y = y.view(-1).to(torch.int64) if y.dim() == 1 or y.size(1) == 1 else None
        if y is None:
            raise ValueError("from_pyg handles single-label node classification (y of shape [N])")
        if split_idx is None:
            split_idx = {k: getattr(data, m) for k, m in PYG_MASKS.items()
                         if getattr(data, m, None) is not None}
            if not split_idx:
                raise ValueError("data has no train/val/test masks; pass split_idx")
        per_edge = {}
        node_time = None
        for role, attr in (("edge_weight", weight_attr), ("time", time_attr)):
            if attr is None:
                continue
            if attr not in data or not isinstance(data[attr], Tensor):
                raise ValueError(f"data has no tensor attribute {attr!r} ({role})")
            if data.is_edge_attr(attr) and data[attr].size(0) == data.edge_index.size(1):
                per_edge["edge_time" if role == "time" else role] = data[attr]
            elif role == "time" and data.is_node_attr(attr):
                node_time = data[attr]
            else:
                raise ValueError(f"{attr!r} must be an edge attribute (one value per edge)"
                                 + (" or a node attribute" if role == "time" else ""))
        if per_edge:
            rowptr, col, per_edge = csr_with_attributes(data.edge_index, num_nodes, per_edge,
                                                         to_undirected)
        else:
            rowptr, col = csr_from_edge_index(data.edge_index, num_nodes,
                                              to_undirected=to_undirected)
        weight = per_edge.get("edge_weight")
        return cls(
            name=name, x=x.to(feature_dtype).contiguous(), y=y, rowptr=rowptr, col=col,
            split_idx=split_idx, num_classes=num_classes or int(y.max()) + 1,
            edge_weight=None if weight is None else weight.to(torch.float32),
            edge_time=per_edge.get("edge_time"), node_time=node_time,
        )

    @classmethod
    def synthetic(cls, num_nodes: int = 20_000, avg_degree: float = 12.0,
                  num_features: int = 64, num_classes: int = 8, seed: int = 0,
                  **kwargs: Any) -> FastDataset:
        """A degree-corrected stochastic block model with class-dependent
        features (heavy-tailed degrees, homophilous edges, noisy features
        that neighbors sharpen); :func:`salient_pipes.data.synthetic.sbm`
        documents the options. The same seed gives the same graph.

        Example:
            >>> ds = FastDataset.synthetic(num_nodes=500, seed=1)
            >>> sorted(ds.split_idx)
            ['test', 'train', 'valid']
        """
        return cls(**synthetic.sbm(num_nodes, avg_degree, num_features, num_classes, seed,
                                   **kwargs))

    @classmethod
    def arxiv_like(cls, seed: int = 0, **kwargs: Any) -> FastDataset:
        """A synthetic graph of ogbn-arxiv's size: 169,343 nodes, 1,166,243
        edges before symmetrization, 128 features, 40 classes and a train split
        of 90,941 nodes. Used by the benchmarks.

        Example:
            >>> ds = FastDataset.arxiv_like()  # doctest: +SKIP
        """
        n = synthetic.ARXIV["nodes"]
        return cls.synthetic(
            num_nodes=n, avg_degree=2 * synthetic.ARXIV["edges"] / n, num_features=128,
            num_classes=40, seed=seed, name="arxiv-like", **kwargs,
            split=(synthetic.ARXIV["train"] / n, synthetic.ARXIV["valid"] / n))


class HasSplits(Protocol):
    """A dataset with named splits (FastDataset, HeteroDataset, PartitionedDataset)."""

    @property
    def name(self) -> str: ...

    @property
    def split_idx(self) -> Mapping[str, Tensor]: ...


def iter_splits(dataset: HasSplits, names: Sequence[str]) -> Iterator[Tuple[str, Tensor]]:
    """Yields ``(name, index)`` for each requested split, naming a missing one."""
    for name in names:
        if name not in dataset.split_idx:
            close = difflib.get_close_matches(str(name), [str(s) for s in dataset.split_idx], 1)
            raise ValueError(
                f"{dataset.name} has no split {name!r}; it has {sorted(dataset.split_idx)}"
                + (f" (did you mean {close[0]!r}?)" if close else ""))
        yield name, dataset.split_idx[name]


__all__ = ["DatasetCacheError", "FastDataset", "csr_from_edge_index", "iter_splits",
           "sort_rows_by_time"]
