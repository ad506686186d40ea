"""The compiled core (``_core``): typed graphs (``CSRGraph`` is the one-type
case), sampling sessions (per-hop and node-wise, one class), row gathers and
the bounded CSR build, feature files read from disk, and dropout masks
filled on every core.

It works on raw buffers (numpy arrays; torch tensors cross through
``Tensor.numpy()`` without a copy) and does not link against torch.

Sessions made through :func:`open_session` have their worker threads
stopped and joined when the interpreter exits (before it finalizes), whatever
still holds them: a pipe left mid-epoch, an epoch-overlap carry, a loader in a
global. A thread that still calls a session then (a daemon thread, say
torchdata's prefetcher) is parked inside the call for good: CPython ends
daemon threads wherever they next take the interpreter lock once it
finalizes, and inside C++ code (torch's included) that aborts the process.
"""

import atexit
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from salient_pipes._native._core import (
    CSRGraph,
    FeatureFile,
    FeatureFileError,
    PinnedSlots,
    RowCache,
    RowSet,
    Session,
    TypedGraph,
    advise_huge_pages,
    csr_count,
    csr_fill,
    fill_dropout_mask,
    gather,
    random_nodes,
    sample,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from salient_pipes._native._core import Fanouts, SessionOptions

_open_sessions: "weakref.WeakSet[Any]" = weakref.WeakSet()


def open_session(graph: TypedGraph, fanouts: "Fanouts",
                 **options: "Unpack[SessionOptions]") -> Session:
    """``Session(graph, fanouts, **options)``, closed at interpreter exit if
    it is still alive then."""
    session = Session(graph, fanouts, **options)
    _open_sessions.add(session)
    return session


@atexit.register
def close_open_sessions(wait_s: float = 0.5) -> None:
    """Stops and joins the workers of every session still alive; then waits
    (up to ``wait_s``) until the thread that called a session last, if it is
    alive and not the main thread, is parked in it, so that it does not run
    on into finalization."""
    sessions = list(_open_sessions)
    for session in sessions:
        session.close()
    others = {t.ident for t in threading.enumerate() if t is not threading.main_thread()}
    deadline = time.monotonic() + wait_s
    for session in sessions:
        while (session.last_caller in others and not session.parked_callers
               and time.monotonic() < deadline):
            time.sleep(0.001)


__all__ = ["CSRGraph", "FeatureFile", "FeatureFileError", "PinnedSlots", "RowCache", "RowSet",
           "Session", "TypedGraph",
           "advise_huge_pages", "close_open_sessions", "csr_count", "csr_fill",
           "fill_dropout_mask", "gather",
           "open_session", "random_nodes", "sample"]
