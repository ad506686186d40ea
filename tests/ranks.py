"""Rank processes for the multi-process tests (gloo on one machine).

A spawned rank starts a fresh interpreter and imports torch (about 3 s of
CPU here, for every rank of every test); these ranks are forked instead
from one fork server that imported torch and salient_pipes once. A forked
rank starts as a spawned one does otherwise: single-threaded, with its own
process group, and its target and arguments pickled to it. What a fresh
interpreter itself does (its exit, torchrun) is tested with fresh
interpreters: tests/test_exit.py, and the torchrun tests.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any, Callable, List

PRELOAD = ["torch", "torch.distributed", "salient_pipes", "salient_pipes.distributed"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def run_ranks(target: Callable[..., Any], world: int, *args: Any, timeout: float = 240) -> List:
    """Runs ``target(rank, world, *args)`` in ``world`` processes at once and
    returns their exit codes; a rank still running after ``timeout`` seconds
    is killed and fails the test ("a rank hung")."""
    procs = [_context.Process(target=target, args=(rank, world, *args)) for rank in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(1.0, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a rank hung"
    return [p.exitcode for p in procs]
