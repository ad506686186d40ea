"""The feature cache: rows kept in memory within a byte budget, looked up by
the native gather before the table itself.

When ``x`` is a memory-mapped file larger than memory, every row the gather
misses in the page cache is a disk read; when a dataset's rows are
partitioned across ranks, every row of another rank is a network fetch. A
:class:`FeatureCache` keeps the rows most likely to be needed (page-locked
when CUDA is available, so the device copy reads them directly); the native
gather reads a cached row from memory and the table only on a miss. Which
rows: :data:`POLICIES`, ranked by :func:`access_priority`. How many:
:func:`cache_budget` (``"4GiB"``, ``"10%"``). A dataset with several node
types has a cache per type (:class:`FeatureCaches`), sharing one budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.data.format import parse_bytes

if TYPE_CHECKING:  # pragma: no cover
    from salient_pipes.data.dataset import FastDataset
    from salient_pipes.data.hetero import HeteroDataset

# Which rows a cache keeps: the nodes of highest in-degree ("degree"), those
# met most often in a few sampled batches ("sampled"), or those most likely
# to enter a batch by SALIENT++'s analysis of the fanouts ("vip").
POLICIES = ("degree", "sampled", "vip")
Budget = Union[int, str, None]


def check_policy(policy: Any, name: str = "cache_policy") -> str:
    """``policy`` checked to be one of :data:`POLICIES`.

    Example:
        >>> check_policy("vip")
        'vip'
    """
    if policy not in POLICIES:
        raise ValueError(f"{name} must be one of {POLICIES}, got {policy!r}")
    return policy


def cache_budget(budget: Budget, table_bytes: int, name: str = "feature_cache") -> int:
    """Bytes for a cache of a table of ``table_bytes``: an int, a size such
    as ``"2GiB"``, or a share of the table such as ``"10%"`` (``None``: 0).

    Example:
        >>> cache_budget("10%", 256_000), cache_budget("1KiB", 256_000)
        (25600, 1024)
    """
    if budget is None:
        return 0
    if isinstance(budget, str) and budget.strip().endswith("%"):
        try:
            share = float(budget.strip()[:-1])
        except ValueError:
            raise ValueError(f"{name} must be a size or a share like '10%', "
                             f"got {budget!r}") from None
        if not 0 <= share <= 100:
            raise ValueError(f"{name} share must be within 0-100%, got {budget!r}")
        return int(share / 100 * table_bytes)
    return parse_bytes(budget, name)


def _buffer(t: Tensor) -> Any:
    carrier = torch.int16 if t.dtype == torch.bfloat16 else None
    return (t.view(carrier) if carrier else t).numpy()


def row_bytes(x: Tensor) -> int:
    return (x.size(1) if x.dim() == 2 else 1) * x.element_size()


class HitRate:
    """``hits``, ``lookups`` and ``hit_rate`` over the gathers through a
    cache since the last :meth:`reset_counts`, from its ``counters()``."""

    def counters(self) -> Sequence[Any]:
        raise NotImplementedError

    @property
    def hits(self) -> int:
        return sum(c.hits for c in self.counters())

    @property
    def lookups(self) -> int:
        return sum(c.lookups for c in self.counters())

    @property
    def hit_rate(self) -> float:
        """Share of rows gathered from the cache since the last reset (0 when none)."""
        lookups = self.lookups
        return self.hits / lookups if lookups else 0.0

    def reset_counts(self) -> None:
        for c in self.counters():
            c.reset_counts()


class FeatureCache(HitRate):
    """Rows of ``x`` kept in memory within ``budget`` bytes, chosen by
    ``priority`` (higher first; default: the first rows).

    The budget counts the rows and the slot map (4 bytes per row of ``x``):
    a budget below the slot map caches nothing. ``"everything"`` (or any
    budget of at least ``x``'s size plus the slot map) caches every row.
    ``slot[v]`` is row ``v``'s row in ``rows``, or -1. With ``device``
    the rows go straight to that device (a GPU), a chunk at a time, as
    :meth:`held_on` leaves them.

    Example:
        >>> x = torch.arange(12, dtype=torch.float16).view(6, 2)
        >>> cache = FeatureCache(x, 6 * 4 + 2 * 4, priority=torch.tensor([0, 5, 0, 9, 0, 0]))
        >>> cache.ids.tolist(), cache.rows.tolist()
        ([1, 3], [[2.0, 3.0], [6.0, 7.0]])
    """

    def __init__(self, x: Tensor, budget: Budget, *, priority: Optional[Tensor] = None,
                 pin: Optional[bool] = None, num_threads: int = 1,
                 device: Union[str, torch.device, None] = None) -> None:
        if not isinstance(x, Tensor) or x.dim() not in (1, 2) or x.device.type != "cpu":
            raise ValueError("x must be a 1-D or 2-D CPU tensor")
        num_rows, width = x.size(0), row_bytes(x)
        self.budget = num_rows * (width + 4) if budget == "everything" else \
            cache_budget(budget, num_rows * width)
        room = self.budget - 4 * num_rows
        count = 0 if room <= 0 or width == 0 else min(num_rows, room // width)
        if priority is None:
            ids = torch.arange(count)
        else:
            priority = torch.as_tensor(priority)
            if priority.shape != (num_rows,):
                raise ValueError(f"priority must hold one value per row of x ({num_rows}), "
                                 f"got shape {tuple(priority.shape)}")
            ids = torch.topk(priority.to(torch.float64), count, sorted=False).indices
        # Ascending ids read the file front to back while the cache fills.
        ids = ids.sort().values.to(torch.int64)
        if device is not None:  # no copy of the rows in host memory
            self._fill(ids, _rows_on(x, ids, torch.device(device), num_threads), num_rows,
                       elsewhere=True)
            return
        rows = torch.from_numpy(_native.gather(_buffer(x.contiguous()), ids.numpy(),
                                               num_threads)).view(x.dtype)
        if pin is None:
            pin = torch.cuda.is_available()
        self._fill(ids, rows.pin_memory() if pin and count else rows, num_rows)

    @classmethod
    def from_rows(cls, ids: Tensor, rows: Tensor, num_rows: int) -> FeatureCache:
        """A cache of the given rows (``rows[i]`` is row ``ids[i]`` of a table
        of ``num_rows``): rows fetched from elsewhere, such as other ranks'."""
        cache = cls.__new__(cls)
        cache._fill(ids.to(torch.int64), rows, num_rows)
        cache.budget = cache.nbytes
        return cache

    def _fill(self, ids: Tensor, rows: Tensor, num_rows: int, elsewhere: bool = False) -> None:
        self.ids, self.rows, self.elsewhere = ids, rows, elsewhere
        self.slot = torch.full((num_rows,), -1, dtype=torch.int32)
        self.slot[ids] = torch.arange(ids.numel(), dtype=torch.int32)
        # rows held elsewhere are never read here: an empty array names their layout
        like = rows.new_empty((0, *rows.shape[1:]), device="cpu") if elsewhere else rows
        self.native = _native.RowCache(self.slot.numpy(), _buffer(like), elsewhere)

    def held_on(self, device: Union[str, torch.device]) -> FeatureCache:
        """This cache with its rows moved to ``device`` (a GPU), where the
        host does not read them: a gather through it leaves the cached rows
        out (``x`` holds the other rows, in order) and counts them as hits;
        :class:`~salient_pipes.pipes.device_features.DeviceFeatures` puts
        them back on the device.

        Example:
            >>> x = torch.arange(8.).view(4, 2)
            >>> cache = FeatureCache(x, 4 * 4 + 8, priority=torch.tensor([0, 9, 0, 0]))
            >>> from salient_pipes.pipes.slice import gather
            >>> gather(x, torch.tensor([3, 1, 0]), cache=cache.held_on("cpu")).tolist()
            [[6.0, 7.0], [0.0, 1.0]]
        """
        rows = self.rows.to(device)
        if self.elsewhere and rows is self.rows:
            return self  # held there already
        cache = FeatureCache.__new__(FeatureCache)
        cache._fill(self.ids, rows, self.slot.numel(), elsewhere=True)
        cache.budget = self.budget
        return cache

    @classmethod
    def for_dataset(cls, dataset: FastDataset, budget: Budget, *, policy: str = "degree",
                    fanouts: Sequence[int] = (15, 10, 5), batch_size: int = 1024,
                    seeds: Optional[Tensor] = None, num_batches: int = 32, seed: int = 0,
                    pin: Optional[bool] = None, num_threads: int = 1,
                    device: Union[str, torch.device, None] = None) -> FeatureCache:
        """A cache of ``dataset.x`` with rows chosen by ``policy``.

        Args:
            dataset: a FastDataset (or anything with ``x``, ``rowptr``,
                ``col``, ``graph`` and ``split_idx``).
            budget: bytes for the rows and the slot map: an int, ``"4GiB"``,
                or ``"10%"`` of the features.
            policy: one of :data:`POLICIES` (see :func:`access_priority`).
            fanouts: the fanouts the ``"sampled"`` and ``"vip"`` policies
                rank rows for.
            batch_size: the batch size they rank rows for.
            seeds: the seeds of those batches (default: the train split).
            num_batches: batches the ``"sampled"`` policy samples.
            seed: the seed of those batches.
            pin: page-locked rows (default: when CUDA is available).
            num_threads: threads that gather the rows.
            device: keep the rows on this device instead (see
                :meth:`held_on`).

        Example:
            >>> from salient_pipes import FastDataset
            >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
            >>> cache = FeatureCache.for_dataset(ds, "64KiB")
            >>> 0 < cache.num_cached < ds.num_nodes
            True
        """
        if seeds is None:
            seeds = dataset.split_idx.get("train", torch.arange(dataset.num_nodes))
        priority = access_priority(dataset, policy, fanouts, batch_size, seeds, seed,
                                   num_batches)
        return cls(dataset.x, budget, priority=priority, pin=pin, num_threads=num_threads,
                   device=device)

    @property
    def num_cached(self) -> int:
        return self.ids.numel()

    @property
    def nbytes(self) -> int:
        """The rows and the slot map."""
        return self.rows.numel() * self.rows.element_size() + 4 * self.slot.numel()

    def counters(self) -> Sequence[Any]:
        return [self.native]

    def __repr__(self) -> str:
        where = f" on {self.rows.device}" if self.elsewhere else ""
        return (f"FeatureCache({self.num_cached:,} rows{where}, {self.nbytes / 2**20:,.1f} MiB, "
                f"hit rate {self.hit_rate:.3f})")


FILL_CHUNK = 64 << 20  # bytes of rows gathered and copied to a device at a time


def _rows_on(x: Tensor, ids: Tensor, device: torch.device, num_threads: int) -> Tensor:
    """``x[ids]`` on ``device``, gathered and copied :data:`FILL_CHUNK` bytes
    at a time (no copy of them all in host memory)."""
    out = torch.empty((ids.numel(), *x.shape[1:]), dtype=x.dtype, device=device)
    step = max(1, FILL_CHUNK // max(1, row_bytes(x)))
    buffer = _buffer(x.contiguous())
    for begin in range(0, ids.numel(), step):
        part = _native.gather(buffer, ids[begin:begin + step].numpy(), num_threads)
        out[begin:begin + step] = torch.from_numpy(part).view(x.dtype)
    return out


class FeatureCaches(HitRate, Mapping[str, FeatureCache]):
    """A dataset's cache per node type, counted together: ``hit_rate`` is
    over every type's gathers. (A dataset of one node type has one.)

    Example:
        >>> from salient_pipes import HeteroDataset
        >>> mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
        >>> cache = FeatureCaches.for_dataset(mag, "256KiB")
        >>> sorted(cache), 0 < cache["paper"].num_cached < mag.num_nodes["paper"]
        (['author', 'field_of_study', 'institution', 'paper'], True)
    """

    def __init__(self, caches: Mapping[str, FeatureCache]) -> None:
        self.caches: Dict[str, FeatureCache] = dict(caches)

    def __getitem__(self, node_type: str) -> FeatureCache:
        return self.caches[node_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.caches)

    def __len__(self) -> int:
        return len(self.caches)

    def counters(self) -> Sequence[Any]:
        return [c.native for c in self.caches.values()]

    def held_on(self, device: Union[str, torch.device]) -> FeatureCaches:
        """Every type's cache with its rows on ``device`` (see
        :meth:`FeatureCache.held_on`)."""
        return FeatureCaches({t: c.held_on(device) for t, c in self.caches.items()})

    @classmethod
    def for_dataset(cls, dataset: HeteroDataset, budget: Budget, *,
                    pin: Optional[bool] = None, num_threads: int = 1,
                    device: Union[str, torch.device, None] = None) -> FeatureCaches:
        """Caches of ``dataset.x`` within ``budget`` bytes in all (a share
        is of all node types' features): the rows that are sources of the
        most edges (of any edge type), per byte, across node types; each
        node type with features pays its slot map."""
        priority = source_counts({e: dataset.col[e] for e in dataset.edge_types},
                                 {t: dataset.num_nodes[t] for t in dataset.x})
        return cls.by_priority(dataset.x, priority, budget, pin=pin, num_threads=num_threads,
                               device=device)

    @classmethod
    def by_priority(cls, x: Mapping[str, Tensor], priority: Mapping[str, Tensor],
                    budget: Budget, *, pin: Optional[bool] = None, num_threads: int = 1,
                    device: Union[str, torch.device, None] = None) -> FeatureCaches:
        """Caches of the tables ``x`` within ``budget`` bytes in all (a share
        is of all tables): the rows of highest ``priority`` per byte, across
        tables; each table pays its slot map.

        Example:
            >>> x = {"a": torch.zeros(4, 2), "b": torch.zeros(2, 8)}
            >>> caches = FeatureCaches.by_priority(
            ...     x, {"a": torch.tensor([1., 9, 1, 1]), "b": torch.tensor([8., 0])}, 24 + 8)
            >>> caches["a"].ids.tolist(), caches["b"].num_cached
            ([1], 0)
        """
        num_rows = {t: table.size(0) for t, table in x.items()}
        width = {t: row_bytes(table) for t, table in x.items()}
        total = cache_budget(budget, sum(num_rows[t] * width[t] for t in x))
        room = total - sum(4 * num_rows[t] for t in priority)
        counts = {t: 0 for t in priority}
        if room > 0 and priority:
            per_byte = torch.cat([priority[t].to(torch.float64) / max(width[t], 1)
                                  for t in priority])
            cost = torch.cat([torch.full((num_rows[t],), width[t], dtype=torch.int64)
                              for t in priority])
            owner = torch.cat([torch.full((num_rows[t],), i, dtype=torch.int64)
                               for i, t in enumerate(priority)])
            order = torch.argsort(per_byte, descending=True, stable=True)
            taken = order[torch.cumsum(cost[order], 0) <= room]
            for i, t in enumerate(priority):
                counts[t] = int((owner[taken] == i).sum())
        return cls({t: FeatureCache(x[t], counts[t] * width[t] + 4 * num_rows[t],
                                    priority=priority[t], pin=pin, num_threads=num_threads,
                                    device=device)
                    for t in priority})

    def __repr__(self) -> str:
        parts = ", ".join(f"{t}: {c.num_cached:,} rows" for t, c in self.caches.items())
        return f"FeatureCaches({parts}; hit rate {self.hit_rate:.3f})"


def source_counts(cols: Mapping[Any, Tensor], num_rows: Mapping[str, int]) -> Dict[str, Tensor]:
    """How often each node of each type in ``num_rows`` is the source of an
    edge of ``cols`` (the sampled CSR's ``col`` per edge type ``(src, rel,
    dst)``): how often sampling can reach it. float64.

    Example:
        >>> source_counts({("a", "to", "b"): torch.tensor([0, 2, 2])}, {"a": 3})["a"].tolist()
        [1.0, 0.0, 2.0]
    """
    counts = {t: torch.zeros(n, dtype=torch.float64) for t, n in num_rows.items()}
    for (src, _, _), col in cols.items():
        if src in counts:
            counts[src] += torch.bincount(col.to(torch.int64), minlength=counts[src].numel())
    return counts


def access_priority(graph: Any, policy: str, fanouts: Sequence[int], batch_size: int,
                    seeds: Tensor, seed: int = 0, num_batches: int = 32) -> Tensor:
    """How likely each node of ``graph`` (with ``rowptr``, ``col`` and a
    native ``graph``) is to be needed by batches of ``seeds``, by ``policy``:
    its in-degree (``"degree"``), how often it appears in ``num_batches``
    batches sampled with ``fanouts`` (``"sampled"``), or SALIENT++'s expected
    access probability (``"vip"``, :func:`expected_access`). Higher first;
    float64."""
    check_policy(policy, "cache policy")
    if policy == "vip":
        return expected_access(graph.rowptr, graph.col, seeds, fanouts, batch_size)
    if policy == "sampled":
        return access_counts(graph, fanouts, batch_size, seeds, num_batches,
                             seed).to(torch.float64)
    return (graph.rowptr[1:] - graph.rowptr[:-1]).to(torch.float64)


def access_counts(graph: Any, fanouts: Sequence[int], batch_size: int, seeds: Tensor,
                  num_batches: int, seed: int) -> Tensor:
    """How often each node appears in ``num_batches`` batches sampled from
    a seeded permutation of ``seeds``."""
    order = torch.randperm(seeds.numel(), generator=torch.Generator().manual_seed(seed))
    batches = torch.split(seeds[order], batch_size)[:num_batches]
    session = _native.Session(graph.graph, [int(f) for f in fanouts], seed=seed)
    for position, batch in enumerate(batches):
        session.submit(batch.contiguous().numpy(), 0, position)
    num_nodes = graph.rowptr.numel() - 1
    counts = torch.zeros(num_nodes, dtype=torch.int32)
    for _ in batches:
        n_id = torch.from_numpy(session.next()[0][0])
        counts.index_add_(0, n_id, torch.ones(n_id.numel(), dtype=torch.int32))
    return counts


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


__all__ = ["FeatureCache", "FeatureCaches", "HitRate", "POLICIES", "access_counts",
           "access_priority", "cache_budget", "check_policy", "expected_access"]
