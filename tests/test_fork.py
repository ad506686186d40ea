"""A process forked from one that sampled (a DataLoader worker of another
library, a multiprocessing pool with the fork method) inherits our sessions
without their worker threads. There they must neither hang nor abort: the
garbage collector may destroy them, exit may close them, a call names the
problem, and our pipes open sessions of their own."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

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


def _compiler() -> list[str]:
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    found = shutil.which(shlex.split(cxx)[0])
    if found is None:
        pytest.fail(f"no C++ compiler ({cxx}); the package's own build needs one too")
    return shlex.split(cxx)


def test_arrays_a_child_inherits_free_without_the_parents_locks(tmp_path):
    """The block pool's and pinned slots' locks may be held by a parent's
    worker at the fork; a child freeing inherited batch memory must not wait
    on them. The program forks 300 times beside a thread that holds those
    locks most of the time, and counts the children that did not exit."""
    native = Path(__file__).resolve().parents[1] / "salient_pipes" / "_native"
    exe = tmp_path / "fork_locks"
    subprocess.run([*_compiler(), "-std=c++17", "-O1", "-pthread", f"-I{native}",
                    str(Path(__file__).parent / "native" / "fork_locks.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe), "300"], check=True, capture_output=True, text=True,
                         timeout=600).stdout
    assert out.split() == ["0"], f"{out.strip()} children hung or failed (counting stops at 5)"
