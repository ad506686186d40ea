"""Shared pieces of the benchmarks: graphs, timing, and writing results."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import torch

from salient_pipes import FastDataset, _native, csr_from_edge_index, salient_pipeline
from salient_pipes.pipes._arrays import as_buffer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "img"
SLASHDOT = ROOT.parent / "shared" / "data" / "snap" / "soc-Slashdot0902.txt.gz"
# The comparisons' settings: SALIENT's tutorial fanouts and batch, 2 threads.
FANOUTS = (15, 10, 5)
BATCH = 1024
THREADS = 2


def arxiv_like() -> FastDataset:
    return FastDataset.arxiv_like(seed=0)


def slashdot(path: Path = SLASHDOT, num_features: int = 128, seed: int = 0) -> FastDataset:
    """SNAP's soc-Slashdot0902 (82,168 nodes), symmetrized, with random fp16
    features, random labels and half of its nodes as the train split."""
    pairs = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if not line.startswith("#"):
                a, b = line.split()
                pairs.append((int(a), int(b)))
    edges = torch.tensor(pairs).t()
    num_nodes = int(edges.max()) + 1
    rowptr, col = csr_from_edge_index(edges, num_nodes)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(num_nodes, generator=gen)
    half = num_nodes // 2
    return FastDataset(
        name="soc-Slashdot0902", x=torch.randn(num_nodes, num_features, generator=gen).half(),
        y=torch.randint(0, 10, (num_nodes,), generator=gen), rowptr=rowptr, col=col,
        split_idx={"train": perm[:half].sort().values, "valid": perm[half:].sort().values},
        num_classes=10)


def write_edges(path: Path, num_edges: int, num_nodes: int, seed: int = 0) -> None:
    """Sources uniform, targets heavy-tailed (a few hubs), random node ids."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_nodes)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=(2, num_edges))
    step = 1 << 24
    for begin in range(0, num_edges, step):
        end = min(num_edges, begin + step)
        out[0, begin:end] = rng.integers(0, num_nodes, end - begin)
        heavy = (num_nodes * rng.random(end - begin) ** 3).astype(np.int64)
        out[1, begin:end] = perm[heavy]
    out.flush()
    del out


def edges_per_second(graph: _native.CSRGraph, batches: int, prefetch: bool = True) -> float:
    """Sampled edges per second of one native thread, 15/10/5, batches of
    1024 random seeds, no feature gather."""
    rng = np.random.default_rng(0)
    session = _native.Session(graph, FANOUTS, seed=1, num_threads=1, prefetch=prefetch)
    seeds = [rng.choice(graph.num_nodes, BATCH, replace=False).astype(np.int64)
             for _ in range(batches)]
    start = time.perf_counter()
    edges = 0
    for position, batch in enumerate(seeds):
        session.submit(batch, 0, position)
        edges += sum(edge_index.shape[1] for edge_index, _, _ in session.next()[1])
    return edges / (time.perf_counter() - start)


def random_id_graphs(sizes: List[int]) -> Iterator[FastDataset]:
    """For each size n: a graph of n nodes and 12 n edges before
    symmetrization (heavy-tailed degrees, random ids), written with
    ``FastDataset.from_edges`` to a scratch directory that is deleted after."""
    scratch = Path(tempfile.mkdtemp(prefix="salient-graphs-"))
    try:
        for n in sizes:
            write_edges(scratch / "edges.npy", 12 * n, n, seed=n)
            ds = FastDataset.from_edges(scratch / "g", scratch / "edges.npy", n, progress=False)
            (scratch / "edges.npy").unlink()
            yield ds
            del ds
            shutil.rmtree(scratch / "g")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def native_epoch(ds: FastDataset, dense: bool = True):
    """The raw native session, driven with the least Python possible."""
    session = _native.Session(ds.graph, list(FANOUTS), x=as_buffer(ds.x), y=as_buffer(ds.y),
                              num_threads=THREADS, relabel="slots" if dense else "hash")
    train = ds.split_idx["train"]

    def run(epoch: int) -> None:
        perm = train[torch.randperm(train.numel(), generator=torch.Generator().manual_seed(epoch))]
        batches = [b.numpy() for b in torch.split(perm, BATCH)]
        submitted = 0
        for _ in batches:
            while submitted < len(batches) and session.in_flight < 2 * THREADS:
                session.submit(batches[submitted], epoch, submitted)
                submitted += 1
            session.next()

    return run


def pipeline_epoch(ds: FastDataset):
    # Each epoch prepared in full: no head start from the epoch before, or
    # from the other loaders' epochs run in between.
    pipe = salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                            num_threads=THREADS, overlap_epochs=False)

    def run(epoch: int) -> None:
        pipe.set_epoch(epoch)
        for _ in pipe:
            pass

    return run


def pyg_backends() -> List[str]:
    """PyG's sampler backends importable here, the one PyG picks first first."""
    return [name for name, module in (("pyg-lib", "pyg_lib"), ("torch-sparse", "torch_sparse"))
            if importlib.util.find_spec(module)]


@contextlib.contextmanager
def pyg_backend(name: Optional[str]) -> Iterator[None]:
    """PyG samples with ``name``: pyg-lib is its first choice, so torch-sparse
    runs with pyg-lib switched off (worker processes fork with the switch).
    ``None`` leaves PyG as it is."""
    if name is None:
        yield
        return
    import torch_geometric.typing as pyg_typing

    saved = pyg_typing.WITH_PYG_LIB
    pyg_typing.WITH_PYG_LIB = saved and name == "pyg-lib"
    try:
        yield
    finally:
        pyg_typing.WITH_PYG_LIB = saved


def time_epochs(run_epoch: Callable[[int], None], epochs: int, warmup: int = 1) -> List[float]:
    """Seconds of each of ``epochs`` timed epochs, after ``warmup`` untimed ones."""
    for e in range(warmup):
        run_epoch(e)
    times = []
    for e in range(warmup, warmup + epochs):
        t0 = time.perf_counter()
        run_epoch(e)
        times.append(time.perf_counter() - t0)
    return times


def loader_epochs(make: Callable[[], object], epochs: int,
                  each: Optional[Callable[[object], object]] = None) -> List[float]:
    """Seconds of ``epochs`` epochs of the loader ``make()`` builds, after a
    warm-up epoch (which also starts a torch DataLoader's workers);
    ``each(batch)`` runs on every batch, as a training loop's work would."""
    loader = make()
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for batch in loader:
            if each is not None:
                each(batch)
        times.append(time.perf_counter() - start)
    return times[1:]


def median(values: List[float]) -> float:
    return statistics.median(values)


def machine() -> Dict[str, object]:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}


def save_figure(fig, name: str) -> Path:
    """Writes a matplotlib figure to docs/img/<name>.png."""
    fig.tight_layout()
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / f"{name}.png"
    fig.savefig(path, dpi=120)
    return path


def save_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1))
    return path


def write_section(name: str, markdown: str, doc: Path = DOCS) -> None:
    """Replaces the block between ``<!-- name:start -->`` and ``<!-- name:end -->``
    in ``doc`` (docs/benchmarks.md by default), appending it if not there yet."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"<!-- {name}:start -->\n{markdown.rstrip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    doc.write_text(text)
