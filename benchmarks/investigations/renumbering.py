"""Does renumbering nodes for locality speed up sampling?

A synthetic graph with random node ids (``latency.random_id_graphs``, 12 edges
per node before symmetrization) is renumbered three ways: by decreasing
degree, in breadth-first order from the highest-degree node, and in reverse
Cuthill-McKee order (scipy). Each renumbered CSR (rows and columns permuted,
rows re-sorted) is sampled by one native thread, 15/10/5, batches of 1024
random seeds, CSR in huge pages; rounds interleaved. Writes
benchmarks/results/renumbering.json and a section of docs/benchmarks.md.

Run: python -m benchmarks.investigations.renumbering [--sizes 4000000]
"""

from __future__ import annotations

import argparse
import time
from typing import List, Optional

import numpy as np
import scipy.sparse as sparse
import torch
from scipy.sparse.csgraph import breadth_first_order, reverse_cuthill_mckee

from benchmarks.common import edges_per_second, machine, random_id_graphs, save_json, write_section
from salient_pipes import _native
from salient_pipes.data.memory import huge_pages


def permuted(rowptr: np.ndarray, col: np.ndarray, order: np.ndarray) -> _native.CSRGraph:
    """The CSR with node ``order[i]`` renamed ``i`` (rows sorted again)."""
    n = len(rowptr) - 1
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    degree = np.diff(rowptr)[order]
    new_rowptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=new_rowptr[1:])
    offset = np.arange(len(col)) - np.repeat(new_rowptr[:-1], degree)
    position = np.repeat(rowptr[:-1][order], degree) + offset
    key = np.repeat(np.arange(n), degree) * n + rank[col[position]]
    key.sort()
    new_col = (key % n).astype(col.dtype)
    return _native.CSRGraph(huge_pages(torch.from_numpy(new_rowptr)).numpy(),
                            huge_pages(torch.from_numpy(new_col)).numpy())


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4_000_000])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = []
    for ds in random_id_graphs(args.sizes):
        n = ds.num_nodes
        rowptr, col = ds.rowptr.numpy(), ds.col.numpy()
        adjacency = sparse.csr_matrix((np.ones(len(col), dtype=np.int8), col, rowptr),
                                      shape=(n, n))
        degree = np.diff(rowptr)
        orders, seconds = {}, {}
        start = time.perf_counter()
        orders["degree"] = np.argsort(-degree, kind="stable")
        seconds["degree"] = time.perf_counter() - start
        start = time.perf_counter()
        bfs = breadth_first_order(adjacency, int(degree.argmax()), directed=False,
                                  return_predecessors=False)
        orders["bfs"] = np.concatenate([bfs, np.setdiff1d(np.arange(n), bfs)])
        seconds["bfs"] = time.perf_counter() - start
        start = time.perf_counter()
        orders["rcm"] = reverse_cuthill_mckee(adjacency, symmetric_mode=True)
        seconds["rcm"] = time.perf_counter() - start
        graphs = {"random ids": permuted(rowptr, col, np.arange(n)),
                  **{k: permuted(rowptr, col, o) for k, o in orders.items()}}
        runs = {k: [] for k in graphs}
        for _ in range(args.rounds):
            for name, graph in graphs.items():
                runs[name].append(edges_per_second(graph, args.batches))
        row = {"nodes": n, "edges": ds.num_edges, "order_seconds": seconds,
               **{k: float(np.median(v)) for k, v in runs.items()}}
        rows.append(row)
        print(row, flush=True)
    save_json("renumbering", {"machine": machine(), "rows": rows})
    names = ["random ids", "degree", "bfs", "rcm"]
    lines = ["`python -m benchmarks.investigations.renumbering`: M sampled edges per second "
             "on one native "
             f"thread (15/10/5, batches of 1024 random seeds); medians of {args.rounds} "
             "interleaved rounds. The same graph with random ids and renumbered by "
             "decreasing degree, breadth-first order and reverse Cuthill-McKee.", "",
             "| nodes | CSR entries | " + " | ".join(names) + " |",
             "| ---: | ---: | " + " | ".join("---:" for _ in names) + " |"]
    for r in rows:
        lines.append(f"| {r['nodes'] / 1e6:g} M | {r['edges'] / 1e6:.0f} M | "
                     + " | ".join(f"{r[k] / 1e6:.1f}" for k in names) + " |")
    write_section("renumbering", "\n".join(lines))


if __name__ == "__main__":
    main()
