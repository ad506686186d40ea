"""The training step of ``SAGE`` eager and through ``torch.compile``, and
eager with torch's own dropout (``F.dropout``) instead of ours
(``salient_pipes.models.dropout``: on a CPU its mask is filled natively on
every core).

3-layer GraphSAGE (hidden 256) on batches of the arxiv-sized graph (15/10/5,
batch 1024) already prepared, so the step alone is timed: forward, NLL loss,
backward, Adam. The compiled model is ``torch.compile(model, dynamic=True)``,
compiled once before timing (its compile time is reported). The three
steps alternate over the rounds, each round over the same batches.
On a CPU the host allocator keeps freed memory first, as the train command
does (``salient_pipes.allocator``; ``--system-malloc``: glibc's defaults).

Writes benchmarks/results/compiled_model.json and its section of
docs/benchmarks.md.

Run: python -m benchmarks.compiled_model [--device cpu] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

from benchmarks.common import arxiv_like, machine, save_json, write_section
from salient_pipes import SAGE, models, salient_pipeline
from salient_pipes.allocator import keep_freed_memory
from salient_pipes.batch import PreparedBatch

FANOUTS = (15, 10, 5)


@contextlib.contextmanager
def torch_dropout() -> Iterator[None]:
    """SAGE with ``F.dropout`` between its layers while inside."""
    ours = models.dropout
    models.dropout = F.dropout  # type: ignore[assignment]
    try:
        yield
    finally:
        models.dropout = ours


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         batch: PreparedBatch) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.nll_loss(model(batch.x, batch.adjs), batch.y, ignore_index=-1).backward()
    optimizer.step()


def seconds_per_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     batches: List[PreparedBatch], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        step(model, optimizer, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / len(batches)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch and sampling threads")
    parser.add_argument("--system-malloc", action="store_true",
                        help="on a CPU, leave the host allocator's settings as they are")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    kept = device.type == "cpu" and not args.system_malloc and keep_freed_memory()
    torch.set_num_threads(args.threads)
    ds = arxiv_like()
    pipe = salient_pipeline(ds, batch_size=1024, fanouts=FANOUTS, device=device,
                            num_threads=args.threads)
    batches = []
    for batch in pipe:
        batches.append(batch)
        if len(batches) == args.batches:
            break
    torch.manual_seed(0)
    model = SAGE(ds.num_features, 256, ds.num_classes, len(FANOUTS)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    compiled = torch.compile(model, dynamic=True)
    start = time.perf_counter()
    step(compiled, optimizer, batches[0])
    compile_s = time.perf_counter() - start
    step(model, optimizer, batches[0])  # warm the eager path too
    eager, fused, plain = [], [], []
    for _ in range(args.rounds):
        eager.append(seconds_per_step(model, optimizer, batches, device))
        with torch_dropout():
            plain.append(seconds_per_step(model, optimizer, batches, device))
        fused.append(seconds_per_step(compiled, optimizer, batches, device))
        print(f"eager {eager[-1]:.3f} s, eager with F.dropout {plain[-1]:.3f} s, "
              f"compiled {fused[-1]:.3f} s per step", flush=True)
    results = {"machine": machine(), "device": str(device), "threads": args.threads,
               "batches": args.batches, "rounds": args.rounds, "compile_s": compile_s,
               "eager_s": eager, "eager_torch_dropout_s": plain, "compiled_s": fused,
               "freed_memory_kept": kept}
    save_json("compiled_model", results)
    write_section("compiled_model", render(results))


def render(r: dict) -> str:
    eager, fused = statistics.median(r["eager_s"]), statistics.median(r["compiled_s"])
    plain = statistics.median(r["eager_torch_dropout_s"])
    return "\n".join([
        "## The training step: eager, compiled, and dropout's mask "
        "(`benchmarks/compiled_model.py`)",
        "",
        f"3-layer `SAGE` (hidden 256) on {r['batches']} prepared arxiv-sized batches "
        f"(15/10/5, batch 1024), {r['device']}, {r['threads']} threads, "
        f"{r['machine']['cores']} cores, torch {r['machine']['torch']}: forward, loss, "
        f"backward and Adam per step, median of {r['rounds']} alternating rounds. "
        "Compiled: `torch.compile(model, dynamic=True)`, one compilation for every batch "
        "size (`salient-pipes train --compile`)." +
        (" Freed memory kept by the host allocator, as the train command does on a CPU."
         if r.get("freed_memory_kept") else ""),
        "",
        "| model | s / step | speed-up |",
        "| --- | ---: | ---: |",
        f"| eager, torch's dropout (`F.dropout`) | {plain:.3f} | 1.00x |",
        f"| eager (`salient_pipes.models.dropout`) | {eager:.3f} | {plain / eager:.2f}x |",
        f"| compiled | {fused:.3f} | {plain / fused:.2f}x |",
        "",
        f"Compiling took {r['compile_s']:.1f} s, once. On the H100 the compiled step's GPU "
        "time was half the eager one's (see GPU runs above).",
    ])


if __name__ == "__main__":
    main()
