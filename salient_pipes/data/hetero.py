"""Heterogeneous graphs: several node types, one CSR per edge type.

An edge type is a triple ``(src, rel, dst)`` as in PyG. Its CSR has one row
per ``dst`` node listing the ``src`` nodes of its incoming edges (sorted,
duplicates removed), so sampling walks from destinations to sources exactly
as in the homogeneous case. Every node type has its own features (any
dtype; none is a ``[N, 0]`` array); one node type carries the labels and
the splits (``label_type``, ``"paper"`` for ogbn-mag).

On disk a dataset is a directory with ``meta.json``,
``nodes/<type>/x.npy``, ``y.npy``, ``split_<name>.npy`` and
``edges/<src>__<rel>__<dst>/{rowptr,col}.npy``, written atomically with
stamps like :class:`~salient_pipes.data.dataset.FastDataset`.
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
from salient_pipes.data import ogb, synthetic
from salient_pipes.data.build import ArrayLike, edge_type_of, write_hetero_dataset
from salient_pipes.data.csr import (
    CARRIED,
    PYG_MASKS,
    check_rows_ascend,
    csr_with_attributes,
    edge_weights,
    times,
    typed_csr,
)
from salient_pipes.data.format import (
    HETERO_FORMAT,
    HETERO_VERSION,
    EdgeType,
    atomic_directory,
    edge_dir,
    hetero_meta,
    open_files,
    read_meta,
    reading_copy,
    renew_stamps,
    to_numpy,
    write_meta,
)

PathLike = Union[str, os.PathLike]

class HeteroDataset:
    """A heterogeneous node-classification graph in our fast format.

    ``x[t]``: features of node type ``t`` (``[N_t, F_t]``, ``F_t`` may be 0);
    ``y``: labels of ``label_type`` (-1: unlabeled); ``split_idx``: ids of
    ``label_type`` nodes per split; ``rowptr[e]``/``col[e]``: the CSR of
    edge type ``e``. Construction validates everything and raises
    ``ValueError`` naming the problem; ``graph`` is the native graph the
    samplers read.

    Example:
        >>> ds = HeteroDataset.synthetic_mag(scale=0.001, seed=0)
        >>> ds.label_type, ds.node_types
        ('paper', ['paper', 'author', 'institution', 'field_of_study'])
        >>> ds.num_nodes["paper"], len(ds.edge_types)
        (737, 7)
    """

    def __init__(self, *, name: str, num_nodes: Mapping[str, int],
                 edges: Mapping[EdgeType, Tuple[Tensor, Tensor]], x: Mapping[str, Tensor],
                 y: Tensor, label_type: str, split_idx: Mapping[str, Any], num_classes: int,
                 edge_weight: Optional[Mapping[EdgeType, Tensor]] = None,
                 edge_time: Optional[Mapping[EdgeType, Tensor]] = None,
                 node_time: Optional[Mapping[str, Tensor]] = None,
                 validate: bool = True) -> None:
        """``edge_weight``/``edge_time`` (per edge type, one value per CSR
        position, times ascending within each row) and ``node_time`` (per
        node type) are what weighted and temporal sampling read, as in
        :class:`FastDataset`; a type left out has none."""
        self.name = name
        self.node_types: List[str] = list(num_nodes)
        if not self.node_types:
            raise ValueError("a heterogeneous dataset needs at least one node type")
        self.num_nodes: Dict[str, int] = {
            t: check_int(f"num_nodes[{t!r}]", n, minimum=0) for t, n in num_nodes.items()}
        if label_type not in self.num_nodes:
            raise ValueError(f"label_type {label_type!r} is not a node type "
                             f"(node types: {self.node_types})")
        self.label_type = label_type
        self.x: Dict[str, Tensor] = {}
        for t in self.node_types:
            feats = x.get(t)
            if feats is None:
                feats = torch.empty(self.num_nodes[t], 0, dtype=torch.float16)
            if not isinstance(feats, Tensor) or feats.dim() != 2 or \
                    feats.size(0) != self.num_nodes[t]:
                shape = tuple(feats.shape) if isinstance(feats, Tensor) else type(feats).__name__
                raise ValueError(f"x[{t!r}] must be a tensor of shape "
                                 f"[{self.num_nodes[t]}, F], got {shape}")
            self.x[t] = feats.contiguous()
        self.x_files: Dict[str, Path] = {}  # x's files, when loaded memory-mapped
        unknown = set(x) - set(self.node_types)
        if unknown:
            raise ValueError(f"x names node types that are not in num_nodes: {sorted(unknown)}")
        n_label = self.num_nodes[label_type]
        if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype != torch.int64 or \
                y.numel() != n_label:
            raise ValueError(f"y must be a 1-D int64 tensor of {n_label} labels (one per "
                             f"{label_type!r} node)")
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        if validate and y.numel() and (int(y.max()) >= num_classes or int(y.min()) < -1):
            raise ValueError(f"y must hold labels in [0, {num_classes}) or -1 (unlabeled)")
        self.y = y
        self.split_idx: Dict[str, Tensor] = {
            s: as_node_ids(f"split_idx[{s!r}]", idx, n_label if validate else None)
            for s, idx in split_idx.items()}
        self.edge_types: List[EdgeType] = []
        self.rowptr: Dict[EdgeType, Tensor] = {}
        self.col: Dict[EdgeType, Tensor] = {}
        for key, (rowptr, col) in edges.items():
            e = edge_type_of(key, "each key of edges")
            for end in (e[0], e[2]):
                if end not in self.num_nodes:
                    raise ValueError(f"edge type {e} names node type {end!r}, which is not in "
                                     f"num_nodes")
            self.edge_types.append(e)
            self.rowptr[e], self.col[e] = rowptr, col
        self.edge_weight: Dict[EdgeType, Tensor] = {}
        self.edge_time: Dict[EdgeType, Tensor] = {}
        for what, given in (("edge_weight", edge_weight), ("edge_time", edge_time)):
            for key, value in (given or {}).items():
                e = edge_type_of(key, f"each key of {what}")
                if e not in self.rowptr:
                    raise ValueError(f"{what} names edge type {e}, which is not in edges")
                label = f"{what}[{e!r}]"
                if what == "edge_weight":
                    self.edge_weight[e] = edge_weights(value, self.num_edges[e], validate, label)
                else:
                    self.edge_time[e] = times(label, value, self.num_edges[e])
                    if validate:
                        check_rows_ascend(self.rowptr[e], self.edge_time[e], label)
        self.node_time: Dict[str, Tensor] = {}
        for t, value in (node_time or {}).items():
            if t not in self.num_nodes:
                raise ValueError(f"node_time names node type {t!r}, which is not in num_nodes")
            self.node_time[t] = times(f"node_time[{t!r}]", value, self.num_nodes[t])
        index = {t: i for i, t in enumerate(self.node_types)}
        self.graph = _native.TypedGraph(
            [self.num_nodes[t] for t in self.node_types],
            [index[e[0]] for e in self.edge_types], [index[e[2]] for e in self.edge_types],
            [to_numpy(self.rowptr[e]) for e in self.edge_types],
            [to_numpy(self.col[e]) for e in self.edge_types], validate,
            [str(e) for e in self.edge_types])

    # ---------------------------------------------------------------- facts
    @property
    def num_edges(self) -> Dict[EdgeType, int]:
        return {e: int(self.col[e].numel()) for e in self.edge_types}

    @property
    def num_features(self) -> Dict[str, int]:
        return {t: int(self.x[t].size(1)) for t in self.node_types}

    def summary(self) -> str:
        nodes = ", ".join(f"{t} {n:,}" for t, n in self.num_nodes.items())
        edges = sum(self.num_edges.values())
        extras = [name for name in CARRIED if getattr(self, name)]
        return (f"{self.name}: nodes {nodes}; {edges:,} edges of {len(self.edge_types)} types"
                f"{' with ' + ', '.join(extras) if extras else ''}; "
                f"{self.num_classes} classes on {self.label_type!r}")

    def __repr__(self) -> str:
        return f"HeteroDataset({self.summary()})"

    def to_pyg(self) -> Any:
        """A ``torch_geometric.data.HeteroData`` of the same graph (``x`` per
        node type, ``y`` and the splits as masks on the label type (PyG's
        ``train_mask``/``val_mask``/``test_mask``, ``<split>_mask`` for others),
        ``edge_index`` per edge type), e.g. for PyG's own loaders."""
        from torch_geometric.data import HeteroData

        data = HeteroData()
        for t in self.node_types:
            data[t].num_nodes = self.num_nodes[t]
            if self.x[t].size(1):
                data[t].x = self.x[t]
        data[self.label_type].y = self.y
        for split, idx in self.split_idx.items():
            mask = torch.zeros(self.num_nodes[self.label_type], dtype=torch.bool)
            mask[idx] = True
            data[self.label_type][PYG_MASKS.get(split, f"{split}_mask")] = mask
        for e in self.edge_types:
            rowptr, col = self.rowptr[e], self.col[e]
            dst = torch.repeat_interleave(torch.arange(rowptr.numel() - 1), rowptr.diff())
            data[e].edge_index = torch.stack([col.to(torch.int64), dst])
            for name in ("edge_weight", "edge_time"):  # weight_attr / time_attr
                if e in getattr(self, name):
                    data[e][name] = getattr(self, name)[e]
        for t, value in self.node_time.items():
            data[t].node_time = value
        return data

    # ------------------------------------------------------------ save / load
    def _files(self) -> Dict[str, Tensor]:
        files = {f"nodes/{t}/x": self.x[t] for t in self.node_types}
        files["y"] = self.y
        files.update({f"split_{s}": idx for s, idx in self.split_idx.items()})
        for e in self.edge_types:
            files[f"edges/{edge_dir(e)}/rowptr"] = self.rowptr[e]
            files[f"edges/{edge_dir(e)}/col"] = self.col[e]
            for name in ("edge_weight", "edge_time"):
                if e in getattr(self, name):
                    files[f"edges/{edge_dir(e)}/{name}"] = getattr(self, name)[e]
        files.update({f"nodes/{t}/node_time": v for t, v in self.node_time.items()})
        return files

    def save(self, path: PathLike, *, progress: bool = True) -> None:
        """Writes the dataset to directory ``path`` atomically (see
        :meth:`FastDataset.save`); :meth:`load` opens it in O(1)."""
        with atomic_directory(path) as tmp:
            dtypes = {}
            for key, tensor in tqdm(self._files().items(), desc=f"saving {self.name}",
                                    disable=not progress, unit="array"):
                (tmp / key).parent.mkdir(parents=True, exist_ok=True)
                np.save(tmp / f"{key}.npy", to_numpy(tensor))
                dtypes[key] = str(tensor.dtype).replace("torch.", "")
            write_meta(tmp, hetero_meta(tmp, self.name, self.num_nodes, self.edge_types,
                                        self.label_type, self.num_classes,
                                        list(self.split_idx), dtypes))

    @classmethod
    def load(cls, path: PathLike, *, mmap: bool = True,
             graph_in_memory: Optional[bool] = None) -> HeteroDataset:
        """Opens a copy written by :meth:`save` or :meth:`from_edges`,
        memory-mapped; checks sizes and stamps (O(1)) and validates fully
        only a copy whose files were copied elsewhere. ``graph_in_memory``
        reads every edge type's CSR into 2 MiB pages, as
        :meth:`FastDataset.load` does (by default: ``not mmap``)."""
        path = Path(path)
        rebuild = f"delete {path} and write it again"
        meta = read_meta(path, HETERO_FORMAT, HETERO_VERSION, rebuild)
        with reading_copy(path, rebuild):
            arrays, trusted = open_files(path, meta["files"], rebuild, mmap=mmap,
                                         random_access={f"nodes/{t}/x": None
                                                        for t in meta["num_nodes"]},
                                         graph=[f"edges/{edge_dir(tuple(e))}/{k}"
                                                for e in meta["edge_types"]
                                                for k in ("rowptr", "col")],
                                         graph_in_memory=graph_in_memory)
            edge_types = [tuple(e) for e in meta["edge_types"]]
            dataset = cls(
                name=meta["name"], num_nodes=meta["num_nodes"],
                edges={e: (arrays[f"edges/{edge_dir(e)}/rowptr"],
                           arrays[f"edges/{edge_dir(e)}/col"]) for e in edge_types},
                x={t: arrays[f"nodes/{t}/x"] for t in meta["num_nodes"]}, y=arrays["y"],
                label_type=meta["label_type"],
                split_idx={s: arrays[f"split_{s}"] for s in meta["splits"]},
                num_classes=meta["num_classes"], validate=not trusted,
                **{name: {e: arrays[f"edges/{edge_dir(e)}/{name}"] for e in edge_types
                          if f"edges/{edge_dir(e)}/{name}" in arrays}
                   for name in ("edge_weight", "edge_time")},
                node_time={t: arrays[f"nodes/{t}/node_time"] for t in meta["num_nodes"]
                           if f"nodes/{t}/node_time" in arrays})
        if not trusted:
            renew_stamps(path, meta)
        if mmap:  # where out-of-core reading finds the rows (salient_pipeline(out_of_core=))
            dataset.x_files = {t: path / "nodes" / t / "x.npy" for t in dataset.x
                               if f"nodes/{t}/x" in meta["files"] and dataset.x[t].size(1)}
        return dataset

    # ---------------------------------------------------------------- sources
    @classmethod
    def from_edges(cls, path: PathLike, num_nodes: Mapping[str, int],
                   edge_index: Mapping[EdgeType, ArrayLike], *, label_type: str,
                   x: Optional[Mapping[str, ArrayLike]] = None, y: Optional[ArrayLike] = None,
                   split_idx: Optional[Mapping[str, Any]] = None,
                   num_classes: Optional[int] = None,
                   memory_limit: Union[int, str, None] = None,
                   feature_dtype: torch.dtype = torch.float16, name: Optional[str] = None,
                   num_threads: Optional[int] = None, progress: bool = True,
                   edge_weight: Optional[Mapping[EdgeType, ArrayLike]] = None,
                   edge_time: Optional[Mapping[EdgeType, ArrayLike]] = None,
                   node_time: Optional[Mapping[str, ArrayLike]] = None) -> HeteroDataset:
        """Writes a dataset at ``path`` from edge lists of any size and opens
        it. Each edge type's ids become its CSR with the bounded-memory build
        of :meth:`FastDataset.from_edges` (peak anonymous memory about
        ``memory_limit``); features are cast chunk by chunk.

        Args:
            path: the directory to write.
            num_nodes: nodes per node type.
            edge_index: per edge type ``(src, rel, dst)``, its ``[2, E]``
                (source, destination) ids: a tensor, an array or a ``.npy``
                path (read through a memory map).
            label_type: the node type that carries the labels and splits.
            x: features per node type (any dtype, cast to ``feature_dtype``).
            y: labels of ``label_type`` nodes.
            split_idx: split names to ``label_type`` node ids or masks.
            num_classes: default: the largest label + 1.
            memory_limit: an int or ``"2GiB"`` (default: a quarter of
                physical memory).
            feature_dtype: the stored features' dtype.
            name: the dataset's name (default: the directory's).
            num_threads: threads of the build (default: the process's cores).
            progress: progress bars.
            edge_weight, edge_time: per edge type, one value per input edge
                (:meth:`FastDataset.from_edges`: such an edge type keeps
                every edge, its rows sorted by time when times are given).
            node_time: per node type, one integer time per node.

        Example:
            >>> import tempfile
            >>> d = tempfile.mkdtemp()
            >>> ds = HeteroDataset.from_edges(
            ...     f"{d}/g", {"paper": 3, "author": 2},
            ...     {("author", "writes", "paper"): torch.tensor([[0, 1, 1], [0, 0, 2]])},
            ...     label_type="paper", y=torch.tensor([0, 1, 1]), progress=False)
            >>> ds.rowptr[("author", "writes", "paper")].tolist()
            [0, 2, 2, 3]
        """
        write_hetero_dataset(path, num_nodes, edge_index, label_type=label_type, x=x, y=y,
                             split_idx=split_idx, num_classes=num_classes,
                             memory_limit=memory_limit, feature_dtype=feature_dtype, name=name,
                             num_threads=num_threads, progress=progress,
                             edge_weight=edge_weight, edge_time=edge_time, node_time=node_time)
        return cls.load(path)

    @classmethod
    def from_path(cls, root: PathLike, name: str = "ogbn-mag", *,
                  feature_dtype: torch.dtype = torch.float16, progress: bool = True,
                  memory_limit: Union[int, str, None] = None) -> HeteroDataset:
        """A heterogeneous OGB node-property dataset (``ogbn-mag``) under
        ``root``: converted from OGB's raw files the first time (downloading
        them if absent) into ``root/<dir>/salient_pipes``, opened in O(1)
        later. OGB's edge types are kept as they are; add reverse types in
        the model (or convert through :meth:`from_pyg` after PyG's
        ``ToUndirected``) if it needs messages both ways.

        Example:
            >>> ds = HeteroDataset.from_path("data", "ogbn-mag")  # doctest: +SKIP
        """
        info = ogb.dataset_info(name, hetero=True)
        dest = Path(root) / info.dir_name / "salient_pipes"
        if not (dest / "meta.json").exists():
            ogb.convert_hetero(root, info, dest, feature_dtype=feature_dtype,
                               memory_limit=memory_limit, progress=progress)
        return cls.load(dest)

    @classmethod
    def from_pyg(cls, data: Any, label_type: Optional[str] = None,
                 split_idx: Optional[Mapping[str, Any]] = None, *, name: str = "pyg-hetero",
                 num_classes: Optional[int] = None,
                 feature_dtype: Optional[torch.dtype] = torch.float16,
                 weight_attr: Optional[str] = None,
                 time_attr: Optional[str] = None) -> HeteroDataset:
        """From a ``torch_geometric.data.HeteroData`` (in memory).
        ``label_type`` defaults to the one node type with ``y``; the splits
        come from ``split_idx`` or its ``train_mask``/``val_mask``/``test_mask``.
        Node types without ``x`` get ``[N, 0]`` features. ``feature_dtype=None``
        keeps the features' dtype. ``weight_attr`` (edge attributes) and
        ``time_attr`` (node or edge attributes) are kept where a type has
        them, as :meth:`FastDataset.from_pyg` keeps them.

        Example:
            >>> from torch_geometric.data import HeteroData
            >>> data = HeteroData()
            >>> data["paper"].x = torch.randn(3, 4); data["paper"].y = torch.tensor([0, 1, 0])
            >>> data["author"].num_nodes = 2
            >>> data["author", "writes", "paper"].edge_index = torch.tensor([[0, 1], [2, 2]])
            >>> ds = HeteroDataset.from_pyg(data, split_idx={"train": torch.tensor([0, 2])})
            >>> ds.num_features, ds.num_edges[("author", "writes", "paper")]
            ({'paper': 4, 'author': 0}, 2)
        """
        if type(data).__name__ != "HeteroData":
            raise ValueError(f"from_pyg takes a HeteroData (FastDataset.from_pyg takes a Data), "
                             f"got {type(data).__name__}")
        labelled = [t for t in data.node_types if getattr(data[t], "y", None) is not None]
        if label_type is None:
            if len(labelled) != 1:
                raise ValueError(f"pass label_type: node types with y: {labelled}")
            label_type = labelled[0]
        if label_type not in data.node_types:
            raise ValueError(f"label_type {label_type!r} is not a node type of data "
                             f"{data.node_types}")
        store = data[label_type]
        if getattr(store, "y", None) is None:
            raise ValueError(f"data[{label_type!r}] has no y")
        y = store.y
        if y.is_floating_point() or not (y.dim() == 1 or (y.dim() == 2 and y.size(1) == 1)):
            raise ValueError("y must hold one integer class label per node")
        y = y.view(-1).to(torch.int64)
        if split_idx is None:
            split_idx = {k: store[m] for k, m in PYG_MASKS.items() if m in store}
            if not split_idx:
                raise ValueError(f"data[{label_type!r}] has no train/val/test masks; pass "
                                 "split_idx")
        num_nodes = {t: int(data[t].num_nodes) for t in data.node_types}
        x = {}
        for t in data.node_types:
            feats = getattr(data[t], "x", None)
            if feats is not None:
                x[t] = feats if feature_dtype is None else feats.to(feature_dtype)
        edges = {}
        values: Dict[str, Dict[EdgeType, Tensor]] = {"edge_weight": {}, "edge_time": {}}
        for e in data.edge_types:
            if getattr(data[e], "edge_index", None) is None:
                raise ValueError(f"edge type {e} has no edge_index")
            kept = {name: data[e][attr] for name, attr in (("edge_weight", weight_attr),
                                                           ("edge_time", time_attr))
                    if attr is not None and attr in data[e]}
            try:
                if kept:
                    rowptr, col, kept = csr_with_attributes(
                        data[e].edge_index, num_nodes[e[2]], kept, False, num_nodes[e[0]])
                    edges[e] = (rowptr, col)
                    for name, value in kept.items():
                        values[name][e] = value.float() if name == "edge_weight" else value
                else:
                    edges[e] = typed_csr(data[e].edge_index, num_nodes[e[0]], num_nodes[e[2]])
            except ValueError as exc:
                raise ValueError(f"edge type {e}: {exc}") from None
        node_time = {t: data[t][time_attr] for t in data.node_types
                     if time_attr is not None and time_attr in data[t]}
        if weight_attr is not None and not values["edge_weight"]:
            raise ValueError(f"weight_attr {weight_attr!r} is on no edge type")
        if time_attr is not None and not values["edge_time"] and not node_time:
            raise ValueError(f"time_attr {time_attr!r} is on no node or edge type")
        classes = num_classes or (int(y.max()) + 1 if y.numel() else 1)
        return cls(name=name, num_nodes=num_nodes, edges=edges, x=x, y=y,
                   label_type=label_type, split_idx=split_idx, num_classes=classes,
                   node_time=node_time, edge_weight=values["edge_weight"],
                   edge_time=values["edge_time"])

    @classmethod
    def synthetic_mag(cls, scale: float = 1.0, **kwargs: Any) -> HeteroDataset:
        """A graph with ogbn-mag's schema and proportions (``scale=1``: 1.94 M
        nodes of 4 types, 21.1 M edges of 4 types, each with its reverse), for
        tests, examples and benchmarks where the real one is not at hand;
        :func:`salient_pipes.data.synthetic.mag_like` documents the options.

        Example:
            >>> HeteroDataset.synthetic_mag(scale=0.001).num_nodes["paper"]
            737
        """
        return cls(**synthetic.mag_like(scale, **kwargs))


__all__ = ["EdgeType", "HeteroDataset"]
