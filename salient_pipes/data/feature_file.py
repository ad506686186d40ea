"""A feature table read straight from its ``.npy`` file: the rows a window of
batches needs, in file order, many reads in flight, past the page cache
(``O_DIRECT``) where the file system allows it; and the disk's measured
rates to compare those reads with.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.npy"
    >>> np.save(path, np.arange(12, dtype=np.float32).reshape(6, 2))
    >>> rows = FeatureFile(path).read(torch.tensor([1, 4]))
    >>> rows.rows.tolist()
    [[2.0, 3.0], [8.0, 9.0]]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.data.feature_cache import FeatureCache

FeatureFileError = _native.FeatureFileError  # an OSError naming the file
PathLike = Union[str, os.PathLike]


@dataclass
class DiskRates:
    """What the disk under a file delivers: sequential bytes per second
    (reads of 4 MiB, 8 in flight) and random 4 KiB reads per second (64 in
    flight), measured on the file itself."""

    sequential_bytes_s: float
    random_reads_s: float

    def __str__(self) -> str:
        return (f"{self.sequential_bytes_s / 1e9:.2f} GB/s sequential, "
                f"{self.random_reads_s / 1e3:.0f} k random 4 KiB reads/s")


def npy_layout(path: Path) -> tuple:
    """``(offset, shape, dtype)`` of a C-ordered ``.npy`` file's array."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if fortran and len(shape) > 1:
        raise ValueError(f"{path} holds a Fortran-ordered array; rows must be contiguous")
    if len(shape) not in (1, 2):
        raise ValueError(f"{path} holds a {len(shape)}-D array; features are 1-D or 2-D")
    return offset, tuple(shape), dtype


class FeatureFile:
    """The rows of a ``.npy`` feature table, read from disk on demand.

    Args:
        path: the ``.npy`` file (a dataset's ``x.npy``).
        dtype: the rows' torch dtype (default: the file's; ``torch.bfloat16``
            for a table stored as 16-bit words).
        direct: read past the page cache (``O_DIRECT``) where the file
            system allows it, so the reads do not evict the graph; else the
            page cache is told to drop what the reads brought in.
        num_threads: reads in flight.

    A file shorter than its header says raises :class:`FeatureFileError`
    (an ``OSError``) naming it, and so does a read that fails or finds the
    file cut short later.
    """

    def __init__(self, path: PathLike, *, dtype: Optional[torch.dtype] = None,
                 direct: bool = True, num_threads: int = 32) -> None:
        self.path = Path(path)
        offset, shape, np_dtype = npy_layout(self.path)
        self.shape = shape
        self.dtype = dtype or torch.from_numpy(np.empty(0, np_dtype)).dtype
        width = shape[1] if len(shape) == 2 else 1
        self.row_bytes = width * np_dtype.itemsize
        if self.dtype.itemsize != np_dtype.itemsize:
            raise ValueError(f"{self.path} holds {np_dtype} values; dtype {self.dtype} has "
                             "another size")
        self.num_threads = int(num_threads)
        self.native = _native.FeatureFile(str(self.path), offset, shape[0], self.row_bytes,
                                          direct)
        self.disk_rates: Optional[DiskRates] = None
        self.totals: Dict[str, float] = {}
        self.reset_counts()

    @property
    def num_rows(self) -> int:
        return self.shape[0]

    @property
    def direct(self) -> bool:
        """Whether reads bypass the page cache."""
        return bool(self.native.direct)

    def read(self, ids: Tensor, previous: Optional[FeatureCache] = None,
             into: Optional[Tensor] = None) -> FeatureCache:
        """Rows ``ids`` (strictly ascending) as a cache that a gather reads
        them from; rows that ``previous`` holds are copied from it instead
        of read. ``into``: a uint8 tensor of at least the rows' bytes to
        hold them (memory used before is not faulted in again). Counts go to
        :attr:`totals`."""
        ids = torch.as_tensor(ids, dtype=torch.int64).contiguous()
        nbytes = ids.numel() * self.row_bytes
        if into is None or into.dtype != torch.uint8 or into.numel() < nbytes:
            into = torch.empty(nbytes, dtype=torch.uint8)
        out = into[:nbytes]
        rows = out.view(self.dtype).view(ids.numel(), *self.shape[1:])
        stats = self.native.read(ids.numpy(), out.numpy(),
                                 None if previous is None else previous.slot.numpy(),
                                 None if previous is None else _raw(previous.rows),
                                 num_threads=self.num_threads)
        for key, value in stats.items():
            self.totals[key] += value
        return FeatureCache.from_rows(ids, rows, self.num_rows)

    def reset_counts(self) -> None:
        self.totals = {"bytes": 0, "reads": 0, "rows_read": 0, "rows_copied": 0, "seconds": 0.0}

    def measure(self, seconds: float = 1.0) -> DiskRates:
        """Measures the disk under this file (sequential, then random reads,
        ``seconds`` each) and keeps the result in :attr:`disk_rates`."""
        seq = self.native.probe(True, 4 << 20, 8, seconds)
        rand = self.native.probe(False, 4096, 64, seconds)
        self.disk_rates = DiskRates(seq["bytes"] / max(seq["seconds"], 1e-9),
                                    rand["reads"] / max(rand["seconds"], 1e-9))
        return self.disk_rates

    def __repr__(self) -> str:
        return (f"FeatureFile({str(self.path)!r}, {self.num_rows:,} rows x "
                f"{self.row_bytes} bytes, {'direct' if self.direct else 'buffered'})")


def _raw(t: Tensor) -> Any:
    return t.contiguous().view(torch.uint8).numpy() if t.numel() else t.numpy()


__all__ = ["DiskRates", "FeatureFile", "FeatureFileError", "npy_layout"]
