"""PartitionedDataset: one rank's part of a dataset cut by :func:`partition`,
plus a budgeted cache of the remote rows it is most likely to need.

Which remote rows to cache follows SALIENT++'s "VIP" analysis: starting from
this rank's training nodes, propagate through the fanouts the probability
that each node enters a batch, and keep the remote nodes of highest
probability. ``"sampled"`` counts the nodes of a few sampled batches
instead; ``"degree"`` takes the highest in-degree.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor

from salient_pipes import _native
from salient_pipes._checks import check_fanouts, check_int
from salient_pipes.data.csr import CSRViews
from salient_pipes.data.feature_cache import (
    FeatureCache,
    access_priority,
    cache_budget,
    check_policy,
)
from salient_pipes.data.format import (
    PARTITION_FORMAT,
    PARTITION_VERSION,
    DatasetCacheError,
    open_files,
    read_meta,
    reading_copy,
)
from salient_pipes.distributed.exchange import FeatureExchange

PathLike = Union[str, os.PathLike]
DEFAULT_TIMEOUT_S = 300.0


class PartitionLoadError(RuntimeError):
    """A rank could not open its part; raised on every rank."""


class PartitionedDataset(CSRViews):
    """Rank ``rank``'s part of a dataset written by :func:`partition`.

    The whole topology is open (``graph``, memory-mapped); ``x`` and ``y``
    hold only this part's rows, ``ids`` their global ids, and ``owner`` and
    ``local`` map every global id to its part and row there. ``split_idx``
    holds the global ids of this part's nodes in each split (a rank's seeds);
    ``split_sizes[name][k]`` counts part ``k``'s. ``cache`` holds remote rows
    (see :meth:`load`). ``fingerprint`` identifies the partitioning: every
    rank must open the same one, and :meth:`load` checks that they do.

    Example:
        >>> import tempfile
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.distributed import PartitionedDataset, partition
        >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
        >>> out = partition(ds, 2, tempfile.mkdtemp() + "/p", method="random", progress=False)
        >>> part = PartitionedDataset.load(out, rank=1)
        >>> part.x.shape[0], part.num_nodes
        (500, 1000)
    """

    def __init__(self, *, path: Path, meta: Dict[str, Any], rank: int,
                 arrays: Dict[str, Tensor], validate: bool) -> None:
        self.path = path
        self.name: str = meta["name"]
        self.rank = rank
        self.num_parts: int = meta["num_parts"]
        self.num_classes: int = meta["num_classes"]
        self.method: str = meta["method"]
        self.rowptr, self.col = arrays["graph/rowptr"], arrays["graph/col"]
        self.owner, self.local = arrays["owner"], arrays["local"]
        prefix = f"part{rank}/"
        self.x, self.y = arrays[prefix + "x"], arrays[prefix + "y"]
        self.ids = arrays[prefix + "ids"]
        num_nodes = self.rowptr.numel() - 1
        for name, t, size in (("owner", self.owner, num_nodes), ("local", self.local, num_nodes),
                              ("x", self.x, meta["part_sizes"][rank]),
                              ("y", self.y, meta["part_sizes"][rank]),
                              ("ids", self.ids, meta["part_sizes"][rank])):
            if t.size(0) != size:
                raise DatasetCacheError(f"{path}: {name} has {t.size(0)} rows, expected {size}")
        self.graph = _native.CSRGraph(self.rowptr.numpy(), self.col.numpy(), validate=validate)
        self.split_sizes: Dict[str, List[int]] = meta["split_sizes"]
        self.split_idx: Dict[str, Tensor] = {}
        for name in meta["split_sizes"]:
            idx = arrays[f"graph/split_{name}"]
            self.split_idx[name] = idx[self.owner[idx] == rank]
        self.cache: Optional[FeatureCache] = None  # rows of other ranks
        self.fetch_group: Any = None
        # What identifies the partitioning: the same in every part and in every
        # copy of one partition() output (the node-to-row maps' stamps).
        files = meta["files"]
        self.fingerprint: Tuple[Any, ...] = (
            self.num_parts, num_nodes, tuple(meta["part_sizes"]),
            *((files[k]["bytes"], files[k].get("crc")) for k in ("owner", "local")))

    # ------------------------------------------------------------------ views
    @property
    def row_bytes(self) -> int:
        return self.x.size(1) * self.x.element_size()

    @property
    def feature_nbytes(self) -> int:
        """Bytes of feature rows this rank holds: its part and its cache."""
        cached = 0 if self.cache is None else self.cache.nbytes
        return self.x.size(0) * self.row_bytes + cached

    def summary(self) -> str:
        cache = "no cache" if self.cache is None else \
            f"{self.cache.num_cached:,} cached remote rows"
        return (f"{self.name} part {self.rank}/{self.num_parts}: {self.x.size(0):,} of "
                f"{self.num_nodes:,} feature rows, {cache}; "
                f"{self.num_edges:,} edges (shared); "
                f"{self.split_idx.get('train', torch.empty(0)).numel():,} training seeds")

    def __repr__(self) -> str:
        return f"PartitionedDataset({self.summary()})"

    def max_split_size(self, name: str) -> int:
        """The largest part's node count in split ``name``: every rank pads
        its seeds to it, so all ranks run the same number of batches."""
        return max(self.split_sizes[name])

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, path: PathLike, rank: Optional[int] = None, *,
             cache: Union[int, str, None] = None, cache_policy: str = "vip",
             fanouts: Sequence[int] = (15, 10, 5), batch_size: int = 1024,
             mmap: bool = True, timeout: float = DEFAULT_TIMEOUT_S, seed: int = 0
             ) -> PartitionedDataset:
        """Opens part ``rank`` (default: this process's rank) of the
        partitioned copy at ``path``.

        Under ``torch.distributed`` this is a collective: every rank calls
        it. It creates the gloo group the feature exchange runs on, and when
        any rank cannot open its part every rank raises
        :class:`PartitionLoadError` naming it.

        Args:
            path: the directory :func:`partition` wrote.
            rank: the part to open (default: this process's rank).
            cache: bytes of remote rows to keep (an int, ``"2GiB"``, or a
                share of the whole feature table like ``"10%"``).
            cache_policy: which remote rows (``POLICIES`` of
                :mod:`salient_pipes.data.feature_cache`; default ``"vip"``).
            fanouts: the training fanouts the cache's rows are chosen for.
            batch_size: the training batch size, likewise.
            mmap: memory-map the arrays.
            timeout: seconds each collective of the exchange may take.
            seed: the seed of the ``"sampled"`` policy's batches.
        """
        check_policy(cache_policy)
        fanouts = check_fanouts(fanouts)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        path = Path(path)
        joined = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if joined else 0
        rank = check_int("rank", rank, minimum=0)
        group = None
        if joined and dist.get_world_size() > 1:
            group = dist.new_group(backend="gloo",
                                   timeout=datetime.timedelta(seconds=float(timeout)))
        dataset, error = None, ""
        try:
            dataset = cls._open(path, rank, mmap)
            if joined and dataset.num_parts != dist.get_world_size():
                raise ValueError(f"{path} has {dataset.num_parts} parts but the process "
                                 f"group has {dist.get_world_size()} ranks")
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        mine = (error, None if dataset is None else dataset.fingerprint)
        if group is not None:  # every rank learns of every rank's failure
            opened: List[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(opened, mine, group=group)
        else:
            opened = [mine]
        failed = [(r, e) for r, (e, _) in enumerate(opened) if e]
        if failed:
            names = "; ".join(f"rank {r}: {e}" for r, e in failed)
            raise PartitionLoadError(f"could not open the partitioned dataset {path} ({names})")
        groups: Dict[Any, List[int]] = {}  # the ranks that opened each partitioning
        for r, (_, f) in enumerate(opened):
            groups.setdefault(f, []).append(r)
        if len(groups) > 1:  # the rows one rank asks for are another's
            ranks = "; ".join("ranks " + ", ".join(map(str, rs)) for rs in groups.values())
            raise PartitionLoadError(
                f"the ranks opened different partitionings ({ranks} each opened one; this "
                f"rank's is {path}): every rank must open a copy of the same partition() "
                "output")
        assert dataset is not None
        dataset.fetch_group = group
        budget = cache_budget(cache, dataset.num_nodes * dataset.row_bytes)
        if dataset.num_parts > 1 and (budget > 0 or group is not None):
            dataset._fill_cache(budget, cache_policy, fanouts, batch_size, seed)
        return dataset

    @classmethod
    def _open(cls, path: Path, rank: int, mmap: bool) -> PartitionedDataset:
        rebuild = f"partition the dataset again into {path}"
        meta = read_meta(path, PARTITION_FORMAT, PARTITION_VERSION, rebuild,
                         "partition() or salient-pipes partition")
        if rank >= meta["num_parts"]:
            raise ValueError(f"{path} has {meta['num_parts']} parts, no part {rank}")
        wanted = ["graph/rowptr", "graph/col", "owner", "local",
                  *(f"graph/split_{name}" for name in meta["split_sizes"]),
                  *(f"part{rank}/{key}" for key in ("x", "y", "ids"))]
        with reading_copy(path, rebuild):
            files = {key: meta["files"][key] for key in wanted}
            arrays, trusted = open_files(path, files, rebuild, mmap=mmap,
                                         random_access={f"part{rank}/x": None},
                                         graph=("graph/rowptr", "graph/col"))
            return cls(path=path, meta=meta, rank=rank, arrays=arrays, validate=not trusted)

    def _fill_cache(self, budget: int, policy: str, fanouts: Sequence[int], batch_size: int,
                    seed: int) -> None:
        """Chooses the remote rows to cache and fetches them (a collective:
        every rank takes part, even with no budget of its own)."""

        count = max(0, budget - 4 * self.num_nodes) // max(1, self.row_bytes)
        ids = torch.empty(0, dtype=torch.int64)
        if count > 0:
            score = self.access_priority(policy, fanouts, batch_size, seed)
            score[self.owner == self.rank] = -1  # own rows are never cached
            count = min(count, int((score > 0).sum()))
            ids = torch.topk(score, count, sorted=False).indices.sort().values
        rows = FeatureExchange(self).fetch_all(ids)
        self.cache = FeatureCache.from_rows(ids, rows, self.num_nodes) if ids.numel() else None

    def access_priority(self, policy: str, fanouts: Sequence[int], batch_size: int,
                        seed: int = 0) -> Tensor:
        """How likely each node is to be needed by this rank's training
        batches, by ``policy`` (higher first; float64)."""
        seeds = self.split_idx.get("train", torch.empty(0, dtype=torch.int64))
        return access_priority(self, policy, fanouts, batch_size, seeds, seed)


__all__ = ["PartitionLoadError", "PartitionedDataset"]
