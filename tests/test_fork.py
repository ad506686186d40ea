"""A process forked from one that sampled (a DataLoader worker of another
library, a multiprocessing pool with the fork method) inherits our sessions
without their worker threads. There they must neither hang nor abort: the
garbage collector may destroy them, exit may close them, a call names the
problem, and our pipes open sessions of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fork() on Windows")


def _run(code: str, timeout: float = 120) -> str:
    """Runs ``code`` in a fresh interpreter; on a hang, ends it and its forked
    child (one process group) and fails."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hung for {timeout} s:\n{out}{err}")
    assert proc.returncode == 0, out + err
    return out


def test_an_inherited_session_refuses_calls_and_is_collected_and_closed_without_hanging():
    out = _run("""
        import gc, os, sys
        import numpy as np
        from salient_pipes import _native

        graph = _native.CSRGraph(np.array([0, 1, 2, 3], dtype=np.int64),
                                 np.array([1, 2, 0], dtype=np.int64))
        seeds = np.array([0], dtype=np.int64)
        kept = _native.open_session(graph, [1], num_threads=2)
        dropped = _native.open_session(graph, [1], num_threads=2)
        for s in (kept, dropped):
            s.submit(seeds, 0, 0)
            s.next()
        cycle = {"session": dropped}
        cycle["self"] = cycle  # freed only by the garbage collector
        del dropped, cycle
        gc.disable()  # so that the child is the one to collect it
        pid = os.fork()
        if pid == 0:
            gc.enable()
            gc.collect()  # destroys the inherited session: must not join the parent's threads
            print("collected", flush=True)
            try:
                kept.submit(seeds, 0, 1)
            except RuntimeError as e:
                print("submit:", "inherited it through fork()" in str(e), flush=True)
            try:
                kept.next()
            except RuntimeError as e:
                print("next:", str(e).startswith("this sampling session belongs to process"),
                      flush=True)
            kept.cancel()
            print("in flight:", kept.in_flight, flush=True)
            sys.exit(0)  # runs the exit hook, which closes every session still open
        _, status = os.waitpid(pid, 0)
        print("child status", status)
        kept.submit(seeds, 0, 1)  # the parent's session is untouched
        print("parent", kept.next()[0][0].tolist())
    """)
    assert out.splitlines() == ["collected", "submit: True", "next: True", "in flight: 0",
                                "child status 0", "parent [0, 1]"]


def test_a_forked_child_iterates_a_pipe_built_before_the_fork():
    out = _run("""
        import os
        import torch
        from salient_pipes import FastDataset, salient_pipeline

        ds = FastDataset.synthetic(num_nodes=3000, seed=0)
        pipe = salient_pipeline(ds, batch_size=256, fanouts=(5, 3), device="cpu", num_threads=2)
        first = [b.n_id.sum().item() for b in pipe]  # epoch 0: the session and its threads exist
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            pipe.set_epoch(1)
            sums = [b.n_id.sum().item() for b in pipe]  # on a session of its own
            os.write(write, repr(sums).encode())
            os._exit(0)
        os.close(write)
        child = eval(os.read(read, 1 << 20).decode())
        _, status = os.waitpid(pid, 0)
        pipe.set_epoch(1)
        print(status, child == [b.n_id.sum().item() for b in pipe], child != first, len(child))
    """)
    status, same, differs, batches = out.split()
    assert (status, same, differs) == ("0", "True", "True")
    assert int(batches) > 1
