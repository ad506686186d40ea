"""PyG's loaders on our native core: change one import.

    from salient_pipes.pyg import NeighborLoader, LinkNeighborLoader

The loaders live in :mod:`salient_pipes.adapters.pyg`; this module is the
short path PyG users import (docs/pyg.md).
"""

from salient_pipes.adapters.pyg import *  # noqa: F403  (the same names)
from salient_pipes.adapters.pyg import __all__  # noqa: F401
