"""Building a CSR in memory from an edge list (what ``from_pyg`` and the
synthetic graphs do): the native passes against plain torch sorts.

Two builds, both taking every edge both ways: a distinct CSR
(``csr_from_edge_index``, against a global ``torch.unique`` of the
(row, neighbor) keys), and a CSR that keeps every edge with a weight and a
time (``csr_with_attributes``, against stable argsorts by neighbor, time
and row). Each build runs in a child process of its own, so its memory
peak is its own: the table gives the seconds and the peak resident memory
above the process's just before the build (the edge list included in
that). Writes benchmarks/results/csr_build.json and a section of
docs/benchmarks.md.

Run: python -m benchmarks.csr_build [--edges 20000000] [--nodes 2000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import torch

from benchmarks.common import machine, save_json, write_section
from salient_pipes.data.csr import csr_from_edge_index, csr_with_attributes


def torch_unique_csr(edge_index: torch.Tensor, num_nodes: int):
    """The distinct CSR the plain way: every edge both ways, one global
    ``torch.unique`` of row * n + neighbor."""
    src, dst = torch.cat([edge_index, edge_index.flip(0)], 1)
    key = torch.unique(dst * num_nodes + src)
    row = key // num_nodes
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(row, minlength=num_nodes), 0, out=rowptr[1:])
    return rowptr, (key - row * num_nodes).to(torch.int32)


def torch_sorted_csr(edge_index: torch.Tensor, num_nodes: int, values: Dict[str, torch.Tensor]):
    """Every edge both ways (a self-loop once) with its values, the plain
    way: stable argsorts by neighbor, then time, then row."""
    src, dst = edge_index
    back = src != dst
    src, dst = torch.cat([src, dst[back]]), torch.cat([dst, src[back]])
    values = {k: torch.cat([v, v[back]]) for k, v in values.items()}
    order = torch.argsort(src, stable=True)
    order = order[torch.argsort(values["edge_time"][order], stable=True)]
    order = order[torch.argsort(dst[order], stable=True)]
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(dst, minlength=num_nodes), 0, out=rowptr[1:])
    return rowptr, src[order].to(torch.int32), {k: v[order] for k, v in values.items()}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def child(build: str, edges: int, nodes: int) -> Dict[str, float]:
    """One build in this process: its seconds and peak memory above the
    memory held just before it (the edge list and its values)."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, nodes, (2, edges), generator=gen)
    values = {"edge_weight": torch.rand(edges, generator=gen),
              "edge_time": torch.randint(0, 1000, (edges,), generator=gen)}
    runs: Dict[str, Callable[[], Any]] = {
        "distinct, native": lambda: csr_from_edge_index(edge_index, nodes),
        "distinct, torch.unique": lambda: torch_unique_csr(edge_index, nodes),
        "every edge with a weight and a time, native":
            lambda: csr_with_attributes(edge_index, nodes, values, to_undirected=True),
        "every edge with a weight and a time, torch argsorts":
            lambda: torch_sorted_csr(edge_index, nodes, values),
    }
    before = _rss_bytes()
    start = time.perf_counter()
    rowptr = runs[build]()[0]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "peak_above_gib": max(peak - before, 0) / 2**30,
            "entries": int(rowptr[-1])}


BUILDS = ["distinct, torch.unique", "distinct, native",
          "every edge with a weight and a time, torch argsorts",
          "every edge with a weight and a time, native"]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=20_000_000)
    parser.add_argument("--nodes", type=int, default=2_000_000)
    parser.add_argument("--child", choices=BUILDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.edges, args.nodes)))
        return
    rows = []
    for build in BUILDS:
        out = subprocess.run([sys.executable, "-m", "benchmarks.csr_build", "--child", build,
                              "--edges", str(args.edges), "--nodes", str(args.nodes)],
                             check=True, capture_output=True, text=True).stdout
        rows.append({"build": build, **json.loads(out.splitlines()[-1])})
        print(rows[-1], flush=True)
    results = {"machine": machine(), "edges": args.edges, "nodes": args.nodes,
               "threads": torch.get_num_threads(), "rows": rows}
    save_json("csr_build", results)
    write_section("csr_build", render(results))


def render(results: Dict[str, Any]) -> str:
    lines = ["## Building a CSR in memory (`benchmarks/csr_build.py`)", "",
             f"`python -m benchmarks.csr_build`: {results['edges'] / 1e6:.0f} M random edges "
             f"among {results['nodes'] / 1e6:.0f} M nodes, taken both ways, "
             f"{results['threads']} threads, each build in a child process of its own; peak "
             "memory is the peak resident memory above the process's just before the build "
             "(which held the edge list, its weights and its times).", "",
             "| build | CSR entries | seconds | peak memory above the input |",
             "| --- | ---: | ---: | ---: |"]
    for row in results["rows"]:
        lines.append(f"| {row['build']} | {row['entries']:,} | {row['seconds']:.2f} "
                     f"| {row['peak_above_gib']:.2f} GiB |")
    by = {row["build"]: row["seconds"] for row in results["rows"]}
    lines += ["", f"Native over torch: {by[BUILDS[0]] / by[BUILDS[1]]:.1f}x (distinct), "
              f"{by[BUILDS[2]] / by[BUILDS[3]]:.1f}x (every edge with its values)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
