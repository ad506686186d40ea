"""Handing items from a stage's background thread to its consumer: a bounded
queue, an end marker, failures raised in the consumer's thread, and puts that
give up once the consumer has stopped (so the thread never blocks forever)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

DONE = object()


class Failure:
    """An exception of the background thread, raised again by :func:`drain`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def offer(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Puts ``item`` unless the consumer stops first; True if it was put."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def drain(ready: queue.Queue) -> Iterator[Any]:
    """The items put on ``ready`` until :data:`DONE`; a :class:`Failure`
    raises its exception here."""
    while True:
        item = ready.get()
        if item is DONE:
            return
        if isinstance(item, Failure):
            raise item.error
        yield item
