"""The row exchange of partitioned features: a batch's feature rows from
this rank, its cache of remote rows, and the ranks that own the rest, over
``torch.distributed``.

Every rank runs the same exchange once per batch, in lock step, on a
process group of its own (gloo, so DDP's gradients on the default group
never queue behind it):

1. ``all_to_all`` of a header: how many rows I want from you, and whether I
   still have batches this epoch;
2. ``all_to_all`` of the wanted rows' local ids;
3. each rank gathers the rows asked of it; ``all_to_all`` of the rows.

A rank whose epoch is over keeps answering with empty requests until every
rank's is, so ranks with different batch counts cannot deadlock. Each
collective has the group's timeout: a rank that died or stopped iterating
ends the others' epochs with :class:`FetchError`, not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from salient_pipes.pipes import gather


class FetchError(RuntimeError):
    """A feature exchange between ranks failed: a rank died, failed or
    stopped iterating its pipeline before the others."""


@dataclass
class FetchStats:
    """Rows of the epoch's batches by where they came from, and the bytes
    received from other ranks."""

    batches: int = 0
    local_rows: int = 0
    cached_rows: int = 0
    remote_rows: int = 0
    remote_bytes: int = 0

    @property
    def rows(self) -> int:
        return self.local_rows + self.cached_rows + self.remote_rows

    def as_dict(self) -> dict:
        per_batch = self.remote_bytes / self.batches if self.batches else 0.0
        return {"local_rows": self.local_rows, "cached_rows": self.cached_rows,
                "remote_rows": self.remote_rows, "remote_bytes": self.remote_bytes,
                "remote_bytes_per_batch": per_batch,
                "remote_share": self.remote_rows / self.rows if self.rows else 0.0}


class FeatureExchange:
    """One rank's side of the row exchange over ``dataset``'s fetch group
    (a :class:`~salient_pipes.distributed.PartitionedDataset`).

    :meth:`step` is a collective: every rank of the group calls it the same
    number of times, in the same order.
    """

    def __init__(self, dataset: Any, num_threads: int = 1) -> None:
        self.dataset = dataset
        self.rank, self.world = dataset.rank, dataset.num_parts
        self.group = dataset.fetch_group
        self.num_threads = num_threads
        self.steps = 0

    def _collective(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, group=self.group, **kwargs)
        except RuntimeError as exc:
            raise FetchError(
                f"feature fetch on rank {self.rank} failed at exchange {self.steps} ({what}): "
                f"{exc}. Usually another rank did not answer in time or closed its "
                "connection: it died, failed, or stopped iterating its pipeline early.") from exc

    def step(self, n_id: Tensor, active: bool, stats: Optional[FetchStats] = None
             ) -> Tuple[Tensor, bool]:
        """The feature rows of ``n_id`` (global ids), and whether any rank
        is still active after this step. An inactive rank passes an empty
        ``n_id`` and serves the others."""
        ds = self.dataset
        x = ds.x
        out = torch.empty((n_id.numel(),) + tuple(x.shape[1:]), dtype=x.dtype)
        owner = ds.owner[n_id].to(torch.int64)
        local = ds.local[n_id].to(torch.int64)
        mine = owner == self.rank
        rest = (~mine).nonzero().view(-1)
        out[mine] = gather(x, local[mine], self.num_threads)
        cached = 0
        if ds.cache is not None and rest.numel():
            slot = ds.cache.slot[n_id[rest]]
            hit = slot >= 0
            out[rest[hit]] = gather(ds.cache.rows, slot[hit].to(torch.int64), self.num_threads)
            cached = int(hit.sum())
            rest = rest[~hit]
        if stats is not None:
            stats.batches += int(active)
            stats.local_rows += int(mine.sum())
            stats.cached_rows += cached
        if self.world == 1:
            return out, active
        if self.group is None:
            raise RuntimeError("fetching rows from other ranks needs the process group: "
                               "initialize torch.distributed before PartitionedDataset.load")
        rest = rest[torch.argsort(owner[rest], stable=True)]
        send = torch.bincount(owner[rest], minlength=self.world)
        header = torch.stack([send, torch.full_like(send, int(active))], dim=1)
        got_header = torch.empty_like(header)
        self._collective("request sizes", dist.all_to_all_single, got_header, header)
        recv = got_header[:, 0]
        anyone = bool(got_header[:, 1].any())
        wanted = torch.empty(int(recv.sum()), dtype=torch.int64)
        self._collective("row ids", dist.all_to_all_single, wanted, local[rest],
                         output_split_sizes=recv.tolist(), input_split_sizes=send.tolist())
        if wanted.numel() and (int(wanted.min()) < 0 or int(wanted.max()) >= x.size(0)):
            raise FetchError(f"rank {self.rank} was asked for rows outside its "
                             f"{x.size(0)} rows: the ranks opened different partitions")
        rows = gather(x, wanted, self.num_threads)
        # Rows travel as bytes: gloo reduces no float16 or bfloat16, but moves bytes.
        got = torch.empty((rest.numel(), self.dataset.row_bytes), dtype=torch.uint8)
        sent = torch.empty((0, got.size(1)), dtype=torch.uint8) if rows.numel() == 0 else \
            rows.contiguous().view(torch.uint8).view(rows.size(0), -1)
        self._collective("rows", dist.all_to_all_single, got, sent,
                         output_split_sizes=send.tolist(), input_split_sizes=recv.tolist())
        out[rest] = got.view(x.dtype)
        self.steps += 1
        if stats is not None:
            stats.remote_rows += rest.numel()
            stats.remote_bytes += got.numel() * got.element_size()
        return out, anyone

    def fetch_all(self, n_id: Tensor, chunk: int = 65536) -> Tensor:
        """The rows of ``n_id`` in chunks of ``chunk`` rows: a collective
        that every rank calls once, each with its own ``n_id`` (possibly
        empty)."""
        parts = []
        position, anyone = 0, True
        while anyone:
            ids = n_id[position: position + chunk]
            active = ids.numel() > 0
            rows, anyone = self.step(ids, active)
            if active:
                parts.append(rows)
            position += chunk
        if not parts:
            return torch.empty((0,) + tuple(self.dataset.x.shape[1:]),
                               dtype=self.dataset.x.dtype)
        return torch.cat(parts)


__all__ = ["FeatureExchange", "FetchError", "FetchStats"]
