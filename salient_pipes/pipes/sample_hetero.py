"""Stage: native parallel node-wise sampling of heterogeneous graphs."""

from __future__ import annotations

from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes import _native
from salient_pipes._checks import check_int
from salient_pipes.batch import EdgeType, HeteroBatch, SeedBatch
from salient_pipes.pipes._arrays import as_buffer, as_index, from_buffer
from salient_pipes.pipes._session import Carry, drop_carry, run_session
from salient_pipes.pipes.base import WORKER_PROCESS_ERROR, Stage
from salient_pipes.pipes.sample import default_num_threads

HeteroFanouts = Union[Sequence[int], Mapping[EdgeType, Sequence[int]]]
NodeAttrs = Mapping[str, Mapping[str, Tensor]]  # {node type: {name: one row per node}}


def _flat(attrs: Optional[NodeAttrs]) -> List[Tuple[str, str, Tensor]]:
    return [(t, key, v) for t, named in (attrs or {}).items() for key, v in named.items()]


def _as_rows(v: Tensor) -> Tensor:
    """``v`` as a 1-D or 2-D table with one row per node."""
    return v if v.dim() <= 2 else v.reshape(v.size(0), -1)


def hetero_fanouts(fanouts: HeteroFanouts, edge_types: Sequence[EdgeType],
                   name: str = "fanouts") -> List[List[int]]:
    """One list of per-hop fanouts per edge type: a list applies to every
    edge type; a dict names edge types (a missing one is not sampled, as
    if its fanouts were 0). ``-1`` takes every neighbor, ``0`` none.

    Example:
        >>> hetero_fanouts({("a", "to", "b"): [5, 2]}, [("a", "to", "b"), ("b", "to", "a")])
        [[5, 2], [0, 0]]
    """
    def hops(value: Any, where: str) -> List[int]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{where} must be a non-empty list of per-hop counts, got {value!r}")
        out = []
        for i, f in enumerate(value):
            if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < -1:
                raise ValueError(f"{where}[{i}] = {f!r}: each fanout must be an int >= 0, "
                                 "or -1 for all neighbors")
            out.append(int(f))
        return out

    if isinstance(fanouts, Mapping):
        known = set(edge_types)
        unknown = [e for e in fanouts if e not in known]
        if unknown:
            raise ValueError(f"{name} names edge type {unknown[0]!r}, which the graph does not "
                             f"have; its edge types: {list(edge_types)}")
        given = {e: hops(v, f"{name}[{e!r}]") for e, v in fanouts.items()}
        if not given:
            raise ValueError(f"{name} must name at least one edge type")
        depth = {len(v) for v in given.values()}
        if len(depth) != 1:
            raise ValueError(f"{name} must give every edge type the same number of hops, "
                             f"got {sorted(depth)}")
        num_hops = depth.pop()
        return [given.get(e, [0] * num_hops) for e in edge_types]
    same = hops(fanouts, name)
    return [list(same) for _ in edge_types]


@functional_datapipe("sample_hetero_neighbors")
class SampleHeteroNeighbors(Stage):
    """Samples the node-wise neighborhood of each seed batch of a
    heterogeneous graph on native threads and yields :class:`HeteroBatch`
    items (features empty until ``slice_features``, which is then fused
    into the sampling workers). ``pipe.sample_neighbors(hetero_dataset,
    ...)`` builds this stage too.

    ``graph``: a :class:`~salient_pipes.data.HeteroDataset` (or any object
    with ``graph``, ``node_types``, ``edge_types`` and ``num_nodes``, as
    :func:`salient_pipes.pyg.hetero_csc_of` returns). ``fanouts``: a list
    for every edge type or a dict per edge type (see
    :func:`hetero_fanouts`). Seeds are ids of ``input_type`` (default: the
    dataset's ``label_type``), or a :class:`SeedBatch` whose seeds are such
    ids or a dict ``{node_type: ids}``. A batch's sample depends only on
    ``(seed, epoch, position)``, whatever ``num_threads``. With
    ``disjoint=True`` every seed gets a subgraph of its own (PyG's
    ``disjoint``): ``HeteroBatch.batch`` tells them apart; features are then
    sliced after sampling, not in the workers.

    Example:
        >>> from salient_pipes.data import HeteroDataset
        >>> from salient_pipes.pipes import NodeIndices
        >>> ds = HeteroDataset.synthetic_mag(scale=0.001, seed=0)
        >>> pipe = NodeIndices(ds.split_idx["train"]).batch_nodes(16).sample_neighbors(ds, [4, 2])
        >>> b = next(iter(pipe)); b.batch_size, b.n_id["paper"].shape[0] >= 16
        (16, True)
    """

    def __init__(self, source: IterDataPipe, graph: Any, fanouts: HeteroFanouts,
                 input_type: Optional[str] = None, replace: bool = False,
                 num_threads: Optional[int] = None, max_in_flight: Optional[int] = None,
                 ordered: bool = True, seed: int = 0, return_e_id: bool = False,
                 edge_ids: Optional[Mapping[EdgeType, Tensor]] = None,
                 disjoint: bool = False, overlap_epochs: bool = False) -> None:
        super().__init__(source)
        if not isinstance(getattr(graph, "graph", None), _native.HeteroGraph):
            raise TypeError(f"expected a HeteroDataset (or a graph with a native HeteroGraph), "
                            f"got {type(graph).__name__}")
        self.hetero = graph
        self.node_types: List[str] = list(graph.node_types)
        self.edge_types: List[EdgeType] = list(graph.edge_types)
        input_type = input_type or getattr(graph, "label_type", None)
        if input_type not in self.node_types:
            raise ValueError(f"input_type must be one of the node types {self.node_types}, "
                             f"got {input_type!r}")
        self.input_type = input_type
        self.fanouts = hetero_fanouts(fanouts, self.edge_types)
        self.replace, self.ordered = bool(replace), bool(ordered)
        self.seed = check_int("seed", seed, minimum=0)
        self.return_e_id = bool(return_e_id)
        self.disjoint = bool(disjoint)
        self.edge_ids = dict(edge_ids or {})
        self.num_threads = default_num_threads() if num_threads is None else \
            check_int("num_threads", num_threads, minimum=1)
        self.max_in_flight = 2 * self.num_threads if max_in_flight is None else \
            check_int("max_in_flight", max_in_flight, minimum=1)
        self._session: Optional[_native.HeteroSession] = None
        self._session_key: Optional[Tuple[int, ...]] = None
        self._busy: Optional[_native.HeteroSession] = None
        self.overlap_epochs = bool(overlap_epochs)  # as SampleNeighbors'
        self._carry: Optional[Carry] = None
        self._source_ahead = False
        self._fail_at = -1
        self._session_for(None, None)  # argument errors now, not at the first batch

    def __getstate__(self) -> Dict[str, Any]:
        if IterDataPipe.getstate_hook is not None:
            return super().__getstate__()
        raise TypeError(WORKER_PROCESS_ERROR + " (the sampling stage holds native threads "
                        "and cannot be pickled or copied)")

    def _session_for(self, x: Optional[Mapping[str, Tensor]], y: Optional[Tensor],
                     cache: Optional[Mapping[str, Any]] = None,
                     attrs: Optional[NodeAttrs] = None,
                     pinned: Optional[Any] = None) -> _native.HeteroSession:
        key = (id(x), id(y), id(cache), id(attrs), id(pinned))
        if self._session is None or key != self._session_key or self._busy is self._session:
            if self._busy is not self._session:
                drop_carry(self)
                self._session = None
            xs = [] if x is None else [as_buffer(x[t]) if t in x else None
                                       for t in self.node_types]
            self._session = _native.open_session(
                _native.HeteroSession, self.hetero.graph, self.fanouts, replace=self.replace,
                return_e_id=self.return_e_id, seed=self.seed, x=xs,
                y=None if y is None else as_buffer(y),
                y_type=self.node_types.index(self.input_type), num_threads=self.num_threads,
                ordered=self.ordered,
                edge_ids=[as_buffer(self.edge_ids[e]) if e in self.edge_ids else None
                          for e in self.edge_types] if self.edge_ids else [],
                fail_at_position=self._fail_at,
                x_cache=[cache[t].native if t in cache else None
                         for t in self.node_types] if cache else [],
                disjoint=self.disjoint,
                attrs=[(self.node_types.index(t), as_buffer(_as_rows(v)))
                       for t, key, v in _flat(attrs)],
                pinned=None if pinned is None else pinned.native)
            self._session_key = key
        return self._session

    def _seeds(self, item: Any, payloads: Deque[Dict[str, Any]]) -> List[np.ndarray]:
        payload: Dict[str, Any] = {}
        if isinstance(item, SeedBatch):
            payload, item = item.payload, item.seeds
        if self.ordered:
            payloads.append(payload)
        if not isinstance(item, Mapping):
            item = {self.input_type: item}
        unknown = [t for t in item if t not in self.node_types]
        if unknown:
            raise ValueError(f"seeds of unknown node type {unknown[0]!r}; the graph has "
                             f"{self.node_types}")
        empty = np.empty(0, dtype=np.int64)
        return [as_index(item[t]) if t in item else empty for t in self.node_types]

    def _generate(self, epoch: int, start: int, x: Optional[Mapping[str, Tensor]] = None,
                  y: Optional[Tensor] = None, cache: Optional[Mapping[str, Any]] = None,
                  attrs: Optional[NodeAttrs] = None, pinned: Optional[Any] = None,
                  **options: Any) -> Iterator[HeteroBatch]:
        return run_session(self, self._session_for(x, y, cache, attrs, pinned), epoch, start,
                           self._seeds,
                           lambda result, payloads: self._wrap(result, x, y, payloads, attrs))

    def _wrap(self, result: tuple, x: Optional[Mapping[str, Tensor]], y: Optional[Tensor],
              payloads: Deque[Dict[str, Any]], attrs: Optional[NodeAttrs] = None) -> HeteroBatch:
        n_ids, edges, num_nodes, num_edges, xs, ys, sliced = result
        by_type: Dict[str, Dict[str, Tensor]] = {}
        for (t, key, v), a in zip(_flat(attrs), sliced):
            by_type.setdefault(t, {})[key] = from_buffer(a, v.dtype).view(-1, *v.shape[1:])
        n_id = {t: torch.from_numpy(a) for t, a in zip(self.node_types, n_ids)}
        batch = None
        if self.disjoint:  # keys: seed index * key_space + node
            space = self._session.key_space
            batch = {t: torch.div(k, space, rounding_mode="floor") for t, k in n_id.items()}
            n_id = {t: k - batch[t] * space for t, k in n_id.items()}
        feats = {} if x is None else {
            t: from_buffer(a, x[t].dtype) for t, a in zip(self.node_types, xs) if a is not None}
        return HeteroBatch(
            x=feats, y=None if ys is None else from_buffer(ys, y.dtype),
            edge_index={e: torch.from_numpy(ei) for e, (ei, _) in zip(self.edge_types, edges)},
            n_id=n_id, batch=batch,
            e_id={e: torch.from_numpy(i) for e, (_, i) in zip(self.edge_types, edges)
                  if i is not None},
            num_sampled_nodes=dict(zip(self.node_types, num_nodes)),
            num_sampled_edges=dict(zip(self.edge_types, num_edges)),
            input_type=self.input_type,
            payload=payloads.popleft() if self.ordered else {}, attrs=by_type)

    def _prepared(self, x: Mapping[str, Tensor], y: Optional[Tensor],
                  cache: Optional[Mapping[str, Any]] = None,
                  attrs: Optional[NodeAttrs] = None,
                  pinned: Optional[Any] = None) -> Iterator[HeteroBatch]:
        """This stage's epoch with features gathered inside the workers
        (through ``cache``, a :class:`FeatureCache` per node type, if given;
        each node type's rows into a slot of ``pinned``, a
        :class:`PinnedPool`, when one is free), and with ``attrs`` (``{node
        type: {name: tensor}}``, one row per node) sliced there too, into
        :attr:`HeteroBatch.attrs`."""
        return self._run({"x": x, "y": y, "cache": cache, "attrs": attrs, "pinned": pinned})

    def __len__(self) -> int:
        return len(self.source)


__all__ = ["SampleHeteroNeighbors", "hetero_fanouts"]
