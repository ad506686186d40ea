"""Shared pieces of the benchmarks: graphs, timing, and writing results."""

from __future__ import annotations

import gzip
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

from salient_pipes import FastDataset, csr_from_edge_index

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "img"
SLASHDOT = ROOT.parent / "shared" / "data" / "snap" / "soc-Slashdot0902.txt.gz"


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
