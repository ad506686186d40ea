"""Deprecated: the torchdata.nodes adapters are in
:mod:`salient_pipes.adapters.torchdata` (``NodeSeeds`` is now
``SeedsFromNode``); this module goes in the next release."""

import warnings

from salient_pipes.adapters.torchdata import PipeNode, SeedsFromNode

warnings.warn("salient_pipes.nodes is now salient_pipes.adapters.torchdata (NodeSeeds: "
              "SeedsFromNode); the old module goes in the next release", DeprecationWarning,
              stacklevel=2)

NodeSeeds = SeedsFromNode

__all__ = ["NodeSeeds", "PipeNode"]
