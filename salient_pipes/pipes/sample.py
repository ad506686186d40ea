"""Stage: native parallel neighbor sampling, running ahead of the consumer."""

from __future__ import annotations

import os
from typing import Any, Deque, Dict, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import _native
from salient_pipes._checks import check_fanouts, check_int
from salient_pipes.batch import Adj, PreparedBatch, SampledSubgraph, SampledUnion, SeedBatch
from salient_pipes.data.features import FeatureCache
from salient_pipes.pipes._arrays import as_buffer, as_index, from_buffer
from salient_pipes.pipes._session import Carry, drop_carry, run_session
from salient_pipes.pipes.base import WORKER_PROCESS_ERROR, Stage

GraphLike = Union["_native.CSRGraph", Tuple[Tensor, Tensor], Any]


def default_num_threads() -> int:
    """Sampling threads for this process: the cores it may run on, divided
    among the processes of this node (``LOCAL_WORLD_SIZE``, set by
    ``torchrun``), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local))


def as_graph(graph: GraphLike) -> _native.CSRGraph:
    """A validated native CSR from a FastDataset, a CSRGraph or (rowptr, col)."""
    if isinstance(graph, _native.CSRGraph):
        return graph
    if isinstance(getattr(graph, "graph", None), _native.CSRGraph):
        return graph.graph
    if isinstance(graph, tuple) and len(graph) == 2:
        rowptr, col = graph
        rowptr, col = torch.as_tensor(rowptr), torch.as_tensor(col)
        return _native.CSRGraph(as_buffer(rowptr), as_buffer(col))
    raise TypeError(
        f"expected a FastDataset, CSRGraph or (rowptr, col), got {type(graph).__name__}")


def to_union(n_id: Any, hops: Sequence[Tuple[Any, Any, Tuple[int, int]]],
             payload: Dict[str, Any], disjoint_over: Optional[int] = None,
             x: Optional[Tensor] = None) -> SampledUnion:
    """The hops of a node-wise sample (seeds' hop first) as one subgraph.
    ``disjoint_over``: the graph's node count when ``n_id`` holds disjoint
    sampling's keys (``seed position * num_nodes + node``)."""
    n_id = torch.from_numpy(n_id)
    batch = None
    if disjoint_over is not None:
        batch = torch.div(n_id, disjoint_over, rounding_mode="floor")
        n_id = n_id - batch * disjoint_over
    batch_size = hops[0][2][1] if hops else n_id.numel()
    edges = [torch.from_numpy(ei) for ei, _, _ in hops]
    e_ids = [torch.from_numpy(e) for _, e, _ in hops if e is not None]
    empty = torch.empty(0, dtype=torch.int64)
    return SampledUnion(
        n_id=n_id,
        edge_index=torch.cat(edges, dim=1) if edges else empty.view(2, 0),
        e_id=torch.cat(e_ids) if e_ids else empty,
        num_sampled_nodes=[batch_size] + [num_src - num_dst for _, _, (num_src, num_dst) in hops],
        num_sampled_edges=[ei.shape[1] for ei, _, _ in hops],
        payload=payload, batch=batch, x=x)


def to_adjs(hops: Sequence[Tuple[Any, Any, Tuple[int, int]]]) -> list:
    return [Adj(torch.from_numpy(ei), None if e is None else torch.from_numpy(e), tuple(size))
            for ei, e, size in hops]


@functional_datapipe("sample_neighbors")
class SampleNeighbors(Stage):
    """Samples the multi-hop neighborhood of each seed batch on a pool of
    native threads, up to ``max_in_flight`` batches ahead of the consumer.

    Yields :class:`SampledSubgraph` (``n_id``, ``adjs``): SALIENT's per-hop
    sampling, where every node found so far is a target of the next hop.
    With ``node_wise=True`` it yields :class:`SampledUnion` instead: PyG's
    semantics, each node's neighbors sampled once and the hops joined into
    one subgraph (what ``to_pyg`` and the PyG loaders use); with
    ``disjoint=True`` as well, every seed gets a subgraph of its own (PyG's
    ``disjoint``; ``SampledUnion.batch`` tells them apart). ``fanouts[0]`` is
    the seeds' hop; ``-1`` takes every neighbor. A batch's sample depends only
    on ``(seed, epoch, position in the epoch)``: the same whatever
    ``num_threads``. With ``ordered=False`` batches come as they finish.
    With ``overlap_epochs=True`` (ordered only) the next epoch's first
    batches are sampled while this epoch's last ones are consumed, so a new
    epoch does not begin by waiting for its first batch (the same batches;
    see ``_session.py``).

    The source yields seed tensors, or :class:`SeedBatch` items whose payload
    travels on with the sample (node-wise mode, ordered).

    Example:
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=200, seed=0)
        >>> pipe = NodeIndices(ds.split_idx["train"]).batch_nodes(32).sample_neighbors(ds, [5, 5])
        >>> sub = next(iter(pipe)); sub.adjs[-1].size[1]
        32
    """

    def __new__(cls, source: Any = None, graph: Any = None, *args: Any,
                **kwargs: Any) -> Any:
        # A heterogeneous graph gets the heterogeneous stage (always node-wise).
        if isinstance(getattr(graph, "graph", None), _native.HeteroGraph):
            from salient_pipes.pipes.sample_hetero import SampleHeteroNeighbors

            if not kwargs.pop("node_wise", True):
                raise ValueError("heterogeneous graphs are sampled node-wise (PyG's "
                                 "semantics); node_wise=False does not apply")
            return SampleHeteroNeighbors(source, graph, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, source: IterDataPipe, graph: GraphLike, fanouts: Sequence[int],
                 replace: bool = False, num_threads: Optional[int] = None,
                 max_in_flight: Optional[int] = None, ordered: bool = True, seed: int = 0,
                 return_e_id: bool = False, node_wise: bool = False,
                 disjoint: bool = False, edge_ids: Optional[Tensor] = None,
                 overlap_epochs: bool = False) -> None:
        super().__init__(source)
        self.graph = as_graph(graph)
        self.fanouts = check_fanouts(fanouts)
        self.replace, self.ordered = bool(replace), bool(ordered)
        self.seed = check_int("seed", seed, minimum=0)
        self.return_e_id = bool(return_e_id)
        self.node_wise = bool(node_wise)
        self.disjoint = bool(disjoint)
        if self.disjoint and not self.node_wise:
            raise ValueError("disjoint=True needs node_wise=True")
        # e_id reports edge_ids[position in col] instead of the position
        self.edge_ids = None if edge_ids is None else torch.as_tensor(edge_ids)
        self.num_threads = default_num_threads() if num_threads is None else \
            check_int("num_threads", num_threads, minimum=1)
        self.max_in_flight = 2 * self.num_threads if max_in_flight is None else \
            check_int("max_in_flight", max_in_flight, minimum=1)
        self._session_key: Optional[Tuple[int, int]] = None
        self._session: Optional[_native.Session] = None
        self._busy: Optional[_native.Session] = None  # the session an open iteration uses
        self.overlap_epochs = bool(overlap_epochs)
        self._carry: Optional[Carry] = None  # the next epoch's batches, begun early
        self._source_ahead = False  # the source began an epoch for a carry
        self._fail_at = -1  # see _inject_failure
        self._session_for(None, None)  # validates fanouts and thread count now

    def __getstate__(self) -> Dict[str, Any]:
        # torch's graph traversal pickles stages through a hook that keeps
        # only their upstream pipes; any other pickling (a DataLoader sending
        # the pipe to spawned workers, a deepcopy) cannot carry native threads.
        if IterDataPipe.getstate_hook is not None:
            return super().__getstate__()
        raise TypeError(WORKER_PROCESS_ERROR + " (the sampling stage holds native threads "
                        "and cannot be pickled or copied)")

    def _inject_failure(self, position: int) -> None:
        """Test hook: the native worker raises on batch ``position`` of each
        epoch from now on (-1: never)."""
        drop_carry(self)
        self._fail_at, self._session = position, None

    def _session_for(self, x: Optional[Tensor], y: Optional[Tensor],
                     cache: Optional[FeatureCache] = None,
                     pinned: Optional[Any] = None) -> _native.Session:
        """The session for this iteration: the pipe's persistent one, unless
        an earlier iteration that was abandoned without being closed (say, its
        iterator is still held by a traceback) still owns it. Then this
        iteration gets a fresh session and the two never share a queue."""
        key = (id(x), id(y), id(cache), id(pinned))
        if self._session is None or key != self._session_key or self._busy is self._session:
            if self._busy is not self._session:
                drop_carry(self)
                self._session = None  # joins the idle workers before starting new ones
            self._session = _native.open_session(
                _native.Session, self.graph, self.fanouts, replace=self.replace,
                return_e_id=self.return_e_id,
                seed=self.seed, x=None if x is None else as_buffer(x),
                y=None if y is None else as_buffer(y), num_threads=self.num_threads,
                ordered=self.ordered, fail_at_position=self._fail_at,
                x_cache=None if cache is None else cache.native, node_wise=self.node_wise,
                disjoint=self.disjoint,
                edge_ids=None if self.edge_ids is None else as_buffer(self.edge_ids),
                pinned=None if pinned is None else pinned.native)
            self._session_key = key
        return self._session

    def _generate(self, epoch: int, start: int, x: Optional[Tensor] = None,
                  y: Optional[Tensor] = None, cache: Optional[FeatureCache] = None,
                  pinned: Optional[Any] = None, **options: Any) -> Iterator[Any]:
        return run_session(self, self._session_for(x, y, cache, pinned), epoch, start,
                           lambda item, payloads: as_index(self._seeds_of(item, payloads)),
                           lambda result, payloads: self._wrap(result, x, y, payloads))

    def _seeds_of(self, item: Any, payloads: Deque[Dict[str, Any]]) -> Any:
        if not isinstance(item, SeedBatch):
            if self.ordered:
                payloads.append({})
            return item
        if not (self.node_wise and self.ordered):
            raise ValueError("a SeedBatch's payload travels with node-wise, ordered sampling "
                             "only (sample_neighbors(..., node_wise=True, ordered=True))")
        payloads.append(item.payload)
        return item.seeds

    def _wrap(self, result: tuple, x: Optional[Tensor], y: Optional[Tensor],
              payloads: Deque[Dict[str, Any]]) -> Any:
        n_id, hops, xs, ys = result
        payload = payloads.popleft() if self.ordered else {}
        if self.node_wise:
            return to_union(n_id, hops, payload, self.graph.num_nodes if self.disjoint else None,
                            None if x is None else from_buffer(xs, x.dtype))
        adjs = to_adjs(hops)
        if x is None:
            return SampledSubgraph(torch.from_numpy(n_id), adjs)
        return PreparedBatch(x=from_buffer(xs, x.dtype),
                             y=None if y is None else from_buffer(ys, y.dtype),
                             adjs=adjs, n_id=torch.from_numpy(n_id))

    def _prepared(self, x: Tensor, y: Optional[Tensor],
                  cache: Optional[FeatureCache] = None,
                  pinned: Optional[Any] = None) -> Iterator[PreparedBatch]:
        """This stage's epoch with features gathered inside the workers
        (into ``pinned``'s slots when it has a free one)."""
        return self._run({"x": x, "y": y, "cache": cache, "pinned": pinned})

    def __len__(self) -> int:
        return len(self.source)
