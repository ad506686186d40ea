"""Faults mid-epoch: a user stage, the consumer, a native worker, Ctrl-C;
pipes dropped with work in flight; interpreter exit with a live pipe. After
each: no hang, no leaked thread, and the next epoch yields every seed once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from salient_pipes import salient_pipeline
from salient_pipes.pipes import SampleNeighbors, upstream
from tests.conftest import settled_thread_count, thread_count


class Boom(Exception):
    pass


def _pipe(ds, **kw):
    return salient_pipeline(ds, batch_size=64, fanouts=(10, 5), device="cpu", num_threads=2, **kw)


def _sampler(pipe) -> SampleNeighbors:
    return next(s for s in upstream(pipe) if isinstance(s, SampleNeighbors))


def _exactly_once(pipe, ds) -> bool:
    seeds = torch.cat([b.n_id[: b.batch_size] for b in pipe])
    return torch.equal(seeds.sort().values, ds.split_idx["train"].sort().values)


def _run_until_fault(pipe, fault: str, at: int = 3):
    """Iterates one epoch with the given fault injected at batch `at`;
    returns the exception that ended it."""
    if fault == "user_stage":
        def stage(batch, count=[0]):  # noqa: B006 - a counter across calls
            count[0] += 1
            if count[0] == at + 1:
                raise Boom("user stage")
            return batch
        pipe = pipe.map(stage)
    if fault in ("native_worker", "sigint_waiting"):
        sampler = _sampler(pipe)
        sampler._inject_failure(at, stall=fault == "sigint_waiting")
    # Python's own Ctrl-C handler, also where the shell started the tests
    # with SIGINT ignored (a background job): then no KeyboardInterrupt comes.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) \
        if fault.startswith("sigint") else None
    if fault == "sigint_waiting":  # Ctrl-C while waiting for a batch that never comes
        threading.Timer(0.5, signal.pthread_kill, (threading.get_ident(), signal.SIGINT)).start()
    try:
        for i, _batch in enumerate(pipe):
            if fault == "consumer" and i == at:
                raise Boom("training step")
            if fault == "keyboard_interrupt" and i == at:
                raise KeyboardInterrupt
            if fault == "sigint" and i == at:
                # A real SIGINT, delivered to this thread by another one while
                # batches are in flight (as Ctrl-C would be); joining the
                # sender makes it arrive here, mid-epoch, on every run.
                main = threading.get_ident()
                sender = threading.Thread(target=signal.pthread_kill, args=(main, signal.SIGINT))
                sender.start()
                sender.join()
                time.sleep(0.01)
    except (Boom, KeyboardInterrupt, RuntimeError) as error:
        return error
    finally:
        if fault in ("native_worker", "sigint_waiting"):
            sampler._inject_failure(-1)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return None


@pytest.mark.timeout(120, method="thread")  # a wait Ctrl-C cannot end would hang
@pytest.mark.parametrize("fault", ["user_stage", "consumer", "native_worker",
                                   "keyboard_interrupt", "sigint", "sigint_waiting"])
def test_fault_mid_epoch_then_clean_next_epoch(small_dataset, fault):
    baseline = thread_count()
    pipe = _pipe(small_dataset)
    error = _run_until_fault(pipe, fault)
    expected = {"user_stage": Boom, "consumer": Boom, "native_worker": RuntimeError,
                "keyboard_interrupt": KeyboardInterrupt, "sigint": KeyboardInterrupt,
                "sigint_waiting": KeyboardInterrupt}[fault]
    assert isinstance(error, expected), error
    if fault == "native_worker":
        assert "injected failure in batch 3" in str(error)
    del error  # its traceback holds the abandoned iterator
    assert _exactly_once(pipe, small_dataset)
    assert _exactly_once(pipe, small_dataset)
    del pipe
    assert settled_thread_count(baseline) <= baseline


def test_abandoned_iterator_does_not_disturb_the_next_epoch(small_dataset):
    pipe = _pipe(small_dataset)
    stale = iter(pipe)
    for _ in range(3):
        next(stale)  # batches stay in flight; `stale` is never closed
    assert _exactly_once(pipe, small_dataset)
    assert _exactly_once(pipe, small_dataset)
    with pytest.raises(RuntimeError, match="invalidated"):
        next(stale)


def test_pipe_dropped_with_batches_in_flight(small_dataset):
    baseline = thread_count()
    for _ in range(20):
        pipe = _pipe(small_dataset, max_in_flight=8)
        it = iter(pipe)
        next(it)
        assert _sampler(pipe)._busy.in_flight > 0
        del it, pipe
    assert settled_thread_count(baseline) <= baseline


def test_a_pipe_closed_after_module_globals_are_cleared(small_dataset, monkeypatch):
    """At interpreter exit a live pipe's iterator may be closed after the
    modules' globals were cleared (set to None); it must close all the same
    (the exit test below met this with torch 2.1's datapipe wrappers)."""
    import salient_pipes.pipes.base as base

    pipe = _pipe(small_dataset, max_in_flight=8)
    it = iter(pipe)
    next(it)
    monkeypatch.setattr(base, "close_iterator", None)
    it.close()  # runs the stage's cleanup: TypeError if it looked the global up now
    monkeypatch.undo()
    assert sum(1 for _ in pipe) == len(pipe)  # and the pipe runs its next epoch


@pytest.mark.parametrize("how", ["return", "sys.exit", "exception"])
def test_interpreter_exit_with_a_live_pipe(how):
    script = textwrap.dedent(f"""
        import sys
        from salient_pipes import FastDataset, salient_pipeline
        ds = FastDataset.synthetic(num_nodes=20000, seed=0)
        pipe = salient_pipeline(ds, batch_size=64, fanouts=(20, 20), device="cpu",
                                num_threads=2, max_in_flight=16)
        it = iter(pipe)
        next(it)
        live = pipe  # a module-level pipe with 16 batches in flight at exit
        if {how!r} == "sys.exit":
            sys.exit(0)
        if {how!r} == "exception":
            raise SystemExit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == (3 if how == "exception" else 0), proc.stderr
    assert "Traceback" not in proc.stderr
