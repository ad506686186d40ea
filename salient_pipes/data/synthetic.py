"""Synthetic graphs that need no download, for tests, examples and
benchmarks: a homogeneous degree-corrected stochastic block model
(:meth:`FastDataset.synthetic <salient_pipes.data.FastDataset.synthetic>`,
``arxiv_like``) and a graph with ogbn-mag's schema and proportions
(:meth:`HeteroDataset.synthetic_mag
<salient_pipes.data.HeteroDataset.synthetic_mag>`). Each returns the
dataset's constructor arguments; the classes wrap them.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from salient_pipes._checks import check_int, check_positive
from salient_pipes.data.csr import csr_from_edge_index, typed_csr

EdgeType = Tuple[str, str, str]

# ogbn-mag's schema and sizes (the split counts are of papers).
MAG_NODES = {"paper": 736_389, "author": 1_134_649, "institution": 8_740,
             "field_of_study": 59_965}
MAG_EDGES = {("author", "affiliated_with", "institution"): 1_043_998,
             ("author", "writes", "paper"): 7_145_660,
             ("paper", "cites", "paper"): 5_416_271,
             ("paper", "has_topic", "field_of_study"): 7_505_078}
MAG_SPLIT = (629_571, 64_879)  # train, valid; the rest of the papers is test

# ogbn-arxiv's size: nodes, edges before symmetrization, train and valid nodes.
ARXIV = {"nodes": 169_343, "edges": 1_166_243, "train": 90_941, "valid": 29_799}


def sbm(num_nodes: int = 20_000, avg_degree: float = 12.0, num_features: int = 64,
        num_classes: int = 8, seed: int = 0, *, homophily: float = 0.7,
        feature_noise: float = 8.0, split: Tuple[float, float] = (0.54, 0.18),
        feature_dtype: torch.dtype = torch.float16,
        name: Optional[str] = None) -> Dict[str, Any]:
    """A degree-corrected stochastic block model with class-dependent
    features: heavy-tailed (Pareto) degrees, a ``homophily`` share of
    edges inside a class, and features ``centroid[class] + noise``.
    Noisy features alone are a weak signal (about 40% accuracy with the
    defaults); neighbors' features sharpen it, which is what a GNN learns
    to use (about 95%).

    ``avg_degree`` is the mean degree of the undirected graph (before
    deduplication), i.e. ``num_nodes * avg_degree / 2`` edges are drawn.
    ``split`` gives the train and valid shares; the rest is test.

    Example:
        >>> sorted(sbm(num_nodes=500, seed=1)["split_idx"])
        ['test', 'train', 'valid']
    """
    num_nodes = check_int("num_nodes", num_nodes, minimum=2)
    num_features = check_int("num_features", num_features, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    check_positive("avg_degree", avg_degree)
    if not (0 <= homophily <= 1) or not (split[0] > 0 and split[1] >= 0
                                         and split[0] + split[1] < 1):
        raise ValueError("homophily must lie in [0, 1] and split shares in (0, 1)")
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(num_classes, (num_nodes,), generator=gen)
    # Pareto(alpha=2) propensities: a few hubs, many low-degree nodes.
    weight = (1 - torch.rand(num_nodes, generator=gen, dtype=torch.float64)) ** -0.5
    num_draws = max(1, round(num_nodes * avg_degree / 2))
    src = torch.multinomial(weight, num_draws, replacement=True, generator=gen)
    dst = torch.multinomial(weight, num_draws, replacement=True, generator=gen)
    inside = torch.rand(num_draws, generator=gen) < homophily
    # The draws inside a class take their target from the source's class:
    # grouped by class once (a stable sort keeps each class's draws in
    # order), not one pass over all draws per class.
    picked = inside.nonzero().view(-1)
    by_class = torch.sort(label[src[picked]], stable=True)
    draws = torch.split(picked[by_class.indices],
                        torch.bincount(by_class.values, minlength=num_classes).tolist())
    members = torch.split(torch.argsort(label, stable=True),
                          torch.bincount(label, minlength=num_classes).tolist())
    for drawn, nodes in zip(draws, members):
        if drawn.numel() and nodes.numel():
            choice = torch.multinomial(weight[nodes], drawn.numel(), replacement=True,
                                       generator=gen)
            dst[drawn] = nodes[choice]
    centroids = torch.randn(num_classes, num_features, generator=gen)
    x = centroids[label] + feature_noise * torch.randn(num_nodes, num_features, generator=gen)
    rowptr, col = csr_from_edge_index(torch.stack([src, dst]), num_nodes)
    order = torch.randperm(num_nodes, generator=gen)
    n_train = int(split[0] * num_nodes)
    n_valid = int(split[1] * num_nodes)
    split_idx = {"train": order[:n_train].sort().values,
                 "valid": order[n_train:n_train + n_valid].sort().values,
                 "test": order[n_train + n_valid:].sort().values}
    return dict(name=name or f"synthetic-{num_nodes}", x=x.to(feature_dtype), y=label,
                rowptr=rowptr, col=col, split_idx=split_idx, num_classes=num_classes)


def mag_like(scale: float = 1.0, *, num_features: int = 128, num_classes: int = 349,
             homophily: float = 0.8, reverse: bool = True, seed: int = 0,
             feature_noise: float = 4.0,
             feature_dtype: torch.dtype = torch.float16) -> Dict[str, Any]:
    """A graph with ogbn-mag's schema and proportions (``scale=1``:
    1.94 M nodes of 4 types, 21.1 M edges of 4 types), for tests,
    examples and benchmarks where the real one is not at hand.

    Every node has a latent class; a ``homophily`` share of each edge
    type's edges joins nodes of one class (the rest are random);
    sources are drawn with heavy-tailed (Pareto) propensities. Every
    node type gets ``num_features`` features ``centroid[class] + noise``
    scaled to unit variance (as ogbn-mag's papers have text embeddings
    and its other types, in the usual setup, metapath2vec ones; inputs
    far from unit scale stall training at the usual learning rates). The papers' classes are the
    labels, split in mag's proportions. ``reverse`` adds each edge
    type's reverse (``rev_<rel>``) and makes ``cites`` symmetric, as
    PyG's ``ToUndirected`` does for mag.
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    num_features = check_int("num_features", num_features, minimum=0)
    check_positive("scale", scale)
    gen = torch.Generator().manual_seed(seed)
    counts = {t: max(num_classes, math.ceil(n * scale)) for t, n in MAG_NODES.items()}
    label = {t: torch.randint(num_classes, (n,), generator=gen) for t, n in counts.items()}
    order = {t: torch.sort(label[t], stable=True) for t in counts}
    bounds = {t: torch.searchsorted(order[t].values, torch.arange(num_classes + 1))
              for t in counts}
    centroids = torch.randn(num_classes, num_features, generator=gen)
    unit = 1.0 / math.sqrt(1.0 + feature_noise ** 2)  # unit variance per feature
    x = {t: ((centroids[label[t]] + feature_noise * torch.randn(n, num_features, generator=gen))
             * unit).to(feature_dtype) for t, n in counts.items()}
    edges: Dict[EdgeType, Tuple[Tensor, Tensor]] = {}
    for (s, rel, d), m in MAG_EDGES.items():
        m = max(1, math.ceil(m * scale))
        weight = (1 - torch.rand(counts[s], generator=gen, dtype=torch.float64)) ** -0.5
        src = torch.multinomial(weight, m, replacement=True, generator=gen)
        dst = torch.randint(counts[d], (m,), generator=gen)
        same = torch.rand(m, generator=gen) < homophily
        cls_ = label[s][src[same]]
        lo, hi = bounds[d][cls_], bounds[d][cls_ + 1]
        pick = lo + (torch.rand(cls_.numel(), generator=gen) * (hi - lo)).long()
        dst[same] = order[d].indices[pick.clamp(max=counts[d] - 1)]
        pairs = torch.stack([src, dst])
        if reverse and s == d:
            pairs = torch.cat([pairs, pairs.flip(0)], dim=1)
        edges[(s, rel, d)] = typed_csr(pairs, counts[s], counts[d])
        if reverse and s != d:
            edges[(d, f"rev_{rel}", s)] = typed_csr(pairs.flip(0), counts[d], counts[s])
    papers = torch.randperm(counts["paper"], generator=gen)
    n_train = round(counts["paper"] * MAG_SPLIT[0] / MAG_NODES["paper"])
    n_valid = round(counts["paper"] * MAG_SPLIT[1] / MAG_NODES["paper"])
    split_idx = {"train": papers[:n_train].sort().values,
                 "valid": papers[n_train:n_train + n_valid].sort().values,
                 "test": papers[n_train + n_valid:].sort().values}
    return dict(name=f"mag-like-{scale:g}", num_nodes=counts, edges=edges, x=x,
                y=label["paper"], label_type="paper", split_idx=split_idx,
                num_classes=num_classes)


__all__ = ["ARXIV", "MAG_EDGES", "MAG_NODES", "MAG_SPLIT", "mag_like", "sbm"]
