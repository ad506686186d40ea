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
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import Tensor

from salient_pipes import _native
from salient_pipes._checks import check_fanouts, check_int
from salient_pipes.data.dataset import CSRViews, open_files
from salient_pipes.data.features import access_counts
from salient_pipes.data.format import DatasetCacheError, parse_bytes, read_meta, reading_copy
from salient_pipes.distributed.partition import PARTITION_FORMAT, PARTITION_VERSION

PathLike = Union[str, os.PathLike]
CACHE_POLICIES = ("vip", "sampled", "degree")
DEFAULT_TIMEOUT_S = 300.0


class PartitionLoadError(RuntimeError):
    """A rank could not open its part; raised on every rank."""


def cache_budget(budget: Union[int, str, None], num_nodes: int, row_bytes: int) -> int:
    """Bytes for the cache: an int, a size such as ``"2GiB"``, or a share of
    the whole feature table such as ``"10%"``.

    Example:
        >>> cache_budget("10%", 1000, 256), cache_budget("1KiB", 1000, 256)
        (25600, 1024)
    """
    if budget is None:
        return 0
    if isinstance(budget, str) and budget.strip().endswith("%"):
        try:
            share = float(budget.strip()[:-1])
        except ValueError:
            raise ValueError(f"cache budget must be a size or a share like '10%', "
                             f"got {budget!r}") from None
        if not 0 <= share <= 100:
            raise ValueError(f"cache budget share must be within 0-100%, got {budget!r}")
        return int(share / 100 * num_nodes * row_bytes)
    return parse_bytes(budget, "cache")


class RemoteCache:
    """Feature rows of other ranks kept here: ``ids`` (global, ascending),
    ``rows`` and ``slot`` (int32 per node of the graph: row in ``rows`` or
    -1). The budget counts the rows and the slot map."""

    def __init__(self, ids: Tensor, rows: Tensor, num_nodes: int) -> None:
        self.ids, self.rows = ids, rows
        self.slot = torch.full((num_nodes,), -1, dtype=torch.int32)
        self.slot[ids] = torch.arange(ids.numel(), dtype=torch.int32)

    @property
    def num_cached(self) -> int:
        return self.ids.numel()

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size() + 4 * self.slot.numel()

    def __repr__(self) -> str:
        return f"RemoteCache({self.num_cached:,} rows, {self.nbytes / 2**20:,.1f} MiB)"


def expected_access(rowptr: Tensor, col: Tensor, seeds: Tensor, fanouts: Sequence[int],
                    batch_size: int, chunk_edges: int = 1 << 23) -> Tensor:
    """The probability that each node enters a batch of ``batch_size``
    seeds drawn from ``seeds``, sampled with ``fanouts`` (SALIENT++'s VIP
    analysis): a seed is in a batch with probability ``batch_size /
    len(seeds)``; as in per-hop sampling every node found so far samples
    the next hop, and a node ``v`` found with probability ``p`` takes each
    of its ``d`` neighbours with probability ``min(1, fanout / d)``; a node
    is missed by a hop only if every edge to it misses (independence
    assumed).

    Example:
        >>> rowptr, col = torch.tensor([0, 1, 2, 2]), torch.tensor([2, 2])  # 0←2, 1←2
        >>> expected_access(rowptr, col, torch.tensor([0]), [1], 1).round(decimals=6).tolist()
        [1.0, 0.0, 1.0]
    """
    num_nodes = rowptr.numel() - 1
    deg = (rowptr[1:] - rowptr[:-1]).to(torch.float64)
    p = torch.zeros(num_nodes, dtype=torch.float64)
    if seeds.numel():
        p[seeds] = min(1.0, batch_size / seeds.numel())
    log_miss = torch.log1p(-p.clamp(max=1 - 1e-12))
    for fanout in fanouts:
        take = torch.ones_like(deg) if fanout < 0 else \
            (fanout / deg.clamp(min=1)).clamp(max=1.0)
        edge_miss = torch.log1p(-(p * take).clamp(max=1 - 1e-12))  # per row, per edge
        hop = torch.zeros(num_nodes, dtype=torch.float64)
        row = 0
        while row < num_nodes:  # rows in chunks of about chunk_edges edges
            end = int(torch.searchsorted(rowptr, rowptr[row] + chunk_edges, right=True))
            end = min(num_nodes, max(end - 1, row + 1))
            lo, hi = int(rowptr[row]), int(rowptr[end])
            if hi > lo:
                hop.index_add_(0, col[lo:hi].to(torch.int64),
                               torch.repeat_interleave(edge_miss[row:end],
                                                       (rowptr[row + 1:end + 1] -
                                                        rowptr[row:end])))
            row = end
        log_miss += hop
        p = -torch.expm1(log_miss)  # found so far: the next hop's targets
    return 0.0 - torch.expm1(log_miss)  # (not -expm1: no negative zeros)


class PartitionedDataset(CSRViews):
    """Rank ``rank``'s part of a dataset written by :func:`partition`.

    The whole topology is open (``graph``, memory-mapped); ``x`` and ``y``
    hold only this part's rows, ``ids`` their global ids, and ``owner`` and
    ``local`` map every global id to its part and row there. ``split_idx``
    holds the global ids of this part's nodes in each split (a rank's seeds);
    ``split_sizes[name][k]`` counts part ``k``'s. ``cache`` holds remote rows
    (see :meth:`load`).

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
        self.cache: Optional[RemoteCache] = None
        self.fetch_group: Any = None

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
        it. It creates the gloo group the feature exchange runs on (each of
        its collectives times out after ``timeout`` seconds), and when any
        rank cannot open its part every rank raises
        :class:`PartitionLoadError` naming it. ``cache`` (bytes, a size like
        ``"2GiB"`` or a share of the whole feature table like ``"10%"``)
        then fills a cache of remote rows chosen by ``cache_policy`` for
        batches of ``batch_size`` seeds sampled with ``fanouts``.
        """
        if cache_policy not in CACHE_POLICIES:
            raise ValueError(f"cache_policy must be one of {CACHE_POLICIES}, "
                             f"got {cache_policy!r}")
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
        if group is not None:  # every rank learns of every rank's failure
            errors: List[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(errors, error, group=group)
        else:
            errors = [error]
        failed = [(r, e) for r, e in enumerate(errors) if e]
        if failed:
            names = "; ".join(f"rank {r}: {e}" for r, e in failed)
            raise PartitionLoadError(f"could not open the partitioned dataset {path} ({names})")
        assert dataset is not None
        dataset.fetch_group = group
        budget = cache_budget(cache, dataset.num_nodes, dataset.row_bytes)
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
        from salient_pipes.distributed.fetch import FeatureExchange

        count = max(0, budget - 4 * self.num_nodes) // max(1, self.row_bytes)
        ids = torch.empty(0, dtype=torch.int64)
        if count > 0:
            score = self.access_priority(policy, fanouts, batch_size, seed)
            score[self.owner == self.rank] = -1  # own rows are never cached
            count = min(count, int((score > 0).sum()))
            ids = torch.topk(score, count, sorted=False).indices.sort().values
        rows = FeatureExchange(self).fetch_all(ids)
        self.cache = RemoteCache(ids, rows, self.num_nodes) if ids.numel() else None

    def access_priority(self, policy: str, fanouts: Sequence[int], batch_size: int,
                        seed: int = 0) -> Tensor:
        """How likely each node is to be needed by this rank's training
        batches, by ``policy`` (higher first; float64)."""
        seeds = self.split_idx.get("train", torch.empty(0, dtype=torch.int64))
        if policy == "vip":
            return expected_access(self.rowptr, self.col, seeds, fanouts, batch_size)
        if policy == "sampled":
            return access_counts(self, fanouts, batch_size, seeds, 32, seed).to(torch.float64)
        return (self.rowptr[1:] - self.rowptr[:-1]).to(torch.float64)


__all__ = ["CACHE_POLICIES", "PartitionLoadError", "PartitionedDataset", "RemoteCache",
           "cache_budget", "expected_access"]
