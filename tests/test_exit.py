"""A program that ends with salient_pipes work in flight exits with status 0:
under torchrun, mid-epoch, through sys.exit, and with daemon threads (ours,
torchdata's, a user's) still pulling batches. Each scenario of
exit_scenarios.py runs several times in fresh processes; before the exit
hooks, daemon threads were ended inside C++ code at finalization and the
process aborted ("terminate called without an active exception")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

SCRIPT = Path(__file__).with_name("exit_scenarios.py")
RUNS = 3  # per scenario, at once; a missing exit hook failed about one run in two or three


def _run_all(commands: List[List[str]], parallel: int = 2) -> List[str]:
    """Runs ``commands`` (``parallel`` at a time); the failures, described."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failures, pending = [], list(commands)
    while pending:
        batch, pending = pending[:parallel], pending[parallel:]
        procs = [(cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)) for cmd in batch]
        for cmd, proc in procs:
            try:
                _, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                failures.append(f"{cmd[-1]}: hung\n{err[-1500:]}")
                continue
            if proc.returncode != 0:
                failures.append(f"{cmd[-1]}: exit status {proc.returncode}\n{err[-1500:]}")
    return failures


@pytest.mark.parametrize("scenario", ["mid_epoch", "sys_exit", "daemon_consumer",
                                      "background_stage", "nodes_loader", "hetero_daemon",
                                      "lookahead_daemon"])
def test_single_process_exits_cleanly(scenario):
    failures = _run_all([[sys.executable, str(SCRIPT), scenario]] * RUNS, parallel=RUNS)
    assert not failures, "\n".join(failures)


def test_three_gloo_ranks_exit_cleanly():
    commands = [[sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "3", str(SCRIPT), "ranks"]] * 3
    failures = _run_all(commands, parallel=1)
    assert not failures, "\n".join(failures)


def test_the_exit_hooks_stop_background_threads_and_park_session_callers():
    """The exit hooks themselves, without a race to catch: run as
    interpreter exit runs them (atexit), they end a stage's background
    thread and park a daemon thread that keeps calling a session, so
    neither runs on into finalization. (The runs above catch a missing hook
    only in some runs: it aborts only when finalization meets a thread
    inside C++ code.)"""
    code = f"""
import atexit, os, sys, threading, time
sys.path.insert(0, {str(SCRIPT.parent)!r})
import exit_scenarios
from salient_pipes import _native
from salient_pipes.pipes import _handoff
exit_scenarios.background_stage()           # a run_ahead thread, its iterator held
exit_scenarios.daemon_consumer()            # a daemon thread iterating a pipe
staged = list(_handoff._running)
sessions = list(_native._open_sessions)
assert staged and all(t.is_alive() for t in staged), staged
consumer = {{t.ident for t in threading.enumerate() if t.name != "scenario"
             and t is not threading.main_thread()}}
atexit._run_exitfuncs()
assert not any(t.is_alive() for t in staged), "a background thread runs on"
used = [s for s in sessions if s.last_caller in consumer]
assert used and all(s.parked_callers == 1 for s in used), [s.parked_callers for s in used]
print("ok", flush=True)
os._exit(0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_closed_session_parks_its_callers_instead_of_raising():
    """What the exit hook relies on, in one process: after close(), a
    thread that calls the session (or was waiting in it) stays inside, and
    the session counts it as parked."""
    code = """
import threading, time
import numpy as np
from salient_pipes import FastDataset, _native
ds = FastDataset.synthetic(num_nodes=2000, seed=0)
s = _native.open_session(ds.graph, [5], num_threads=1)
s.submit(np.arange(8), 0, 0)
s.next()
s.close()
for call in (lambda: s.next(), lambda: s.submit(np.arange(8), 0, 1)):
    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive()
assert s.parked_callers == 2, s.parked_callers
assert s.last_caller in {t.ident for t in threading.enumerate()}
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
