"""Datasets in the form the native sampler is fast on.

- ``dataset.py``: :class:`FastDataset` (open, save, sources).
- ``hetero.py``: :class:`HeteroDataset`, several node and edge types.
- ``csr.py``: CSRs built in memory from edge lists.
- ``build.py``: writing a dataset from an edge list of any size within a
  memory budget.
- ``ogb.py``: OGB node-property datasets, read in chunks.
- ``synthetic.py``: graphs that need no download.
- ``feature_cache.py``: the feature cache (classes, policies, budgets).
- ``format.py``: the on-disk format, stamps, atomic writes and reading.
- ``memory.py``: huge pages for what the sampler reads at random.
"""

from typing import Any

from salient_pipes.data.csr import csr_from_edge_index
from salient_pipes.data.dataset import FastDataset, iter_splits
from salient_pipes.data.feature_cache import (
    POLICIES,
    FeatureCache,
    FeatureCaches,
    cache_budget,
)
from salient_pipes.data.format import DatasetCacheError, EdgeType, parse_bytes
from salient_pipes.data.hetero import HeteroDataset

__all__ = ["POLICIES", "DatasetCacheError", "EdgeType", "FastDataset", "FeatureCache",
           "FeatureCaches", "HeteroDataset", "cache_budget", "csr_from_edge_index",
           "iter_splits", "parse_bytes"]


def __getattr__(name: str) -> Any:
    if name == "HeteroFeatureCache":  # the per-node-type cache before FeatureCaches
        import warnings

        warnings.warn("HeteroFeatureCache is now FeatureCaches (a dataset's cache per node "
                      "type); the old name goes in the next release", DeprecationWarning,
                      stacklevel=2)
        return FeatureCaches
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
