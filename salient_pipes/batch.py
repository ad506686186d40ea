"""The batch contract: what every stage hands on and what the model sees.

``Adj`` is a NamedTuple so that model code written for PyG's sampler
(``for i, (edge_index, _, size) in enumerate(adjs)``) runs unchanged.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, Union, cast

import torch
from torch import Tensor

Device = Union[str, torch.device]
EdgeType = Tuple[str, str, str]


def record_storages(tensors: List[Tensor], stream: Any) -> None:
    """``Tensor.record_stream(stream)`` once per storage of ``tensors``: the
    allocator tracks storages, and the arrays of a batch moved in one copy
    are views of one storage (one call instead of one per array, on the
    training thread). Empty tensors hold no memory and are skipped."""
    seen = set()
    for t in tensors:
        if not t.numel():
            continue
        storage = t.untyped_storage().data_ptr()
        if storage not in seen:
            seen.add(storage)
            t.record_stream(stream)


def brief(value: Any) -> str:
    """``value`` as PyG's ``Data`` prints its attributes: a tensor as its
    shape (a 0-d one as its value), containers item by item, anything else
    as its ``repr``. A batch prints in one line, not its tensors' contents.

    Example:
        >>> print(brief({"x": torch.zeros(3, 4), "n": [torch.tensor(7), None]}))
        {'x': [3, 4], 'n': [7, None]}
    """
    if isinstance(value, Tensor):
        return repr(value.item()) if value.dim() == 0 else str(list(value.shape))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {brief(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(brief(v) for v in value) + "]"
    return repr(value)


def _fields_repr(obj: Any, names: Any, extra: Tuple[str, ...] = ()) -> str:
    parts = [f"{name}={brief(getattr(obj, name))}" for name in (*names, *extra)]
    return f"{type(obj).__name__}({', '.join(parts)})"


class Adj(NamedTuple):
    """One hop of a sampled subgraph.

    ``edge_index`` is int64 ``[2, E]``: row 0 indexes this hop's source nodes,
    row 1 its targets (``< size[1]``), sorted by target. ``e_id`` holds the
    positions of the sampled edges in the graph's ``col`` (or ``None``).
    ``size`` is ``(num_src, num_dst)``; the targets are the first ``num_dst``
    sources.

    Example:
        >>> adj = Adj(torch.tensor([[1, 2], [0, 0]]), None, (3, 1))
        >>> adj.size[1]
        1
    """

    edge_index: Tensor
    e_id: Optional[Tensor]
    size: Tuple[int, int]

    def to(self, device: Device, non_blocking: bool = False) -> Adj:
        e_id = None if self.e_id is None else self.e_id.to(device, non_blocking=non_blocking)
        return Adj(self.edge_index.to(device, non_blocking=non_blocking), e_id, self.size)

    def pin_memory(self) -> Adj:
        e_id = None if self.e_id is None else self.e_id.pin_memory()
        return Adj(self.edge_index.pin_memory(), e_id, self.size)

    def tensors(self) -> List[Tensor]:
        return [self.edge_index] if self.e_id is None else [self.edge_index, self.e_id]

    def __repr__(self) -> str:
        return _fields_repr(self, self._fields)


class SampledSubgraph(NamedTuple):
    """The output of neighbor sampling: global ids (seeds first) and hops
    from the outermost to the seeds (``adjs[-1].size[1] == batch_size``).

    Example:
        >>> sub = SampledSubgraph(torch.tensor([4, 7]), [])
        >>> sub.batch_size
        2
    """

    n_id: Tensor
    adjs: List[Adj]

    @property
    def batch_size(self) -> int:
        return self.adjs[-1].size[1] if self.adjs else int(self.n_id.numel())

    def __repr__(self) -> str:
        return _fields_repr(self, self._fields, ("batch_size",))


class SeedBatch(NamedTuple):
    """Seed nodes with a payload that travels with them through sampling
    (the positions of the seeds in their input set, link labels, ...): what
    the ``seed_nodes`` and ``seed_edges`` stages yield.

    Example:
        >>> SeedBatch(torch.tensor([3, 5]), {"input_id": torch.tensor([0, 1])}).seeds.tolist()
        [3, 5]
    """

    seeds: Union[Tensor, Dict[str, Tensor]]  # a dict per node type for several types
    payload: Dict[str, Any]

    def __repr__(self) -> str:
        return _fields_repr(self, self._fields)


class Batch:
    """What every batch with tensors shares: moving to a device, pinning,
    and marking its memory as used by a stream, written once over the
    subclass's :meth:`tensors` and :meth:`map_tensors`."""

    def tensors(self) -> List[Tensor]:
        """Every tensor of the batch."""
        raise NotImplementedError

    def map_tensors(self, fn: Callable[[Tensor], Tensor]) -> Any:
        """The batch with ``fn`` applied to each of its tensors (sizes kept)."""
        raise NotImplementedError

    def to(self, device: Device, non_blocking: bool = False) -> Any:
        """Copies to ``device``; with ``non_blocking`` from pinned memory the copy
        is asynchronous on the current stream."""
        return self.map_tensors(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Any:
        """Returns the batch in page-locked memory (itself if already pinned)."""
        return self if self.is_pinned() else self.map_tensors(lambda t: t.pin_memory())

    def is_pinned(self) -> bool:
        return all(t.is_pinned() for t in self.tensors())

    def record_stream(self, stream: torch.cuda.Stream) -> None:
        """Marks every tensor as in use by ``stream`` (see ``Tensor.record_stream``),
        so the caching allocator does not reuse its memory too early."""
        record_storages(self.tensors(), stream)

    def __repr__(self) -> str:
        """Shapes, not contents, as PyG's ``Data`` prints (see :func:`brief`)."""
        fields = dataclasses.fields(cast(Any, self))  # each batch class is a dataclass
        return _fields_repr(self, [f.name for f in fields], ("batch_size",))


@dataclass(repr=False)
class PreparedBatch(Batch):
    """A sampled subgraph with its features and the seeds' labels.

    ``x[i]`` is the feature row of node ``n_id[i]``; ``y`` holds the labels of
    the first ``batch_size`` nodes (the seeds), or is ``None`` when no labels
    were sliced. ``x`` is ``None`` while its rows are still to be gathered
    elsewhere (read ahead from disk, or on the device); with a device cache
    it holds, until the prefetch stage completes it, only the rows of the
    nodes the cache lacks, in ``n_id`` order.

    Example:
        >>> batch = PreparedBatch(x=torch.zeros(3, 4), y=torch.tensor([1]),
        ...                       adjs=[Adj(torch.tensor([[1, 2], [0, 0]]), None, (3, 1))],
        ...                       n_id=torch.tensor([5, 6, 7]))
        >>> batch.batch_size, batch.to("cpu").x.shape
        (1, torch.Size([3, 4]))
    """

    x: Optional[Tensor]
    y: Optional[Tensor]
    adjs: List[Adj]
    n_id: Tensor

    @property
    def batch_size(self) -> int:
        return self.adjs[-1].size[1] if self.adjs else int(self.n_id.numel())

    def tensors(self) -> List[Tensor]:
        out = ([] if self.x is None else [self.x]) + [self.n_id] + \
            ([] if self.y is None else [self.y])
        for adj in self.adjs:
            out.extend(adj.tensors())
        return out

    def map_tensors(self, fn: Callable[[Tensor], Tensor]) -> PreparedBatch:
        return PreparedBatch(
            x=None if self.x is None else fn(self.x), y=None if self.y is None else fn(self.y),
            adjs=[Adj(fn(a.edge_index), None if a.e_id is None else fn(a.e_id), a.size)
                  for a in self.adjs],
            n_id=fn(self.n_id))


# The node and edge type of a graph without types (a FastDataset, a PyG
# Data): a homogeneous graph is the one-type case of a typed one.
NODE_TYPE = "_N"
EDGE_TYPE: EdgeType = (NODE_TYPE, "_E", NODE_TYPE)


@dataclass(repr=False)
class NodeWiseBatch(Batch):
    """A node-wise sample (PyG's semantics: each node's neighbors sampled
    once, the hops joined into one subgraph) of a graph with any number of
    node and edge types; a graph without types has one node type
    (:data:`NODE_TYPE`) and one edge type (:data:`EDGE_TYPE`). Per node type
    and per edge type ``(src, rel, dst)``:

    - ``n_id[t]``: the global ids of the sampled nodes of type ``t``; the
      seeds come first in their type.
    - ``edge_index[e]``: ``[2, E]`` local ids, row 0 into ``n_id[src]`` (the
      sampled neighbors), row 1 into ``n_id[dst]`` (the nodes they were
      sampled for), hop by hop from the seeds outwards; ``e_id[e]`` the
      edges' ids (when asked: positions in the sampled CSR, or the ids the
      sampler was given).
    - ``num_sampled_nodes[t]``: the seeds (0 for other types), then the new
      nodes of each hop; ``num_sampled_edges[e]``: the edges of each hop.
    - ``x[t]``: ``x[t][n_id[t]]`` once features are sliced (empty before);
      ``y``: the seeds' labels, or ``None``.
    - ``input_type``: the seeds' node type; ``payload``: what travelled
      with the seeds (``input_id``, ...).
    - ``batch[t]``: after disjoint sampling, the seed each node belongs to
      (``None`` otherwise); ``n_id`` may then repeat a node.
    - ``attrs[t]``: other per-node attributes of type ``t`` sliced by
      ``n_id[t]`` in the sampling workers (``{name: tensor}``).

    Example:
        >>> b = NodeWiseBatch(x={}, y=None,
        ...                   edge_index={("a", "to", "p"): torch.tensor([[0], [0]])},
        ...                   n_id={"p": torch.tensor([5]), "a": torch.tensor([2])}, e_id={},
        ...                   num_sampled_nodes={"p": [1, 0], "a": [0, 1]},
        ...                   num_sampled_edges={("a", "to", "p"): [1]}, input_type="p")
        >>> b.batch_size
        1
    """

    x: Dict[str, Tensor]
    y: Optional[Tensor]
    edge_index: Dict[EdgeType, Tensor]
    n_id: Dict[str, Tensor]
    e_id: Dict[EdgeType, Tensor]
    num_sampled_nodes: Dict[str, List[int]]
    num_sampled_edges: Dict[EdgeType, List[int]]
    input_type: str
    payload: Dict[str, Any] = field(default_factory=dict)
    batch: Optional[Dict[str, Tensor]] = None
    attrs: Dict[str, Dict[str, Tensor]] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.num_sampled_nodes[self.input_type][0]

    def tensors(self) -> List[Tensor]:
        out = [*self.x.values(), *self.edge_index.values(), *self.n_id.values(),
               *self.e_id.values(), *(self.batch or {}).values(),
               *(v for named in self.attrs.values() for v in named.values())]
        return out if self.y is None else out + [self.y]

    def map_tensors(self, fn: Callable[[Tensor], Tensor]) -> NodeWiseBatch:
        """(The payload is left as it is.)"""
        return NodeWiseBatch(
            x={t: fn(v) for t, v in self.x.items()}, y=None if self.y is None else fn(self.y),
            edge_index={e: fn(v) for e, v in self.edge_index.items()},
            n_id={t: fn(v) for t, v in self.n_id.items()},
            e_id={e: fn(v) for e, v in self.e_id.items()},
            num_sampled_nodes=self.num_sampled_nodes, num_sampled_edges=self.num_sampled_edges,
            input_type=self.input_type, payload=self.payload,
            batch=None if self.batch is None else {t: fn(v) for t, v in self.batch.items()},
            attrs={t: {k: fn(v) for k, v in named.items()} for t, named in self.attrs.items()})


def __getattr__(name: str) -> Any:
    if name == "HeteroBatch":  # the name before homogeneous graphs joined it
        warnings.warn("salient_pipes.batch.HeteroBatch is now NodeWiseBatch (the node-wise "
                      "batch of a graph of any number of types); the old name goes in the "
                      "next release", DeprecationWarning, stacklevel=2)
        return NodeWiseBatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ids_per_type(batch: Batch) -> Dict[str, Tensor]:
    """A batch's node ids per node type (a per-hop batch's under
    :data:`NODE_TYPE`), whose rows its ``x`` holds."""
    if isinstance(batch, NodeWiseBatch):
        return batch.n_id
    if isinstance(batch, PreparedBatch):
        return {NODE_TYPE: batch.n_id}
    raise _not_a_batch(batch)


def _not_a_batch(batch: object) -> TypeError:
    return TypeError(f"features fill PreparedBatch or NodeWiseBatch items, got "
                     f"{type(batch).__name__}")


def with_features(batch: Batch, xs: Dict[str, Tensor]) -> Batch:
    """``batch`` with the rows ``xs`` (per node type, as
    :func:`ids_per_type` keys them) as its ``x``."""
    if isinstance(batch, NodeWiseBatch):
        return dataclasses.replace(batch, x={**batch.x, **xs})
    if isinstance(batch, PreparedBatch):
        return dataclasses.replace(batch, x=xs[NODE_TYPE]) if xs else batch
    raise _not_a_batch(batch)
