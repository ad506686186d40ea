"""Handing items from a stage's background thread to its consumer: a bounded
queue, an end marker, failures raised in the consumer's thread, and puts that
give up once the consumer has stopped (so the thread never blocks forever).

At interpreter exit, before it finalizes, every background thread still
running is stopped and joined (then the native sessions are closed, see
``salient_pipes._native``): a daemon thread that runs on into finalization
is ended by CPython wherever it next wants the interpreter lock, which
aborts the process when that happens inside C++ code.
"""

from __future__ import annotations

import atexit
import queue
import sys
import threading
from typing import Any, Callable, Dict, Iterator

from salient_pipes import _native  # noqa: F401  (its exit hook runs after this module's)
from salient_pipes.pipes.base import close_iterator

DONE = object()
EXIT_JOIN_S = 2.0  # how long exit waits for each background thread
POLL_S = 0.05  # how often a waiting background thread looks at its stop

_running: Dict[threading.Thread, threading.Event] = {}  # background thread -> its stop
_this_thread = threading.local()  # .stop: a background thread's own stop


class Stopped(BaseException):
    """Ends a background thread that waits for items after its consumer
    has stopped it (see :func:`drain`)."""


def start_background(target: Callable[[], None], stop: threading.Event,
                     name: str) -> threading.Thread:
    """Starts ``target`` on a daemon thread that interpreter exit stops (by
    setting ``stop``) and joins."""

    def run() -> None:
        _this_thread.stop = stop
        try:
            target()
        finally:
            _running.pop(threading.current_thread(), None)

    thread = threading.Thread(target=run, daemon=True, name=name)
    _running[thread] = stop
    thread.start()
    return thread


@atexit.register
def stop_background_threads() -> None:
    """Stops every background thread still running and waits for each (up
    to ``EXIT_JOIN_S``) to end."""
    running = list(_running.items())
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(EXIT_JOIN_S)


class Failure:
    """An exception of the background thread, raised again by :func:`drain`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def offer(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Puts ``item`` unless the consumer stops first; True if it was put."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            pass
    return False


def drain(ready: queue.Queue) -> Iterator[Any]:
    """The items put on ``ready`` until :data:`DONE`; a :class:`Failure`
    raises its exception here.

    In a background thread, waiting for an item ends in :class:`Stopped`
    once that thread's own stop is set: its consumer is gone, and a chain
    of threads then unwinds even while a stage further up never delivers
    (otherwise each consumer's join would wait on it forever)."""
    stop = getattr(_this_thread, "stop", None)
    while True:
        if stop is None:
            item = ready.get()
        else:
            try:
                item = ready.get(timeout=POLL_S)
            except queue.Empty:
                if stop.is_set():
                    raise Stopped from None
                continue
        if item is DONE:
            return
        if isinstance(item, Failure):
            raise item.error
        yield item
        item = None  # not held while the next one is awaited


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
                item = None  # not held while the next one is made
            offer(ready, DONE, stop)
        except BaseException as error:  # handed to the consumer's thread
            offer(ready, Failure(error), stop)
        finally:
            if items is not None:
                close_iterator(items)

    worker = start_background(work, stop, name)
    try:
        yield from drain(ready)
    finally:
        stop.set()
        join_unless_exiting(worker)


def join_unless_exiting(thread: threading.Thread) -> None:
    """Joins ``thread``, except while the interpreter finalizes (a generator
    closed then, held until exit): a daemon thread cannot run any more by
    then, so the join would never return."""
    if not sys.is_finalizing():
        thread.join()
