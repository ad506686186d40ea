"""The native core: sampling properties, uniformity, determinism, sessions,
row gathers and input validation."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from salient_pipes import _native
from tests.conftest import (
    check_sample,
    expected_counts,
    native_sample,
    pairs,
    per_hop,
    random_csr,
    reference_full_sample,
    settled_thread_count,
    thread_count,
)

# Both ways of relabelling sampled ids (Session(relabel=...)); each must give
# the same output.
RELABELS = ["slots", "hash"]

graphs = st.builds(
    lambda n, e, seed, wide: random_csr(n, e, seed, col_dtype=np.int32 if wide else np.int64),
    st.integers(1, 60), st.integers(0, 400), st.integers(0, 2**32 - 1), st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs, data=st.data(),
       fanouts=st.lists(st.sampled_from([-1, 1, 2, 3, 5, 8, 70]), min_size=1, max_size=3),
       replace=st.booleans(), seed=st.integers(0, 2**64 - 1), relabel=st.sampled_from(RELABELS))
def test_sample_properties(graph, data, fanouts, replace, seed, relabel):
    rowptr, col = graph
    n = len(rowptr) - 1
    seeds = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n,
                                        unique=True)), dtype=np.int64)
    g = _native.CSRGraph(rowptr, col)
    n_id, hops, _, _ = native_sample(g, seeds, fanouts, replace=replace, return_e_id=True,
                                      seed=seed, relabel=relabel)
    check_sample(rowptr, col, seeds, fanouts, replace, n_id, hops)


@settings(max_examples=60, deadline=None)
@given(graph=graphs, hops=st.integers(1, 3), relabel=st.sampled_from(RELABELS))
def test_full_neighborhood_matches_reference(graph, hops, relabel):
    rowptr, col = graph
    seeds = np.arange(0, len(rowptr) - 1, 3, dtype=np.int64)
    n_id, got, _, _ = native_sample(_native.CSRGraph(rowptr, col), seeds, [-1] * hops,
                                     relabel=relabel)
    ref_n_id, ref = reference_full_sample(rowptr, col, seeds.tolist(), hops)
    assert n_id.tolist() == ref_n_id
    for (edge_index, _, size), (ref_edges, ref_size) in pairs(got, ref):
        assert size == ref_size
        np.testing.assert_array_equal(edge_index, ref_edges)


def _star(degree: int):
    rowptr = np.array([0, degree] + [degree] * degree, dtype=np.int64)
    col = np.arange(1, degree + 1, dtype=np.int64)
    return _native.CSRGraph(rowptr, col)


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("degree,fanout", [(10, 3), (100, 70)])
def test_neighbor_choice_is_uniform(replace, degree, fanout):
    g = _star(degree)
    counts = np.zeros(degree + 1, dtype=np.int64)
    draws = 4000
    for position in range(draws):
        n_id, hops, _, _ = native_sample(g, np.array([0]), [fanout], replace=replace, seed=3,
                                          position=position)
        counts += np.bincount(n_id[hops[0][0][0]], minlength=degree + 1)
    observed = counts[1:]
    assert observed.sum() == draws * fanout
    assert chisquare(observed).pvalue > 1e-4


def test_pairs_without_replacement_are_uniform():
    # Floyd's algorithm must give every 2-subset of 5 neighbors equal odds.
    g = _star(5)
    pairs = np.zeros((6, 6), dtype=np.int64)
    for position in range(10_000):
        n_id, hops, _, _ = native_sample(g, np.array([0]), [2], seed=11, position=position)
        a, b = sorted(n_id[hops[0][0][0]].tolist())
        pairs[a, b] += 1
    observed = pairs[np.triu_indices(6, 1)][5:]  # drop pairs with node 0
    assert len(observed) == 10
    assert chisquare(observed).pvalue > 1e-4


def test_sample_depends_on_seed_epoch_and_position():
    rowptr, col = random_csr(3000, 60000, seed=4, hubs=False)
    g = _native.CSRGraph(rowptr, col)
    seeds = np.arange(0, 3000, 10, dtype=np.int64)

    def run(seed, epoch, position):
        n_id, hops, _, _ = native_sample(g, seeds, [5, 5], return_e_id=True, seed=seed,
                                          epoch=epoch, position=position)
        return n_id.tolist(), [h[1].tolist() for h in hops]

    base = run(1, 2, 3)
    assert run(1, 2, 3) == base
    variants = [run(2, 2, 3), run(1, 3, 3), run(1, 2, 4), run(0, 0, 0)]
    for other in variants:
        assert other != base
    assert len({str(v) for v in variants}) == len(variants)


def test_hash_relabel_grows_past_its_first_table():
    # A batch of many thousand nodes: the hash table (first size 4096) must
    # grow several times and keep every node it already holds.
    rowptr, col = random_csr(40000, 400000, seed=6)
    g = _native.CSRGraph(rowptr, col)
    seeds = np.random.default_rng(0).permutation(40000)[:2000].astype(np.int64)
    dense = native_sample(g, seeds, [15, 10], return_e_id=True, seed=5, relabel="slots")
    hashed = native_sample(g, seeds, [15, 10], return_e_id=True, seed=5, relabel="hash")
    assert len(hashed[0]) > 10000
    check_sample(rowptr, col, seeds, [15, 10], False, hashed[0], hashed[1])
    _same_results([dense], [hashed])


def _growth_of_one_batch(num_nodes, **kwargs):
    """Resident bytes that a session's first batch adds on an edgeless graph
    of num_nodes nodes: the worker's relabel table, made with it."""
    graph = _native.CSRGraph(np.zeros(num_nodes + 1, dtype=np.int64),
                             np.zeros(0, dtype=np.int64))
    session = _native.Session(graph, [2], **kwargs)
    before = psutil.Process().memory_info().rss
    session.submit(np.array([num_nodes - 1], dtype=np.int64), 0, 0)
    n_id, *_ = per_hop(session.next())
    assert n_id.tolist() == [num_nodes - 1]
    return psutil.Process().memory_info().rss - before


def test_relabel_kind_decides_the_table_a_worker_holds():
    # A slot array costs 4 bytes per graph node and worker, a hash map grows
    # with the batch: "slots" and "auto" below 2**26 nodes allocate 64 MiB
    # for 2**24 nodes, "hash" and "auto" above 2**26 nodes next to nothing.
    mib = 1 << 20
    assert _growth_of_one_batch(1 << 24, relabel="slots") > 48 * mib
    assert _growth_of_one_batch(1 << 24) > 48 * mib
    assert _growth_of_one_batch(1 << 24, relabel="hash") < 16 * mib
    assert _growth_of_one_batch((1 << 26) + 1) < 16 * mib


def test_relabel_kind_is_checked():
    rowptr, col = random_csr(10, 30, seed=1)
    graph = _native.CSRGraph(rowptr, col)
    typed = _native.TypedGraph([10], [0], [0], [rowptr], [col])
    for call in (lambda: native_sample(graph, np.array([1]), [2], relabel="dense"),
                 lambda: _native.Session(graph, [2], relabel="sorted"),
                 lambda: _native.Session(typed, [[2]], node_wise=True, relabel="Slots")):
        with pytest.raises(ValueError, match="relabel must be 'auto', 'slots' or 'hash', not"):
            call()


@pytest.mark.parametrize("restart", [1, 1500, 2**31])
def test_slot_array_restarts_its_batch_counter_cleanly(restart):
    # The slot array never resets a batch's slots; it moves a counter past
    # them and zeroes the array when the counter passes `restart` (2**31 by
    # default; 1500 here means every few batches, 1 after every batch).
    # Every batch of one long-lived session must equal the hash relabel's.
    rowptr, col = random_csr(3000, 40000, seed=41)
    graph = _native.CSRGraph(rowptr, col)
    rng = np.random.default_rng(4)
    batches = [rng.permutation(3000)[:rng.integers(1, 200)].astype(np.int64) for _ in range(30)]
    dense = _run_session(graph, batches, 1, relabel_restart=restart)
    hashed = _run_session(graph, batches, 1, relabel="hash")
    _same_results(dense, hashed)
    assert sum(len(n_id) for n_id, *_ in dense) > 4 * 1500  # the counter wrapped


def test_slot_array_restart_is_checked():
    graph = _native.CSRGraph(*random_csr(10, 40, seed=1))
    for bad in (0, 2**31 + 1):
        with pytest.raises(ValueError, match="relabel_restart"):
            _native.Session(graph, [2], relabel_restart=bad)


def _run_session(graph, batches, threads, ordered=True, **kw):
    session = _native.Session(graph, [5, 3], num_threads=threads, ordered=ordered, seed=9, **kw)
    for position, seeds in enumerate(batches):
        session.submit(seeds, 2, position)
    return [per_hop(session.next()) for _ in batches]


def _same_results(a, b):
    assert len(a) == len(b)
    for (n1, h1, x1, y1), (n2, h2, x2, y2) in pairs(a, b):
        np.testing.assert_array_equal(n1, n2)
        for (e1, i1, s1), (e2, i2, s2) in pairs(h1, h2):
            np.testing.assert_array_equal(e1, e2)
            np.testing.assert_array_equal(i1, i2)
            assert s1 == s2
        if x1 is not None:
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)


def test_session_is_deterministic_across_thread_counts():
    rowptr, col = random_csr(2000, 20000, seed=1)
    g = _native.CSRGraph(rowptr, col)
    perm = np.random.default_rng(0).permutation(2000)
    batches = [perm[i:i + 100] for i in range(0, 2000, 100)]
    x = np.random.default_rng(1).standard_normal((2000, 8)).astype(np.float16)
    y = np.arange(2000, dtype=np.int64)
    runs = [_run_session(g, batches, t, x=x, y=y) for t in (1, 2, 4)]
    _same_results(runs[0], runs[1])
    _same_results(runs[0], runs[2])
    n_id, _, xs, ys = runs[0][0]
    np.testing.assert_array_equal(xs, x[n_id])
    np.testing.assert_array_equal(ys, y[batches[0]])


def test_unordered_session_returns_every_batch():
    rowptr, col = random_csr(500, 5000, seed=2)
    g = _native.CSRGraph(rowptr, col)
    batches = [np.arange(i, i + 50, dtype=np.int64) for i in range(0, 500, 50)]
    ordered = _run_session(g, batches, 3)
    unordered = _run_session(g, batches, 3, ordered=False)
    key = lambda r: int(r[0][0])  # noqa: E731 - first seed identifies the batch
    _same_results(sorted(ordered, key=key), sorted(unordered, key=key))


def test_worker_exception_reaches_python_and_session_recovers():
    rowptr, col = random_csr(300, 3000, seed=3)
    g = _native.CSRGraph(rowptr, col)
    session = _native.Session(g, [4], num_threads=2, fail_at_position=1)
    for position in range(3):
        session.submit(np.arange(position * 10, position * 10 + 10, dtype=np.int64), 0, position)
    per_hop(session.next())
    with pytest.raises(RuntimeError, match="injected failure in batch 1"):
        per_hop(session.next())
    session.cancel()
    assert session.in_flight == 0
    session.submit(np.arange(5, dtype=np.int64), 1, 0)
    assert per_hop(session.next())[0][:5].tolist() == list(range(5))


def _stalled_session(**options):
    """A session whose batch at position 0 never finishes (until cancelled
    or closed), with that batch submitted."""
    g = _native.CSRGraph(*random_csr(100, 500, seed=3))
    session = _native.Session(g, [4], stall_at_position=0, **options)
    session.submit(np.arange(10, dtype=np.int64), 0, 0)
    return session


# A wait that signals could not reach would hang; the thread method ends it.
@pytest.mark.timeout(60, method="thread")
def test_ctrl_c_ends_a_wait_for_a_batch_that_never_finishes():
    session = _stalled_session(num_threads=1)
    timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        session.next()
    timer.join()
    assert time.monotonic() - started < 30  # not some other way out of the wait
    assert session.in_flight == 1  # the interrupted wait left its batch in flight
    session.cancel()
    assert session.in_flight == 0
    session.submit(np.arange(5, dtype=np.int64), 0, 1)  # the worker was let go
    assert per_hop(session.next())[0][:5].tolist() == list(range(5))
    session.close()


@pytest.mark.timeout(60, method="thread")
def test_a_signal_handler_that_returns_lets_the_wait_go_on():
    # The way pytest-timeout's alarm reaches a test waiting on a batch: each
    # call of the handler runs during the wait, which goes on after it.
    session = _stalled_session(num_threads=1)
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        if len(calls) == 3:
            raise TimeoutError("third alarm")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
    try:
        with pytest.raises(TimeoutError, match="third alarm"):
            session.next()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert calls == [signal.SIGALRM] * 3
    session.close()


@pytest.mark.timeout(60, method="thread")
def test_cancel_from_another_thread_ends_a_waiting_next():
    session = _stalled_session(num_threads=2)
    timer = threading.Timer(0.3, session.cancel)
    timer.start()
    with pytest.raises(RuntimeError, match="cancel"):
        session.next()
    timer.join()
    session.submit(np.arange(3, dtype=np.int64), 1, 1)
    assert per_hop(session.next())[0][:3].tolist() == [0, 1, 2]


def test_invalid_seeds_raise_value_error_from_the_worker():
    g = _native.CSRGraph(*random_csr(50, 200, seed=4))
    session = _native.Session(g, [2], num_threads=1)
    session.submit(np.array([3, 3]), 0, 0)
    with pytest.raises(ValueError, match="appears twice"):
        per_hop(session.next())
    session.submit(np.array([50]), 0, 1)
    with pytest.raises(ValueError, match="outside"):
        per_hop(session.next())
    with pytest.raises(ValueError, match="outside"):
        native_sample(g, np.array([-1]), [2])
    with pytest.raises(RuntimeError, match="no batch in flight"):
        per_hop(session.next())


def test_cancel_with_work_in_flight_then_next_epoch():
    rowptr, col = random_csr(5000, 100000, seed=5)
    g = _native.CSRGraph(rowptr, col)
    session = _native.Session(g, [10, 10], num_threads=2)
    for position in range(20):
        session.submit(np.arange(position * 100, position * 100 + 100, dtype=np.int64), 0, position)
    per_hop(session.next())
    session.cancel()
    session.submit(np.arange(7, dtype=np.int64), 1, 0)
    assert per_hop(session.next())[0][:7].tolist() == list(range(7))
    assert session.in_flight == 0


def test_sessions_do_not_leak_threads_or_memory():
    g = _native.CSRGraph(*random_csr(20000, 200000, seed=6))
    process = psutil.Process()
    baseline_threads = thread_count()

    def churn(count):
        for i in range(count):
            session = _native.Session(g, [5, 5], num_threads=2)
            session.submit(np.arange(i % 100, i % 100 + 64, dtype=np.int64), 0, 0)
            if i % 2:
                per_hop(session.next())
            del session  # dropped with or without a batch in flight

    churn(100)
    gc.collect()
    warm = process.memory_info().rss
    churn(1000)
    gc.collect()
    assert settled_thread_count(baseline_threads) <= baseline_threads
    if not os.environ.get("SALIENT_PIPES_SANITIZED"):  # ASan's quarantine keeps freed memory
        assert process.memory_info().rss - warm < 16 * 2**20


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int64, np.uint8])
def test_gather_any_dtype(dtype):
    rng = np.random.default_rng(0)
    src = (rng.standard_normal((5000, 7)) * 50).astype(dtype)
    idx = rng.integers(0, 5000, size=20000)
    for threads in (1, 3):
        np.testing.assert_array_equal(_native.gather(src, idx, threads), src[idx])
    np.testing.assert_array_equal(_native.gather(src[:, 0].copy(), idx), src[idx, 0])
    assert _native.gather(src, np.zeros(0, dtype=np.int64)).shape == (0, 7)


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_threaded_gather_splits_the_rows_exactly(threads):
    # 30000 rows of 256 bytes: 7.3 MiB, enough for every thread to take a part
    rng = np.random.default_rng(3)
    src = rng.standard_normal((30000, 64)).astype(np.float32)
    idx = rng.integers(0, 30000, size=30000)
    idx[-1] = 0  # the last row of the last part is checked like any other
    np.testing.assert_array_equal(_native.gather(src, idx, threads), src[idx])


def test_gather_rejects_bad_input():
    src = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"index\[1\] = 4 is outside"):
        _native.gather(src, np.array([0, 4]))
    with pytest.raises(ValueError, match="int64"):
        _native.gather(src, np.array([0, 1], dtype=np.int32))
    with pytest.raises(ValueError, match="contiguous"):
        _native.gather(np.zeros((4, 4))[:, ::2], np.array([0]))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        _native.gather(np.zeros((2, 2, 2)), np.array([0]))
    with pytest.raises(ValueError, match="num_threads"):
        _native.gather(src, np.array([0]), 0)


GOOD_ROWPTR = np.array([0, 2, 3, 3], dtype=np.int64)
GOOD_COL = np.array([1, 2, 0], dtype=np.int64)


@pytest.mark.parametrize("rowptr,col,message", [
    (np.array([0, 2, 1, 3]), GOOD_COL, "not monotone"),
    (np.array([1, 2, 3, 3]), GOOD_COL, r"rowptr\[0\] must be 0"),
    (np.array([0, 2, 3, 4]), GOOD_COL, r"does not equal len\(col\)"),
    (GOOD_ROWPTR, np.array([1, 3, 0]), r"col\[1\] = 3 is outside"),
    (GOOD_ROWPTR, np.array([1, -1, 0]), r"col\[1\] = -1 is outside"),
    (GOOD_ROWPTR.astype(np.int32), GOOD_COL, "rowptr must be int64"),
    (GOOD_ROWPTR, GOOD_COL.astype(np.float64), "col must be int32 or int64"),
    (GOOD_ROWPTR.reshape(2, 2), GOOD_COL, "rowptr must be 1-D"),
    (GOOD_ROWPTR, GOOD_COL.reshape(1, 3), "col must be 1-D"),
    (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), "at least one entry"),
    (np.arange(8, dtype=np.int64)[::2], GOOD_COL, "contiguous"),
])
def test_csr_validation(rowptr, col, message):
    with pytest.raises(ValueError, match=message):
        _native.CSRGraph(rowptr, col)


@pytest.mark.parametrize("fanouts", [[0], [-2], [5, 0], [2**31]])
def test_bad_fanouts(fanouts):
    g = _native.CSRGraph(GOOD_ROWPTR, GOOD_COL)
    with pytest.raises(ValueError, match="fanout"):
        native_sample(g, np.array([0]), fanouts)
    with pytest.raises(ValueError, match="fanout"):
        _native.Session(g, fanouts)


@pytest.mark.parametrize("node_wise", [False, True])
def test_zero_hops_sample_the_seeds_alone(node_wise):
    g = _native.CSRGraph(GOOD_ROWPTR, GOOD_COL)
    n_id, hops, _, _ = native_sample(g, np.array([2, 0]), [], node_wise=node_wise)
    assert n_id.tolist() == [2, 0] and hops == []
    if node_wise:  # a count of 0 skips a hop (an edge type) without an error
        n_id, hops, _, _ = native_sample(g, np.array([2]), [0, 1], node_wise=True)
        assert [h[0].shape[1] for h in hops] == [0, 0] and n_id.tolist() == [2]


def test_bad_session_arguments():
    g = _native.CSRGraph(GOOD_ROWPTR, GOOD_COL)
    with pytest.raises(ValueError, match="num_threads"):
        _native.Session(g, [2], num_threads=0)
    with pytest.raises(ValueError, match="x has 2 rows but the graph has 3 nodes"):
        _native.Session(g, [2], x=np.zeros((2, 4), dtype=np.float16))
    session = _native.Session(g, [2])
    with pytest.raises(ValueError, match="seeds must be int64"):
        session.submit(np.array([0.0]), 0, 0)
    with pytest.raises(ValueError, match="seeds must be 1-D"):
        session.submit(np.zeros((1, 1), dtype=np.int64), 0, 0)


def test_empty_graph_and_single_node():
    g = _native.CSRGraph(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32))
    assert g.num_nodes == 0
    with pytest.raises(ValueError, match="outside"):
        native_sample(g, np.array([0]), [3])
    n_id, hops, _, _ = native_sample(g, np.zeros(0, dtype=np.int64), [3])
    assert n_id.size == 0 and hops[0][2] == (0, 0)
    single = _native.CSRGraph(np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int32))
    n_id, hops, _, _ = native_sample(single, np.array([0]), [5, -1], return_e_id=True)
    assert n_id.tolist() == [0]
    assert [h[0].tolist() for h in hops] == [[[0], [0]], [[0], [0]]]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=graphs, data=st.data(),
       fanouts=st.lists(st.sampled_from([-1, 1, 2, 5, 70]), min_size=1, max_size=3),
       replace=st.booleans(), seed=st.integers(0, 2**64 - 1),
       relabel=st.sampled_from(RELABELS))
def test_node_wise_sample_properties(graph, data, fanouts, replace, seed, relabel):
    """PyG's semantics: hop h expands exactly the nodes hop h - 1 found."""
    rowptr, col = graph
    n = len(rowptr) - 1
    seeds = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n,
                                        unique=True)), dtype=np.int64)
    n_id, hops, _, _ = native_sample(_native.CSRGraph(rowptr, col), seeds, fanouts,
                                      replace=replace, return_e_id=True, seed=seed,
                                      relabel=relabel, node_wise=True)
    assert len(set(n_id.tolist())) == len(n_id)
    np.testing.assert_array_equal(n_id[: len(seeds)], seeds)
    begin, end = 0, len(seeds)
    for (edge_index, e_id, (num_src, num_dst)), fanout in pairs(hops, fanouts):
        src, dst = edge_index
        assert num_dst == end and (not len(dst) or (dst.min() >= begin and dst.max() < end))
        np.testing.assert_array_equal(col[e_id], n_id[src])  # every edge exists
        assert np.all(e_id >= rowptr[n_id[dst]]) and np.all(e_id < rowptr[n_id[dst] + 1])
        degree = rowptr[n_id[begin:end] + 1] - rowptr[n_id[begin:end]]
        np.testing.assert_array_equal(np.bincount(dst - begin, minlength=end - begin),
                                      expected_counts(degree, fanout, replace))
        begin, end = end, num_src
    assert end == len(n_id)


def test_disjoint_node_wise_sampling_keys_every_node_by_its_seed():
    rowptr, col = random_csr(300, 3000, seed=21)
    graph = _native.CSRGraph(rowptr, col)
    seeds = np.array([5, 9, 5, 200], dtype=np.int64)  # seed 5 twice: two subgraphs
    keys, hops, _, _ = native_sample(graph, seeds, [3, 2], node_wise=True, disjoint=True,
                                      return_e_id=True, seed=4)
    batch, n_id = keys // 300, keys % 300
    np.testing.assert_array_equal(batch[:4], np.arange(4))
    np.testing.assert_array_equal(n_id[:4], seeds)
    assert len(set(keys.tolist())) == len(keys)
    for edge_index, e_id, _ in hops:
        src, dst = edge_index
        np.testing.assert_array_equal(batch[src], batch[dst])  # edges stay in their subgraph
        np.testing.assert_array_equal(col[e_id], n_id[src])
    with pytest.raises(ValueError, match="disjoint sampling needs node_wise"):
        native_sample(graph, seeds, [3], disjoint=True)


@pytest.mark.parametrize("node_wise", [False, True])
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("relabel", RELABELS)
def test_prefetching_changes_nothing_but_speed(node_wise, replace, relabel):
    rowptr, col = random_csr(5000, 80000, seed=22)
    graph = _native.CSRGraph(rowptr, col)
    seeds = np.random.default_rng(1).permutation(5000)[:300].astype(np.int64)
    kwargs = dict(replace=replace, return_e_id=True, seed=3, epoch=2, position=5,
                  node_wise=node_wise, relabel=relabel)
    fanouts = [10, -1, 3] if not replace else [10, 5, 3]
    on = native_sample(graph, seeds, fanouts, prefetch=True, **kwargs)
    off = native_sample(graph, seeds, fanouts, prefetch=False, **kwargs)
    np.testing.assert_array_equal(on[0], off[0])
    for (e1, i1, s1), (e2, i2, s2) in pairs(on[1], off[1]):
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(i1, i2)
        assert s1 == s2
    session = _native.Session(graph, fanouts, replace=replace, seed=3, prefetch=False,
                              node_wise=node_wise)
    session.submit(seeds, 2, 5)
    np.testing.assert_array_equal(per_hop(session.next())[0], on[0])


def test_session_reports_mapped_edge_ids():
    rowptr, col = random_csr(400, 4000, seed=23)
    graph = _native.CSRGraph(rowptr, col)
    ids = np.random.default_rng(0).permutation(len(col)).astype(np.int64)
    seeds = np.arange(0, 400, 5, dtype=np.int64)
    runs = []
    for edge_ids in (None, ids):
        session = _native.Session(graph, [4, 3], return_e_id=True, node_wise=True, seed=2,
                                  edge_ids=edge_ids)
        session.submit(seeds, 0, 0)
        runs.append(per_hop(session.next())[1])
    for (_, positions, _), (_, mapped, _) in pairs(*runs):
        np.testing.assert_array_equal(mapped, ids[positions])
    with pytest.raises(ValueError, match="edge_ids must hold one id per edge"):
        _native.Session(graph, [2], edge_ids=ids[:-1])
    with pytest.raises(ValueError, match="edge_ids must be int64"):
        _native.Session(graph, [2], edge_ids=ids.astype(np.int32))


def test_huge_pages_change_nothing_but_speed():
    """A CSR copied into huge pages (more than 2 MiB: the advised path) gives
    the same samples as the same CSR in ordinary pages."""
    import torch

    from salient_pipes.data.memory import HUGE_PAGE, huge_pages

    n = 50_000
    rowptr, col = random_csr(n, 2_000_000, seed=31)
    huge_rowptr, huge_col = huge_pages(torch.from_numpy(rowptr)), huge_pages(torch.from_numpy(col))
    assert huge_col.data_ptr() % HUGE_PAGE == 0 and np.array_equal(huge_col.numpy(), col)
    assert torch.equal(huge_rowptr, torch.from_numpy(rowptr))
    seeds = np.random.default_rng(2).permutation(n)[:2000].astype(np.int64)
    results = []
    for graph in (_native.CSRGraph(rowptr, col),
                  _native.CSRGraph(huge_rowptr.numpy(), huge_col.numpy())):
        session = _native.Session(graph, [8, 4], seed=5, return_e_id=True)
        session.submit(seeds, 1, 3)
        results.append(per_hop(session.next()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for (e1, i1, s1), (e2, i2, s2) in pairs(results[0][1], results[1][1]):
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(i1, i2)
        assert s1 == s2


def test_huge_page_advice_covers_whole_pages_only():
    import mmap

    import torch

    from salient_pipes.data.memory import HUGE_PAGE, huge_pages

    small = torch.arange(1000)
    assert huge_pages(small) is small  # below one huge page: left where it is
    moved = huge_pages(torch.arange(HUGE_PAGE // 8 * 3, dtype=torch.int64))  # 6 MiB
    assert moved.data_ptr() % HUGE_PAGE == 0
    assert torch.equal(moved, torch.arange(HUGE_PAGE // 8 * 3))
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert _native.advise_huge_pages(moved.numpy()) == 3 * HUGE_PAGE
        assert _native.advise_huge_pages(moved[1:].numpy()) == 2 * HUGE_PAGE  # unaligned start
    assert _native.advise_huge_pages(np.zeros(1000)) == 0


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 6, 40])
@pytest.mark.parametrize("fanouts", [[10, -1], [3, 3, 3], [-1, 2]])
@pytest.mark.parametrize("disjoint", [False, True])
def test_pipelined_hop_equals_the_plain_loop(batch, fanouts, disjoint):
    """The hop's three-stage pipeline (prefetch on) against the plain loop
    (prefetch off): hops of fewer targets than the pipeline is deep, whole
    rows (-1), mapped edge ids and disjoint keys."""
    rowptr, col = random_csr(3000, 60000, seed=31)
    graph = _native.CSRGraph(rowptr, col)
    ids = np.random.default_rng(2).permutation(len(col)).astype(np.int64)
    seeds = np.random.default_rng(batch).permutation(3000)[:batch].astype(np.int64)
    runs = []
    for prefetch in (True, False):
        session = _native.Session(graph, fanouts, return_e_id=True, seed=7, prefetch=prefetch,
                                  node_wise=True, disjoint=disjoint, edge_ids=ids)
        session.submit(seeds, 1, 3)
        runs.append(per_hop(session.next()))
    (n1, h1, *_), (n2, h2, *_) = runs
    np.testing.assert_array_equal(n1, n2)
    assert len(h1) == len(h2) == len(fanouts)
    for (e1, i1, s1), (e2, i2, s2) in zip(h1, h2):
        np.testing.assert_array_equal(e1, e2)
        np.testing.assert_array_equal(i1, i2)
        assert s1 == s2
    nodes = n1 % 3000 if disjoint else n1
    for edge_index, e_id, _ in h1:  # the mapped ids name the sampled edges
        np.testing.assert_array_equal(col[np.argsort(ids)[e_id]], nodes[edge_index[0]])


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int16, np.float16, np.int32,
                                   np.float32, np.int64, np.float64])
@pytest.mark.parametrize("width", [None, 1, 3])
def test_gather_of_every_row_width_equals_indexing(dtype, width):
    """Rows of one scalar (1, 2, 4 and 8 bytes) take their own copy loop;
    wider rows the general one."""
    rng = np.random.default_rng(5)
    shape = (5000,) if width is None else (5000, width)
    src = (rng.random(shape) * 100).astype(dtype)
    index = rng.integers(0, 5000, 7001).astype(np.int64)
    for threads in (1, 2):
        np.testing.assert_array_equal(_native.gather(src, index, threads, None), src[index])
    assert _native.gather(src, index[:0], 1, None).shape == (0, *shape[1:])


@pytest.mark.parametrize("relabel", ["slots", "hash"])
def test_duplicate_seeds_keep_a_row_each_when_asked(relabel):
    # 3000 seeds, every tenth one repeated later: the hash map grows past its
    # first 4096 slots (a rehash re-reads n_id, duplicates included) while
    # the seeds are inserted.
    rowptr, col = random_csr(5000, 40000, seed=11)
    g = _native.CSRGraph(rowptr, col)
    rng = np.random.default_rng(0)
    unique = rng.permutation(5000)[:2700].astype(np.int64)
    seeds = np.concatenate([unique, unique[::9][:300]])
    rng.shuffle(seeds)
    session = _native.Session(g, [-1, 3], num_threads=1, node_wise=True,
                              duplicate_seeds=True, relabel=relabel, return_e_id=True)
    session.submit(seeds, 0, 0)
    n_ids, ((edge_index, e_id, _),), num_nodes, num_edges, *_ = session.next()
    n_id = n_ids[0]
    assert n_id[:seeds.size].tolist() == seeds.tolist()  # every copy keeps its row
    rest = n_id[seeds.size:]
    assert len(set(rest.tolist())) == rest.size and not set(rest.tolist()) & set(seeds.tolist())
    first = {}
    for i, s in enumerate(seeds.tolist()):
        first.setdefault(s, i)
    hop0 = num_edges[0][0]
    src, dst = edge_index[:, :hop0]
    for row in range(seeds.size):  # hop 1 (-1): each row, copies too, gets all in-edges
        start, end = rowptr[seeds[row]], rowptr[seeds[row] + 1]
        mine = dst == row
        assert sorted(e_id[:hop0][mine].tolist()) == list(range(start, end))
    # a neighbor that is a seed is known by that seed's first row
    for local, node in zip(edge_index[0].tolist(), n_id[edge_index[0]].tolist()):
        assert local == first.get(node, local)
    with pytest.raises(ValueError, match="duplicate_seeds needs node_wise"):
        _native.Session(g, [2], duplicate_seeds=True)
    plain = _native.Session(g, [2], node_wise=True, num_threads=1, relabel=relabel)
    plain.submit(seeds, 0, 0)
    with pytest.raises(ValueError, match="appears twice"):
        plain.next()
