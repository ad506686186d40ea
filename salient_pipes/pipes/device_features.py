"""Features on the device: all of them, copied there once, or the hottest
rows (a device cache) with the others gathered on the host. A batch
crosses with its ids, its adjacency and only the rows the device does not
hold; its ``x`` is assembled on the device, on the prefetch stage's copy
stream (``salient_pipeline(..., features_on="cuda")`` or
``device_cache="25%"``)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Union

import torch
from torch import Tensor

from salient_pipes.batch import NODE_TYPE, ids_per_type, with_features
from salient_pipes.data.feature_cache import Budget, FeatureCache, FeatureCaches, cache_budget

MARGIN = 1 << 30  # device memory left free beyond the tables (batches, the model)


def assemble(rows: Tensor, slots: Tensor, ids: Tensor, missed: Tensor) -> Tensor:
    """The rows of nodes ``ids`` from a device cache (``rows``, and
    ``slots[v]``: node ``v``'s row there or -1) and ``missed``: the rows of
    the nodes it does not hold, in their order in ``ids``. Runs on the
    device without waiting for it (no data-dependent sizes): the cached
    rows are gathered, then the missed ones are scattered to their places.

    Example:
        >>> rows = torch.tensor([[10.], [30.]])  # nodes 1 and 3 cached
        >>> slots = torch.tensor([-1, 0, -1, 1], dtype=torch.int32)
        >>> assemble(rows, slots, torch.tensor([3, 0, 1, 2]), torch.tensor([[0.], [20.]])).tolist()
        [[30.0], [0.0], [10.0], [20.0]]
    """
    slot = slots.index_select(0, ids)
    if not rows.size(0):
        return missed  # nothing cached: every row came
    out = rows.index_select(0, slot.clamp(min=0))
    count = missed.size(0)
    if count:
        miss = slot < 0
        # the k-th missed node's position, by a scatter (the others write a spare slot)
        target = torch.where(miss, torch.cumsum(miss, 0) - 1, count)
        where = torch.empty(count + 1, dtype=torch.int64, device=ids.device)
        where.scatter_(0, target, torch.arange(ids.numel(), device=ids.device))
        out.index_copy_(0, where[:count], missed)
    return out


class DeviceFeatures:
    """Feature tables kept on ``device``, whole or in part; :meth:`fill`
    gathers a batch's rows there by its ``n_id`` (already on the device).

    Args:
        x: a table (a graph of one node type) or a dict per node type.
        device: where the tables (or their cached rows) live.
        cache: a :class:`~salient_pipes.data.FeatureCache` of ``x`` (per
            node type: :class:`~salient_pipes.data.FeatureCaches`): only its
            rows go to the device. The host then gathers the others through
            :attr:`host_cache` (``slice_features(..., cache=host_cache)``),
            and :meth:`fill` puts each batch's rows together.

    Example:
        >>> from salient_pipes.batch import PreparedBatch
        >>> x = torch.arange(8.).view(4, 2)
        >>> feats = DeviceFeatures(x, "cpu")
        >>> b = PreparedBatch(x=None, y=None, adjs=[], n_id=torch.tensor([3, 1]))
        >>> feats.fill(b).x.tolist()
        [[6.0, 7.0], [2.0, 3.0]]
    """

    def __init__(self, x: Union[Tensor, Mapping[str, Tensor]],
                 device: Union[str, torch.device],
                 cache: Union[FeatureCache, FeatureCaches, None] = None) -> None:
        self.device = torch.device(device)
        tables = dict(x) if isinstance(x, Mapping) else {NODE_TYPE: x}
        for t, table in tables.items():
            if not isinstance(table, Tensor):
                raise ValueError(f"features must be tensors, got {type(table).__name__} for "
                                 f"{t!r}")
        caches: Dict[str, FeatureCache] = {}
        if cache is not None:
            caches = dict(cache) if isinstance(cache, Mapping) else {NODE_TYPE: cache}
            for t, c in caches.items():
                if not isinstance(c, FeatureCache) or t not in tables or \
                        c.slot.numel() != tables[t].size(0):
                    raise ValueError(f"cache must be a FeatureCache of x (per node type: "
                                     f"FeatureCaches), got {type(c).__name__} for {t!r}")
        # Whole tables on the device, and the cached part of the others.
        self.tables: Dict[str, Tensor] = {t: table.to(self.device)
                                          for t, table in tables.items()
                                          if table.numel() and t not in caches}
        held = {t: c.held_on(self.device) for t, c in caches.items()}
        self.host_cache: Optional[FeatureCaches] = FeatureCaches(held) if held else None
        self.slots: Dict[str, Tensor] = {t: c.slot.to(self.device) for t, c in held.items()}
        self.cached: Dict[str, Tensor] = {t: c.rows for t, c in held.items()}

    @property
    def nbytes(self) -> int:
        """Device memory held: the tables, the cached rows and their slot maps."""
        return sum(t.numel() * t.element_size()
                   for t in [*self.tables.values(), *self.cached.values(),
                             *self.slots.values()])

    @property
    def hit_rate(self) -> Optional[float]:
        """Share of rows the device cache held since the epoch began (``None``
        without a cache: every row is on the device)."""
        return None if self.host_cache is None else self.host_cache.hit_rate

    def fill(self, batch: Any) -> Any:
        """``batch`` with ``x`` gathered from the tables by its ``n_id``; with
        a cache, its ``x`` (the rows the device does not hold) completed."""
        ids = ids_per_type(batch)
        xs = {t: self.tables[t].index_select(0, ids[t]) for t in self.tables if t in ids}
        if self.cached:
            missed = batch.x if isinstance(batch.x, dict) else {NODE_TYPE: batch.x}
            xs.update({t: assemble(self.cached[t], self.slots[t], ids[t], missed[t])
                       for t in self.cached if t in ids})
        return with_features(batch, xs)

    def __repr__(self) -> str:
        part = "" if self.host_cache is None else \
            f", {sum(c.num_cached for c in self.host_cache.values()):,} rows cached"
        return f"DeviceFeatures({_size(self.nbytes)} on {self.device}{part})"


class Placement(NamedTuple):
    """Where ``salient_pipeline`` keeps the features: ``device`` (``None``:
    the host), ``cache`` (bytes of hottest rows there; ``None``: all of
    them) and ``why``, a sentence."""

    device: Optional[torch.device]
    cache: Optional[int]
    why: str


def target_device(features_on: Optional[str], device: torch.device) -> torch.device:
    """The device ``features_on`` names (``device`` for ``None``, ``"host"``
    and ``"auto"``), or a ``ValueError`` saying what it takes.

    Example:
        >>> target_device("cuda:1", torch.device("cpu"))
        device(type='cuda', index=1)
    """
    if features_on in (None, "host", "auto"):
        return device
    try:
        return torch.device(features_on)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"features_on must be 'host', 'auto' or a device such as 'cuda', "
                         f"got {features_on!r}") from exc


def choose_placement(features_on: Optional[str], device: torch.device, x_bytes: int,
                     free: Optional[int] = None, device_cache: Budget = None,
                     num_rows: int = 0) -> Placement:
    """Where features of ``x_bytes`` (``num_rows`` rows in all) go:

    - ``features_on=None`` or ``"host"``: gathered by the sampling workers,
      as always (``device_cache`` then puts a cache on ``device`` when it
      is a GPU);
    - a device name: all of them there, or with ``device_cache`` (bytes or
      a share of the features, counting 4 bytes of slot map per row) the
      hottest rows there and the others gathered on the host;
    - ``"auto"``: on ``device`` when it is a GPU: all of them when its free
      memory (``free``, default: measured) holds them with :data:`MARGIN`
      to spare, else a cache of what is free beyond it (or
      ``device_cache`` when given).

    Example:
        >>> choose_placement("auto", torch.device("cpu"), 10).why
        'features on the host: the device is the CPU'
        >>> choose_placement("auto", torch.device("cuda"), 8 << 30, free=5 << 30).cache
        4294967296
    """
    target = target_device(features_on, device)
    budget = None if device_cache is None else \
        cache_budget(device_cache, x_bytes, "device_cache")  # checked even where unused
    if features_on == "host":
        if device_cache is not None:
            raise ValueError("device_cache keeps rows on the device but features_on='host' "
                             "keeps them on the host: choose one")
        return Placement(None, None, "features on the host")
    if features_on is None and device_cache is None:
        return Placement(None, None, "features on the host")
    slot_maps = 4 * num_rows
    if features_on == "auto" and device_cache is None:
        if device.type != "cuda":
            return Placement(None, None,
                             f"features on the host: the device is the {device.type.upper()}")
        if free is None:
            free = torch.cuda.mem_get_info(device)[0]
        if x_bytes + MARGIN <= free:
            return Placement(device, None, f"features on {device}: {_size(x_bytes)} "
                                           f"of {_size(free)} free")
        if free - MARGIN <= slot_maps:
            return Placement(None, None, f"features on the host: {_size(free)} free "
                                         f"on {device} leave no room for a cache")
        return _cached(device, free - MARGIN, x_bytes, slot_maps,
                       f"{_size(x_bytes)} do not fit the {_size(free)} free "
                       f"with {MARGIN / 2**30:.0f} GiB to spare")
    if features_on in (None, "auto") and target.type != "cuda":
        return Placement(None, None, f"features on the host: the device is the "
                                     f"{target.type.upper()} (a device cache is for a GPU)")
    if budget is None:
        return Placement(target, None, f"features on {target} (as asked)")
    if budget >= x_bytes:  # whole tables need no slot maps
        return Placement(target, None, f"features on {target}: device_cache="
                                       f"{device_cache!r} holds all of them")
    return _cached(target, budget, x_bytes, slot_maps, f"device_cache={device_cache!r}")


def _size(n: float) -> str:
    """``n`` bytes in GiB, or MiB below one GiB.

    Example:
        >>> _size(2**30), _size(2**30 - 2**20)
        ('1.00 GiB', '1023.0 MiB')
    """
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _cached(device: torch.device, budget: int, x_bytes: int, slot_maps: int,
            why: str) -> Placement:
    rows = max(0, budget - slot_maps)
    share = rows / x_bytes if x_bytes else 1.0
    return Placement(device, budget, f"features cached on {device}: {why}: the hottest "
                                     f"{_size(rows)} ({share:.0%} of the features) "
                                     f"there, the others gathered on the host")


__all__ = ["DeviceFeatures", "Placement", "assemble", "choose_placement", "target_device"]
