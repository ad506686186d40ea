"""Datasets in the form the native sampler is fast on.

- ``dataset.py``: :class:`FastDataset` (open, save, sources) and the in-memory
  CSR build for small graphs.
- ``build.py``: writing a dataset from an edge list of any size within a
  memory budget.
- ``ogb.py``: OGB node-property datasets, read in chunks.
- ``hetero.py``: :class:`HeteroDataset`, several node and edge types.
- ``features.py``: a hot-row cache for features read from disk.
- ``format.py``: the on-disk format, stamps and atomic writes.
"""

from salient_pipes.data.dataset import FastDataset, csr_from_edge_index, iter_splits
from salient_pipes.data.features import FeatureCache, HeteroFeatureCache
from salient_pipes.data.format import DatasetCacheError, parse_bytes
from salient_pipes.data.hetero import EdgeType, HeteroDataset

__all__ = ["DatasetCacheError", "EdgeType", "FastDataset", "FeatureCache", "HeteroDataset",
           "HeteroFeatureCache",
           "csr_from_edge_index",
           "iter_splits", "parse_bytes"]
