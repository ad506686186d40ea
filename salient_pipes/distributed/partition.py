"""partition(): split a dataset's feature and label rows across machines.

The topology stays whole (every rank samples the whole graph, memory-mapped
and shared by the processes of a machine); feature and label rows are cut
into ``num_parts`` parts, one per rank. Parts come from METIS (``pymetis``),
which keeps neighbours together so that most rows a batch needs are local,
or from a seeded random assignment. Either way every part gets the same
number of training nodes (to the node), so ranks run equal batch counts with
at most one padded batch.

Layout of ``out_dir``::

    meta.json                 format, parts, split sizes per part, stamps
    graph/rowptr.npy col.npy  the whole CSR
    graph/split_*.npy         the splits (global ids)
    owner.npy                 part of every node
    local.npy                 row of every node within its part
    part<k>/x.npy y.npy       part k's feature and label rows
    part<k>/ids.npy           the global ids of those rows (ascending)

A machine needs ``graph/``, ``owner.npy``, ``local.npy`` and its own
``part<k>/`` only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from salient_pipes._checks import check_int
from salient_pipes.data import FastDataset
from salient_pipes.data.csr import csr_from_edge_index
from salient_pipes.data.format import (
    PARTITION_FORMAT,
    PARTITION_VERSION,
    atomic_directory,
    create_npy,
    stamp,
    to_numpy,
    write_meta,
)

PathLike = Union[str, os.PathLike]
METHODS = ("metis", "random")
_CHUNK_BYTES = 64 << 20  # rows copied per step while writing the parts


def partition(dataset: FastDataset, num_parts: int, out_dir: PathLike, *,
              method: str = "metis", seed: int = 0, progress: bool = True) -> Path:
    """Writes ``dataset`` to ``out_dir`` cut into ``num_parts`` parts of
    feature and label rows (see the module docstring for the layout), and
    returns ``out_dir``. Open a part with :class:`PartitionedDataset.load`.

    ``method="metis"`` needs the ``pymetis`` package and the symmetrized
    graph in memory (about 16 bytes per edge besides METIS's own); use
    ``"random"`` for graphs too large for that. Both balance the training
    nodes exactly. Writing reads ``x`` once, front to back, in bounded
    memory, so ``x`` may be a file larger than memory. The directory is
    written atomically.

    Example:
        >>> import tempfile
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.distributed import partition
        >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
        >>> out = partition(ds, 2, tempfile.mkdtemp() + "/parts", method="random",
        ...                 progress=False)
        >>> sorted(p.name for p in out.glob("part*"))
        ['part0', 'part1']
    """
    if not isinstance(dataset, FastDataset):
        raise TypeError(f"partition() takes a FastDataset, got {type(dataset).__name__}")
    num_parts = check_int("num_parts", num_parts, minimum=1)
    if num_parts > dataset.num_nodes:
        raise ValueError(f"cannot cut {dataset.num_nodes} nodes into {num_parts} parts")
    seed = check_int("seed", seed, minimum=0)
    num_train = int(dataset.split_idx["train"].numel()) if "train" in dataset.split_idx else 0
    if 0 < num_train < num_parts:
        warnings.warn(f"the train split has {num_train} nodes for {num_parts} parts: "
                      f"{num_parts - num_train} parts hold none, and their ranks cannot train "
                      f"on it (shuffled epochs raise there)", stacklevel=2)
    owner = assign_parts(dataset, num_parts, method=method, seed=seed, progress=progress)
    write_parts(dataset, owner, out_dir, method=method, num_parts=num_parts, progress=progress)
    return Path(out_dir)


def assign_parts(dataset: FastDataset, num_parts: int, *, method: str = "metis",
                 seed: int = 0, progress: bool = False) -> Tensor:
    """The part (int32) of every node: METIS or random, then balanced so
    that every part holds the same number of training nodes (±1). No part
    is left empty (``num_parts`` at most the nodes): METIS may leave one so
    on a small graph, and a node of the largest part then moves there."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    train = torch.zeros(dataset.num_nodes, dtype=torch.bool)
    train[dataset.split_idx.get("train", torch.empty(0, dtype=torch.int64))] = True
    if num_parts == 1:
        return torch.zeros(dataset.num_nodes, dtype=torch.int32)
    gen = torch.Generator().manual_seed(seed)
    if method == "metis":
        owner = _metis(dataset, num_parts, train, seed, progress)
    else:  # one round robin over a permutation of the training nodes, then of the rest
        owner = torch.empty(dataset.num_nodes, dtype=torch.int32)
        dealt = 0
        for mask in (train, ~train):
            ids = mask.nonzero().view(-1)
            ids = ids[torch.randperm(ids.numel(), generator=gen)]
            owner[ids] = ((torch.arange(ids.numel()) + dealt) % num_parts).to(torch.int32)
            dealt += ids.numel()
    return balance_training(fill_empty_parts(owner, num_parts, gen), train, num_parts, gen)


def fill_empty_parts(owner: Tensor, num_parts: int, gen: torch.Generator) -> Tensor:
    """``owner`` with a node of the largest part moved into each empty part
    (there are at least as many nodes as parts).

    Example:
        >>> owner = torch.tensor([0, 0, 0, 1], dtype=torch.int32)
        >>> fill_empty_parts(owner, 3, torch.Generator().manual_seed(0)).bincount().tolist()
        [2, 1, 1]
    """
    owner = owner.clone()
    sizes = torch.bincount(owner.to(torch.int64), minlength=num_parts)
    for part in (sizes == 0).nonzero().view(-1).tolist():
        largest = int(torch.argmax(sizes))
        ids = (owner == largest).nonzero().view(-1)
        owner[ids[int(torch.randint(ids.numel(), (1,), generator=gen))]] = part
        sizes[largest] -= 1
        sizes[part] += 1
    return owner


def _metis(dataset: FastDataset, num_parts: int, train: Tensor, seed: int,
           progress: bool) -> Tensor:
    try:
        import pymetis
    except ImportError:
        raise ImportError("method='metis' needs the pymetis package: pip install pymetis "
                          "(or pass method='random')") from None
    with tqdm(total=2, desc="METIS", disable=not progress, unit="step") as bar:
        bar.set_postfix_str("symmetrizing")
        deg = dataset.rowptr[1:] - dataset.rowptr[:-1]
        dst = torch.repeat_interleave(torch.arange(dataset.num_nodes), deg)
        edges = torch.stack([dataset.col.to(torch.int64), dst])
        edges = edges[:, edges[0] != edges[1]]  # METIS wants no self loops
        xadj, adjncy = csr_from_edge_index(edges, dataset.num_nodes, to_undirected=True)
        del dst, edges
        bar.update()
        bar.set_postfix_str(f"{num_parts} parts")
        # Two balance constraints: all nodes, and training nodes.
        weights = torch.stack([torch.ones_like(train, dtype=torch.int64),
                               train.to(torch.int64)], dim=1).reshape(-1)
        result = pymetis.part_graph(
            num_parts, adjacency=pymetis.CSRAdjacency(xadj.numpy(), adjncy.numpy()),
            vweights=weights.numpy(), options=pymetis.Options(seed=seed))
        bar.update()
    return torch.as_tensor(np.asarray(result.vertex_part), dtype=torch.int32)


def balance_training(owner: Tensor, train: Tensor, num_parts: int,
                     gen: torch.Generator) -> Tensor:
    """Moves randomly chosen training nodes from parts above their share to
    parts below it, until the parts' training counts differ by at most one.

    Example:
        >>> owner = torch.tensor([0, 0, 0, 0, 1], dtype=torch.int32)
        >>> balance_training(owner, torch.ones(5, dtype=torch.bool), 2,
        ...                  torch.Generator().manual_seed(0)).bincount().tolist()
        [3, 2]
    """
    owner = owner.clone()
    counts = torch.bincount(owner[train].to(torch.int64), minlength=num_parts)
    total = int(counts.sum())
    # The parts that hold most now keep the remainder: fewest moves.
    share = torch.full((num_parts,), total // num_parts, dtype=torch.int64)
    share[torch.argsort(counts, descending=True, stable=True)[: total % num_parts]] += 1
    moving = []
    for part in (counts > share).nonzero().view(-1).tolist():
        ids = (train & (owner == part)).nonzero().view(-1)
        pick = torch.randperm(ids.numel(), generator=gen)[: int(counts[part] - share[part])]
        moving.append(ids[pick])
    if moving:
        deficit = (share - counts).clamp(min=0)
        pool = torch.cat(moving)
        owner[pool] = torch.repeat_interleave(torch.arange(num_parts), deficit).to(torch.int32)
    return owner


def local_rows(owner: Tensor, num_parts: int) -> Tensor:
    """Each node's row within its part: nodes of a part in ascending id order.

    Example:
        >>> local_rows(torch.tensor([1, 0, 1, 1, 0], dtype=torch.int32), 2).tolist()
        [0, 0, 1, 2, 1]
    """
    order = torch.argsort(owner, stable=True)
    starts = torch.cumsum(torch.bincount(owner.to(torch.int64), minlength=num_parts), 0)
    starts = torch.cat([starts.new_zeros(1), starts[:-1]])
    local = torch.empty(owner.numel(), dtype=torch.int64)
    local[order] = torch.arange(owner.numel()) - starts[owner[order].to(torch.int64)]
    return local


def _save(directory: Path, key: str, tensor: Tensor, files: Dict[str, dict]) -> None:
    file = directory / f"{key}.npy"
    file.parent.mkdir(parents=True, exist_ok=True)
    np.save(file, to_numpy(tensor))
    files[key] = {"dtype": _dtype_name(tensor)}


def _dtype_name(t: Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def write_parts(dataset: FastDataset, owner: Tensor, out_dir: PathLike, *,
                method: str = "given", num_parts: Optional[int] = None,
                progress: bool = True) -> None:
    """Writes ``dataset`` cut by ``owner`` (the part of every node) into
    ``num_parts`` parts (default: the largest part in ``owner`` + 1) in the
    layout of :func:`partition`; every part must hold a node."""
    owner = torch.as_tensor(owner)
    if owner.shape != (dataset.num_nodes,) or owner.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"owner must hold one integer part per node ({dataset.num_nodes}), "
                         f"got {owner.dtype} {tuple(owner.shape)}")
    if owner.numel() and int(owner.min()) < 0:
        raise ValueError("owner holds a negative part")
    most = int(owner.max()) + 1 if owner.numel() else 1
    num_parts = most if num_parts is None else check_int("num_parts", num_parts, minimum=1)
    if most > num_parts:
        raise ValueError(f"owner names part {most - 1}, but there are {num_parts} parts")
    owner = owner.to(torch.int32)
    sizes = torch.bincount(owner.to(torch.int64), minlength=num_parts)
    if int(sizes.min()) == 0:
        raise ValueError(f"part {int(torch.argmin(sizes))} would hold no node")
    local = local_rows(owner, num_parts)
    local = local.to(torch.int32) if int(sizes.max()) < 2**31 else local
    files: Dict[str, dict] = {}
    with atomic_directory(out_dir) as tmp:
        for key, tensor in (("graph/rowptr", dataset.rowptr), ("graph/col", dataset.col),
                            ("owner", owner), ("local", local)):
            _save(tmp, key, tensor, files)
        split_sizes = {}
        for name, idx in dataset.split_idx.items():
            _save(tmp, f"graph/split_{name}", idx, files)
            split_sizes[name] = torch.bincount(owner[idx].to(torch.int64),
                                               minlength=num_parts).tolist()
        _write_rows(dataset, owner, local, sizes, tmp, files, progress)
        for key in files:
            files[key].update(stamp(tmp / f"{key}.npy"))
        write_meta(tmp, {
            "format": PARTITION_FORMAT, "version": PARTITION_VERSION, "name": dataset.name,
            "method": method, "num_parts": num_parts, "num_nodes": dataset.num_nodes,
            "num_edges": dataset.num_edges, "num_features": dataset.num_features,
            "num_classes": dataset.num_classes, "part_sizes": sizes.tolist(),
            "split_sizes": split_sizes, "files": files})


def _write_rows(dataset: FastDataset, owner: Tensor, local: Tensor, sizes: Tensor,
                tmp: Path, files: Dict[str, dict], progress: bool) -> None:
    """One pass over ``x`` and ``y`` in chunks; each chunk's rows go to
    their parts' files, which therefore fill front to back."""
    x, y = dataset.x, dataset.y
    outs = []
    for part, size in enumerate(sizes.tolist()):
        (tmp / f"part{part}").mkdir()
        row = {"x": create_npy(tmp / f"part{part}" / "x.npy", to_numpy(x[:0]).dtype,
                               (size, x.size(1))),
               "y": create_npy(tmp / f"part{part}" / "y.npy", np.int64, (size,)),
               "ids": create_npy(tmp / f"part{part}" / "ids.npy", np.int64, (size,))}
        outs.append(row)
        for key, dtype in (("x", _dtype_name(x)), ("y", "int64"), ("ids", "int64")):
            files[f"part{part}/{key}"] = {"dtype": dtype}
    row_bytes = max(1, x.size(1) * x.element_size())
    chunk = max(1, _CHUNK_BYTES // row_bytes)
    with tqdm(total=dataset.num_nodes, desc="writing parts", unit="row", unit_scale=True,
              disable=not progress) as bar:
        for begin in range(0, dataset.num_nodes, chunk):
            end = min(begin + chunk, dataset.num_nodes)
            xs, ys = to_numpy(x[begin:end]), y[begin:end].numpy()
            own, loc = owner[begin:end].numpy(), local[begin:end].numpy()
            ids = np.arange(begin, end, dtype=np.int64)
            for part, out in enumerate(outs):
                mask = own == part
                if not mask.any():
                    continue
                first = int(loc[mask][0])  # a part's rows of a chunk are consecutive
                span = slice(first, first + int(mask.sum()))
                out["x"][span], out["y"][span], out["ids"][span] = xs[mask], ys[mask], ids[mask]
            bar.update(end - begin)
    for out in outs:
        for array in out.values():
            array.flush()
    del outs


__all__ = ["METHODS", "assign_parts", "balance_training", "fill_empty_parts", "local_rows",
           "partition", "write_parts"]
