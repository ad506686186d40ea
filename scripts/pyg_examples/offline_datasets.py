"""Offline stand-ins for the datasets PyG's examples download.

Each class takes the arguments of the PyG (or OGB) dataset it stands in for,
ignores where that one would download to, and returns graphs of the same
schema (node and edge types, attribute names, dtypes and shapes, masks and
splits), small enough for a CPU and generated from a fixed seed. Labels
follow planted classes (nodes link mostly within their class, features are
a class centre plus noise), so the examples' accuracies mean something.

Used by ``scripts/pyg_examples.py``; it needs torch and torch_geometric
only, so the same stand-ins serve PyG's loaders and ours.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.utils import coalesce, to_undirected

SEED = 0


def _planted(num_nodes: int, num_classes: int, num_features: int, avg_degree: float,
             gen: torch.Generator) -> Tuple[Tensor, Tensor, Tensor]:
    """Features, labels and an undirected ``edge_index``: 80 % of each
    node's edges go to its own class, and its features are its class's
    centre plus noise."""
    y = torch.randint(num_classes, (num_nodes,), generator=gen)
    order = y.argsort()
    counts = torch.bincount(y, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    num_edges = int(num_nodes * avg_degree / 2)
    src = torch.randint(num_nodes, (num_edges,), generator=gen)
    pick = (torch.rand(num_edges, generator=gen) * counts[y[src]]).long()
    same_class = order[starts[y[src]] + pick]
    anywhere = torch.randint(num_nodes, (num_edges,), generator=gen)
    dst = torch.where(torch.rand(num_edges, generator=gen) < 0.8, same_class, anywhere)
    keep = src != dst
    edge_index = to_undirected(torch.stack([src[keep], dst[keep]]), num_nodes=num_nodes)
    centres = torch.randn(num_classes, num_features, generator=gen)
    # the class signal is weak in each feature: the neighbours' features help
    x = centres[y] * (2.5 / num_features ** 0.5) + torch.randn(num_nodes, num_features,
                                                               generator=gen)
    return x, y, edge_index


def _masks(num_nodes: int, fractions: Tuple[float, float], gen: torch.Generator
           ) -> Tuple[Tensor, Tensor, Tensor]:
    """Disjoint train/val/test masks: the first two fractions, the rest."""
    perm = torch.randperm(num_nodes, generator=gen)
    a = int(fractions[0] * num_nodes)
    b = a + int(fractions[1] * num_nodes)
    masks = [torch.zeros(num_nodes, dtype=torch.bool) for _ in range(3)]
    for mask, ids in zip(masks, (perm[:a], perm[a:b], perm[b:])):
        mask[ids] = True
    return masks[0], masks[1], masks[2]


class _OneGraph:
    """A dataset of one graph, as PyG's ``InMemoryDataset`` of one."""

    def __init__(self, data: Any, transform: Any = None) -> None:
        self._data = transform(data) if transform is not None else data
        self.processed_dir = "."

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Any:
        if index != 0:
            raise IndexError(index)
        return self._data


class Reddit(_OneGraph):
    """Reddit's schema (602 features, 41 classes, masks 66/10/24 %),
    5,000 nodes of average degree 20."""

    num_features, num_classes = 602, 41

    def __init__(self, root: str = "", transform: Any = None, **kwargs: Any) -> None:
        gen = torch.Generator().manual_seed(SEED)
        x, y, edge_index = _planted(5_000, self.num_classes, self.num_features, 20, gen)
        train, val, test = _masks(x.size(0), (0.66, 0.10), gen)
        super().__init__(Data(x=x, y=y, edge_index=edge_index, train_mask=train,
                              val_mask=val, test_mask=test), transform)


class PygNodePropPredDataset(_OneGraph):
    """An OGB node-property dataset's schema (ogbn-products: 100 features,
    47 classes; labels ``[N, 1]``; ``get_idx_split()``), 20,000 nodes."""

    num_features, num_classes = 100, 47

    def __init__(self, name: str = "ogbn-products", root: str = "", **kwargs: Any) -> None:
        gen = torch.Generator().manual_seed(SEED)
        x, y, edge_index = _planted(20_000, self.num_classes, self.num_features, 25, gen)
        perm = torch.randperm(x.size(0), generator=gen)
        a, b = int(0.1 * x.size(0)), int(0.12 * x.size(0))
        self._split = {"train": perm[:a], "valid": perm[a:b], "test": perm[b:]}
        super().__init__(Data(x=x, y=y.view(-1, 1), edge_index=edge_index))

    def get_idx_split(self) -> dict:
        return dict(self._split)


class PPI(List[Data]):
    """PPI's schema (graphs of 50 features and 121 binary labels per node),
    8 training graphs and 2 for each of val and test, of 400 nodes each."""

    num_features, num_classes = 50, 121

    def __init__(self, root: str = "", split: str = "train", **kwargs: Any) -> None:
        offset = {"train": 0, "val": 100, "test": 200}[split]
        graphs = []
        for i in range(8 if split == "train" else 2):
            gen = torch.Generator().manual_seed(SEED + offset + i)
            x, group, edge_index = _planted(400, 8, self.num_features, 12, gen)
            # each label is on for the nodes of a few planted groups
            on = torch.rand(8, self.num_classes, generator=gen) < 0.3
            graphs.append(Data(x=x, y=on[group].float(), edge_index=edge_index))
        super().__init__(graphs)


class OGB_MAG(_OneGraph):  # noqa: N801  (PyG's name)
    """ogbn-mag's schema with metapath2vec features on every node type
    (128 each; 349 venues as paper labels; paper masks), at about 1/70 of
    its size: papers cite, authors write and are affiliated, papers have
    topics."""

    num_classes = 349

    def __init__(self, root: str = "", preprocess: Any = None, transform: Any = None,
                 **kwargs: Any) -> None:
        gen = torch.Generator().manual_seed(SEED)
        sizes = {"paper": 8_000, "author": 12_000, "institution": 300, "field_of_study": 800}
        data = HeteroData()
        x, y, cites = _planted(sizes["paper"], self.num_classes, 128, 8, gen)
        data["paper"].x, data["paper"].y = x, y
        data["paper"].year = torch.randint(2010, 2020, (x.size(0),), generator=gen)
        train, val, test = _masks(x.size(0), (0.8, 0.1), gen)
        data["paper"].train_mask, data["paper"].val_mask = train, val
        data["paper"].test_mask = test
        for t in ("author", "institution", "field_of_study"):
            data[t].x = torch.randn(sizes[t], 128, generator=gen)
        data["paper", "cites", "paper"].edge_index = cites[:, cites[0] < cites[1]]

        def links(src: str, dst: str, per_src: float) -> Tensor:
            n = int(sizes[src] * per_src)
            pairs = torch.stack([torch.randint(sizes[src], (n,), generator=gen),
                                 torch.randint(sizes[dst], (n,), generator=gen)])
            return coalesce(pairs)

        data["author", "affiliated_with", "institution"].edge_index = \
            links("author", "institution", 1.0)
        data["author", "writes", "paper"].edge_index = links("author", "paper", 3.5)
        data["paper", "has_topic", "field_of_study"].edge_index = \
            links("paper", "field_of_study", 5.0)
        super().__init__(data, transform)


class Taobao(_OneGraph):
    """Taobao's schema (users, items, categories without features; timed
    user-to-item behaviours; item-to-category), 3,000 users and 4,000
    items; users favour a few item groups, so items share users."""

    def __init__(self, root: str = "", transform: Any = None, **kwargs: Any) -> None:
        gen = torch.Generator().manual_seed(SEED)
        num_users, num_items, num_categories, groups = 3_000, 4_000, 100, 40
        data = HeteroData()
        data["user"].num_nodes = num_users
        data["item"].num_nodes = num_items
        data["category"].num_nodes = num_categories
        n = 60_000
        user = torch.randint(num_users, (n,), generator=gen)
        group = (user * 7 + torch.randint(3, (n,), generator=gen)) % groups
        item = group * (num_items // groups) + torch.randint(num_items // groups, (n,),
                                                             generator=gen)
        edge_index, (time, behavior) = coalesce(
            torch.stack([user, item]),
            [torch.randint(1_511_000_000, 1_513_000_000, (n,), generator=gen),
             torch.randint(4, (n,), generator=gen)], reduce="max")
        data["user", "to", "item"].edge_index = edge_index
        data["user", "to", "item"].time = time
        data["user", "to", "item"].behavior = behavior
        items = torch.arange(num_items)
        data["item", "to", "category"].edge_index = torch.stack(
            [items, items * num_categories // num_items])
        super().__init__(data, transform)


class MovieLens(_OneGraph):
    """MovieLens' schema (movies with 404 text-embedding features, users
    without features, timed ratings 0-5 as ``edge_label``), 600 users,
    1,000 movies, 20,000 ratings."""

    def __init__(self, root: str = "", model_name: Any = None, transform: Any = None,
                 **kwargs: Any) -> None:
        gen = torch.Generator().manual_seed(SEED)
        num_users, num_movies, n = 600, 1_000, 20_000
        data = HeteroData()
        data["movie"].x = torch.randn(num_movies, 404, generator=gen)
        data["user"].num_nodes = num_users
        edge_index, (rating, time) = coalesce(
            torch.stack([torch.randint(num_users, (n,), generator=gen),
                         torch.randint(num_movies, (n,), generator=gen)]),
            [torch.randint(0, 6, (n,), generator=gen),
             torch.randint(800_000_000, 1_500_000_000, (n,), generator=gen)], reduce="max")
        rates = data["user", "rates", "movie"]
        rates.edge_index, rates.edge_label, rates.time = edge_index, rating, time
        super().__init__(data, transform)
