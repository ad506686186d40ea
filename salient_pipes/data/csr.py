"""CSRs built in memory from edge lists, the sizes read off one, and the
values a CSR may carry per position (edge weights and times) or per node
(times), checked.

Row ``v`` of a CSR lists the nodes whose messages flow into ``v`` (PyG's
``adj_t``), sorted and deduplicated. Graphs larger than memory are built by
:mod:`salient_pipes.data.build` instead, with the same result.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, overload

import numpy as np
import torch
from torch import Tensor

from salient_pipes import _native
from salient_pipes.data.memory import huge_pages


def csr_from_edge_index(
    edge_index: Tensor, num_nodes: int, *, to_undirected: bool = True
) -> Tuple[Tensor, Tensor]:
    """Builds a CSR (``rowptr`` int64, ``col`` int32/int64) from a ``[2, E]``
    ``edge_index`` of (source, target) pairs.

    Row ``v`` lists the sources of edges into ``v`` (PyG's ``adj_t``), sorted
    and deduplicated; with ``to_undirected`` every edge is taken both ways.

    Example:
        >>> rowptr, col = csr_from_edge_index(torch.tensor([[0, 1], [1, 2]]), 3)
        >>> rowptr.tolist(), col.tolist()
        ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    return _csr(*_pairs(edge_index), num_nodes, num_nodes, to_undirected)[:2]


def typed_csr(edge_index: Tensor, num_src: int, num_dst: int) -> Tuple[Tensor, Tensor]:
    """The CSR of one edge type from its ``[2, E]`` (source, destination)
    pairs: row ``v`` lists the sources of the edges into destination ``v``,
    sorted and deduplicated.

    Example:
        >>> rowptr, col = typed_csr(torch.tensor([[0, 2, 2], [1, 0, 1]]), num_src=3, num_dst=2)
        >>> rowptr.tolist(), col.tolist()
        ([0, 1, 3], [2, 0, 2])
    """
    return _csr(*_pairs(edge_index), num_src, num_dst, undirected=False)[:2]


def _pairs(edge_index: Any) -> Tuple[np.ndarray, np.ndarray]:
    """``edge_index`` (a ``[2, E]`` tensor, array or nested list of integer
    ids, on any device) as int64 source and target arrays in host memory."""
    edge_index = torch.as_tensor(edge_index)
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point() \
            or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise ValueError(f"edge_index must be an integer tensor of shape [2, E], got "
                         f"{_describe(edge_index)}")
    src, dst = edge_index.to(device="cpu", dtype=torch.int64)
    return src.contiguous().numpy(), dst.contiguous().numpy()


def _csr(src_ids: np.ndarray, dst_ids: np.ndarray, num_src: int, num_dst: int,
         undirected: bool, *, keep_edges: bool = False, time: Optional[Tensor] = None
         ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The CSR of (source, target) pairs (with ``undirected``, each taken
    both ways; ``num_src == num_dst`` then), built by the native core as the
    bounded build's one bucket: ids checked and rows counted, then filled
    and sorted on every core. Rows are deduplicated, or with ``keep_edges``
    every entry is kept, rows sorted by ``time`` (one per input edge) when
    given, and the third result maps each position to its input edge."""
    if undirected and num_src != num_dst:
        raise ValueError("an undirected CSR needs sources and targets of one node set")
    bipartite = -1 if undirected else num_src
    counts = np.zeros(num_dst + 1, dtype=np.int64)
    _native.csr_count(src_ids, dst_ids, num_dst, undirected, counts, bipartite)
    raw = counts[1:].copy()
    col = np.empty(int(raw.sum()), dtype=np.int32 if num_src < 2**31 else np.int64)
    edge_of = np.empty(col.shape[0], dtype=np.int64) if keep_edges else None
    degree = np.empty(num_dst, dtype=np.int64)
    written = _native.csr_fill(src_ids, dst_ids, num_dst, undirected, 0, num_dst, raw, col,
                               degree, torch.get_num_threads(), bipartite, edge_of,
                               None if time is None else time.numpy())
    rowptr = torch.zeros(num_dst + 1, dtype=torch.int64)
    torch.cumsum(torch.from_numpy(degree), 0, out=rowptr[1:])
    return (huge_pages(rowptr), huge_pages(torch.from_numpy(col[:written])),
            None if edge_of is None else torch.from_numpy(edge_of))


def csr_with_attributes(edge_index: Tensor, num_nodes: int, per_edge: Dict[str, Tensor],
                        to_undirected: bool, num_src: Optional[int] = None
                        ) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
    """A CSR of every edge (none merged; with ``to_undirected`` each both
    ways, a self-loop once) and its per-edge attributes in CSR order: rows
    by target (``num_nodes`` of them; ``num_src``: the sources' count when
    they are another node set), within a row by ``edge_time`` when given,
    then by source, then by input edge: the bounded build's order, from the
    same native passes (rows filled and sorted on every core).

    Example:
        >>> rowptr, col, kept = csr_with_attributes(
        ...     torch.tensor([[0, 2, 1], [1, 1, 2]]), 3,
        ...     {"edge_time": torch.tensor([7, 3, 5])}, to_undirected=False)
        >>> rowptr.tolist(), col.tolist(), kept["edge_time"].tolist()
        ([0, 0, 2, 3], [2, 0, 1], [3, 7, 5])
    """
    src_ids, dst_ids = _pairs(edge_index)
    num_edges = src_ids.shape[0]
    for name, value in per_edge.items():
        if not isinstance(value, Tensor) or value.dim() != 1 or value.numel() != num_edges:
            raise ValueError(f"{name} must be a 1-D tensor of one value per edge "
                             f"({num_edges}), got {_describe(value)}")
    per_edge = {k: v.cpu() for k, v in per_edge.items()}
    time = times("edge_time", per_edge.get("edge_time"), num_edges)  # sorts rows first
    if time is not None:
        per_edge["edge_time"] = time
    rowptr, col, edge_of = _csr(src_ids, dst_ids, num_nodes if num_src is None else num_src,
                                num_nodes, to_undirected, keep_edges=True, time=time)
    assert edge_of is not None
    return rowptr, col, {k: v.index_select(0, edge_of) for k, v in per_edge.items()}


def sort_rows_by_time(rowptr: Tensor, edge_time: Tensor) -> Tensor:
    """The order of CSR positions that sorts each row by ``edge_time``
    (stable): apply it to ``col`` and to every per-position array.

    Example:
        >>> order = sort_rows_by_time(torch.tensor([0, 3, 4]), torch.tensor([5, 1, 3, 0]))
        >>> order.tolist()
        [1, 2, 0, 3]
    """
    rows = torch.repeat_interleave(torch.arange(rowptr.numel() - 1), rowptr.diff())
    order = torch.argsort(edge_time, stable=True)
    return order[torch.argsort(rows[order], stable=True)]


# What a dataset may carry besides its CSR, features and labels: per CSR
# position (weights, times) and per node (times).
CARRIED = ("edge_weight", "edge_time", "node_time")

# Our split names and the masks PyG's data objects hold them in (both ways:
# from_pyg reads them, HeteroDataset.to_pyg writes them).
PYG_MASKS = {"train": "train_mask", "valid": "val_mask", "test": "test_mask"}


def first_bad_weight(weight: Tensor) -> Optional[int]:
    """The first position of ``weight`` that is negative, NaN or infinite
    (what no sampler takes), or None.

    Example:
        >>> first_bad_weight(torch.tensor([1.0, 0.0, -2.0])), first_bad_weight(torch.ones(3))
        (2, None)
    """
    bad = ~torch.isfinite(weight) | (weight < 0)
    return int(bad.nonzero()[0]) if bool(bad.any()) else None


@overload
def edge_weights(weight: None, num_edges: int, validate: bool, name: str = ...) -> None: ...
@overload
def edge_weights(weight: Tensor, num_edges: int, validate: bool, name: str = ...) -> Tensor: ...
def edge_weights(weight: Optional[Tensor], num_edges: int, validate: bool,
                 name: str = "edge_weight") -> Optional[Tensor]:
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or weight.dim() != 1 or not weight.is_floating_point() \
            or weight.numel() != num_edges:
        raise ValueError(f"{name} must be a 1-D float tensor of one weight per edge "
                         f"({num_edges}), got {_describe(weight)}")
    i = first_bad_weight(weight) if validate else None
    if i is not None:
        raise ValueError(f"{name} holds {float(weight[i])} at CSR position {i}: "
                         "weights must be finite and >= 0")
    return weight.contiguous()


@overload
def times(name: str, times: None, count: int) -> None: ...
@overload
def times(name: str, times: Tensor, count: int) -> Tensor: ...
def times(name: str, times: Optional[Tensor], count: int) -> Optional[Tensor]:
    if times is None:
        return None
    if not isinstance(times, Tensor) or times.dim() != 1 or times.is_floating_point() \
            or times.dtype == torch.bool or times.numel() != count:
        raise ValueError(f"{name} must be a 1-D integer tensor of {count} times, "
                         f"got {_describe(times)}")
    return times.to(torch.int64).contiguous()


def check_rows_ascend(rowptr: Tensor, edge_time: Tensor, name: str = "edge_time") -> None:
    if edge_time.numel() < 2:
        return
    falls = edge_time[1:] < edge_time[:-1]
    falls[rowptr[1:-1][(rowptr[1:-1] > 0) & (rowptr[1:-1] < edge_time.numel())] - 1] = False
    if bool(falls.any()):
        p = int(falls.nonzero()[0]) + 1
        raise ValueError(f"{name} must ascend within each CSR row, but position {p} holds "
                         f"{int(edge_time[p])} after {int(edge_time[p - 1])} "
                         "(reorder each row with sort_rows_by_time)")


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"{str(value.dtype).replace('torch.', '')} of shape {tuple(value.shape)}"
    return type(value).__name__


class CSRViews:
    """Sizes read off ``rowptr``, ``col`` and ``x`` (which the subclass sets)."""

    rowptr: Tensor
    col: Tensor
    x: Tensor

    @property
    def num_nodes(self) -> int:
        return self.rowptr.numel() - 1

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @property
    def num_features(self) -> int:
        return self.x.size(1)


__all__ = ["CARRIED", "CSRViews", "PYG_MASKS", "check_rows_ascend", "csr_from_edge_index",
           "csr_with_attributes", "edge_weights", "first_bad_weight", "sort_rows_by_time", "times",
           "typed_csr"]
