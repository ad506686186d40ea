"""PyG's loaders on our native core: change one import.

    from salient_pipes.pyg import NeighborLoader, LinkNeighborLoader

The loaders live in :mod:`salient_pipes.adapters.pyg`; this module is the
short path PyG users import (docs/pyg.md).
"""

from typing import NoReturn

from salient_pipes.adapters.pyg import *  # noqa: F403  (the same names)
from salient_pipes.adapters.pyg import __all__  # noqa: F401


def __getattr__(name: str) -> NoReturn:
    """A name of ``torch_geometric.loader`` that is not ours (``HGTLoader``,
    ``ClusterLoader``, ``ImbalancedSampler``, ...) raises an ``ImportError``
    that says where it is, rather than the bare "cannot import name" of
    ``from salient_pipes.pyg import HGTLoader``."""
    import torch_geometric.loader as pyg_loader  # imported already, by our loaders

    if name in pyg_loader.__all__:
        raise ImportError(
            f"salient_pipes.pyg has no {name}: NeighborLoader, LinkNeighborLoader and "
            f"NeighborSampler are the loaders it runs on its native core; import {name} "
            "from torch_geometric.loader")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
