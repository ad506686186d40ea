"""Shared fixtures: small graphs, a pure-Python reference sampler, Cora."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch

from salient_pipes import FastDataset, HeteroDataset, _native

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Names the shuffled order's seed at the end, where ``-q`` (which hides
    pytest-randomly's header line) still shows it: a failure that depends on
    the order replays with ``--randomly-seed=SEED``."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and config.pluginmanager.hasplugin("randomly"):
        terminalreporter.write_line(f"test order: --randomly-seed={seed} replays it")


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_the_session_dir(tmp_path_factory):
    """The suite's processes write their temporary files under the
    session's own directory, which pytest prunes, not the system's: PyG
    leaves each message-passing layer's generated module in the temporary
    directory, one per layer class and process, and the suite starts many
    processes."""
    path = str(tmp_path_factory.mktemp("tmp"))
    before = (os.environ.get("TMPDIR"), tempfile.tempdir)
    os.environ["TMPDIR"], tempfile.tempdir = path, path
    yield
    if before[0] is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = before[0]
    tempfile.tempdir = before[1]


@pytest.fixture(autouse=True)
def system_malloc_in_this_process(monkeypatch):
    """The train command run in the test process leaves its allocator as it
    is (keep_freed_memory changes it for the whole process; its own tests
    run it in a child process)."""
    monkeypatch.setattr("salient_pipes.cli.train.keep_freed_memory", lambda: False)


def per_hop(result: tuple) -> tuple:
    """A sample of a graph of one type as ``(n_id, hops, x, y)`` from the
    native session's tuple, ``hops`` holding ``(edge_index, e_id, (num_src,
    num_dst))`` per hop: a per-hop sample's as they are, a node-wise
    sample's one edge list cut at its hops (``num_dst``: the nodes found
    before the hop, ``num_src``: after it)."""
    n_ids, edges, num_nodes, num_edges, xs, y, _ = result
    if edges and edges[0][2] is None:  # node-wise: one edge type, its hops in a row
        (edge_index, e_id, _), = edges
        found = np.cumsum(num_nodes[0])
        bounds = np.cumsum([0, *num_edges[0]])
        edges = [(edge_index[:, a:b], None if e_id is None else e_id[a:b],
                  (int(found[h + 1]), int(found[h])))
                 for h, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    return n_ids[0], list(edges), xs[0] if xs else None, y


def native_sample(graph, seeds, fanouts, **kwargs) -> tuple:
    """``_native.sample`` of a graph of one type, per hop: ``(n_id, hops, x, y)``."""
    return per_hop(_native.sample(graph, seeds, fanouts, **kwargs))


def random_csr(num_nodes: int, num_edges: int, seed: int, *, hubs: bool = True,
               col_dtype=np.int64) -> Tuple[np.ndarray, np.ndarray]:
    """A raw CSR with isolated nodes, self loops, duplicate edges and hubs:
    no cleaning, exactly what the native core must handle."""
    rng = np.random.default_rng(seed)
    if num_nodes == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=col_dtype)
    weights = rng.pareto(1.5, num_nodes) + 1 if hubs else np.ones(num_nodes)
    weights[rng.random(num_nodes) < 0.2] = 0  # isolated rows
    if weights.sum() == 0:
        weights[:] = 1
    rows = rng.choice(num_nodes, size=num_edges, p=weights / weights.sum())
    cols = rng.integers(0, num_nodes, size=num_edges)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    rowptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=num_nodes), out=rowptr[1:])
    return rowptr, cols.astype(col_dtype)


def reference_full_sample(rowptr: np.ndarray, col: np.ndarray, seeds: Sequence[int],
                          hops: int) -> Tuple[List[int], List[Tuple[np.ndarray, Tuple[int, int]]]]:
    """Full-neighborhood sampling in plain Python: the exact answer the native
    sampler must give for fanouts of -1 (relabeling in discovery order)."""
    n_id = list(seeds)
    local: Dict[int, int] = {v: i for i, v in enumerate(n_id)}
    adjs = []
    for _ in range(hops):
        num_dst = len(n_id)
        src, dst = [], []
        for i in range(num_dst):
            v = n_id[i]
            for e in range(rowptr[v], rowptr[v + 1]):
                u = int(col[e])
                if u not in local:
                    local[u] = len(n_id)
                    n_id.append(u)
                src.append(local[u])
                dst.append(i)
        adjs.append((np.array([src, dst], dtype=np.int64).reshape(2, -1), (len(n_id), num_dst)))
    return n_id, adjs[::-1]


def expected_counts(degree: np.ndarray, fanout: int, replace: bool) -> np.ndarray:
    """How many edges a target of each ``degree`` must get in a hop."""
    if fanout == -1:
        return degree
    if replace:
        return np.where(degree > 0, fanout, 0)
    return np.minimum(degree, fanout)


def check_sample(rowptr: np.ndarray, col: np.ndarray, seeds: np.ndarray, fanouts: Sequence[int],
                 replace: bool, n_id: np.ndarray, hops: list) -> None:
    """Asserts every property a sample must have (DESIGN.md §2)."""
    assert n_id.dtype == np.int64
    assert len(set(n_id.tolist())) == len(n_id), "n_id holds a node twice"
    np.testing.assert_array_equal(n_id[: len(seeds)], seeds)
    assert len(hops) == len(fanouts)
    if not hops:  # no hops: the seeds alone
        assert len(n_id) == len(seeds)
        return
    assert hops[0][2][0] == len(n_id)
    assert hops[-1][2][1] == len(seeds)
    for outer, inner in zip(hops[:-1], hops[1:]):
        assert outer[2][1] == inner[2][0], "hop sizes do not chain"
    for (edge_index, e_id, (num_src, num_dst)), fanout in zip(hops, reversed(fanouts)):
        assert edge_index.dtype == np.int64 and edge_index.shape[0] == 2
        src, dst = edge_index
        if len(dst):
            assert src.max() < num_src and dst.max() < num_dst and src.min() >= 0
            assert np.all(np.diff(dst) >= 0), "edge_index not sorted by target"
        # every sampled edge exists, at the position e_id names
        np.testing.assert_array_equal(col[e_id], n_id[src])
        assert np.all(e_id >= rowptr[n_id[dst]]) and np.all(e_id < rowptr[n_id[dst] + 1])
        counts = np.bincount(dst, minlength=num_dst)
        degree = rowptr[n_id[:num_dst] + 1] - rowptr[n_id[:num_dst]]
        np.testing.assert_array_equal(counts, expected_counts(degree, fanout, replace))
        if not replace:
            pairs = set(zip(dst.tolist(), e_id.tolist()))
            assert len(pairs) == len(dst), "an edge position was drawn twice"


def thread_count() -> int:
    """OS threads of this process (native ones included)."""
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise RuntimeError("no thread count in /proc")


@pytest.fixture(scope="session")
def small_dataset() -> FastDataset:
    return FastDataset.synthetic(num_nodes=3000, avg_degree=10, num_features=16, num_classes=4,
                                 seed=7)


@pytest.fixture(scope="module")
def mag() -> HeteroDataset:
    """A small ogbn-mag-shaped graph, one per test module."""
    return HeteroDataset.synthetic_mag(scale=0.002, num_classes=8, seed=3)


@pytest.fixture(scope="module")
def mag_pyg(mag):
    return mag.to_pyg()


@pytest.fixture(scope="session")
def planetoid_root(tmp_path_factory) -> Path:
    source = SHARED / "data" / "planetoid" / "Cora" / "raw"
    if not source.exists():
        # A checkout without ../shared beside it may skip the Cora tests;
        # CI has it, so there a missing copy is a failure, not a skip.
        message = f"Cora's raw files are not at {source}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("planetoid")
    shutil.copytree(source, root / "Cora" / "raw")
    return root


@pytest.fixture(scope="session")
def cora(planetoid_root):
    from torch_geometric.datasets import Planetoid

    return Planetoid(str(planetoid_root), "Cora")[0]


@pytest.fixture
def torch_threads():
    """Restores torch's thread count after a test that changes it."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def pairs(a: Sequence, b: Sequence) -> List[Tuple]:
    """``zip(a, b)`` that fails when one side has items the other lacks."""
    a, b = list(a), list(b)
    assert len(a) == len(b), f"{len(a)} items against {len(b)}"
    return list(zip(a, b))


def take_then_resume(make_pipe: Callable[[], Any], pipe: Any, k: int) -> Tuple[List, Any]:
    """The first ``k`` batches of ``pipe``'s epoch, and a fresh pipe from
    ``make_pipe()`` loaded with ``pipe``'s state after them."""
    it = iter(pipe)
    taken = [next(it) for _ in range(k)]
    state = pipe.state_dict()
    del it
    fresh = make_pipe()
    fresh.load_state_dict(state)
    return taken, fresh


def settled_thread_count(expected: int, timeout: float = 5.0) -> int:
    """This process's thread count once it is back to at most ``expected``
    or ``timeout`` seconds have passed: a thread that is already ending may
    take a moment to be gone, a leaked one never goes. (Fewer is no leak: a
    thread an earlier test left, torch's or a library's, may end meanwhile.)"""
    deadline = time.monotonic() + timeout
    while thread_count() > expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return thread_count()


def mapped_file(t: torch.Tensor) -> str:
    """The file mapped at the memory that holds t's first byte, from
    /proc/self/maps ('' for anonymous memory)."""
    address = t.data_ptr()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            begin, end = (int(a, 16) for a in fields[0].split("-"))
            if begin <= address < end:
                name = fields[5] if len(fields) > 5 else ""
                return "" if name.startswith("[") else name  # [heap], [anon:...]
    raise AssertionError("address not mapped")
