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
from salient_pipes.data.csr import first_bad_weight
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
                 num_dst_nodes: Optional[int] = None, input_id: Optional[Tensor] = None,
                 edge_label_time: Optional[Tensor] = None,
                 src_node_time: Optional[Tensor] = None,
                 dst_node_time: Optional[Tensor] = None,
                 src_weight: Optional[Tensor] = None,
                 dst_weight: Optional[Tensor] = None) -> None:
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
        self.edge_label_time = None
        if edge_label_time is not None:
            self.edge_label_time = torch.as_tensor(edge_label_time)
            if self.edge_label_time.shape != (eli.size(1),) or \
                    self.edge_label_time.is_floating_point():
                raise ValueError(f"edge_label_time must hold one integer time per edge of "
                                 f"edge_label_index ({eli.size(1)}), got "
                                 f"{self.edge_label_time.dtype} of shape "
                                 f"{tuple(self.edge_label_time.shape)}")
            self.edge_label_time = self.edge_label_time.to(torch.int64)
            if not self.disjoint:
                raise ValueError("temporal link batches are disjoint (each subgraph has its "
                                 "edge's time): pass disjoint=True")
        # Negatives drawn in proportion to node weights (PyG's src_weight/dst_weight).
        self.cumulative = (_running_sums(src_weight, self.num_nodes, "src_weight"),
                           _running_sums(dst_weight, self.num_dst_nodes, "dst_weight"))
        # Node times of the two ends: negatives later than their edge's time are redrawn.
        self.node_time = (None if src_node_time is None else torch.as_tensor(src_node_time),
                          None if dst_node_time is None else torch.as_tensor(dst_node_time))
        if any(t is not None for t in self.node_time) and self.edge_label_time is None:
            raise ValueError("node times filter negatives by their edge's time: give "
                             "edge_label_time too")

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[SeedBatch]:
        for position, index in enumerate(self.source, start):
            yield self._seeds(index, epoch, position)

    def _negatives(self, count: int, epoch: int, position: int, dst: bool = False) -> Tensor:
        cumulative = self.cumulative[int(dst)]
        if dst and (self.num_dst_nodes != self.num_nodes or cumulative is not None):
            position |= 1 << 63  # another node type or distribution: its own stream
        return torch.from_numpy(_native.random_nodes(
            count, self.num_dst_nodes if dst else self.num_nodes, self.seed, epoch, position,
            cumulative))

    def _valid_negatives(self, neg: Tensor, time: Tensor, end: int, epoch: int,
                         position: int) -> Tensor:
        """Negatives no later than their edge's ``time`` when the end's node
        times are known, as PyG draws them: invalid ones are redrawn up to
        five times, then replaced by the earliest node."""
        node_time = self.node_time[end]
        if node_time is None:
            return neg
        bound = self.num_nodes if end == 0 else self.num_dst_nodes
        invalid = node_time[neg] > time
        for round_ in range(1, 6):
            count = int(invalid.sum())
            if count == 0:
                return neg
            redraw = torch.from_numpy(_native.random_nodes(
                count, bound, self.seed ^ (round_ << 56) ^ (end << 55), epoch, position,
                self.cumulative[end]))
            neg[invalid] = redraw
            invalid[invalid.clone()] = node_time[redraw] > time[invalid]
        neg[invalid] = int(node_time.argmin())
        return neg

    def _seeds(self, index: Tensor, epoch: int, position: int) -> SeedBatch:
        src, dst = self.edge_label_index[:, index]
        label = None if self.edge_label is None else self.edge_label[index]
        num_pos = index.numel()
        time = None if self.edge_label_time is None else self.edge_label_time[index]
        payload: Dict[str, Any] = {
            "input_id": index if self.input_id is None else self.input_id[index]}
        if self.neg_sampling == "binary":
            num_neg = math.ceil(num_pos * self.amount)
            if self.num_dst_nodes == self.num_nodes and all(c is None for c in self.cumulative):
                neg = self._negatives(2 * num_neg, epoch, position)
                neg_src, neg_dst = neg[:num_neg], neg[num_neg:]
            else:
                neg_src = self._negatives(num_neg, epoch, position)
                neg_dst = self._negatives(num_neg, epoch, position, dst=True)
            if time is not None:  # the positives' times, repeated, as PyG does
                time = time.repeat(1 + math.ceil(self.amount))[:num_pos + num_neg]
                neg_src = self._valid_negatives(neg_src, time[num_pos:], 0, epoch, position)
                neg_dst = self._valid_negatives(neg_dst, time[num_pos:], 1, epoch, position)
            src, dst = torch.cat([src, neg_src]), torch.cat([dst, neg_dst])
            if label is None:
                label = torch.ones(num_pos)
            label = torch.cat([label, label.new_zeros((num_neg,) + label.shape[1:])])
        elif self.neg_sampling == "triplet":
            per_edge = math.ceil(self.amount)
            neg = self._negatives(per_edge * num_pos, epoch, position, dst=True)
            if time is not None:
                neg = self._valid_negatives(neg, time.repeat(per_edge), 1, epoch, position)
            dst = torch.cat([dst, neg])
        payload["input_edge_type"] = self.edge_type
        if time is not None:
            self._times(payload, time, src.numel(), dst.numel())
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

    def _times(self, payload: Dict[str, Any], time: Tensor, num_src: int, num_dst: int) -> None:
        """Seed times, as PyG lays them out: ``edge_label_time`` per labelled
        edge (or ``seed_time`` per triplet), and per disjoint subgraph the
        time the sampler bounds it by (``subgraph_time``)."""
        src_time = time[:num_src]
        dst_time = time.repeat(-(-num_dst // time.numel()))[:num_dst] if time.numel() else time
        payload["seed_time" if self.neg_sampling == "triplet" else "edge_label_time"] = src_time
        if self.edge_type[0] != self.edge_type[2]:  # subgraph i: the i-th of each end
            payload["subgraph_time"] = dst_time if num_dst >= num_src else src_time
        else:  # sources, then destinations, each its own subgraph
            payload["subgraph_time"] = torch.cat([src_time, dst_time])

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


def _running_sums(weight: Optional[Tensor], num_nodes: int, name: str) -> Optional[Any]:
    """Node weights as the running sums the native draw searches, checked."""
    if weight is None:
        return None
    w = torch.as_tensor(weight).to(torch.float64)
    if w.shape != (num_nodes,):
        raise ValueError(f"{name} must hold one weight per node ({num_nodes}), got shape "
                         f"{tuple(w.shape)}")
    if first_bad_weight(w) is not None or not bool((w > 0).any()):
        raise ValueError(f"{name} must be finite, >= 0 and not all 0")
    return torch.cumsum(w, 0).numpy()
