"""Stage: native parallel neighbor sampling, running ahead of the consumer,
of a graph with any number of node and edge types."""

from __future__ import annotations

import os
from typing import Any, Deque, Dict, Iterator, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import _native
from salient_pipes._checks import check_int
from salient_pipes.batch import Adj, NodeWiseBatch, PreparedBatch, SampledSubgraph, SeedBatch
from salient_pipes.pipes._arrays import as_buffer, as_index, from_buffer
from salient_pipes.pipes._epoch_overlap import Carry, drop_carry, run_session
from salient_pipes.pipes.base import WORKER_PROCESS_ERROR, Stage
from salient_pipes.pipes.schema import Fanouts, fanouts_per_edge_type, per_type, schema_of

NodeAttrs = Mapping[str, Mapping[str, Tensor]]  # {node type: {name: one row per node}}


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


def _identity(value: Any) -> Any:
    """What a session is built for: the objects themselves, not the dicts
    that hold them (made anew for every epoch)."""
    if isinstance(value, Mapping):
        return tuple((k, _identity(v)) for k, v in value.items())
    return id(value)


def per_edge_type(value: Any, schema: Any, name: str, dtype: torch.dtype
                  ) -> Optional[Dict[Any, Tensor]]:
    """``value`` (a tensor for a graph of one edge type, or a dict per edge
    type) as a dict of 1-D tensors of ``dtype``, checked against the edge
    types."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        if len(schema.edge_types) != 1:
            raise ValueError(f"{name} of a graph with edge types {schema.edge_types} must be a "
                             "dict per edge type")
        value = {schema.edge_types[0]: value}
    out = {}
    for e, v in value.items():
        e = tuple(e)
        if e not in schema.edge_types:
            raise ValueError(f"{name} names edge type {e!r}, which the graph does not have; its "
                             f"edge types: {schema.edge_types}")
        v = torch.as_tensor(v)
        if v.dim() != 1:
            raise ValueError(f"{name} must be 1-D (one value per edge), got shape "
                             f"{tuple(v.shape)}")
        if dtype == torch.int64 and (v.is_floating_point() or v.dtype == torch.bool):
            raise ValueError(f"{name} must hold integers, got {v.dtype}")
        out[e] = v.to(dtype).contiguous()
    return out


def _per_position(value: Optional[Dict[Any, Tensor]], edge_types: Any) -> Any:
    if not value:
        return None
    return [as_buffer(value[e]) if e in value else None for e in edge_types]


def _rows(v: Tensor) -> Tensor:
    """``v`` as a 1-D or 2-D table with one row per node."""
    return v if v.dim() <= 2 else v.reshape(v.size(0), -1)


@functional_datapipe("sample_neighbors")
class SampleNeighbors(Stage):
    """Samples the neighborhood of each seed batch on a pool of native
    threads, up to ``max_in_flight`` batches ahead of the consumer. A batch's
    sample depends only on ``(seed, epoch, position in the epoch)``: the
    same whatever ``num_threads``; with ``ordered=False`` batches come as
    they finish.

    Args:
        source: yields seed tensors, or :class:`SeedBatch` items whose
            payload travels on with the sample (node-wise, ordered).
        graph: a FastDataset, HeteroDataset or PartitionedDataset, a
            ``CSRGraph``, ``(rowptr, col)``, or a PyG graph's CSC
            (``salient_pipes.pyg.csc_of``/``hetero_csc_of``).
        fanouts: neighbors per hop, the seeds' hop first (``-1``: all); for
            a graph with several edge types a list for every edge type or a
            dict per edge type (a missing edge type is not sampled).
        node_wise: PyG's semantics (each node's neighbors sampled once, the
            hops joined into one subgraph): yields :class:`NodeWiseBatch`.
            Otherwise SALIENT's per-hop sampling (every node found so far
            is a target of the next hop), for graphs of one type: yields
            :class:`SampledSubgraph` (``n_id``, ``adjs``). Default: per-hop
            for a graph of one type, node-wise otherwise.
        replace: sample with replacement.
        num_threads: native sampling threads (default: :func:`default_num_threads`).
        max_in_flight: batches submitted ahead (default: ``2 * num_threads``).
        ordered: deliver in submission order.
        seed: the random stream's seed.
        return_e_id: report the sampled edges' positions in the CSR (or the
            ``edge_ids`` given).
        disjoint: node-wise only: every seed gets a subgraph of its own
            (PyG's ``disjoint``; ``NodeWiseBatch.batch`` tells them apart).
        duplicate_seeds: node-wise only: a node that is a seed twice in a
            batch keeps a row for each, as in PyG (say, seeds drawn with
            replacement); otherwise such a batch raises ``ValueError``.
        weight: biased sampling: a non-negative weight per CSR position
            (a tensor for one edge type, or a dict per edge type); draws
            are proportional to weight (without replacement: PyG's
            successive draws), and zero-weight edges are never drawn.
        time: temporal sampling (node-wise, disjoint): a time per CSR
            position, ascending within each row (a tensor or a dict per
            edge type). A subgraph takes only neighbors whose time is at
            most its seed's time, which each batch brings as the payload
            ``"subgraph_time"`` of its :class:`SeedBatch` (one per
            subgraph, as ``seed_nodes(input_time=...)`` and
            ``seed_edges(edge_label_time=...)`` make it), or by default
            from the dataset's ``node_time`` (each seed's own time).
        temporal_strategy: ``"uniform"`` over the valid neighbors, or
            ``"last"``: the latest ones.
        edge_ids: ids to report instead of CSR positions: a tensor (one edge
            type) or a dict per edge type.
        overlap_epochs: ordered only: the next epoch's first batches are
            sampled while this epoch's last ones are consumed (the same
            batches; see ``_epoch_overlap.py``).
        input_type: the seeds' node type (default: the dataset's label type).

    Example:
        >>> from salient_pipes import FastDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = FastDataset.synthetic(num_nodes=200, seed=0)
        >>> pipe = NodeIndices(ds.split_idx["train"]).batch_nodes(32).sample_neighbors(ds, [5, 5])
        >>> sub = next(iter(pipe)); sub.adjs[-1].size[1]
        32
    """

    def __init__(self, source: IterDataPipe, graph: Any, fanouts: Fanouts,
                 replace: bool = False, num_threads: Optional[int] = None,
                 max_in_flight: Optional[int] = None, ordered: bool = True, seed: int = 0,
                 return_e_id: bool = False, node_wise: Optional[bool] = None,
                 disjoint: bool = False,
                 edge_ids: Union[Tensor, Mapping[Any, Tensor], None] = None,
                 overlap_epochs: bool = False, input_type: Optional[str] = None,
                 duplicate_seeds: bool = False,
                 weight: Union[Tensor, Mapping[Any, Tensor], None] = None,
                 time: Union[Tensor, Mapping[Any, Tensor], None] = None,
                 temporal_strategy: str = "uniform") -> None:
        super().__init__(source)
        self.schema = schema = schema_of(graph)
        self.graph = schema.graph
        self.node_wise = not schema.single_type if node_wise is None else bool(node_wise)
        if not self.node_wise and not schema.single_type:
            raise ValueError("a graph with several node or edge types is sampled node-wise "
                             "(PyG's semantics); node_wise=False does not apply")
        self.input_type = input_type or schema.label_type
        if self.input_type not in schema.num_nodes:
            raise ValueError(f"input_type must be one of the node types {schema.node_types}, "
                             f"got {input_type!r}")
        if not isinstance(fanouts, Mapping) and not self.node_wise and len(fanouts) == 0:
            raise ValueError("fanouts must name at least one hop")
        self.fanouts = fanouts_per_edge_type(fanouts, schema.edge_types, zero=self.node_wise)
        self.replace, self.ordered = bool(replace), bool(ordered)
        self.seed = check_int("seed", seed, minimum=0)
        self.return_e_id = bool(return_e_id)
        self.disjoint = bool(disjoint)
        if self.disjoint and not self.node_wise:
            raise ValueError("disjoint=True needs node_wise=True")
        self.duplicate_seeds = bool(duplicate_seeds)
        if self.duplicate_seeds and not self.node_wise:
            raise ValueError("duplicate_seeds=True needs node_wise=True")
        self.edge_ids = per_edge_type(edge_ids, schema, "edge_ids", torch.int64)
        self.weight = per_edge_type(weight, schema, "weight", torch.float64)
        self.time = per_edge_type(time, schema, "time", torch.int64)
        if temporal_strategy not in ("uniform", "last"):
            raise ValueError(f"temporal_strategy must be 'uniform' or 'last', got "
                             f"{temporal_strategy!r}")
        self.temporal_strategy = temporal_strategy
        if self.weight and self.time:
            raise ValueError("weighted and temporal sampling cannot be combined")
        if self.time and not (self.node_wise and self.disjoint):
            raise ValueError("temporal sampling is node-wise and disjoint (each subgraph has its "
                             "seed's time): pass node_wise=True, disjoint=True")
        # A dataset's node times give a seed its time when its batch brings none.
        node_time = getattr(graph, "node_time", None)
        if isinstance(node_time, Mapping):
            node_time = node_time.get(self.input_type)
        self.seed_node_time: Optional[Tensor] = node_time if self.time else None
        self.num_threads = default_num_threads() if num_threads is None else \
            check_int("num_threads", num_threads, minimum=1)
        self.max_in_flight = 2 * self.num_threads if max_in_flight is None else \
            check_int("max_in_flight", max_in_flight, minimum=1)
        self.overlap_epochs = bool(overlap_epochs)
        self._session: Optional[_native.Session] = None
        self._session_key: Optional[Tuple[int, ...]] = None
        self._busy: Optional[_native.Session] = None  # the session an open iteration uses
        self._carry: Optional[Carry] = None  # the next epoch's batches, begun early
        self._source_ahead = False  # the source began an epoch for a carry
        self._fail_at = self._stall_at = -1  # see _inject_failure
        self._session_for(None, None)  # argument errors now, not at the first batch

    def __getstate__(self) -> Dict[str, Any]:
        # torch's graph traversal pickles stages through a hook that keeps
        # only their upstream pipes; any other pickling (a DataLoader sending
        # the pipe to spawned workers, a deepcopy) cannot carry native threads.
        if IterDataPipe.getstate_hook is not None:
            return super().__getstate__()
        raise TypeError(WORKER_PROCESS_ERROR + " (the sampling stage holds native threads "
                        "and cannot be pickled or copied)")

    def _inject_failure(self, position: int, stall: bool = False) -> None:
        """Test hook: the native worker raises on batch ``position`` of each
        epoch from now on (-1: never), or with ``stall`` never finishes it
        (until the session cancels it or closes)."""
        drop_carry(self)
        self._fail_at, self._stall_at = (-1, position) if stall else (position, -1)
        self._session = None

    # --------------------------------------------------------- the session
    def _session_for(self, x: Optional[Mapping[str, Tensor]], y: Optional[Tensor],
                     cache: Optional[Mapping[str, Any]] = None,
                     attrs: Optional[NodeAttrs] = None,
                     pinned: Optional[Any] = None) -> _native.Session:
        """The session for this iteration: the pipe's persistent one, unless
        an earlier iteration that was abandoned without being closed (say, its
        iterator is still held by a traceback) still owns it. Then this
        iteration gets a fresh session and the two never share a queue. A
        process forked from the one that opened the session (which has none
        of its threads) gets its own too."""
        key = (os.getpid(), *(_identity(v) for v in (x, y, cache, attrs, pinned)))
        if self._session is None or key != self._session_key or self._busy is self._session:
            if self._busy is not self._session:
                drop_carry(self)
                self._session = None  # joins the idle workers before starting new ones
            types, edge_types = self.schema.node_types, self.schema.edge_types
            self._session = _native.open_session(
                self.graph, self.fanouts, node_wise=self.node_wise, replace=self.replace,
                return_e_id=self.return_e_id, seed=self.seed, num_threads=self.num_threads,
                ordered=self.ordered, fail_at_position=self._fail_at, disjoint=self.disjoint,
                stall_at_position=self._stall_at,
                duplicate_seeds=self.duplicate_seeds,
                x=None if x is None else [as_buffer(x[t]) if t in x else None for t in types],
                x_cache=None if not cache else [cache[t].native if t in cache else None
                                                for t in types],
                y=None if y is None else as_buffer(y), y_type=types.index(self.input_type),
                edge_ids=_per_position(self.edge_ids, edge_types),
                weights=_per_position(self.weight, edge_types),
                times=_per_position(self.time, edge_types),
                temporal_strategy=self.temporal_strategy,
                attrs=[(types.index(t), as_buffer(_rows(v)))
                       for t, named in (attrs or {}).items() for v in named.values()],
                pinned=None if pinned is None else pinned.native)
            self._session_key = key
        return self._session

    def settings(self) -> str:
        same = all(f == self.fanouts[0] for f in self.fanouts)
        fanouts = f"fanouts={self.fanouts[0]}" if same else \
            f"fanouts per edge type ({len(self.fanouts)} types)"
        return f"{fanouts}, node_wise={self.node_wise}, num_threads={self.num_threads}"

    def _generate(self, epoch: int, start: int, x: Optional[Mapping[str, Tensor]] = None,
                  y: Optional[Tensor] = None, cache: Optional[Mapping[str, Any]] = None,
                  attrs: Optional[NodeAttrs] = None, pinned: Optional[Any] = None,
                  **options: Any) -> Iterator[Any]:
        session = self._session_for(x, y, cache, attrs, pinned)
        return run_session(self, session, epoch, start, self._seeds,
                           lambda result, payloads: self._wrap(result, session, x, y, attrs,
                                                               payloads))

    def with_features(self, x: Union[Tensor, Mapping[str, Tensor]], y: Optional[Tensor] = None,
                      cache: Optional[Any] = None, pinned: Optional[Any] = None,
                      attrs: Optional[NodeAttrs] = None) -> Iterator[Any]:
        """This stage's epoch with the features gathered inside the workers,
        as SALIENT does it: ``x`` (a tensor for a graph of one node type, or
        a dict per node type), the seeds' labels ``y``, through ``cache``
        (a :class:`~salient_pipes.data.FeatureCache` or one per node type),
        into a slot of ``pinned`` (a :class:`PinnedPool`) when one is free,
        and ``attrs`` (``{node type: {name: rows}}``) sliced by ``n_id`` too.
        Per-hop samples come as :class:`PreparedBatch`, node-wise ones as
        :class:`NodeWiseBatch` with ``x`` (and ``attrs``) filled."""
        features = per_type(x, self.schema, "x")
        caches = per_type(cache, self.schema, "cache")
        return self._run({"x": features, "y": y, "cache": caches, "attrs": attrs,
                          "pinned": pinned})

    # ------------------------------------------------------- seeds, samples
    @staticmethod
    def _ids(seeds: Any) -> np.ndarray:
        """A seed batch's node ids, refusing a tensor of more than one
        dimension (an ``edge_index`` passed as seeds, say) rather than
        sampling its flattened entries."""
        ids = torch.as_tensor(seeds)
        if ids.dim() > 1:
            raise ValueError(f"a seed batch must be a 1-D tensor of node ids, got shape "
                             f"{tuple(ids.shape)}")
        return as_index(ids)

    def _seeds(self, item: Any, payloads: Deque[Dict[str, Any]]) -> Any:
        payload: Dict[str, Any] = {}
        if isinstance(item, SeedBatch):
            if not (self.node_wise and self.ordered):
                raise ValueError("a SeedBatch's payload travels with node-wise, ordered "
                                 "sampling only (sample_neighbors(..., node_wise=True, "
                                 "ordered=True))")
            payload, item = item.payload, item.seeds
        if self.ordered:
            payloads.append(payload)
        seed_time = None
        if self.time:
            if payload.get("subgraph_time") is not None:
                seed_time = as_index(payload["subgraph_time"])
            elif self.seed_node_time is not None and not isinstance(item, Mapping):
                ids, n = self._ids(item), self.seed_node_time.numel()
                if ids.size and (ids.min() < 0 or ids.max() >= n):
                    raise ValueError(f"seeds hold node ids outside [0, {n})")
                seed_time = as_index(self.seed_node_time[torch.from_numpy(ids)])
            else:
                raise ValueError("temporal sampling needs each batch's seed times: a SeedBatch "
                                 "with payload 'subgraph_time' (seed_nodes(input_time=...), "
                                 "seed_edges(edge_label_time=...)), or a dataset with "
                                 "node_time (each seed's own time)")
        if self.schema.single_type and not isinstance(item, Mapping):
            return self._ids(item), seed_time
        seeds = per_type(item if isinstance(item, Mapping) else {self.input_type: item},
                         self.schema, "seeds")
        empty = torch.empty(0, dtype=torch.int64).numpy()
        return [self._ids(seeds[t]) if t in seeds else empty for t in self.schema.node_types], \
            seed_time

    def _wrap(self, result: tuple, session: _native.Session, x: Optional[Mapping[str, Tensor]],
              y: Optional[Tensor], attrs: Optional[NodeAttrs],
              payloads: Deque[Dict[str, Any]]) -> Any:
        n_ids, edges, num_nodes, num_edges, xs, ys, sliced = result
        payload = payloads.popleft() if self.ordered else {}
        types = self.schema.node_types
        if not self.node_wise:
            ids = torch.from_numpy(n_ids[0])
            adjs = [Adj(torch.from_numpy(ei), None if e is None else torch.from_numpy(e),
                        tuple(size)) for ei, e, size in edges]
            if x is None:
                return SampledSubgraph(ids, adjs)
            return PreparedBatch(x=from_buffer(xs[0], x[types[0]].dtype) if types[0] in x
                                 else None,  # gathered later (look-ahead)
                                 y=None if y is None else from_buffer(ys, y.dtype),
                                 adjs=adjs, n_id=ids)
        n_id = {t: torch.from_numpy(a) for t, a in zip(types, n_ids)}
        batch: Optional[Dict[str, Tensor]] = None
        if self.disjoint:  # keys: seed index * key_space + node
            space = session.key_space
            batch = {t: torch.div(k, space, rounding_mode="floor") for t, k in n_id.items()}
            n_id = {t: k - batch[t] * space for t, k in n_id.items()}
        by_type: Dict[str, Dict[str, Tensor]] = {}
        flat = [(t, key, v) for t, named in (attrs or {}).items() for key, v in named.items()]
        for (t, key, v), a in zip(flat, sliced):
            by_type.setdefault(t, {})[key] = from_buffer(a, v.dtype).view(-1, *v.shape[1:])
        return NodeWiseBatch(
            x={} if x is None else {t: from_buffer(a, x[t].dtype)
                                    for t, a in zip(types, xs) if a is not None},
            y=None if ys is None or y is None else from_buffer(ys, y.dtype),
            edge_index={e: torch.from_numpy(ei) for e, (ei, _, _) in
                        zip(self.schema.edge_types, edges)},
            e_id={e: torch.from_numpy(i) for e, (_, i, _) in zip(self.schema.edge_types, edges)
                  if i is not None},
            n_id=n_id, batch=batch,
            num_sampled_nodes=dict(zip(types, num_nodes)),
            num_sampled_edges=dict(zip(self.schema.edge_types, num_edges)),
            input_type=self.input_type, payload=payload, attrs=by_type)

    def __len__(self) -> int:
        return len(self.source)


__all__ = ["SampleNeighbors", "default_num_threads"]
