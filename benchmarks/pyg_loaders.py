"""salient_pipes.pyg's loaders against PyG's own, on the same Data.

The arxiv-sized graph as a PyG ``Data`` (fp32 features, symmetrized
``edge_index``). One epoch of each loader, batches fully built (PyG
``Data`` with ``x``, ``y``, ``edge_index``), nothing trained:

- node batches: ``NeighborLoader`` over the train split, fanouts 15/10/5,
  batch 1024, shuffled;
- link batches: ``LinkNeighborLoader`` over 100,000 of the edges with binary
  negatives (ratio 1), fanouts 10/5, batch 1024, shuffled.

Ours runs on 2 sampling threads (``num_workers=2``); PyG's with 0 and 2
worker processes. Beside them, our own ``salient_pipeline()`` on the same
graph, fanouts, batch size and feature dtype (its batches: ``x``, ``y``,
the per-hop adjacencies): what the PyG batch format costs on top of our
core. The same run, the same machine. Writes
benchmarks/results/pyg_loaders.json and a section of docs/benchmarks.md.

Run: python -m benchmarks.pyg_loaders [--epochs 3]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable, Dict, List

import torch

from benchmarks.common import arxiv_like, machine, median, save_json, write_section

THREADS = 2
LINKS = 100_000


def as_pyg(ds):
    from torch_geometric.data import Data

    row = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr.diff())
    edge_index = torch.stack([ds.col.long(), row])
    mask = torch.zeros(ds.num_nodes, dtype=torch.bool)
    mask[ds.split_idx["train"]] = True
    return Data(x=ds.x.float(), y=ds.y, edge_index=edge_index, train_mask=mask)


def epoch_seconds(make: Callable[[], object], epochs: int) -> List[float]:
    loader = make()
    times = []
    for _ in range(epochs + 1):  # the first epoch warms up (and starts PyG's workers)
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    return times[1:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pyg-lib.*")
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
    runs["node"]["salient_pipeline"] = epoch_seconds(
        lambda: salient_pipeline(ds, batch_size=1024, fanouts=(15, 10, 5), device="cpu",
                                 num_threads=THREADS), args.epochs)
    loaders = [("salient_pipes", ours, dict(num_workers=THREADS)),
               ("PyG, 0 workers", pyg, dict(num_workers=0)),
               ("PyG, 2 workers", pyg, dict(num_workers=2, persistent_workers=True))]
    for name, module, extra in loaders:
        runs["node"][name] = epoch_seconds(
            lambda m=module, e=extra: m.NeighborLoader(data, **node, **e), args.epochs)
        runs["link"][name] = epoch_seconds(
            lambda m=module, e=extra: m.LinkNeighborLoader(data, **link, **e), args.epochs)
        print(name, {k: median(v[name]) for k, v in runs.items()}, flush=True)
    med = {kind: {name: median(t) for name, t in r.items()} for kind, r in runs.items()}
    save_json("pyg_loaders", {"machine": machine(), "epochs_s": runs, "median_s": med,
                              "threads": THREADS})
    lines = [
        "`python -m benchmarks.pyg_loaders`: one epoch of batches fully built as PyG `Data` "
        "(nothing trained) on the arxiv-sized graph as a PyG `Data` (fp32 features). Node "
        "batches: the train split, 15/10/5, batch 1024. Link batches: 100,000 edges with "
        "binary negatives, 10/5, batch 1024. Ours on 2 sampling threads; PyG's with "
        "torch-sparse's sampler (pyg-lib's wheels are not on PyPI, so it cannot be installed "
        "here). Last column: our `salient_pipeline()` over the same train split, fanouts, batch "
        "size and fp32 features, and what the PyG batch format costs on top of it. Medians of "
        f"{args.epochs} epochs after a warm-up, same run.", "",
        "| loader | salient_pipes.pyg | PyG, 0 workers | PyG, 2 workers | speed-up vs 2 workers "
        "| salient_pipeline() (PyG format's cost) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, label in (("node", "NeighborLoader"), ("link", "LinkNeighborLoader")):
        m = med[kind]
        own = f"{m['salient_pipeline']:.2f} s ({m['salient_pipes'] / m['salient_pipeline']:.2f}x)" \
            if "salient_pipeline" in m else "-"
        lines.append(f"| {label} | {m['salient_pipes']:.2f} s | {m['PyG, 0 workers']:.2f} s | "
                     f"{m['PyG, 2 workers']:.2f} s | "
                     f"**{m['PyG, 2 workers'] / m['salient_pipes']:.1f}x** | {own} |")
    write_section("pyg_loaders", "\n".join(lines))


if __name__ == "__main__":
    main()
