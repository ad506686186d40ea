"""Per-epoch batch preparation: salient_pipes against PyG's NeighborLoader.

One epoch = sample (fanouts 15/10/5, batch 1024) and gather x (fp16) and y
for every batch of the train split, on 2 threads. Graphs: (a) a synthetic
graph of ogbn-arxiv's size, (b) SNAP's soc-Slashdot0902. PyG runs with
each sampler backend importable here: torch-sparse, and pyg-lib where it
is (``bash scripts/with_pyg_lib.sh PYG_LIB_SOURCE python -m
benchmarks.sampler``). Writes
benchmarks/results/sampler.json, docs/img/sampler.png and a table in
docs/benchmarks.md.

Run: python -m benchmarks.sampler [--epochs 3] [--skip-pyg]
"""

from __future__ import annotations

import argparse
import gc
import warnings

import torch

from benchmarks.common import (
    BATCH,
    FANOUTS,
    THREADS,
    arxiv_like,
    machine,
    median,
    native_epoch,
    pipeline_epoch,
    pyg_backend,
    pyg_backends,
    save_figure,
    save_json,
    slashdot,
    time_epochs,
    write_section,
)
from salient_pipes import FastDataset


def pyg_epoch(ds: FastDataset, workers: int, backend: str):
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader

    rows = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr[1:] - ds.rowptr[:-1])
    data = Data(x=ds.x, y=ds.y, edge_index=torch.stack([ds.col.long(), rows]),
                num_nodes=ds.num_nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = NeighborLoader(data, num_neighbors=list(FANOUTS), batch_size=BATCH,
                                input_nodes=ds.split_idx["train"], shuffle=True,
                                num_workers=workers, persistent_workers=workers > 0)

    def run(epoch: int) -> None:
        with pyg_backend(backend):  # workers fork (on the first epoch) with it
            for _ in loader:
                pass

    return run


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graphs = list(results)
    systems = list(results[graphs[0]]["median_s"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(systems)
    for i, system in enumerate(systems):
        values = [results[g]["median_s"].get(system, 0) for g in graphs]
        ax.bar([j + i * width for j in range(len(graphs))], values, width, label=system)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(graphs))], graphs)
    ax.set_ylabel("seconds per epoch (median)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Batch preparation per epoch (15/10/5, batch 1024, 2 threads)")
    save_figure(fig, "sampler")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-pyg", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)

    results = {}
    backends = pyg_backends()
    for ds in (arxiv_like(), slashdot()):
        print(ds.summary())
        systems = {
            "salient_pipes native session": (native_epoch, {}),
            "salient_pipes native session (hash relabel)": (native_epoch, {"dense": False}),
            "salient_pipes salient_pipeline()": (pipeline_epoch, {}),
        }
        for backend in [] if args.skip_pyg else backends:
            for workers in (0, 2):
                systems[f"PyG NeighborLoader ({backend}), {workers} workers"] = (
                    pyg_epoch, {"workers": workers, "backend": backend})
        times = {}
        for name, (build, options) in systems.items():
            run = build(ds, **options)
            times[name] = time_epochs(run, args.epochs)
            del run  # stops PyG's persistent workers before the next system forks its own
            gc.collect()
            print(f"  {name:>46}: median {median(times[name]):7.3f} s  {times[name]}")
        results[ds.name] = {"summary": ds.summary(), "epochs_s": times,
                            "median_s": {k: median(v) for k, v in times.items()}}

    save_json("sampler", {"machine": machine(), "fanouts": FANOUTS, "batch_size": BATCH,
                          "threads": THREADS, "pyg_backends": backends, "results": results})
    plot(results)
    lines = ["| graph | system | median s / epoch | "
             + " | ".join(f"speed-up vs PyG ({b}, 2 workers)" for b in backends) + " |",
             "| --- | --- | ---: |" + " ---: |" * len(backends)]
    for graph, r in results.items():
        med = r["median_s"]
        for name, value in med.items():
            lines.append(f"| {graph} | {name} | {value:.3f} | " + " | ".join(
                f"{med.get(f'PyG NeighborLoader ({b}), 2 workers', float('nan')) / value:.1f}x"
                for b in backends) + " |")
    info = machine()
    write_section("sampler", "\n".join([
        "## Batch preparation per epoch (`benchmarks/sampler.py`)",
        "",
        f"Machine: {info['cores']} cores ({info['cpu']}), torch {info['torch']}. "
        f"Fanouts {'/'.join(map(str, FANOUTS))}, batch {BATCH}, {THREADS} threads, "
        f"median of {args.epochs} epochs after one warm-up; an epoch samples every batch of "
        "the train split and gathers x (fp16, 128 columns) and y. PyG's sampler: "
        f"{' and '.join(backends)} (pyg-lib built from source against this torch by "
        "`scripts/with_pyg_lib.sh`, as its wheels are not on PyPI).",
        "",
        *lines,
        "",
        "![per-epoch batch preparation](img/sampler.png)",
    ]))


if __name__ == "__main__":
    main()
