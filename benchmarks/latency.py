"""Sampling throughput against graph size: how much the sampler's software
prefetching (rows a few targets ahead, a target's relabel slots before use)
hides of the memory latency once the graph outgrows the caches.

Synthetic graphs of 0.1 M to 10 M nodes (12 edges per node before
symmetrization, heavy-tailed degrees, random node ids) are built with
``FastDataset.from_edges`` in a scratch directory. One native session on one
thread samples 15/10/5 for batches of 1024 random seeds, with prefetching on
and off on the file mapping (``FastDataset.load``'s default), and with
prefetching on a copy of the CSR in 2 MiB pages (``load(graph_in_memory=True)``),
interleaved; the figure is sampled edges per second per thread.
Writes benchmarks/results/latency.json, docs/img/latency.png and a section
of docs/benchmarks.md.

Run: python -m benchmarks.latency [--sizes 100000 1000000 4000000 10000000]
"""

from __future__ import annotations

import argparse
from typing import List

import numpy as np

from benchmarks.common import (
    BATCH,
    FANOUTS,
    edges_per_second,
    machine,
    random_id_graphs,
    save_figure,
    save_json,
    write_section,
)
from salient_pipes import _native
from salient_pipes.data.memory import huge_pages


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[100_000, 1_000_000, 4_000_000, 10_000_000])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    for ds in random_id_graphs(args.sizes):
        in_memory = _native.CSRGraph(huge_pages(ds.rowptr).numpy(), huge_pages(ds.col).numpy())
        configs = {"off": (ds.graph, False), "on": (ds.graph, True), "memory": (in_memory, True)}
        runs = {key: [] for key in configs}
        for _ in range(args.rounds):  # interleaved, so all see the same machine state
            for key, (graph, prefetch) in configs.items():
                runs[key].append(edges_per_second(graph, args.batches, prefetch))
        del in_memory
        row = {"nodes": ds.num_nodes, "edges": ds.num_edges,
               **{key: float(np.median(values)) for key, values in runs.items()}}
        rows.append(row)
        print(row, flush=True)
    save_json("latency", {"machine": machine(), "rows": rows, "fanouts": FANOUTS,
                          "batch": BATCH})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    nodes = [r["nodes"] for r in rows]
    ax.plot(nodes, [r["off"] / 1e6 for r in rows], "o-", label="prefetch off")
    ax.plot(nodes, [r["on"] / 1e6 for r in rows], "o-", label="prefetch on")
    ax.plot(nodes, [r["memory"] / 1e6 for r in rows], "o-",
            label="prefetch on, CSR in 2 MiB pages")
    ax.set_xscale("log")
    ax.set_xlabel("nodes (12 edges per node, random ids)")
    ax.set_ylabel("M sampled edges / s / thread")
    ax.legend()
    save_figure(fig, "latency")
    lines = ["`python -m benchmarks.latency`: one native sampling thread, 15/10/5, batches "
             "of 1024 random seeds, no feature gather; medians of "
             f"{args.rounds} interleaved rounds of {args.batches} batches. Prefetching off "
             "and on with the CSR read from the file mapping (`FastDataset.load`'s "
             "default), and on with the CSR copied into 2 MiB pages "
             "(`load(graph_in_memory=True)`).", "",
             "| nodes | CSR entries | prefetch off | prefetch on | gain | CSR in 2 MiB pages |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['nodes'] / 1e6:g} M | {r['edges'] / 1e6:.0f} M | "
                     f"{r['off'] / 1e6:.1f} M edges/s | {r['on'] / 1e6:.1f} M edges/s | "
                     f"{r['on'] / r['off']:.2f}x | {r['memory'] / 1e6:.1f} M edges/s |")
    lines += ["", "![throughput against graph size](img/latency.png)"]
    write_section("latency", "\n".join(lines))


if __name__ == "__main__":
    main()
