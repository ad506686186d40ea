"""Stage: batches of labelled edges, with negatives, become seed nodes."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import _native
from salient_pipes._checks import check_input_id, check_int
from salient_pipes.batch import EDGE_TYPE, SeedBatch
from salient_pipes.pipes.base import Stage

NEGATIVE_MODES = ("binary", "triplet")


@functional_datapipe("seed_edges")
class SeedEdges(Stage):
    """Turns each batch of positions in ``edge_label_index`` (``[2, L]``)
    into the seed nodes of link prediction, as PyG's ``LinkNeighborLoader``:

    - ``neg_sampling=None``: the batch's edges; payload ``input_id`` (the
      positions, or ``input_id[positions]`` when given), ``edge_label_index``
      (local ids) and ``edge_label`` (when given).
    - ``"binary"``: ``ceil(amount * B)`` random (source, destination) pairs
      join them with label 0 (given labels that start at 0 are shifted by 1,
      as PyG does, so that 0 means negative; without labels positives get 1).
    - ``"triplet"``: ``ceil(amount)`` random destinations per edge; payload
      ``src_index``, ``dst_pos_index``, ``dst_neg_index`` (``[B]`` or
      ``[B, ceil(amount)]``).

    Seeds are a dict of ids per node type, and the payload names the
    ``edge_type`` (a graph without types has one,
    :data:`~salient_pipes.batch.EDGE_TYPE`).

    Seeds are the distinct endpoints, sorted; with ``disjoint=True`` every
    endpoint is a seed of its own (for disjoint sampling, as PyG lays it
    out: with endpoints of two node types, the i-th source and the i-th
    destination share subgraph i). Negatives are drawn by the
    native core from a stream keyed by ``(seed, epoch, batch position)``:
    the same on every run and resume, whatever the thread count.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> eli = torch.tensor([[0, 2], [1, 3]])
        >>> pipe = NodeIndices(torch.arange(2)).batch_nodes(2).seed_edges(eli, num_nodes=4)
        >>> b = next(iter(pipe)); b.seeds["_N"].tolist(), b.payload["edge_label_index"].tolist()
        ([0, 1, 2, 3], [[0, 2], [1, 3]])
    """

    def __init__(self, source: IterDataPipe, edge_label_index: Tensor, num_nodes: int,
                 edge_label: Optional[Tensor] = None, neg_sampling: Optional[str] = None,
                 amount: float = 1.0, seed: int = 0, disjoint: bool = False,
                 edge_type: Optional[Tuple[str, str, str]] = None,
                 num_dst_nodes: Optional[int] = None, input_id: Optional[Tensor] = None) -> None:
        super().__init__(source)
        self.num_nodes = check_int("num_nodes", num_nodes, minimum=1)
        # Sources are ids of edge_type[0] (num_nodes of them), destinations
        # of edge_type[2] (num_dst_nodes).
        self.edge_type = EDGE_TYPE if edge_type is None else tuple(edge_type)
        self.num_dst_nodes = self.num_nodes if num_dst_nodes is None else \
            check_int("num_dst_nodes", num_dst_nodes, minimum=1)
        eli = torch.as_tensor(edge_label_index)
        if eli.dim() != 2 or eli.size(0) != 2 or eli.is_floating_point() or \
                eli.dtype == torch.bool:
            raise ValueError(f"edge_label_index must be an integer tensor of shape [2, L], "
                             f"got {eli.dtype} {tuple(eli.shape)}")
        eli = eli.to(torch.int64)
        for row, bound in ((0, self.num_nodes), (1, self.num_dst_nodes)):
            ids = eli[row]
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= bound):
                raise ValueError(f"edge_label_index[{row}] holds node ids outside [0, {bound})")
        if edge_label is not None:
            edge_label = torch.as_tensor(edge_label)
            if edge_label.size(0) != eli.size(1):
                raise ValueError(f"edge_label has {edge_label.size(0)} entries but "
                                 f"edge_label_index has {eli.size(1)} edges")
        if neg_sampling is not None and neg_sampling not in NEGATIVE_MODES:
            raise ValueError(f"neg_sampling must be None, 'binary' or 'triplet', "
                             f"got {neg_sampling!r}")
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or amount <= 0:
            raise ValueError(f"the negative sampling amount must be a number > 0, got {amount!r}")
        if neg_sampling == "triplet" and edge_label is not None:
            raise ValueError("edge_label must be None for triplet negative sampling: the batch's "
                             "src_index, dst_pos_index and dst_neg_index tell positives from "
                             "negatives")
        if neg_sampling == "binary" and edge_label is not None and edge_label.numel() and \
                int(edge_label.min()) == 0:
            edge_label = edge_label + 1  # 0 now means "negative"
        self.edge_label_index, self.edge_label = eli, edge_label
        self.input_id = None if input_id is None else \
            check_input_id(input_id, eli.size(1), "edge_label_index")
        self.neg_sampling, self.amount = neg_sampling, float(amount)
        self.seed = check_int("seed", seed, minimum=0)
        self.disjoint = bool(disjoint)

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[SeedBatch]:
        for position, index in enumerate(self.source, start):
            yield self._seeds(index, epoch, position)

    def _negatives(self, count: int, epoch: int, position: int, dst: bool = False) -> Tensor:
        if dst and self.num_dst_nodes != self.num_nodes:  # another node type: its own stream
            return torch.from_numpy(_native.random_nodes(count, self.num_dst_nodes, self.seed,
                                                         epoch, position | (1 << 63)))
        return torch.from_numpy(_native.random_nodes(count, self.num_nodes, self.seed, epoch,
                                                     position))

    def _seeds(self, index: Tensor, epoch: int, position: int) -> SeedBatch:
        src, dst = self.edge_label_index[:, index]
        label = None if self.edge_label is None else self.edge_label[index]
        num_pos = index.numel()
        payload: Dict[str, Any] = {
            "input_id": index if self.input_id is None else self.input_id[index]}
        if self.neg_sampling == "binary":
            num_neg = math.ceil(num_pos * self.amount)
            if self.num_dst_nodes == self.num_nodes:
                neg = self._negatives(2 * num_neg, epoch, position)
                neg_src, neg_dst = neg[:num_neg], neg[num_neg:]
            else:
                neg_src = self._negatives(num_neg, epoch, position)
                neg_dst = self._negatives(num_neg, epoch, position, dst=True)
            src, dst = torch.cat([src, neg_src]), torch.cat([dst, neg_dst])
            if label is None:
                label = torch.ones(num_pos)
            label = torch.cat([label, label.new_zeros((num_neg,) + label.shape[1:])])
        elif self.neg_sampling == "triplet":
            per_edge = math.ceil(self.amount)
            dst = torch.cat([dst, self._negatives(per_edge * num_pos, epoch, position,
                                                  dst=True)])
        payload["input_edge_type"] = self.edge_type
        if self.disjoint:
            return self._disjoint(src, dst, num_pos, label, payload)
        if self.edge_type[0] != self.edge_type[2]:
            return self._bipartite(src, dst, num_pos, label, payload)
        seeds, inverse = torch.cat([src, dst]).unique(return_inverse=True)
        if self.neg_sampling == "triplet":
            payload["src_index"] = inverse[:num_pos]
            payload["dst_pos_index"] = inverse[num_pos:2 * num_pos]
            payload["dst_neg_index"] = inverse[2 * num_pos:].view(num_pos, -1).squeeze(-1)
        else:
            payload["edge_label_index"] = inverse.view(2, -1)
            if label is not None:
                payload["edge_label"] = label
        return SeedBatch({self.edge_type[0]: seeds}, payload)

    def _bipartite(self, src: Tensor, dst: Tensor, num_pos: int, label: Optional[Tensor],
                   payload: Dict[str, Any]) -> SeedBatch:
        # Endpoints of two node types: seeds of each, local ids per type.
        src_seeds, src_local = src.unique(return_inverse=True)
        dst_seeds, dst_local = dst.unique(return_inverse=True)
        if self.neg_sampling == "triplet":
            payload["src_index"] = src_local
            payload["dst_pos_index"] = dst_local[:num_pos]
            payload["dst_neg_index"] = dst_local[num_pos:].view(num_pos, -1).squeeze(-1)
        else:
            payload["edge_label_index"] = torch.stack([src_local, dst_local])
            if label is not None:
                payload["edge_label"] = label
        return SeedBatch({self.edge_type[0]: src_seeds, self.edge_type[2]: dst_seeds}, payload)

    def _disjoint(self, src: Tensor, dst: Tensor, num_pos: int, label: Optional[Tensor],
                  payload: Dict[str, Any]) -> SeedBatch:
        # Every endpoint its own seed, numbered as PyG numbers them: with
        # endpoints of one node type, the destinations follow the sources
        # in one seed list; of two types, each type has its own list, so
        # the i-th source and the i-th destination share subgraph i. A
        # node's subgraph belongs to edge (subgraph index mod batch size).
        bipartite = self.edge_type[0] != self.edge_type[2]
        first_dst = 0 if bipartite else src.numel()  # the destinations' first seed index
        dst_index = torch.arange(first_dst, first_dst + dst.numel())
        payload["disjoint_groups"] = num_pos
        if self.neg_sampling == "triplet":
            payload["src_index"] = torch.arange(num_pos)
            payload["dst_pos_index"] = dst_index[:num_pos]
            negatives = dst_index[num_pos:].view(-1, num_pos).t()
            payload["dst_neg_index"] = negatives.contiguous().squeeze(-1)
        else:
            payload["edge_label_index"] = torch.stack([torch.arange(src.numel()), dst_index])
            if label is not None:
                payload["edge_label"] = label
        seeds = {self.edge_type[0]: src, self.edge_type[2]: dst} if bipartite else \
            {self.edge_type[0]: torch.cat([src, dst])}
        return SeedBatch(seeds, payload)

    def __len__(self) -> int:
        return len(self.source)
