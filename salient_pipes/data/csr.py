"""CSRs built in memory from edge lists, and the sizes read off one.

Row ``v`` of a CSR lists the nodes whose messages flow into ``v`` (PyG's
``adj_t``), sorted and deduplicated. Graphs larger than memory are built by
:mod:`salient_pipes.data.build` instead, with the same result.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

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
    edge_index = torch.as_tensor(edge_index, dtype=torch.int64)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    src, dst = edge_index
    if to_undirected:
        src, dst = torch.cat([src, dst]), torch.cat([dst, src])
    return typed_csr(torch.stack([src, dst]), num_nodes, num_nodes)  # checks the ids


def typed_csr(edge_index: Tensor, num_src: int, num_dst: int) -> Tuple[Tensor, Tensor]:
    """The CSR of one edge type from its ``[2, E]`` (source, destination)
    pairs: row ``v`` lists the sources of the edges into destination ``v``,
    sorted and deduplicated.

    Example:
        >>> rowptr, col = typed_csr(torch.tensor([[0, 2, 2], [1, 0, 1]]), num_src=3, num_dst=2)
        >>> rowptr.tolist(), col.tolist()
        ([0, 1, 3], [2, 0, 2])
    """
    edge_index = torch.as_tensor(edge_index)
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
        raise ValueError(f"edge_index must be an integer tensor of shape [2, E], "
                         f"got {edge_index.dtype} {tuple(edge_index.shape)}")
    src, dst = edge_index.to(torch.int64)
    if src.numel() and (int(src.min()) < 0 or int(src.max()) >= num_src):
        raise ValueError(f"edge_index[0] holds source ids outside [0, {num_src})")
    if dst.numel() and (int(dst.min()) < 0 or int(dst.max()) >= num_dst):
        raise ValueError(f"edge_index[1] holds destination ids outside [0, {num_dst})")
    key = torch.unique(dst * max(num_src, 1) + src)
    row = key // max(num_src, 1)
    rowptr = torch.zeros(num_dst + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(row, minlength=num_dst), 0, out=rowptr[1:])
    col = key - row * max(num_src, 1)
    return huge_pages(rowptr), huge_pages(col.to(torch.int32 if num_src < 2**31 else torch.int64))


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


__all__ = ["CSRViews", "csr_from_edge_index", "typed_csr"]
