"""What overlapping epochs buys a training loop that waits on a device.

``salient_pipeline(..., overlap_epochs=True)`` (the default for training)
samples the next epoch's first batches while this epoch's last ones are
consumed. Without it, every epoch begins by waiting for its first batch: one
worker samples it from scratch while the device idles.

The training step here is a stand-in for a GPU step: the loop sleeps for
``step`` per batch, which frees the core and the interpreter lock as waiting
on a device does. ``step`` defaults to 1.25x the pipeline's own time per
batch, so that sampling keeps up between epoch boundaries and what is left
is the boundary itself. The two settings run in alternating blocks of
back-to-back epochs on the arxiv-sized graph (the first epoch of each block
untimed). Writes benchmarks/results/epoch_overlap.json and a section of
docs/benchmarks.md.

Run: python -m benchmarks.epoch_overlap [--threads 2] [--blocks 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Dict, List, Optional

from benchmarks.common import machine, save_json, write_section
from salient_pipes import FastDataset, salient_pipeline


def epoch(pipe: Any, step: float) -> Dict[str, float]:
    """One epoch: seconds, the wait for its first batch and the whole wait."""
    start = time.perf_counter()
    waits: List[float] = []
    items = iter(pipe)
    while True:
        asked = time.perf_counter()
        batch = next(items, None)
        waits.append(time.perf_counter() - asked)
        if batch is None:
            break
        del batch
        time.sleep(step)
    return {"seconds": time.perf_counter() - start, "first_wait_s": waits[0],
            "data_wait_s": sum(waits)}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=3, help="blocks per setting")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per block (first untimed)")
    parser.add_argument("--step-ms", type=float, default=None)
    args = parser.parse_args(argv)
    ds = FastDataset.arxiv_like(seed=0)
    pipes = {on: salient_pipeline(ds, batch_size=1024, fanouts=(15, 10, 5), device="cpu",
                                  num_threads=args.threads, overlap_epochs=on)
             for on in (False, True)}
    batches = len(pipes[False])
    for _ in range(2):  # the pipeline alone, warm
        alone = epoch(pipes[False], 0.0)["seconds"]
    step = args.step_ms / 1000 if args.step_ms is not None else 1.25 * alone / batches
    runs: Dict[bool, List[Dict[str, float]]] = {False: [], True: []}
    for _ in range(args.blocks):
        for on in (False, True):
            block = [epoch(pipes[on], step) for _ in range(args.epochs)]
            runs[on] += block[1:]
            print(on, [f"{r['seconds']:.3f}" for r in block], flush=True)
    rows = []
    for on in (False, True):
        rows.append({"overlap_epochs": on, "epochs": len(runs[on]),
                     **{key: statistics.median(r[key] for r in runs[on])
                        for key in ("seconds", "first_wait_s", "data_wait_s")}})
    results = {"machine": machine(), "threads": args.threads, "batches": batches,
               "pipeline_alone_s": alone, "step_s": step, "rows": rows}
    save_json("epoch_overlap", results)
    write_section("epoch_overlap", render(results))
    print(render(results))


def render(results: Dict[str, Any]) -> str:
    lines = [f"`python -m benchmarks.epoch_overlap`: arxiv-sized graph, 15/10/5, batch 1024, "
             f"{results['threads']} sampling threads on {results['machine']['cores']} cores. "
             f"The pipeline alone takes {results['pipeline_alone_s']:.3f} s per epoch "
             f"({results['batches']} batches); the training step is a stand-in for a GPU "
             f"step, {results['step_s'] * 1000:.1f} ms of waiting per batch. Medians of "
             f"{results['rows'][0]['epochs']} epochs each, in alternating blocks of "
             "back-to-back epochs.", "",
             "| overlap_epochs | seconds per epoch | data wait | of which first batch |",
             "| --- | ---: | ---: | ---: |"]
    for r in results["rows"]:
        lines.append(f"| {r['overlap_epochs']} | {r['seconds']:.3f} | "
                     f"{r['data_wait_s'] * 1000:.0f} ms | {r['first_wait_s'] * 1000:.1f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
