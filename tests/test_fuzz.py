"""Fuzzing every native entry point: random and adversarial arrays, dtypes,
sizes 0 and 1, huge fanouts and extreme integers. Each call must give a
correct result (checked against the reference) or raise ValueError: never
crash, hang or answer wrongly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from salient_pipes import _native
from tests.conftest import check_sample, native_sample, per_hop, random_csr

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
EXTREMES = [0, 1, -1, 2**31 - 1, 2**31, -(2**31), INT64_MAX, INT64_MIN]
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

int_dtypes = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
any_dtypes = st.one_of(int_dtypes, st.sampled_from([np.float16, np.float32, np.float64, np.bool_]))


def adversarial_ints(dtype, max_len=12):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    elements = st.one_of(st.integers(-3, 12),
                         st.sampled_from([v for v in EXTREMES
                                          if info is None or info.min <= v <= info.max]))
    if info is not None:
        elements = elements.filter(lambda v: info.min <= v <= info.max)
    return hnp.arrays(dtype, st.integers(0, max_len), elements=elements)


def csr_is_valid(rowptr: np.ndarray, col: np.ndarray) -> bool:
    """The reference answer to "must CSRGraph accept these arrays?"."""
    if rowptr.dtype != np.int64 or col.dtype not in (np.int32, np.int64):
        return False
    if rowptr.ndim != 1 or col.ndim != 1 or len(rowptr) == 0:
        return False
    n = len(rowptr) - 1
    return bool(rowptr[0] == 0 and np.all(np.diff(rowptr) >= 0) and rowptr[-1] == len(col)
                and np.all((col >= 0) & (col < n)))


@FUZZ
@given(data=st.data(), rowptr_dtype=int_dtypes, col_dtype=int_dtypes)
def test_csr_accepts_exactly_the_valid_arrays(data, rowptr_dtype, col_dtype):
    rowptr = data.draw(adversarial_ints(rowptr_dtype))
    col = data.draw(adversarial_ints(col_dtype))
    if data.draw(st.booleans()) and len(rowptr):  # often make it nearly valid
        rowptr = np.sort(rowptr).astype(rowptr_dtype)
    valid = csr_is_valid(rowptr, col)
    if valid:
        graph = _native.CSRGraph(rowptr, col)
        assert graph.num_nodes == len(rowptr) - 1 and graph.num_edges == len(col)
    else:
        with pytest.raises(ValueError):
            _native.CSRGraph(rowptr, col)


@FUZZ
@given(n=st.integers(1, 30), e=st.integers(0, 120), graph_seed=st.integers(0, 2**31),
       seeds=st.lists(st.sampled_from(EXTREMES + list(range(30))), max_size=8),
       fanouts=st.lists(st.sampled_from(EXTREMES + [2, 5, 1000]), max_size=4),
       replace=st.booleans(), seed=st.integers(0, 2**64 - 1), epoch=st.integers(0, 2**64 - 1))
def test_sample_is_correct_or_value_error(n, e, graph_seed, seeds, fanouts, replace, seed, epoch):
    rowptr, col = random_csr(n, e, graph_seed)
    graph = _native.CSRGraph(rowptr, col)
    seeds_arr = np.array(seeds, dtype=np.int64)
    seeds_ok = all(0 <= s < n for s in seeds) and len(set(seeds)) == len(seeds)
    fanouts_ok = all(f == -1 or 0 < f <= 2**31 - 1 for f in fanouts)  # no hops: seeds alone
    # With replacement, a huge fanout asks for more memory than exists.
    assume(not (replace and fanouts_ok and fanouts and max(fanouts) > 10**6 and seeds))
    if seeds_ok and fanouts_ok:
        n_id, hops, _, _ = native_sample(graph, seeds_arr, fanouts, replace=replace,
                                          return_e_id=True, seed=seed, epoch=epoch)
        check_sample(rowptr, col, seeds_arr, fanouts, replace, n_id, hops)
    else:
        with pytest.raises(ValueError):
            native_sample(graph, seeds_arr, fanouts, replace=replace, seed=seed, epoch=epoch)


@FUZZ
@given(data=st.data(), dtype=any_dtypes, rows=st.integers(0, 20), width=st.integers(0, 5),
       threads=st.integers(-1, 4))
def test_gather_is_correct_or_value_error(data, dtype, rows, width, threads):
    src = data.draw(hnp.arrays(dtype, (rows, width) if width else (rows,)))
    index = data.draw(adversarial_ints(data.draw(int_dtypes), max_len=10))
    valid = (index.dtype == np.int64 and threads >= 1
             and bool(np.all((index >= 0) & (index < rows))))
    if valid:
        out = _native.gather(src, index, threads)
        assert out.dtype == src.dtype
        np.testing.assert_array_equal(out.view(np.uint8), src[index].view(np.uint8))
    else:
        with pytest.raises(ValueError):
            _native.gather(src, index, threads)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(st.sampled_from(EXTREMES + list(range(40))), max_size=6),
                        min_size=1, max_size=6),
       threads=st.integers(1, 3), ordered=st.booleans())
def test_session_delivers_every_batch_or_its_error(batches, threads, ordered):
    rowptr, col = random_csr(40, 300, 1)
    graph = _native.CSRGraph(rowptr, col)
    x = np.arange(80, dtype=np.float32).reshape(40, 2)
    session = _native.Session(graph, [3, -1], x=x, num_threads=threads, ordered=ordered,
                              return_e_id=True)
    for position, seeds in enumerate(batches):
        session.submit(np.array(seeds, dtype=np.int64), 0, position)
    outcomes = 0
    for _ in batches:
        try:
            n_id, hops, xs, _ = per_hop(session.next())
        except ValueError:
            outcomes += 1
            continue
        outcomes += 1
        np.testing.assert_array_equal(xs, x[n_id])
        seeds = n_id[: hops[-1][2][1]]
        check_sample(rowptr, col, seeds, [3, -1], False, n_id, hops)
    assert outcomes == len(batches) and session.in_flight == 0


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_graphs_every_entry_point(n):
    rowptr = np.zeros(n + 1, dtype=np.int64)
    if n:
        rowptr[1] = 1
    col = np.zeros(n, dtype=np.int64)
    graph = _native.CSRGraph(rowptr, col)
    x = np.ones((n, 3), dtype=np.float16)
    session = _native.Session(graph, [-1, 4], x=x, y=np.zeros(n, dtype=np.int64))
    session.submit(np.arange(n, dtype=np.int64), 0, 0)
    n_id, hops, xs, ys = per_hop(session.next())
    assert n_id.tolist() == list(range(n)) and xs.shape == (n, 3) and ys.shape == (n,)
    assert _native.gather(x, np.arange(n, dtype=np.int64)).shape == (n, 3)


def _reference_csr(src: np.ndarray, dst: np.ndarray, n: int, undirected: bool):
    rows = {v: set() for v in range(n)}
    for s, d in zip(src.tolist(), dst.tolist()):
        rows[d].add(s)
        if undirected:
            rows[s].add(d)
    rowptr = np.cumsum([0] + [len(rows[v]) for v in range(n)])
    col = [u for v in range(n) for u in sorted(rows[v])]
    return rowptr, np.array(col, dtype=np.int64)


@FUZZ
@given(data=st.data(), dtype=int_dtypes, n=st.integers(0, 30), undirected=st.booleans(),
       threads=st.integers(1, 3), cuts=st.lists(st.integers(0, 30), max_size=4))
def test_csr_build_is_correct_or_value_error(data, dtype, n, undirected, threads, cuts):
    src = data.draw(adversarial_ints(dtype, max_len=40))
    dst = data.draw(hnp.arrays(dtype, len(src), elements=st.integers(0, max(0, min(
        n, np.iinfo(dtype).max) - 1)) if n else st.just(0)))
    counts = np.zeros(n + 1, dtype=np.int64)
    valid = dtype in (np.int32, np.int64) and bool(np.all((src >= 0) & (src < n))) and \
        bool(np.all((dst >= 0) & (dst < n)))
    if not valid:
        with pytest.raises(ValueError):
            _native.csr_count(src, dst, n, undirected, counts)
        return
    _native.csr_count(src, dst, n, undirected, counts)
    raw = counts[1:]
    col = np.full(int(raw.sum()), -7, dtype=np.int32)
    rowptr = [0]
    written = 0
    bounds = sorted({0, n, *[c for c in cuts if c <= n]})  # arbitrary row buckets
    for begin, end in zip(bounds, bounds[1:]):
        degree = np.zeros(end - begin, dtype=np.int64)
        count = _native.csr_fill(src, dst, n, undirected, begin, end, raw[begin:end].copy(),
                                 col[written:], degree, threads)
        assert count == degree.sum()
        rowptr += (written + np.cumsum(degree)).tolist()
        written += count
    ref_rowptr, ref_col = _reference_csr(src, dst, n, undirected)
    np.testing.assert_array_equal(rowptr if n else [0], ref_rowptr)
    np.testing.assert_array_equal(col[:written], ref_col)


def test_csr_fill_rejects_what_would_overflow_its_output():
    src = np.array([0, 1, 2], dtype=np.int64)
    dst = np.array([1, 2, 0], dtype=np.int64)
    raw = np.array([2, 2, 2], dtype=np.int64)
    degree = np.zeros(3, dtype=np.int64)
    with pytest.raises(ValueError, match="col has room for 5 entries"):
        _native.csr_fill(src, dst, 3, True, 0, 3, raw, np.zeros(5, np.int32), degree, 1)
    with pytest.raises(ValueError, match="raw counts must be >= 0"):
        _native.csr_fill(src, dst, 3, True, 0, 3, -raw, np.zeros(6, np.int32), degree, 1)
    with pytest.raises(ValueError, match="row_begin"):
        _native.csr_fill(src, dst, 3, True, 2, 4, raw[:2], np.zeros(6, np.int32), degree, 1)
    with pytest.raises(ValueError, match="writable"):
        ro = np.zeros(6, np.int32)
        ro.flags.writeable = False
        _native.csr_fill(src, dst, 3, True, 0, 3, raw, ro, degree, 1)
    with pytest.raises(ValueError, match="same length"):
        _native.csr_count(src, dst[:2], 3, True, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="counts must hold 4 entries"):
        _native.csr_count(src, dst, 3, True, np.zeros(3, np.int64))


@FUZZ
@given(data=st.data(), rows=st.integers(1, 20), width=st.integers(1, 4),
       threads=st.integers(1, 3))
def test_gather_through_a_cache_is_correct(data, rows, width, threads):
    src = data.draw(hnp.arrays(np.float32, (rows, width)))
    cached = data.draw(st.lists(st.integers(0, rows - 1), unique=True, max_size=rows))
    slot = np.full(rows, -1, dtype=np.int32)
    slot[cached] = np.arange(len(cached), dtype=np.int32)
    cache_rows = np.ascontiguousarray(src[cached]).reshape(len(cached), width)
    cache = _native.RowCache(slot, cache_rows)
    index = data.draw(hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(0, rows - 1)))
    out = _native.gather(src, index, threads, cache)
    np.testing.assert_array_equal(out.view(np.uint8), src[index].view(np.uint8))
    assert cache.lookups == len(index) and cache.hits == int(np.isin(index, cached).sum())
