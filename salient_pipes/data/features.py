"""A hot-row cache for features read from disk.

When ``x`` is a memory-mapped file larger than memory, every row the gather
misses in the page cache is a disk read. :class:`FeatureCache` keeps the rows
most likely to be sampled in memory (page-locked when CUDA is available, so
the device copy can read them directly) within a byte budget; the native
gather looks a row up there first and reads the file only on a miss. Rows are
chosen by degree (a node is sampled about in proportion to its degree) or by
access counts measured by sampling a few batches, as SALIENT++ does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.data.format import parse_bytes

if TYPE_CHECKING:  # pragma: no cover
    from salient_pipes.data.dataset import FastDataset
    from salient_pipes.data.hetero import HeteroDataset

POLICIES = ("degree", "sampled")


def _buffer(t: Tensor):
    carrier = torch.int16 if t.dtype == torch.bfloat16 else None
    return (t.view(carrier) if carrier else t).numpy()


class FeatureCache:
    """Rows of ``x`` kept in memory within ``budget`` bytes, chosen by
    ``priority`` (higher first; default: the first rows).

    The budget counts the rows and the slot map (4 bytes per node of ``x``):
    a budget below the slot map caches nothing. ``"everything"`` (or any
    budget of at least ``x``'s size plus the slot map) caches every row.
    ``hits``/``lookups``/``hit_rate`` count the gathers through it since the
    last :meth:`reset_counts`.

    Example:
        >>> x = torch.arange(12, dtype=torch.float16).view(6, 2)
        >>> cache = FeatureCache(x, 6 * 4 + 2 * 4, priority=torch.tensor([0, 5, 0, 9, 0, 0]))
        >>> cache.ids.tolist(), cache.rows.tolist()
        ([1, 3], [[2.0, 3.0], [6.0, 7.0]])
    """

    def __init__(self, x: Tensor, budget: Union[int, str], *, priority: Optional[Tensor] = None,
                 pin: Optional[bool] = None, num_threads: int = 1) -> None:
        if not isinstance(x, Tensor) or x.dim() not in (1, 2) or x.device.type != "cpu":
            raise ValueError("x must be a 1-D or 2-D CPU tensor")
        num_rows = x.size(0)
        row_bytes = (x.size(1) if x.dim() == 2 else 1) * x.element_size()
        if budget == "everything":
            budget = num_rows * (row_bytes + 4)
        self.budget = parse_bytes(budget, "feature_cache")
        room = self.budget - 4 * num_rows
        count = 0 if room <= 0 or row_bytes == 0 else min(num_rows, room // row_bytes)
        if priority is None:
            ids = torch.arange(count)
        else:
            priority = torch.as_tensor(priority)
            if priority.shape != (num_rows,):
                raise ValueError(f"priority must hold one value per row of x ({num_rows}), "
                                 f"got shape {tuple(priority.shape)}")
            ids = torch.topk(priority.to(torch.float64), count, sorted=False).indices
        # Ascending ids read the file front to back while the cache fills.
        self.ids = ids.sort().values.to(torch.int64)
        if pin is None:
            pin = torch.cuda.is_available()
        gathered = torch.from_numpy(_native.gather(_buffer(x.contiguous()), self.ids.numpy(),
                                                   num_threads)).view(x.dtype)
        self.rows = gathered.pin_memory() if pin and count else gathered
        self.slot = torch.full((num_rows,), -1, dtype=torch.int32)
        self.slot[self.ids] = torch.arange(count, dtype=torch.int32)
        self.native = _native.RowCache(self.slot.numpy(), _buffer(self.rows))

    @classmethod
    def for_dataset(cls, dataset: FastDataset, budget: Union[int, str], *,
                    policy: str = "degree", fanouts: Sequence[int] = (15, 10, 5),
                    batch_size: int = 1024, seeds: Optional[Tensor] = None,
                    num_batches: int = 32, seed: int = 0, pin: Optional[bool] = None,
                    num_threads: int = 1) -> FeatureCache:
        """A cache of ``dataset.x`` with rows chosen by ``policy``:
        ``"degree"`` (the nodes of highest degree) or ``"sampled"`` (the
        nodes met most often in ``num_batches`` batches sampled from
        ``seeds``, default the train split, with ``fanouts``).

        Example:
            >>> from salient_pipes import FastDataset
            >>> ds = FastDataset.synthetic(num_nodes=1000, seed=0)
            >>> cache = FeatureCache.for_dataset(ds, "64KiB")
            >>> 0 < cache.num_cached < ds.num_nodes
            True
        """
        if policy not in POLICIES:
            raise ValueError(f"cache policy must be one of {POLICIES}, got {policy!r}")
        if policy == "degree":
            priority = dataset.rowptr[1:] - dataset.rowptr[:-1]
        else:
            priority = access_counts(dataset, fanouts, batch_size, seeds, num_batches, seed)
        return cls(dataset.x, budget, priority=priority, pin=pin, num_threads=num_threads)

    @property
    def num_cached(self) -> int:
        return self.ids.numel()

    @property
    def hits(self) -> int:
        return self.native.hits

    @property
    def lookups(self) -> int:
        return self.native.lookups

    @property
    def hit_rate(self) -> float:
        """Share of rows gathered from the cache since the last reset (0 when none)."""
        lookups = self.lookups
        return self.hits / lookups if lookups else 0.0

    def reset_counts(self) -> None:
        self.native.reset_counts()

    def __repr__(self) -> str:
        return (f"FeatureCache({self.num_cached:,} rows, {self.budget / 2**20:,.1f} MiB budget, "
                f"hit rate {self.hit_rate:.3f})")


class HeteroFeatureCache(Mapping[str, FeatureCache]):
    """One :class:`FeatureCache` per node type of a heterogeneous graph,
    counted together: ``hit_rate`` is over every node type's gathers.

    Example:
        >>> from salient_pipes import HeteroDataset
        >>> mag = HeteroDataset.synthetic_mag(scale=0.002, seed=0)
        >>> cache = HeteroFeatureCache.for_dataset(mag, "256KiB")
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

    @classmethod
    def for_dataset(cls, dataset: HeteroDataset, budget: Union[int, str], *,
                    pin: Optional[bool] = None, num_threads: int = 1) -> HeteroFeatureCache:
        """Caches of ``dataset.x`` within ``budget`` bytes in all: the rows
        that are sources of the most edges (of any edge type), per byte,
        across node types; each node type with features pays its slot map."""
        total = parse_bytes(budget, "feature_cache")
        priority = {t: torch.zeros(dataset.num_nodes[t], dtype=torch.float64)
                    for t in dataset.x}
        for edge_type in dataset.edge_types:
            src = edge_type[0]
            if src in priority:
                priority[src] += torch.bincount(dataset.col[edge_type].to(torch.int64),
                                                minlength=dataset.num_nodes[src])
        row_bytes = {t: (x.size(1) if x.dim() == 2 else 1) * x.element_size()
                     for t, x in dataset.x.items()}
        room = total - sum(4 * dataset.num_nodes[t] for t in priority)
        counts = {t: 0 for t in priority}
        if room > 0 and priority:
            per_byte = torch.cat([priority[t] / row_bytes[t] for t in priority])
            cost = torch.cat([torch.full((dataset.num_nodes[t],), row_bytes[t],
                                         dtype=torch.int64) for t in priority])
            owner = torch.cat([torch.full((dataset.num_nodes[t],), i, dtype=torch.int64)
                               for i, t in enumerate(priority)])
            order = torch.argsort(per_byte, descending=True, stable=True)
            taken = order[torch.cumsum(cost[order], 0) <= room]
            for i, t in enumerate(priority):
                counts[t] = int((owner[taken] == i).sum())
        return cls({t: FeatureCache(dataset.x[t], counts[t] * row_bytes[t] +
                                    4 * dataset.num_nodes[t], priority=priority[t], pin=pin,
                                    num_threads=num_threads)
                    for t in priority})

    @property
    def hits(self) -> int:
        return sum(c.hits for c in self.caches.values())

    @property
    def lookups(self) -> int:
        return sum(c.lookups for c in self.caches.values())

    @property
    def hit_rate(self) -> float:
        lookups = self.lookups
        return self.hits / lookups if lookups else 0.0

    def reset_counts(self) -> None:
        for cache in self.caches.values():
            cache.reset_counts()

    def __repr__(self) -> str:
        parts = ", ".join(f"{t}: {c.num_cached:,} rows" for t, c in self.caches.items())
        return f"HeteroFeatureCache({parts}; hit rate {self.hit_rate:.3f})"


def access_counts(dataset: FastDataset, fanouts: Sequence[int], batch_size: int,
                  seeds: Optional[Tensor], num_batches: int, seed: int) -> Tensor:
    """How often each node appears in ``num_batches`` batches sampled from
    a seeded permutation of ``seeds`` (default: the train split)."""
    if seeds is None:
        seeds = dataset.split_idx.get("train", torch.arange(dataset.num_nodes))
    order = torch.randperm(seeds.numel(), generator=torch.Generator().manual_seed(seed))
    batches = torch.split(seeds[order], batch_size)[:num_batches]
    session = _native.Session(dataset.graph, [int(f) for f in fanouts], seed=seed)
    for position, batch in enumerate(batches):
        session.submit(batch.contiguous().numpy(), 0, position)
    counts = torch.zeros(dataset.num_nodes, dtype=torch.int32)
    for _ in batches:
        n_id = torch.from_numpy(session.next()[0])
        counts.index_add_(0, n_id, torch.ones(n_id.numel(), dtype=torch.int32))
    return counts


__all__ = ["FeatureCache", "HeteroFeatureCache", "access_counts"]
