"""salient_pipes.pyg's loaders against PyG's own, on the same Data.

The arxiv-sized graph as a PyG ``Data`` (fp32 features, symmetrized
``edge_index``). One epoch of each loader, batches fully built (PyG
``Data`` with ``x``, ``y``, ``edge_index``), nothing trained:

- node batches: ``NeighborLoader`` over the train split, fanouts 15/10/5,
  batch 1024, shuffled;
- link batches: ``LinkNeighborLoader`` over 100,000 of the edges with binary
  negatives (ratio 1), fanouts 10/5, batch 1024, shuffled.

Ours runs on 2 sampling threads (``num_workers=2``); PyG's with 0 and 2
worker processes, with each sampler backend it has here: pyg-lib where it
is importable (``bash scripts/with_pyg_lib.sh PYG_LIB_SOURCE python -m
benchmarks.pyg_loaders``), and torch-sparse. Beside them, our own
``salient_pipeline()`` on the same
graph, fanouts, batch size and feature dtype (its batches: ``x``, ``y``,
the per-hop adjacencies): what the PyG batch format costs on top of our
core. The same run, the same machine. Writes
benchmarks/results/pyg_loaders.json and a section of docs/benchmarks.md.

With ``--modes`` (or after the comparison above, by default) it measures
temporal and weighted sampling, which PyG does only through pyg-lib: our
``NeighborLoader`` with ``weight_attr`` (with and without replacement) and
``time_attr`` (node times with each seed's own time; edge times with
``temporal_strategy="last"``) beside the uniform loader (shared and
disjoint subgraphs, since temporal sampling is disjoint) on the same graph,
PyG's own loader (2 workers) beside each where pyg-lib is importable, and
the native sampler's rate per mode in sampled edges per second of one
thread (15/10/5, batches of 1024 random seeds, no feature gather). Writes
benchmarks/results/sampling_modes.json and its own section.

Run: python -m benchmarks.pyg_loaders [--epochs 3] [--modes]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Dict, List

import numpy as np
import torch

from benchmarks.common import (
    BATCH,
    FANOUTS,
    arxiv_like,
    loader_epochs,
    machine,
    median,
    pyg_backend,
    pyg_backends,
    save_json,
    write_section,
)
from salient_pipes import _native
from salient_pipes.data.csr import sort_rows_by_time

THREADS = 2
LINKS = 100_000


def as_pyg(ds):
    from torch_geometric.data import Data

    row = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr.diff())
    edge_index = torch.stack([ds.col.long(), row])
    mask = torch.zeros(ds.num_nodes, dtype=torch.bool)
    mask[ds.split_idx["train"]] = True
    return Data(x=ds.x.float(), y=ds.y, edge_index=edge_index, train_mask=mask)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--modes", action="store_true",
                        help="only the temporal and weighted rows")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pyg-lib.*")
    if not args.modes:
        compare(args)
    modes(args)


def compare(args: argparse.Namespace) -> None:
    import torch_geometric.loader as pyg

    import salient_pipes.pyg as ours
    from salient_pipes import salient_pipeline

    torch.set_num_threads(THREADS)
    ds = arxiv_like()
    data = as_pyg(ds)
    ds.x = data.x  # fp32, as the PyG Data holds it
    links = data.edge_index[:, torch.randperm(data.num_edges,
                                              generator=torch.Generator().manual_seed(0))[:LINKS]]
    node = dict(num_neighbors=[15, 10, 5], input_nodes=data.train_mask, batch_size=1024,
                shuffle=True)
    link = dict(num_neighbors=[10, 5], edge_label_index=links, neg_sampling="binary",
                batch_size=1024, shuffle=True)
    runs: Dict[str, Dict[str, List[float]]] = {"node": {}, "link": {}}
    runs["node"]["salient_pipeline"] = loader_epochs(
        lambda: salient_pipeline(ds, batch_size=1024, fanouts=(15, 10, 5), device="cpu",
                                 num_threads=THREADS), args.epochs)
    backends = pyg_backends()
    loaders = [("salient_pipes", ours, dict(num_workers=THREADS), None)]
    for backend in backends:
        loaders += [(f"PyG ({backend}), {w} workers", pyg,
                     dict(num_workers=w, persistent_workers=w > 0), backend) for w in (0, 2)]
    for name, module, extra, backend in loaders:
        with pyg_backend(backend):
            runs["node"][name] = loader_epochs(
                lambda m=module, e=extra: m.NeighborLoader(data, **node, **e), args.epochs)
            runs["link"][name] = loader_epochs(
                lambda m=module, e=extra: m.LinkNeighborLoader(data, **link, **e), args.epochs)
        print(name, {k: median(v[name]) for k, v in runs.items()}, flush=True)
    med = {kind: {name: median(t) for name, t in r.items()} for kind, r in runs.items()}
    save_json("pyg_loaders", {"machine": machine(), "epochs_s": runs, "median_s": med,
                              "threads": THREADS, "pyg_backends": backends})
    theirs = [name for name, *_ in loaders[1:]]
    lines = [
        "`python -m benchmarks.pyg_loaders`: one epoch of batches fully built as PyG `Data` "
        "(nothing trained) on the arxiv-sized graph as a PyG `Data` (fp32 features). Node "
        "batches: the train split, 15/10/5, batch 1024. Link batches: 100,000 edges with "
        "binary negatives, 10/5, batch 1024. Ours on 2 sampling threads; PyG's with "
        f"{' and '.join(backends)} as its sampler (pyg-lib built from source against this "
        "torch by `scripts/with_pyg_lib.sh`, as its wheels are not on PyPI). Speed-up: PyG's "
        "fastest with 2 workers over ours. Last column: our `salient_pipeline()` over the same "
        "train split, fanouts, batch size and fp32 features, and what the PyG batch format costs "
        f"on top of it. Medians of {args.epochs} epochs after a warm-up, same run.", "",
        "| loader | salient_pipes.pyg | " + " | ".join(theirs) + " | speed-up | "
        "salient_pipeline() (PyG format's cost) |",
        "| --- | ---: | " + "---: | " * len(theirs) + "---: | ---: |"]
    for kind, label in (("node", "NeighborLoader"), ("link", "LinkNeighborLoader")):
        m = med[kind]
        own = f"{m['salient_pipeline']:.2f} s ({m['salient_pipes'] / m['salient_pipeline']:.2f}x)" \
            if "salient_pipeline" in m else "-"
        best = min(m[name] for name in theirs if name.endswith("2 workers"))
        lines.append(f"| {label} | {m['salient_pipes']:.2f} s | "
                     + " | ".join(f"{m[name]:.2f} s" for name in theirs)
                     + f" | **{best / m['salient_pipes']:.1f}x** | {own} |")
    write_section("pyg_loaders", "\n".join(lines))


def with_times_and_weights(data):
    """``data`` with node times, edge times (random, 0..999) and edge weights
    (uniform in (0, 1]), fixed by a seed."""
    g = torch.Generator().manual_seed(0)
    data = data.clone()
    data.node_time = torch.randint(0, 1000, (data.num_nodes,), generator=g)
    data.edge_time = torch.randint(0, 1000, (data.num_edges,), generator=g)
    data.weight = 1.0 - torch.rand(data.num_edges, generator=g)
    return data


def native_rates(ds, batches: int = 40) -> Dict[str, float]:
    """Sampled edges per second of one native thread in each mode."""
    graph, rng = ds.graph, np.random.default_rng(0)
    weights = 1.0 - rng.random(graph.num_edges)
    times = torch.from_numpy(rng.integers(0, 1000, graph.num_edges))
    times = times[sort_rows_by_time(ds.rowptr, times)].numpy()  # ascending within each row
    modes = {"uniform": {}, "uniform, disjoint": dict(disjoint=True),
             "weighted": dict(weights=weights), "weighted, replace": dict(weights=weights,
                                                                          replace=True),
             "temporal uniform": dict(disjoint=True, times=times),
             "temporal last": dict(disjoint=True, times=times, temporal_strategy="last")}
    seeds = [rng.choice(graph.num_nodes, BATCH, replace=False).astype(np.int64)
             for _ in range(batches)]
    out = {}
    for name, kw in modes.items():
        session = _native.Session(graph, list(FANOUTS), seed=1, num_threads=1,
                                  node_wise=True, **kw)
        seed_time = np.full(BATCH, 500, dtype=np.int64) if "times" in kw else None
        best = 0.0
        for _ in range(3):
            start, edges = time.perf_counter(), 0
            for position, batch in enumerate(seeds):
                session.submit(batch, 0, position, seed_time=seed_time)
                edges += sum(edge_index.shape[1] for edge_index, _, _ in session.next()[1])
            best = max(best, edges / (time.perf_counter() - start))
        out[name] = best
        print(f"native {name}: {best / 1e6:.1f} M edges/s", flush=True)
    return out


def modes(args: argparse.Namespace) -> None:
    import torch_geometric.loader as pyg

    import salient_pipes.pyg as ours

    torch.set_num_threads(THREADS)
    ds = arxiv_like()
    data = with_times_and_weights(as_pyg(ds))
    node = dict(num_neighbors=[15, 10, 5], input_nodes=data.train_mask, batch_size=1024,
                shuffle=True, num_workers=THREADS)
    late = torch.full((int(data.train_mask.sum()),), 1000)
    rows = {"uniform": {}, "uniform, disjoint": dict(disjoint=True),
            "weight_attr": dict(weight_attr="weight"),
            "weight_attr, replace": dict(weight_attr="weight", replace=True),
            "time_attr (node times, seed's own)": dict(time_attr="node_time"),
            "time_attr (edge times), last": dict(time_attr="edge_time", input_time=late,
                                                 temporal_strategy="last")}
    with_pyg = "pyg-lib" in pyg_backends()
    runs, edges, pyg_runs, pyg_edges = {}, {}, {}, {}
    for name, extra in rows.items():
        runs[name] = loader_epochs(lambda e=extra: ours.NeighborLoader(data, **node, **e),
                                   args.epochs)
        edges[name] = sum(b.edge_index.size(1) for b in ours.NeighborLoader(data, **node,
                                                                            **extra))
        if with_pyg:
            pyg_runs[name] = loader_epochs(
                lambda e=extra: pyg.NeighborLoader(data, **node, **e, persistent_workers=True),
                args.epochs)
            pyg_edges[name] = sum(b.edge_index.size(1)
                                  for b in pyg.NeighborLoader(data, **node, **extra))
        print(name, median(runs[name]), edges[name],
              *((median(pyg_runs[name]), pyg_edges[name]) if with_pyg else ()), flush=True)
    rates = native_rates(ds)
    med = {name: median(t) for name, t in runs.items()}
    pyg_med = {name: median(t) for name, t in pyg_runs.items()}
    save_json("sampling_modes", {"machine": machine(), "epochs_s": runs, "median_s": med,
                                 "edges_per_epoch": edges, "native_edges_per_s": rates,
                                 "pyg_lib_epochs_s": pyg_runs, "pyg_lib_median_s": pyg_med,
                                 "pyg_lib_edges_per_epoch": pyg_edges, "threads": THREADS})
    base = med["uniform"]
    lines = [
        "`python -m benchmarks.pyg_loaders --modes`: temporal and weighted sampling in our "
        "`NeighborLoader` on the arxiv-sized graph as a PyG `Data` with random node times, edge "
        "times (0..999) and edge weights (uniform in (0, 1]): one epoch of the train split, "
        "15/10/5, batch 1024, 2 sampling threads, batches fully built, medians of "
        f"{args.epochs} epochs after a warm-up. Temporal subgraphs are disjoint (one per seed, "
        "as in PyG), so the disjoint uniform row is their like-for-like baseline. "
        + ("PyG's own `NeighborLoader` with the same arguments and 2 workers, sampling with "
           "pyg-lib (built from source by `scripts/with_pyg_lib.sh`), beside each row; "
           "speed-up: its epoch over ours." if with_pyg else
           "PyG itself samples by time or weight only with pyg-lib, which was not importable "
           "in this run."), "",
        "| loader arguments | epoch | vs uniform | sampled edges | M edges/s |"
        + (" PyG (pyg-lib), 2 workers | its sampled edges | speed-up |" if with_pyg else ""),
        "| --- | ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if with_pyg else "")]
    for name in rows:
        lines.append(f"| {name} | {med[name]:.2f} s | {med[name] / base:.2f}x | "
                     f"{edges[name] / 1e6:.2f} M | {edges[name] / med[name] / 1e6:.1f} |"
                     + (f" {pyg_med[name]:.2f} s | {pyg_edges[name] / 1e6:.2f} M | "
                        f"**{pyg_med[name] / med[name]:.1f}x** |" if with_pyg else ""))
    lines += ["", "The native sampler alone, one thread (15/10/5, 1024 random seeds per batch, "
              "no feature gather; temporal rows with every seed at time 500, so about half of "
              "each neighborhood is valid), best of 3 passes over 40 batches:", "",
              "| mode | M edges/s/thread | vs uniform |", "| --- | ---: | ---: |"]
    for name, rate in rates.items():
        lines.append(f"| {name} | {rate / 1e6:.1f} | {rate / rates['uniform']:.2f}x |")
    write_section("sampling_modes", "\n".join(lines))


if __name__ == "__main__":
    main()
