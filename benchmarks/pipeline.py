"""What the Python stages cost over the raw native session, and where an
epoch's time goes.

1. Overhead: epochs of salient_pipeline() (CPU) and of the raw native session
   on the arxiv-sized graph, interleaved so both see the same machine state;
   the overhead is the ratio of their medians. Also the CPU time per batch of
   the thread that pulls the batches: the interpreter-lock time that a
   training thread on a GPU competes with. Also what a stage adds per item,
   and the prefetch thread's own host work per batch on the GPU path apart
   from the copy (finding the batch's slot region, making its arrays views
   of the copy; on the ``meta`` device, which copies nothing).
2. Breakdown: per-stage wait times (pipeline_stats) of a preparation-only
   epoch and of a GraphSAGE training epoch, as a bar chart like SALIENT's
   per-epoch breakdown.

Writes benchmarks/results/pipeline.json, docs/img/pipeline_stages.png and a
section of docs/benchmarks.md.

Run: python -m benchmarks.pipeline [--epochs 7]
"""

from __future__ import annotations

import argparse
import math
import time

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
    save_figure,
    save_json,
    write_section,
)
from salient_pipes import SAGE, pipeline_stats, salient_pipeline, train_epoch
from salient_pipes.allocator import keep_freed_memory
from salient_pipes.pipes import NodeIndices
from salient_pipes.pipes.base import Stage, close_iterator
from salient_pipes.pipes.pinned_pool import PinnedPool
from salient_pipes.pipes.prefetch import find_span, move_span


def overhead(ds, epochs: int) -> dict:
    native, piped = native_epoch(ds), pipeline_epoch(ds)
    native(0)
    piped(0)
    times = {"native": [], "pipeline": []}
    cpu = {"native": [], "pipeline": []}  # the consuming thread's CPU seconds
    for epoch in range(1, epochs + 1):
        for name, run in (("native", native), ("pipeline", piped)):
            t0, c0 = time.perf_counter(), time.thread_time()
            run(epoch)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    med = {k: median(v) for k, v in times.items()}
    batches = math.ceil(ds.split_idx["train"].numel() / BATCH)
    return {"epochs_s": times, "median_s": med,
            "overhead": med["pipeline"] / med["native"] - 1,
            "thread_cpu_s": cpu,
            "thread_cpu_per_batch_s": {k: median(v) / batches for k, v in cpu.items()}}


class PassThrough(Stage):
    """A stage that hands its items on unchanged: what any stage adds."""

    def _generate(self, epoch, start, **options):
        yield from self.source


def stage_cost(items: int = 100_000, stages: int = 4, repeats: int = 5) -> dict:
    """CPU per item that a stage adds, with nothing else running: chains of
    one-node batches with and without ``stages`` pass-through stages."""
    per_item = {}
    for depth in (0, stages):
        pipe = NodeIndices(torch.arange(items)).batch_nodes(1)
        for _ in range(depth):
            pipe = PassThrough(pipe)
        cpu = []
        for _ in range(repeats):
            c0 = time.thread_time()
            for _ in pipe:
                pass
            cpu.append(time.thread_time() - c0)
        per_item[depth] = min(cpu) / items
    return {"per_item_s": per_item,
            "per_stage_per_item_s": (per_item[stages] - per_item[0]) / stages}


def device_path_cost(ds, batches: int = 30, repeats: int = 30) -> dict:
    """CPU per batch of the prefetch thread's host work on the GPU path,
    apart from the copy and its event: find the slot region that holds the
    batch, then make each array a view of the region's copy. Measured on
    the ``meta`` device, which copies nothing, for arxiv-sized batches
    gathered into a :class:`PinnedPool`."""
    pool = PinnedPool(num_slots=batches + 4, pin=False)
    pipe = (NodeIndices(ds.split_idx["train"]).batch_nodes(BATCH)
            .sample_neighbors(ds, list(FANOUTS), num_threads=THREADS)
            .slice_features(ds.x, ds.y, pinned=pool))
    held, items = [], iter(pipe)
    for batch in items:  # the first batches size the slots and miss
        if pool.span_of(batch.tensors()) is not None:
            held.append(batch)
        if len(held) == batches:
            break
    close_iterator(items)  # the workers stop: nothing else runs while measured
    meta = torch.device("meta")
    cpu = []
    for _ in range(repeats):
        c0 = time.thread_time()
        for batch in held:
            move_span(batch, meta, find_span(batch, [pool])[1])
        cpu.append(time.thread_time() - c0)
    return {"batches": len(held), "arrays_per_batch": len(held[0].tensors()),
            "per_batch_s": min(cpu) / len(held)}


def breakdown(ds) -> dict:
    pipe = salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                            num_threads=THREADS, overlap_epochs=False)
    for _ in pipe:  # warm-up
        pass
    t0 = time.perf_counter()
    for _ in pipe:
        pass
    prep = {"epoch_s": time.perf_counter() - t0, "stages": pipeline_stats(pipe)}

    keep_freed_memory()  # as the train command does on a CPU
    torch.manual_seed(0)
    model = SAGE(ds.num_features, 256, ds.num_classes, num_layers=len(FANOUTS))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    result = train_epoch(model, pipe, optimizer, progress=False)
    stages = pipeline_stats(pipe)
    waited = stages[-1]["wait_s"]
    train = {"epoch_s": result.seconds, "stages": stages, "compute_s": result.seconds - waited}
    return {"preparation_only": prep, "training": train}


def plot(parts: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    stages = parts["preparation_only"]["stages"]
    names = [s["stage"] for s in stages]
    left.barh(names, [s["self_s"] for s in stages], color="tab:blue")
    left.set_xlabel("seconds the consumer waited (own share)")
    left.set_title("Batch preparation only: one epoch")
    train = parts["training"]
    waited = sum(s["self_s"] for s in train["stages"])
    right.barh(["waiting on\nthe pipeline", "model compute"], [waited, train["compute_s"]],
               color=["tab:blue", "tab:green"])
    right.set_xscale("log")
    right.set_xlabel("seconds (log scale)")
    right.set_title("GraphSAGE training epoch")
    fig.suptitle("Where an epoch goes: arxiv-sized graph, CPU, 2 threads", fontsize=10)
    save_figure(fig, "pipeline_stages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    ds = arxiv_like()
    cost = overhead(ds, args.epochs)
    print(f"native {cost['median_s']['native']:.3f} s, pipeline "
          f"{cost['median_s']['pipeline']:.3f} s, overhead {cost['overhead'] * 100:+.1f}%")
    per_stage = stage_cost()
    print(f"a stage adds {per_stage['per_stage_per_item_s'] * 1e6:.2f} us of CPU per item")
    device_path = device_path_cost(ds)
    print(f"the GPU path's host work per batch, apart from the copy: "
          f"{device_path['per_batch_s'] * 1e6:.1f} us")
    parts = breakdown(ds)
    save_json("pipeline", {"machine": machine(), "overhead": cost, "stage_cost": per_stage,
                           "device_path": device_path, "breakdown": parts})
    plot(parts)

    rows = ["| stage | preparation only: waited s (own) | training epoch: waited s (own) |",
            "| --- | ---: | ---: |"]
    for prep, train in zip(parts["preparation_only"]["stages"], parts["training"]["stages"]):
        rows.append(f"| {prep['stage']} | {prep['self_s']:.4f} | {train['self_s']:.4f} |")
    rows.append(f"| model compute (forward, backward, step) | – | "
                f"{parts['training']['compute_s']:.3f} |")
    rows.append(f"| **epoch** | **{parts['preparation_only']['epoch_s']:.3f}** | "
                f"**{parts['training']['epoch_s']:.3f}** |")
    write_section("pipeline", "\n".join([
        "## Cost of the stages, and where an epoch goes (`benchmarks/pipeline.py`)",
        "",
        f"arxiv-sized synthetic graph, fanouts {'/'.join(map(str, FANOUTS))}, batch {BATCH}, "
        f"{THREADS} threads, CPU. {args.epochs} epochs each of the raw native session and "
        "of `salient_pipeline()`, interleaved:",
        "",
        "| | median s / epoch |",
        "| --- | ---: |",
        f"| raw native session | {cost['median_s']['native']:.3f} |",
        f"| `salient_pipeline()` (all stages) | {cost['median_s']['pipeline']:.3f} |",
        f"| **overhead of the Python stages** | **{cost['overhead'] * 100:+.1f}%** |",
        "",
        "CPU time per batch of the thread that pulls the batches (`time.thread_time`, "
        "median epoch): the raw session "
        f"{cost['thread_cpu_per_batch_s']['native'] * 1e3:.2f} ms, `salient_pipeline()` "
        f"{cost['thread_cpu_per_batch_s']['pipeline'] * 1e3:.2f} ms. On a GPU that thread is "
        "the prefetch stage's, and this is about the time it holds the interpreter lock "
        "that the training thread also needs (sampling and gathering run on native "
        "threads without it). Part of it is the stages themselves: a stage that "
        "only hands items on adds "
        f"{per_stage['per_stage_per_item_s'] * 1e6:.1f} µs of CPU per item on an idle "
        "core (chains of pass-through stages); measured here, while the sampling "
        "workers share the two cores, the thread's Python runs slower than that.",
        "",
        "On the GPU path the prefetch thread also finds each batch's slot region and "
        "makes the batch's arrays views of the region's copy: "
        f"{device_path['per_batch_s'] * 1e6:.1f} µs of CPU per batch "
        f"({device_path['arrays_per_batch']} arrays; measured on the `meta` device, "
        "which copies nothing; best of repeated passes over "
        f"{device_path['batches']} batches).",
        "",
        "Per-stage wait (`pipeline_stats`): how long the consumer waited on each stage, "
        "excluding what that stage itself waited on upstream. While the model computes, "
        "the sampler runs ahead, so a training epoch waits far less on sampling than "
        "preparation alone takes. The training epoch (3-layer `SAGE`, hidden 256, eager) "
        "keeps freed memory, as the train command does on a CPU.",
        "",
        *rows,
        "",
        "![per-stage wait](img/pipeline_stages.png)",
    ]))


if __name__ == "__main__":
    main()
