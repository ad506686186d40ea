"""Transparent huge pages for what the sampler reads at random.

Synthetic graphs of 1 M to 10 M nodes (12 edges per node before
symmetrization, heavy-tailed degrees, random ids, built with
``FastDataset.from_edges``). One native session on one thread samples
15/10/5 for batches of 1024 random seeds (prefetching on, no feature
gather); the figure is sampled edges per second per thread. The CSR is read
three ways: from the file mapping (as ``FastDataset.load`` opens it), from an
in-memory copy in 4 KiB pages (an ordinary allocation), and from an in-memory
copy in huge pages (``salient_pipes.data.memory.huge_pages``, what in-memory
builds now use). Rounds are interleaved. Writes benchmarks/results/huge_pages.json
and a section of docs/benchmarks.md.

Run: python -m benchmarks.investigations.huge_pages [--sizes 1000000 4000000 10000000]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import List

import numpy as np

from benchmarks.common import edges_per_second, machine, random_id_graphs, save_json, write_section
from salient_pipes import _native
from salient_pipes.data.memory import huge_pages


def anon_huge_kib() -> int:
    smaps = Path("/proc/self/smaps").read_text()
    return sum(int(v) for v in re.findall(r"AnonHugePages:\s+(\d+)", smaps))


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[1_000_000, 4_000_000, 10_000_000])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for ds in random_id_graphs(args.sizes):
        before = anon_huge_kib()
        copies = {"4k": (ds.rowptr.clone(), ds.col.clone()),
                  "huge": (huge_pages(ds.rowptr), huge_pages(ds.col))}
        huge_kib = anon_huge_kib() - before
        graphs = {"file": ds.graph,
                  **{k: _native.CSRGraph(r.numpy(), c.numpy(), False)
                     for k, (r, c) in copies.items()}}
        runs = {k: [] for k in graphs}
        for _ in range(args.rounds):
            for csr, graph in graphs.items():
                runs[csr].append(edges_per_second(graph, args.batches))
        row = {"nodes": ds.num_nodes, "edges": ds.num_edges,
               "csr_mib": (ds.col.nbytes + ds.rowptr.nbytes) / 2**20,
               "huge_mib_mapped": huge_kib / 1024,
               **{csr: float(np.median(v)) for csr, v in runs.items()}}
        rows.append(row)
        print(row, flush=True)
        del graphs, copies
    save_json("huge_pages", {"machine": machine(), "rows": rows})
    lines = ["`python -m benchmarks.investigations.huge_pages`: M sampled edges per second "
             "on one native "
             "thread (15/10/5, batches of 1024 random seeds, prefetching on, no feature "
             f"gather); medians of {args.rounds} interleaved rounds of {args.batches} "
             "batches. The CSR read from the file mapping (`FastDataset.load`), from an "
             "ordinary in-memory copy (4 KiB pages), or from a copy in transparent huge "
             "pages (`huge_pages`, what in-memory builds use). THP mode on this machine: "
             f"`{Path('/sys/kernel/mm/transparent_hugepage/enabled').read_text().strip()}`.",
             "", "| nodes | CSR | file mapping | in memory, 4 KiB pages | "
             "in memory, huge pages | huge against 4 KiB |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['nodes'] / 1e6:g} M | {r['csr_mib']:.0f} MiB | "
                     f"{r['file'] / 1e6:.1f} | {r['4k'] / 1e6:.1f} | {r['huge'] / 1e6:.1f} | "
                     f"{r['huge'] / r['4k']:.2f}x |")
    write_section("huge_pages", "\n".join(lines))


if __name__ == "__main__":
    main()
