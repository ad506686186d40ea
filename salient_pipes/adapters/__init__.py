"""Our pipes in other libraries' forms:

- ``pyg/``: PyG's ``NeighborLoader`` and ``LinkNeighborLoader`` composed
  from our stages (imported as ``salient_pipes.pyg``);
- ``torchdata.py``: ``torchdata.nodes`` adapters, both ways;
- ``salient.py``: SALIENT's tutorial API (``FastSampler``,
  ``DevicePrefetcher``, ...) over our stages.

Nothing below this layer imports it.
"""
