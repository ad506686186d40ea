"""Handing items from a stage's background thread to its consumer: a bounded
queue, an end marker, failures raised in the consumer's thread, and puts that
give up once the consumer has stopped (so the thread never blocks forever)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

from salient_pipes.pipes.base import close_iterator

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


def run_ahead(make: Callable[[], Iterator[Any]], depth: int, stop: threading.Event,
              name: str) -> Iterator[Any]:
    """Yields the items of ``make()``, which a background thread iterates up to
    ``depth`` items ahead of the consumer. The thread's failures are raised
    here, in order; when the consumer stops (or ``stop`` is set by a later
    iteration), the thread closes ``make()``'s iterator and ends.

    Example:
        >>> list(run_ahead(lambda: iter(range(3)), 2, threading.Event(), "demo"))
        [0, 1, 2]
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)

    def work() -> None:
        items = None
        try:
            items = make()
            for item in items:
                if not offer(ready, item, stop):
                    return
            offer(ready, DONE, stop)
        except BaseException as error:  # handed to the consumer's thread
            offer(ready, Failure(error), stop)
        finally:
            if items is not None:
                close_iterator(items)

    worker = threading.Thread(target=work, daemon=True, name=name)
    worker.start()
    try:
        yield from drain(ready)
    finally:
        stop.set()
        worker.join()
