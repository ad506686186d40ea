"""Today's sampler against an earlier build of it, side by side: sampled
edges per second of one native thread (15/10/5, batches of 1024 random
seeds, no feature gather) on a 10 M-node graph with random ids (12 edges
per node before symmetrization, heavy-tailed degrees).

This machine's speed drifts by 1.5x within the hour, so a figure measured
today cannot be set beside one from another day. Here both builds run in
alternating pairs, each in a fresh process on the same CSR (ordinary
memory, read from the same ``.npy`` files), so they see the same machine.

The earlier build is any checkout of this repository with its native core
built in place, for example the sampler before the latency work:

    git worktree add /tmp/before 2608e11^
    (cd /tmp/before && python setup.py build_ext --inplace)
    python -m benchmarks.investigations.sampler_history --baseline /tmp/before

Writes benchmarks/results/sampler_history.json and a section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np

from benchmarks.common import machine, random_id_graphs, save_json, write_section

HERE = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter with one build's package first on the path; it
# uses only what every build has (CSRGraph, Session, submit, next).
PROBE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import salient_pipes
from salient_pipes import _native
assert salient_pipes.__file__.startswith(sys.argv[1]), salient_pipes.__file__
rowptr, col = np.load(sys.argv[2] + "/rowptr.npy"), np.load(sys.argv[2] + "/col.npy")
graph = _native.CSRGraph(rowptr, col)
batches = int(sys.argv[3])
rng = np.random.default_rng(0)
seeds = [rng.choice(graph.num_nodes, 1024, replace=False).astype(np.int64)
         for _ in range(batches + 5)]
session = _native.Session(graph, [15, 10, 5], seed=1, num_threads=1)
start, edges = time.perf_counter(), 0
for position, batch in enumerate(seeds):
    if position == 5:  # the first batches warm the caches and the pages
        start, edges = time.perf_counter(), 0
    session.submit(batch, 0, position)
    edges += sum(hop[0].shape[1] for hop in session.next()[1])
print(edges / (time.perf_counter() - start))
"""


def probe(root: Path, scratch: Path, batches: int) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, str(root), str(scratch), str(batches)],
                         capture_output=True, text=True, check=True, cwd=scratch)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True,
                        help="a checkout of this repository with its native core built in place")
    parser.add_argument("--label", default="before the latency work (2608e11^)",
                        help="what the baseline is, for the table")
    parser.add_argument("--nodes", type=int, default=10_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args(argv)
    baseline = args.baseline.resolve()
    if not (baseline / "salient_pipes" / "_native").is_dir():
        parser.error(f"{baseline} is not a checkout of salient_pipes")
    scratch = Path(tempfile.mkdtemp(prefix="salient-history-"))
    try:
        n = args.nodes
        for ds in random_id_graphs([n]):  # the graphs of benchmarks.latency
            np.save(scratch / "rowptr.npy", ds.rowptr.numpy())
            np.save(scratch / "col.npy", ds.col.numpy())
            num_edges = ds.num_edges
            del ds
        before: List[float] = []
        now: List[float] = []
        for _ in range(args.pairs):  # alternating: both see the same machine
            before.append(probe(baseline, scratch, args.batches))
            now.append(probe(HERE, scratch, args.batches))
            print(f"before {before[-1] / 1e6:.2f}  now {now[-1] / 1e6:.2f} M edges/s",
                  flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = {"machine": machine(), "nodes": n, "edges": num_edges, "label": args.label,
               "batches": args.batches, "before": before, "now": now}
    save_json("sampler_history", results)
    write_section("sampler_history", render(results))


def render(r: dict) -> str:
    ratios = [b / a for a, b in zip(r["before"], r["now"])]
    lines = ["`python -m benchmarks.investigations.sampler_history`: today's sampler against "
             "the build "
             f"{r['label']}, on a {r['nodes'] / 1e6:g} M-node graph ({r['edges'] / 1e6:.0f} M CSR "
             "entries, random ids) in ordinary memory; one native thread, 15/10/5, batches of "
             f"1024 random seeds, {r['batches']} batches per run, alternating pairs of fresh "
             "processes. M sampled edges per second per thread:", "",
             "| pair | before | now | ratio |", "| ---: | ---: | ---: | ---: |"]
    for i, (a, b) in enumerate(zip(r["before"], r["now"]), 1):
        lines.append(f"| {i} | {a / 1e6:.1f} | {b / 1e6:.1f} | {b / a:.2f}x |")
    lines.append(f"| median | {statistics.median(r['before']) / 1e6:.1f} | "
                 f"{statistics.median(r['now']) / 1e6:.1f} | "
                 f"{statistics.median(ratios):.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
