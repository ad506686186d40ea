"""GraphSAGE for sampled mini-batches (the batch contract's ``adjs``), and its
heterogeneous form for :class:`~salient_pipes.batch.NodeWiseBatch`."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from salient_pipes import _native
from salient_pipes._checks import check_int, check_probability
from salient_pipes.batch import Adj


def _is_compiling() -> bool:
    """Whether torch.compile is tracing this call (in ``torch.compiler`` from
    torch 2.3 at the latest; torch 2.1 has it only in ``torch._dynamo``)."""
    if hasattr(torch.compiler, "is_compiling"):
        return torch.compiler.is_compiling()
    from torch._dynamo import is_compiling

    return bool(is_compiling())


def _mark_cuda_step_begin() -> None:
    """Tells CUDA graph trees that the previous step's outputs are done
    (torch 2.1: only in ``torch._inductor``)."""
    if hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        torch.compiler.cudagraph_mark_step_begin()
    else:
        from torch._inductor.cudagraph_trees import mark_step_begin

        mark_step_begin()


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``; on a CPU float tensor the mask is drawn
    by the native core on every core, from one seed drawn from torch's
    generator (so ``torch.manual_seed`` repeats it, for any thread count).
    torch's CPU dropout draws one element at a time; this step took 41 % of
    a CPU GraphSAGE step. Anywhere else (a GPU, ``torch.compile``, other
    dtypes) it is ``F.dropout``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> out = dropout(torch.ones(2, 4), p=0.5)
        >>> sorted(set(out.flatten().tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
    """
    if not training or p == 0.0 or x.device.type != "cpu" or p >= 1.0 or p < 0.0 \
            or x.dtype not in (torch.float32, torch.float64) or _is_compiling():
        return F.dropout(x, p, training)  # which also names a bad p
    mask = torch.empty(x.shape, dtype=x.dtype)
    seed = int(torch.randint(-2**63, 2**63 - 1, (), dtype=torch.int64)) % 2**64
    _native.fill_dropout_mask(mask.numpy(), p, seed, torch.get_num_threads())
    return x * mask


class MeanSAGEConv(torch.nn.Module):
    """One GraphSAGE layer with mean aggregation over a sampled hop:
    ``normalize(lin_l(mean of the sources' rows into each target) +
    lin_r(target's own row))``, the computation of PyG's
    ``SAGEConv(in, out, bias=False, normalize=True)`` with the same parameter
    names (``lin_l.weight``, ``lin_r.weight``), so checkpoints load either way.

    It is written in plain torch ops (``index_select``, ``index_add_``, two
    matrix products) with the hop's sizes as ints. Eager it runs about as
    fast as PyG's layer; ``torch.compile(model, dynamic=True)`` fuses it,
    without recompiling as the batch's sizes change.

    Example:
        >>> conv = MeanSAGEConv(4, 2)
        >>> x = torch.randn(3, 4)                     # 3 sources, the first 2 are targets
        >>> edge_index = torch.tensor([[1, 2, 0], [0, 0, 1]])  # sources → targets
        >>> conv(x, edge_index, num_dst=2).shape
        torch.Size([2, 2])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.lin_l = torch.nn.Linear(in_channels, out_channels, bias=False)
        self.lin_r = torch.nn.Linear(in_channels, out_channels, bias=False)

    def reset_parameters(self) -> None:
        self.lin_l.reset_parameters()
        self.lin_r.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, num_dst: int) -> Tensor:
        src, dst = edge_index[0], edge_index[1]
        summed = x.new_zeros(num_dst, x.size(1)).index_add_(0, dst, x.index_select(0, src))
        count = x.new_zeros(num_dst).index_add_(0, dst, x.new_ones(dst.numel()))
        mean = summed / count.clamp_(min=1).unsqueeze(1)
        return F.normalize(self.lin_l(mean) + self.lin_r(x[:num_dst]), p=2.0, dim=-1)


class SAGE(torch.nn.Module):
    """GraphSAGE as in SALIENT: ``num_layers`` mean-aggregating layers
    (:class:`MeanSAGEConv`: PyG's ``SAGEConv`` with ``normalize=True`` and no
    bias, weights initialized as ``torch.nn.Linear`` and PyG's layer do),
    input features L2-normalized, ReLU and dropout 0.5 between layers and a
    log-softmax over ``out_channels`` classes.

    ``forward(x, adjs)`` takes one ``Adj`` per layer, outermost hop first, and
    returns one row per seed. It compiles with ``torch.compile(model,
    dynamic=True)`` (``salient-pipes train --compile``).

    Example:
        >>> model = SAGE(16, 32, 4, num_layers=2)
        >>> adjs = [Adj(torch.tensor([[1, 2], [0, 1]]), None, (3, 2)),
        ...         Adj(torch.tensor([[1], [0]]), None, (2, 1))]
        >>> model(torch.randn(3, 16), adjs).shape
        torch.Size([1, 4])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int, dropout: float = 0.5) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                            ("out_channels", out_channels), ("num_layers", num_layers)):
            check_int(name, value, minimum=1)
        check_probability("dropout", dropout)
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = torch.nn.ModuleList(
            MeanSAGEConv(sizes[i], sizes[i + 1]) for i in range(num_layers))
        self.num_layers = num_layers
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            cast(MeanSAGEConv, conv).reset_parameters()

    def forward(self, x: Tensor, adjs: Sequence[Adj]) -> Tensor:
        if len(adjs) != self.num_layers:
            raise ValueError(f"the model has {self.num_layers} layers but the batch has "
                             f"{len(adjs)} hops; use as many fanouts as layers")
        in_channels = cast(MeanSAGEConv, self.convs[0]).lin_l.in_features
        if x.dim() != 2 or x.size(1) != in_channels:
            raise ValueError(f"the model takes {in_channels} features per node but the batch's "
                             f"x has shape {list(x.shape)}; build it with "
                             "in_channels=dataset.num_features")
        x = F.normalize(x.float(), dim=-1)
        for i, (edge_index, _, size) in enumerate(adjs):
            x = self.convs[i](x, edge_index, size[1])
            if i != self.num_layers - 1:
                x = F.relu(x)
                x = dropout(x, p=self.dropout, training=self.training)
        return x.log_softmax(dim=-1)


class Capacities:
    """Padded sizes for ``(x, adjs)`` batches, so that most batches of an
    epoch share one shape: node capacities per level (outermost first) and
    edge capacities per hop. They start at ``headroom`` times the first
    batch's sizes, rounded up to ``multiple``, and grow the same way when a
    batch does not fit, never shrinking (so a shape once left is not seen
    again). Every level keeps a spare row (the padding edges' target, see
    :class:`StaticShapes`), and no level is smaller than the next (a hop's
    targets are its sources' first rows).

    Example:
        >>> caps = Capacities(headroom=1.0, multiple=1)
        >>> caps.fit([10, 5, 2], [20, 6])
        ([11, 6, 3], [21, 7])
        >>> caps.fit([9, 6, 2], [3, 3]), caps.resizes   # level 1 is full: it grows
        (([11, 7, 3], [21, 7]), 2)
    """

    def __init__(self, headroom: float = 1.1, multiple: int = 256) -> None:
        if headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {headroom}")
        if multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {multiple}")
        self.headroom, self.multiple = headroom, int(multiple)
        self.nodes: List[int] = []
        self.edges: List[int] = []
        self.resizes = 0  # times a batch did not fit (each one new shape)

    @staticmethod
    def spare_rows(nodes: Sequence[int]) -> List[int]:
        """Per hop, the row its padding edges join to itself: the last row of
        the hop's targets (node capacities ``nodes``, outermost first), a
        padding row that no real edge reads."""
        return [n - 1 for n in nodes[1:]]

    def _room(self, needed: int) -> int:
        wanted = int(needed * self.headroom) + 1
        return -(-wanted // self.multiple) * self.multiple

    def fit(self, nodes: Sequence[int], edges: Sequence[int]) -> Tuple[List[int], List[int]]:
        """The capacities for a batch of these sizes, grown if it does not fit."""
        have_n, have_e = self.nodes, self.edges
        fresh = len(have_n) != len(nodes) or len(have_e) != len(edges)
        if (fresh or any(n >= c for n, c in zip(nodes, have_n))
                or any(e > c for e, c in zip(edges, have_e))):
            have_n = [self._room(n) if fresh or n >= c else c
                      for n, c in zip(nodes, nodes if fresh else have_n)]
            have_e = [self._room(e) if fresh or e > c else c
                      for e, c in zip(edges, edges if fresh else have_e)]
            for i in range(len(have_n) - 2, -1, -1):
                have_n[i] = max(have_n[i], have_n[i + 1])
            self.nodes, self.edges = have_n, have_e
            self.resizes += 1
        return list(self.nodes), list(self.edges)


def batch_sizes(x: Tensor, adjs: Sequence[Adj]) -> Tuple[List[int], List[int]]:
    """The node count of every level (outermost first) and the edge count of
    every hop of an ``(x, adjs)`` batch, checked against each other."""
    if not adjs:
        raise ValueError("a padded batch needs at least one hop")
    nodes = [int(adjs[0].size[0])] + [int(a.size[1]) for a in adjs]
    if x.size(0) != nodes[0]:
        raise ValueError(f"x has {x.size(0)} rows but the outermost hop has "
                         f"{nodes[0]} sources")
    return nodes, [int(a.edge_index.size(1)) for a in adjs]


class StaticShapes(torch.nn.Module):
    """Runs ``model(x, adjs)`` on batches padded to fixed capacities, so that
    a CUDA graph recorded for one batch replays for the next ones.

    A training step of a small model is bound by the host: the training
    thread launches the step's kernels slower than the GPU runs them.
    ``torch.compile(model, mode="reduce-overhead")`` replays a recorded CUDA
    graph instead, one launch for the whole forward (and backward), but a
    graph is recorded per input shape and every sampled batch has its own
    sizes. This wrapper pads them to capacities that change rarely:

    - ``x`` gets zero rows up to the outermost level's capacity;
    - every hop gets its node counts raised to the levels' capacities and
      padding edges up to the hop's edge capacity; a padding edge joins the
      last (padding) target row to itself, so no real row receives it;
    - the output is cut back to the real seeds.

    Real rows never read padding: a hop's real edges join real sources to
    real targets, and the rows it adds as targets are sources that no real
    edge of the next hop reads. The output rows of the seeds, and every
    gradient, are therefore those of the unpadded batch (with dropout, up to
    the random masks). Capacities start at ``headroom`` times the first
    batch's sizes (rounded up to ``multiple``) and grow the same way when a
    batch does not fit; training and evaluation keep their own (evaluation
    fanouts are often wider). ``e_id`` is dropped: the model must not read
    it.

    Example:
        >>> model = StaticShapes(SAGE(8, 16, 3, num_layers=1)).eval()
        >>> adjs = [Adj(torch.tensor([[1, 2], [0, 0]]), None, (3, 2))]
        >>> x = torch.randn(3, 8)
        >>> torch.allclose(model(x, adjs), model.model(x, adjs), atol=1e-6)
        True
        >>> model.capacity(training=False)
        ([256, 256], [256])
    """

    def __init__(self, model: torch.nn.Module, headroom: float = 1.1,
                 multiple: int = 256) -> None:
        super().__init__()
        self.model = model
        # training and evaluation: their own capacities
        self._caps = {mode: Capacities(headroom, multiple) for mode in (True, False)}

    @property
    def resizes(self) -> int:
        """Times a batch did not fit its mode's capacities (each one a new shape)."""
        return sum(c.resizes for c in self._caps.values())

    def capacity(self, training: bool = True) -> Tuple[List[int], List[int]]:
        """The current (node capacities per level, edge capacities per hop)."""
        caps = self._caps[bool(training)]
        return list(caps.nodes), list(caps.edges)

    def forward(self, x: Tensor, adjs: Sequence[Adj]) -> Tensor:
        nodes, edges = batch_sizes(x, adjs)
        cap_n, cap_e = self._caps[self.training].fit(nodes, edges)
        x = F.pad(x, (0, 0, 0, cap_n[0] - nodes[0]))
        spare = Capacities.spare_rows(cap_n)
        padded = [Adj(F.pad(a.edge_index, (0, cap_e[i] - edges[i]), value=spare[i]),
                      None, (cap_n[i], cap_n[i + 1])) for i, a in enumerate(adjs)]
        if x.is_cuda:
            _mark_cuda_step_begin()  # the previous step's outputs are done
        return self.model(x, padded)[: nodes[-1]]


def compile_model(model: torch.nn.Module, *, cuda_graphs: bool = False) -> torch.nn.Module:
    """``model`` through ``torch.compile``: fused kernels with dynamic shapes,
    one compilation for every batch size. With ``cuda_graphs`` (CUDA only),
    the step is also recorded as CUDA graphs (``mode="reduce-overhead"``)
    over batches padded by :class:`StaticShapes`, which replay with one
    launch; train it with ``torch.optim.Adam(..., fused=True)`` to keep the
    optimizer's launches few as well.

    Example:
        >>> compiled = compile_model(SAGE(8, 16, 3, num_layers=2))
        >>> type(compiled).__name__
        'OptimizedModule'
    """
    # torch.compile is typed as returning a callable; for a module it is one.
    if not cuda_graphs:
        return cast(torch.nn.Module, torch.compile(model, dynamic=True))
    return StaticShapes(cast(torch.nn.Module,
                             torch.compile(model, mode="reduce-overhead", dynamic=True)))


class HeteroSAGE(torch.nn.Module):
    """GraphSAGE for heterogeneous graphs (R-GCN style, like PyG's
    ``to_hetero(GraphSAGE, aggr="sum")``): every node type's features are
    projected to ``hidden_channels`` (a type without features starts from a
    learned vector), then each layer sums, over the edge types into a node
    type, one mean-aggregating ``SAGEConv`` per edge type. Node types that
    receive no messages in a layer keep their representation.

    ``forward(x_dict, edge_index_dict)`` returns the ``target`` type's
    log-probabilities, one row per node of ``x_dict[target]``: slice the
    first ``batch_size`` rows for the seeds.

    Example:
        >>> meta = (["p", "a"], [("a", "writes", "p"), ("p", "rev_writes", "a")])
        >>> model = HeteroSAGE(meta, {"p": 4, "a": 0}, 8, 3, num_layers=2, target="p")
        >>> x = {"p": torch.randn(2, 4), "a": torch.zeros(3, 0)}
        >>> edges = {("a", "writes", "p"): torch.tensor([[0, 2], [0, 1]]),
        ...          ("p", "rev_writes", "a"): torch.tensor([[0], [0]])}
        >>> model(x, edges).shape
        torch.Size([2, 3])
    """

    def __init__(self, metadata: Tuple[Sequence[str], Sequence[Tuple[str, str, str]]],
                 in_channels: Dict[str, int], hidden_channels: int, out_channels: int,
                 num_layers: int, target: str, dropout: float = 0.5) -> None:
        super().__init__()
        node_types, edge_types = list(metadata[0]), [tuple(e) for e in metadata[1]]
        for name, value in (("hidden_channels", hidden_channels), ("out_channels", out_channels),
                            ("num_layers", num_layers)):
            check_int(name, value, minimum=1)
        check_probability("dropout", dropout)
        if target not in node_types:
            raise ValueError(f"target {target!r} is not one of the node types {node_types}")
        self.node_types, self.edge_types, self.target = node_types, edge_types, target
        self.num_layers, self.dropout = num_layers, dropout
        self.inputs = torch.nn.ModuleDict()
        self.start = torch.nn.ParameterDict()
        for t in node_types:
            if in_channels.get(t, 0) > 0:
                self.inputs[t] = torch.nn.Linear(in_channels[t], hidden_channels)
            else:
                self.start[t] = torch.nn.Parameter(torch.randn(hidden_channels) * 0.1)
        from torch_geometric.nn import SAGEConv  # PyG costs 2 s to import: only when used

        self.convs = torch.nn.ModuleList(
            torch.nn.ModuleDict({"__".join(e): SAGEConv(hidden_channels, hidden_channels)
                                 for e in edge_types})
            for _ in range(num_layers))
        self.out = torch.nn.Linear(hidden_channels, out_channels)

    def forward(self, x_dict: Dict[str, Tensor],
                edge_index_dict: Dict[Tuple[str, str, str], Tensor]) -> Tensor:
        h = {}
        for t, x in x_dict.items():
            if t in self.inputs:
                width = cast(torch.nn.Linear, self.inputs[t]).in_features
                if x.dim() != 2 or x.size(1) != width:
                    raise ValueError(f"the model takes {width} features per {t!r} node but the "
                                     f"batch's x[{t!r}] has shape {list(x.shape)}; build it "
                                     "with in_channels=dataset.num_features")
                h[t] = self.inputs[t](x.to(self.out.weight.dtype))
            elif t in self.start:
                h[t] = self.start[t].expand(x.size(0), -1)
        for layer in self.convs:
            convs = cast(torch.nn.ModuleDict, layer)
            out: Dict[str, Tensor] = {}
            for e, edge_index in edge_index_dict.items():
                src, _, dst = e
                key = "__".join(e)
                if key not in convs or src not in h or dst not in h:
                    continue
                msg = convs[key]((h[src], h[dst]), edge_index)
                out[dst] = out[dst] + msg if dst in out else msg
            h = {t: dropout(F.relu(out[t]), p=self.dropout, training=self.training)
                 if t in out else v for t, v in h.items()}
        return self.out(h[self.target]).log_softmax(dim=-1)
