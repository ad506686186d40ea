"""salient_pipes.pyg.NeighborSampler against PyG's own (the older loader of
``(batch_size, n_id, adjs)``), on the same ``edge_index``.

The arxiv-sized graph (fp32 features), the train split, sizes 15/10/5,
batch 1024, shuffled. Each epoch iterates the loader and gathers
``x[n_id]`` in the loop, as code written for this loader does. Ours runs
on 2 sampling threads (``num_workers=2``); PyG's (torch-sparse's
``sample_adj``) with 0 and 2 worker processes. Beside them, ours without
the gather, ours after ``keep_freed_memory()``, and ``salient_pipeline()``
with the same settings, which gathers the features on its sampling
threads. Medians of the timed epochs after a warm-up, the
same run. Writes benchmarks/results/legacy_sampler.json and a section of
docs/benchmarks.md.

Run: python -m benchmarks.legacy_sampler [--epochs 3]
"""

from __future__ import annotations

import argparse
import warnings
from typing import Dict, List

import torch

from benchmarks.common import (
    BATCH,
    FANOUTS,
    THREADS,
    arxiv_like,
    loader_epochs,
    machine,
    median,
    save_json,
    write_section,
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pyg-lib.*")
    import torch_geometric.loader as pyg

    import salient_pipes.pyg as ours
    from salient_pipes import salient_pipeline
    from salient_pipes.allocator import keep_freed_memory

    torch.set_num_threads(THREADS)
    ds = arxiv_like()
    ds.x = ds.x.float()
    row = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr.diff())
    edge_index = torch.stack([ds.col.long(), row])
    seeds = ds.split_idx["train"]
    kw = dict(sizes=list(FANOUTS), node_idx=seeds, batch_size=BATCH, shuffle=True)
    runs: Dict[str, List[float]] = {}

    def gather(batch) -> None:  # what a loop over this loader does first
        ds.x[batch[1]]

    def epoch_seconds(make, each=gather) -> List[float]:
        return loader_epochs(make, args.epochs, each)

    runs["salient_pipes.pyg"] = epoch_seconds(
        lambda: ours.NeighborSampler(edge_index, num_workers=THREADS, **kw))
    print("ours", median(runs["salient_pipes.pyg"]), flush=True)
    for workers in (0, 2):
        name = f"PyG, {workers} workers"
        runs[name] = epoch_seconds(
            lambda w=workers: pyg.NeighborSampler(edge_index, num_workers=w,
                                                  persistent_workers=w > 0, **kw))
        print(name, median(runs[name]), flush=True)
    runs["salient_pipeline()"] = epoch_seconds(
        lambda: salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                                 num_threads=THREADS), each=None)
    runs["ours, loader alone"] = epoch_seconds(
        lambda: ours.NeighborSampler(edge_index, num_workers=THREADS, **kw), each=None)
    keep_freed_memory()  # a setting of the whole process: measured last
    runs["ours, freed memory kept"] = epoch_seconds(
        lambda: ours.NeighborSampler(edge_index, num_workers=THREADS, **kw))
    med = {name: median(t) for name, t in runs.items()}
    save_json("legacy_sampler", {"machine": machine(), "epochs_s": runs, "median_s": med,
                                 "threads": THREADS})
    theirs = [name for name in runs if name.startswith("PyG")]
    best = min(med[name] for name in theirs)
    lines = [
        "`python -m benchmarks.legacy_sampler`: PyG's older `NeighborSampler` (batches of "
        "`(batch_size, n_id, adjs)`) and ours, on the arxiv-sized graph's `edge_index`: one "
        "epoch over the train split, sizes 15/10/5, batch 1024, shuffled, with `x[n_id]` "
        "(fp32) gathered in the loop as code for this loader does. Ours on 2 sampling "
        "threads; PyG's (torch-sparse's `sample_adj`) with 0 and 2 worker processes. Then "
        "ours without the gather (the loader's own share), ours with "
        "`keep_freed_memory()` (glibc keeps the memory each gather frees; measured last, as "
        "it holds for the whole process), and `salient_pipeline()` with the same settings, "
        "which gathers the features on its sampling threads. Medians of "
        f"{args.epochs} epochs after a warm-up, same run.", "",
        "| salient_pipes.pyg | " + " | ".join(theirs) + " | speed-up | ours: loader alone | "
        "ours: freed memory kept | salient_pipeline() |",
        "| ---: | " + "---: | " * len(theirs) + "---: | ---: | ---: | ---: |",
        f"| {med['salient_pipes.pyg']:.2f} s | "
        + " | ".join(f"{med[name]:.2f} s" for name in theirs)
        + f" | **{best / med['salient_pipes.pyg']:.1f}x** | {med['ours, loader alone']:.2f} s "
        f"| {med['ours, freed memory kept']:.2f} s | {med['salient_pipeline()']:.2f} s |"]
    write_section("legacy_sampler", "\n".join(lines))


if __name__ == "__main__":
    main()
