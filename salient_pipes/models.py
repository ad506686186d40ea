"""GraphSAGE for sampled mini-batches (the batch contract's ``adjs``)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import SAGEConv

from salient_pipes.batch import Adj


class SAGE(torch.nn.Module):
    """GraphSAGE as in SALIENT: ``num_layers`` mean-aggregating ``SAGEConv``
    layers (``normalize=True``, no bias, xavier init with ReLU gain), input
    features L2-normalized, ReLU and dropout 0.5 between layers and a
    log-softmax over ``out_channels`` classes.

    ``forward(x, adjs)`` takes one ``Adj`` per layer, outermost hop first, and
    returns one row per seed.

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
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = torch.nn.ModuleList(
            SAGEConv(sizes[i], sizes[i + 1], bias=False, normalize=True) for i in range(num_layers)
        )
        self.num_layers = num_layers
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        gain = torch.nn.init.calculate_gain("relu")
        for conv in self.convs:
            conv.reset_parameters()
            for module in conv.modules():
                if isinstance(module, torch.nn.Linear):
                    torch.nn.init.xavier_uniform_(module.weight, gain=gain)

    def forward(self, x: Tensor, adjs: Sequence[Adj]) -> Tensor:
        if len(adjs) != self.num_layers:
            raise ValueError(f"the model has {self.num_layers} layers but the batch has "
                             f"{len(adjs)} hops; use as many fanouts as layers")
        x = F.normalize(x.float(), dim=-1)
        for i, (edge_index, _, size) in enumerate(adjs):
            x = self.convs[i]((x, x[: size[1]]), edge_index, size=size)
            if i != self.num_layers - 1:
                x = F.relu(x)
                x = F.dropout(x, p=self.dropout, training=self.training)
        return x.log_softmax(dim=-1)
