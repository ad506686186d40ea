"""Deprecated: SALIENT's tutorial API is in :mod:`salient_pipes.adapters.salient`;
this module goes in the next release."""

import warnings

from salient_pipes.adapters.salient import *  # noqa: F403
from salient_pipes.adapters.salient import __all__  # noqa: F401

warnings.warn("salient_pipes.compat is now salient_pipes.adapters.salient; the old module goes "
              "in the next release", DeprecationWarning, stacklevel=2)
