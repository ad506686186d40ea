"""Out-of-core features: batches sampled a window ahead, the union of their
rows read from disk once in file order, each batch gathered from it.

Sampling is deterministic, so every row a batch will need is known before
any is read. ``slice_features(..., lookahead=LookAhead(...))`` takes sampled
batches (their features not yet gathered) a window at a time: as many as
fit ``budget`` (their rows and their arrays), marks the rows they
need (:class:`~salient_pipes._native.RowSet`), reads that union with
:meth:`FeatureFile.read <salient_pipes.data.feature_file.FeatureFile.read>`
(rows that the previous window holds are copied from it, the rest read in
file order, nearby rows in one read: a dense window sweeps the file, a
sparse one reads what it needs), then gathers each batch's rows from it.

Where a window's rows are sparse in the file, two windows share the budget:
the one being gathered and handed on, and the next one being read meanwhile
(rows of the first that the next needs are copied, not read again). Where
they are dense, each window is a sweep of the whole file, which costs the
same however many rows it brings: one window then takes the whole budget,
so an epoch needs half the sweeps (:func:`windows_alive`). The sampling
workers run ahead either way. The batches are exactly the in-memory
gather's; resume and determinism come from the sampling stage unchanged.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes._checks import check_int
from salient_pipes.batch import NODE_TYPE, ids_per_type, with_features
from salient_pipes.data.feature_cache import FeatureCache
from salient_pipes.data.feature_file import FeatureFile
from salient_pipes.data.format import parse_bytes
from salient_pipes.pipes._arrays import as_buffer, as_index, from_buffer
from salient_pipes.pipes._handoff import POLL_S, run_ahead
from salient_pipes.pipes.base import close_iterator

PAGE = 4096


def windows_alive(budget: int, files: Mapping[str, FeatureFile]) -> int:
    """2 (a window read while the one before is handed on) when a window
    of half the budget would need at most half of the files' pages, for
    rows spread at random; else 1 (each window a sweep: the fewer, the
    faster).

    Example:
        >>> class F: num_rows, row_bytes = 1_000_000, 512
        >>> windows_alive(50 * 2**20, {"_N": F()}), windows_alive(400 * 2**20, {"_N": F()})
        (2, 1)
    """
    table = sum(f.num_rows * f.row_bytes for f in files.values())
    if not table:
        return 2
    share = min(1.0, budget / 2 / table)  # of the rows, in a window of half the budget
    rows_per_page = max(1.0, PAGE / max(f.row_bytes for f in files.values()))
    return 2 if 1 - (1 - share) ** rows_per_page <= 0.5 else 1


class LookAhead:
    """How ``slice_features`` reads features from disk: the feature file of
    each node type and the memory the windows may take.

    Args:
        files: a :class:`FeatureFile` (a graph of one node type) or one per
            node type.
        budget: bytes (an int or ``"8GiB"``) for the windows alive at once:
            their rows, their batches' sampled arrays (and those of the
            window being formed) and their slot maps (4 bytes per row of
            each table). The last window's memory is kept for the next one,
            and the next epoch.
        num_threads: threads that gather each batch's rows from its window.
        max_batches: a window's most batches, however small they are.
        windows: windows alive at once, 1 or 2 (default:
            :func:`windows_alive`).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> path = Path(tempfile.mkdtemp()) / "ds"
        >>> FastDataset.synthetic(num_nodes=500, seed=0).save(path, progress=False)
        >>> ds = FastDataset.load(path)
        >>> ahead = LookAhead(FeatureFile(path / "x.npy"), budget="4MiB")
        >>> pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(64)
        ...         .sample_neighbors(ds, [5, 5]).slice_features(ds.x, ds.y, lookahead=ahead))
        >>> batch = next(iter(pipe)); torch.equal(batch.x, ds.x[batch.n_id])
        True
    """

    def __init__(self, files: Any, budget: Any, num_threads: int = 1,
                 max_batches: int = 4096, windows: Optional[int] = None) -> None:
        self.files: Dict[str, FeatureFile] = dict(files) if isinstance(files, Mapping) \
            else {NODE_TYPE: files}
        for t, f in self.files.items():
            if not isinstance(f, FeatureFile):
                raise ValueError(f"lookahead files must be FeatureFile objects, got "
                                 f"{type(f).__name__} for {t!r}")
        self.budget = parse_bytes(budget, "budget")
        self.num_threads = check_int("num_threads", num_threads, minimum=1)
        self.max_batches = check_int("max_batches", max_batches, minimum=1)
        self._lock = threading.Lock()
        self._spare: Dict[str, Tensor] = {}  # a released window's memory, per node type
        self.alive = windows_alive(self.budget, self.files) if windows is None else windows
        if self.alive not in (1, 2):
            raise ValueError(f"windows must be 1 or 2, got {windows!r}")
        self.reset_counts()

    def _spare_for(self, node_type: str, rows: int, previous: Optional[FeatureCache]) -> Tensor:
        """Memory of a released window, when it holds ``rows`` rows and is
        not ``previous``'s (which the read copies from); otherwise new
        memory with 5 % to spare, so that the windows after it (about as
        large) fit."""
        with self._lock:
            spare = self._spare.pop(node_type, None)
        need = rows * self.files[node_type].row_bytes
        held = None if previous is None else previous.rows.untyped_storage().data_ptr()
        if spare is not None and spare.numel() >= need and spare.data_ptr() != held:
            return spare
        del spare
        return torch.empty(need + need // 20, dtype=torch.uint8)

    def reset_counts(self) -> None:
        """Starts the counts that :meth:`stats` reports afresh."""
        for f in self.files.values():
            f.reset_counts()
        self.windows = 0
        self.batches = 0
        self.rows_delivered = 0
        self._held = 0  # windows formed and not yet released
        self.most_held = 0

    def stats(self) -> Dict[str, Any]:
        """What the reads did since :meth:`reset_counts`: bytes read, rows
        read per row delivered, the read rate (bytes per second of reading)
        and, where :meth:`FeatureFile.measure` ran, that rate as a share of
        the disk's sequential rate."""
        totals = {k: sum(f.totals[k] for f in self.files.values())
                  for k in ("bytes", "reads", "rows_read", "rows_copied", "seconds")}
        rate = totals["bytes"] / totals["seconds"] if totals["seconds"] else 0.0
        per_row = totals["rows_read"] / self.rows_delivered if self.rows_delivered else 0.0
        out: Dict[str, Any] = {
            "windows": self.windows,
            "batches_per_window": self.batches / self.windows if self.windows else 0.0,
            "bytes_read": int(totals["bytes"]), "reads": int(totals["reads"]),
            "rows_read": int(totals["rows_read"]), "rows_copied": int(totals["rows_copied"]),
            "rows_read_per_row_delivered": per_row,
            "read_s": totals["seconds"], "read_bytes_s": rate}
        measured = [f.disk_rates for f in self.files.values() if f.disk_rates is not None]
        if measured:
            out["read_vs_sequential"] = rate / measured[0].sequential_bytes_s
            out["disk"] = str(measured[0])
        return out

    def check(self, x: Mapping[str, Tensor]) -> None:
        """Checks that each file holds the table ``x`` names (rows, row size)."""
        for t, f in self.files.items():
            if t not in x:
                raise ValueError(f"lookahead reads features of node type {t!r}, which x lacks")
            table = x[t]
            width = table.size(1) if table.dim() == 2 else 1
            if (table.size(0), width * table.element_size(), table.dtype) != \
                    (f.num_rows, f.row_bytes, f.dtype):
                raise ValueError(f"{f.path} holds {f.num_rows} rows of {f.row_bytes} bytes "
                                 f"({f.dtype}), x{'' if t == NODE_TYPE else f'[{t!r}]'} has "
                                 f"{table.size(0)} of {width * table.element_size()} "
                                 f"({table.dtype})")

    def run(self, batches: Iterator[Any], x: Mapping[str, Tensor]) -> Iterator[Any]:
        """``batches`` (features not yet gathered) with ``x`` gathered, read
        from the files a window at a time: one thread forms the windows
        (keeping the sampling workers busy), one reads them, one gathers."""
        permits = threading.Semaphore(self.alive)  # windows whose rows are held
        forming = threading.Semaphore(self.alive + 1)  # windows whose batches are held
        stop, stop_forming = threading.Event(), threading.Event()
        formed = run_ahead(lambda: self._windows(batches, forming, stop_forming), 1,
                           stop_forming, "salient-lookahead-windows")
        read = run_ahead(lambda: self._read(formed, permits, stop), 1, stop,
                         "salient-lookahead-read")
        return run_ahead(lambda: self._gathered(read, x, (permits, forming)), 2,
                         threading.Event(), "salient-lookahead-gather")

    # ------------------------------------------------------------ windows
    def _windows(self, batches: Iterator[Any], forming: threading.Semaphore,
                 stop: threading.Event) -> Iterator[Tuple[List[Any], Dict[str, Any]]]:
        """Windows of batches whose rows (and arrays) fit the budget, with
        the rows each needs (ascending); one window is formed ahead of those
        held (``forming``), while the one before it is read."""
        marks = {t: _native.RowSet(f.num_rows) for t, f in self.files.items()}
        items = iter(batches)
        try:
            yield from self._form(items, marks, forming, stop)
        finally:
            close_iterator(items)  # ends the sampling stage's epoch

    def _form(self, items: Iterator[Any], marks: Dict[str, Any], forming: threading.Semaphore,
              stop: threading.Event) -> Iterator[Tuple[List[Any], Dict[str, Any]]]:
        ended = False
        slots = sum(4 * f.num_rows for f in self.files.values())  # a window's slot map
        while not ended:
            while not forming.acquire(timeout=POLL_S):
                if stop.is_set():
                    return
            with self._lock:
                self._held += 1
                self.most_held = max(self.most_held, self._held)
            window: List[Any] = []
            arrays = 0
            while len(window) < self.max_batches:
                try:
                    batch = next(items)
                except StopIteration:
                    ended = True
                    break
                window.append(batch)
                for t, ids in ids_per_type(batch).items():
                    if t in marks:
                        marks[t].add(as_index(ids))
                arrays += sum(a.numel() * a.element_size() for a in batch.tensors()
                              if a is not None)
                rows = sum(marks[t].count * f.row_bytes for t, f in self.files.items())
                # alive windows of rows; one more of sampled arrays being formed
                if rows + slots + arrays * (self.alive + 1) / self.alive >= \
                        self.budget / self.alive:
                    break
            if window:
                yield window, {t: m.take() for t, m in marks.items()}

    def _read(self, windows: Iterator[Tuple[List[Any], Dict[str, Any]]],
              permits: threading.Semaphore, stop: threading.Event
              ) -> Iterator[Tuple[List[Any], Dict[str, FeatureCache]]]:
        """Each window's rows read (at most ``alive`` windows held; with
        two, rows of the one before are copied from it)."""
        previous: Dict[str, FeatureCache] = {}
        try:
            for window, needed in windows:
                while not permits.acquire(timeout=POLL_S):
                    if stop.is_set():
                        return
                staged = {t: self.files[t].read(torch.from_numpy(needed[t]), previous.get(t),
                                                into=self._spare_for(t, needed[t].size,
                                                                     previous.get(t)))
                          for t in self.files}
                if self.alive > 1:
                    previous = staged
                yield window, staged
                del staged
        finally:
            close_iterator(windows)  # stops the thread that forms them

    def _gathered(self, windows: Iterator[Tuple[List[Any], Dict[str, FeatureCache]]],
                  x: Mapping[str, Tensor], permits: Tuple[threading.Semaphore, ...]
                  ) -> Iterator[Any]:
        try:
            for window, staged in windows:
                self.windows += 1
                self.batches += len(window)
                while window:
                    batch = window.pop(0)
                    ids = ids_per_type(batch)
                    self.rows_delivered += sum(ids[t].numel() for t in staged if t in ids)
                    yield with_features(batch, {
                        t: _gather(x[t], ids[t], staged[t], self.num_threads)
                        for t in staged if t in ids})
                with self._lock:  # its memory serves a later window
                    self._spare = {t: torch.empty(0, dtype=torch.uint8).set_(
                        c.rows.untyped_storage()) for t, c in staged.items()}
                del staged
                with self._lock:
                    self._held -= 1
                for permit in permits:  # its rows and its batches are gone
                    permit.release()
        finally:
            close_iterator(windows)  # stops the reading thread


def _gather(table: Tensor, ids: Tensor, staged: FeatureCache, num_threads: int) -> Tensor:
    out = _native.gather(as_buffer(table), as_index(ids), num_threads, staged.native)
    return from_buffer(out, table.dtype)


__all__ = ["LookAhead"]
