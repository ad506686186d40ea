"""``NeighborSampler``: PyG's older loader (``torch_geometric.loader.
NeighborSampler``, which OGB's examples and SALIENT's baseline use) on our native
per-hop sampler. It yields ``(batch_size, n_id, adjs)`` as PyG's does:

``seed positions → node ids → sample_neighbors (per hop) → (batch_size, n_id, adjs)``

Each hop samples up to ``sizes[h]`` neighbors of every node found so far,
the targets first among the sources; ``adjs`` run from the outermost hop to
the seeds, as PyG's ``EdgeIndex(edge_index, e_id, size)`` (or
``Adj(adj_t, e_id, size)`` when the graph is given as a ``SparseTensor``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import IterDataPipe
from torch_geometric.data import Data
from torch_geometric.loader.neighbor_sampler import Adj as PygAdj
from torch_geometric.loader.neighbor_sampler import EdgeIndex
from torch_geometric.loader.neighbor_sampler import NeighborSampler as PygNeighborSampler

from salient_pipes._checks import as_node_ids
from salient_pipes.adapters.pyg.arguments import loader_options
from salient_pipes.adapters.pyg.loader import _Native
from salient_pipes.adapters.pyg.sampler import SampledGraph
from salient_pipes.batch import EDGE_TYPE, SampledSubgraph
from salient_pipes.pipes import IndexBatches, NodeIndices, Stage, fanouts_per_edge_type
from salient_pipes.pipes.indices import _index_tensor


class _IdBatches:
    """A torch batch sampler's batches of positions, as node ids."""

    def __init__(self, batches: Iterable[Sequence[int]], node_idx: Tensor) -> None:
        self.batches, self.node_idx = batches, node_idx

    def __iter__(self) -> Iterator[Any]:  # 1-D id tensors, which IndexBatches takes
        for index in self.batches:
            yield self.node_idx[_index_tensor(index)]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class NeighborSampler(_Native, PygNeighborSampler):
    """PyG's ``torch_geometric.loader.NeighborSampler`` (the loader that
    yields ``(batch_size, n_id, adjs)``) on our native sampler: change the
    import, keep the code.

    ``edge_index`` is a ``[2, E]`` tensor (messages flow from row 0 to row
    1) or a ``SparseTensor`` holding the transposed adjacency; ``sizes`` the
    neighbors per hop, the seeds' first (``-1``: all); ``node_idx`` the
    seeds (ids or a bool mask; default every node). ``e_id`` holds the
    sampled edges' ids (columns of ``edge_index``, or positions of the
    ``SparseTensor``, whose values the sampled ``adj_t`` carries), or
    ``None`` with ``return_e_id=False``. ``transform(batch_size, n_id,
    adjs)`` maps each batch. It is a ``DataLoader``: ``batch_size``,
    ``shuffle``, ``drop_last``, ``sampler=``/``batch_sampler=``;
    ``num_workers`` sets our sampling threads (0: the process's cores) and
    ``seed`` (ours) the shuffling and sampling, by default drawn from
    torch's RNG. Features are not its business, as in PyG: gather
    ``x[n_id]`` yourself, or let :func:`salient_pipes.salient_pipeline`
    slice them on the sampling threads.

    Example:
        >>> edge_index = torch.tensor([[1, 2, 3, 0], [0, 0, 1, 2]])
        >>> loader = NeighborSampler(edge_index, sizes=[2, 2], batch_size=2, seed=0)
        >>> batch_size, n_id, adjs = next(iter(loader))
        >>> batch_size, n_id[:2].tolist(), [a.size[1] for a in adjs][-1]
        (2, [0, 1], 2)
        >>> loader
        NeighborSampler(sizes=[2, 2])
    """

    def __init__(self, edge_index: Any, sizes: List[int], node_idx: Optional[Tensor] = None,
                 num_nodes: Optional[int] = None, return_e_id: bool = True,
                 transform: Optional[Callable] = None, **kwargs: Any) -> None:
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable, got {type(transform).__name__}")
        self.is_sparse_tensor = type(edge_index).__name__ == "SparseTensor"
        if not self.is_sparse_tensor and (not isinstance(edge_index, Tensor)
                                          or edge_index.layout != torch.strided):
            raise ValueError("edge_index must be a [2, E] tensor or a torch_sparse.SparseTensor,"
                             f" got {type(edge_index).__name__}")
        edge_index = edge_index.to("cpu")
        if isinstance(sizes, Mapping):
            raise ValueError("sizes must be a list of ints (one per hop), not a dict: this "
                             "loader samples graphs of one node and edge type")
        sizes, = fanouts_per_edge_type(sizes, [EDGE_TYPE], "sizes", zero=False)
        if not sizes:
            raise ValueError("sizes must name at least one hop")
        self.edge_index, self.sizes = edge_index, sizes
        self.return_e_id, self.transform = bool(return_e_id), transform
        if self.is_sparse_tensor:
            num_nodes = int(edge_index.sparse_size(0))
            data = Data(adj_t=edge_index, num_nodes=num_nodes)
            self._values = edge_index.storage.value()  # what the sampled adj_t carries
        else:
            num_nodes = _num_nodes(edge_index, node_idx, num_nodes)
            data = Data(edge_index=edge_index, num_nodes=num_nodes)
            self._values = None
        self.num_nodes = num_nodes
        self.graph = SampledGraph.build(data, sizes, replace=False, subgraph_type="directional",
                                        disjoint=False, temporal_strategy="uniform",
                                        time_attr=None, weight_attr=None)
        self.node_idx = as_node_ids("node_idx", torch.arange(num_nodes) if node_idx is None
                                    else node_idx, num_nodes)
        self.options = loader_options(kwargs)
        self._start(self.node_idx.numel())
        self.pipe = self._chain(self._positions())

    def _positions(self) -> Stage:
        """This epoch's seeds in batches (node ids): a torch sampler's, or
        our seeded shuffle's (reproducible, resumable)."""
        o = self.options
        if o.sampler is not None or o.batch_sampler is not None:
            return IndexBatches(_IdBatches(self.batch_sampler, self.node_idx))
        return (NodeIndices(self.node_idx).shuffle_nodes(seed=o.seed, shuffle=o.shuffle)
                .batch_nodes(o.batch_size, drop_last=o.drop_last))

    def _chain(self, seeds: IterDataPipe, sync: bool = False) -> Stage:
        o = self.options
        pipe = seeds.sample_neighbors(
            self.csc, self.sizes, replace=False, node_wise=False,
            num_threads=1 if sync else o.num_threads,
            max_in_flight=1 if sync else o.max_in_flight, seed=o.seed,
            return_e_id=self.return_e_id or self._values is not None,
            edge_ids=None if self.is_sparse_tensor else self.csc.perm,
            overlap_epochs=not sync and o.shuffle and o.sampler is None
            and o.batch_sampler is None)
        if o.pin_memory and not sync:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe = pipe.pin_memory()
        return pipe

    def sample(self, batch: Union[Tensor, Sequence[int]]) -> Any:
        """One batch, now, of the seeds ``batch`` (node ids), as PyG's
        ``sample`` gives it."""
        if self._one is None:
            self._one = self._chain(IndexBatches(self._feed), sync=True)
        self._feed[0] = as_node_ids("batch", batch, self.num_nodes)
        out, = list(self._one)
        return self.filter_fn(out)

    def collate_fn(self, index: Union[Tensor, Sequence[int]]) -> Any:
        """One batch from seed positions ``index`` (a torch ``DataLoader``'s)."""
        return self.sample(self.node_idx[_index_tensor(index)])

    def filter_fn(self, out: SampledSubgraph) -> Any:
        """``(batch_size, n_id, adjs)`` of a sampled subgraph, transformed."""
        adjs = [self._hop(adj) for adj in out.adjs]
        result = (out.batch_size, out.n_id, adjs[0] if len(adjs) == 1 else adjs)
        return self.transform(*result) if self.transform is not None else result

    def _hop(self, adj: Any) -> Any:
        """One hop as PyG's ``EdgeIndex``, or its ``Adj`` over a sampled
        ``SparseTensor`` (rows the targets) carrying the graph's values."""
        if not self.is_sparse_tensor:
            return EdgeIndex(adj.edge_index, adj.e_id, adj.size)
        from torch_sparse import SparseTensor

        positions = adj.e_id  # None unless e_id or the values are asked for
        if self._values is not None:
            values = self._values[positions]
        else:  # as in PyG: a graph without values carries the positions, if asked
            values = positions if self.return_e_id else None
        e_id = positions if self.return_e_id else values  # PyG's, again
        adj_t = SparseTensor(row=adj.edge_index[1], col=adj.edge_index[0], value=values,
                             sparse_sizes=(adj.size[1], adj.size[0]), is_sorted=True,
                             trust_data=True)
        return PygAdj(adj_t, e_id, adj.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sizes={self.sizes})"


def _num_nodes(edge_index: Tensor, node_idx: Optional[Tensor], num_nodes: Optional[int]
               ) -> int:
    """The node count as PyG's sampler infers it: given, else a bool
    ``node_idx``'s length, else one past the largest id in ``edge_index``
    and ``node_idx``."""
    if num_nodes is not None:
        return int(num_nodes)
    if isinstance(node_idx, Tensor) and node_idx.dtype == torch.bool:
        return node_idx.numel()
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
        raise ValueError("edge_index must be an integer tensor of shape [2, E]")
    largest = int(edge_index.max()) if edge_index.numel() else -1
    if isinstance(node_idx, Tensor) and node_idx.numel():
        largest = max(largest, int(node_idx.max()))
    return largest + 1


__all__: List[str] = ["NeighborSampler"]
