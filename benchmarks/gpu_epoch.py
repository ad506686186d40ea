"""GraphSAGE training epochs on a GPU: ours against SALIENT's fast_sampler and
PyG's NeighborLoader, on the same GPU and host in one run.

SALIENT's seed-tutorial model (3-layer GraphSAGE, hidden 256), 15/10/5,
batch 1024, on

- ``arxiv``: ``FastDataset.arxiv_like()`` (ogbn-arxiv's size);
- ``products``: an ogbn-products-sized synthetic graph (2,449,029 nodes,
  61.9 M edges before symmetrization, 100 fp16 features, 47 classes,
  196,615 training nodes).

Loaders, all feeding the same model (``salient_pipes.SAGE``) on the device:

- ours: ``salient_pipeline(ds, device="cuda")``: gather into pinned slots,
  prefetch on a side stream from the prefetch stage's thread, the next
  epoch's first batches sampled before it begins (``overlap_epochs``);
- SALIENT: its ``fast_sampler`` (built outside this repository; pass
  ``--fast-sampler-dir``) with pinned batches, copied on a side stream one
  batch ahead, as its ``DevicePrefetcher`` does; its CSR hops become
  ``edge_index`` on the device;
- PyG: ``NeighborLoader`` with ``--pyg-workers`` worker processes (2 by
  default), where pyg-lib or torch-sparse is installed.

``--loaders`` picks which of them run (all by default), so that the slow
ones can run apart with fewer models or epochs.

Each loader feeds the model in each of ``--models``: ``eager``;
``compiled``, ``torch.compile(model, dynamic=True)`` (one compilation,
before the untimed epoch); ``graphs``, the compiled model recorded as CUDA
graphs over padded batches (``compile_model(model, cuda_graphs=True)``,
``train --compile --cuda-graphs``); ``step``, the compiled model's whole
training step (forward, loss, backward, Adam) recorded as one CUDA graph
per padded shape (``CapturedStep``). ``--compile`` is short for ``--models
eager compiled``. Adam is fused on CUDA for every row. Ours also runs with
``--threads`` sampling threads (a list: the training thread and the copies
need cores too).

Per loader: seconds per epoch (median of the timed epochs, after one
untimed), the training loop's data wait share and its wait for each epoch's
first batch, and the GPU's idle share
(CUDA events around each step, ``train_epoch``). Writes
benchmarks/results/gpu_epoch.json (``--name``) and a section of
docs/benchmarks.md naming the GPU.

``--features`` runs ours once per feature placement: ``host`` (gathered by
the sampling workers), ``device`` (all rows on the GPU,
``features_on="cuda"``) and shares of the rows kept in a device cache
(``25%``: ``device_cache`` of a quarter of the rows plus the slot map, the
hottest by degree); the table then has the cache's hit rate.

Run (on a CUDA machine): python -m benchmarks.gpu_epoch [--fast-sampler-dir DIR]
A CPU run (``--device cpu --graphs tiny``) checks the script, not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch

from benchmarks.common import RESULTS, machine, save_json, write_section
from salient_pipes import SAGE, FastDataset, salient_pipeline, train_epoch
from salient_pipes.batch import Adj, PreparedBatch
from salient_pipes.models import compile_model
from salient_pipes.pipes import pipeline_stats
from salient_pipes.train import CapturedStep

FANOUTS = (15, 10, 5)
BATCH = 1024
HIDDEN = 256
MODELS = ("eager", "compiled", "graphs", "step")


def graph(name: str) -> FastDataset:
    if name == "arxiv":
        return FastDataset.arxiv_like(seed=0)
    if name == "products":
        n = 2_449_029
        return FastDataset.synthetic(num_nodes=n, avg_degree=2 * 61_859_140 / n,
                                     num_features=100, num_classes=47, seed=0,
                                     split=(196_615 / n, 39_323 / n), name="products-like")
    if name == "tiny":
        return FastDataset.synthetic(num_nodes=5000, num_features=32, seed=0, name="tiny")
    raise ValueError(f"unknown graph {name!r}")


def salient_batches(fast_sampler: Any, ds: FastDataset, device: torch.device,
                    threads: int) -> Callable[[int], Iterator[PreparedBatch]]:
    """An epoch of SALIENT's fast_sampler batches, moved to ``device`` one
    batch ahead on a side stream (its DevicePrefetcher's scheme)."""
    train = ds.split_idx["train"]

    def epoch(number: int) -> Iterator[PreparedBatch]:
        gen = torch.Generator().manual_seed(number)
        config = fast_sampler.Config()
        config.x, config.y = ds.x, ds.y.view(-1, 1)
        config.rowptr, config.col = ds.rowptr, ds.col.to(torch.int64)
        config.idx = train[torch.randperm(train.numel(), generator=gen)]
        config.batch_size, config.sizes = BATCH, list(FANOUTS)
        config.skip_nonfull_batch, config.pin_memory = False, device.type == "cuda"
        session = fast_sampler.Session(threads, 2 * threads, config)

        def to_device(sample: Any) -> PreparedBatch:
            x, y, adjs, _ = sample
            moved = []
            for rowptr, col, _, (num_dst, num_src) in adjs:
                rowptr = rowptr.to(device, non_blocking=True)
                col = col.to(device, non_blocking=True)
                # output_size: no wait for the copy to learn the edge count
                dst = torch.repeat_interleave(torch.arange(num_dst, device=device),
                                              rowptr.diff(), output_size=col.numel())
                moved.append(Adj(torch.stack([col, dst]), None, (num_src, num_dst)))
            return PreparedBatch(x=x.to(device, non_blocking=True),
                                 y=y.view(-1).to(device, non_blocking=True), adjs=moved,
                                 n_id=torch.empty(0, dtype=torch.int64, device=device))

        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        pending = None
        while True:
            sample = session.blocking_get_batch()
            if sample is None:
                break
            if stream is None:
                yield to_device(sample)
                continue
            with torch.cuda.stream(stream):
                ready = to_device(sample)
            if pending is not None:
                yield pending
            current = torch.cuda.current_stream(device)
            current.wait_stream(stream)
            # Made on the copy stream, used on the current one: keep the
            # allocator from handing their memory to the next copies while
            # the model may still read them.
            ready.record_stream(current)
            pending = ready
        if pending is not None:
            yield pending

    return epoch


def pyg_batches(ds: FastDataset, device: torch.device, workers: int = 2) -> Optional[Callable]:
    try:
        from torch_geometric.data import Data
        from torch_geometric.loader import NeighborLoader
    except ImportError:
        return None
    dst = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr.diff())
    data = Data(x=ds.x, y=ds.y, edge_index=torch.stack([ds.col.to(torch.int64), dst]),
                num_nodes=ds.num_nodes)
    try:
        loader = NeighborLoader(data, num_neighbors=list(FANOUTS),
                                input_nodes=ds.split_idx["train"], batch_size=BATCH,
                                shuffle=True, num_workers=workers, persistent_workers=True,
                                pin_memory=device.type == "cuda")
        next(iter(loader))
    except (ImportError, RuntimeError) as exc:  # no sampler backend installed
        print(f"PyG NeighborLoader unavailable: {exc}", file=sys.stderr)
        return None

    def epoch(number: int) -> Iterator[Any]:
        for b in loader:
            b = b.to(device, non_blocking=True)
            # PyG's union subgraph for every layer; the last into the seeds only.
            n, ei = b.num_nodes, b.edge_index
            last = ei[:, ei[1] < b.batch_size]
            adjs = [Adj(ei, None, (n, n))] * (len(FANOUTS) - 1) + \
                [Adj(last, None, (n, b.batch_size))]
            yield PreparedBatch(x=b.x, y=b.y[: b.batch_size], adjs=adjs, n_id=b.n_id)

    return epoch


# Earlier designs of the last stages, measured beside the default (a prefetch
# thread takes the batches from the workers' pinned slots and issues the copies):
VARIANTS = {
    "pin": "pin thread + prefetch thread",
    "inline": "pin thread, copies issued by the training thread",
    "sequential": "epochs not overlapped",
}


# Where ours keeps the features: gathered on the host (the default), all on
# the device, or a device cache of a share of the rows (the hottest by degree).
FEATURES = {"host": "", "device": ", features on the GPU"}


def features_label(where: str) -> str:
    return FEATURES.get(where, f", {where} of rows cached on the GPU")


def placement(ds: FastDataset, device: torch.device, where: str) -> Dict[str, Any]:
    """``salient_pipeline`` arguments for ``where`` (see FEATURES; ``"25%"``:
    a device cache of that share of the rows, with its slot map)."""
    if where == "host":
        return {}
    if where == "device":
        return {"features_on": str(device)}
    share = float(where.rstrip("%")) / 100
    row = ds.x.size(1) * ds.x.element_size()
    return {"features_on": str(device),
            "device_cache": int(share * ds.num_nodes) * row + 4 * ds.num_nodes}


def ours_pipeline(ds: FastDataset, device: torch.device, threads: int, variant: str,
                  where: str = "host") -> Any:
    """``salient_pipeline``, or with a variant's last stages (see VARIANTS),
    with the features where ``where`` says (see FEATURES)."""
    pipe = salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device=device,
                            num_threads=threads, overlap_epochs=variant != "sequential",
                            **placement(ds, device, where))
    if variant in ("pin", "inline") and device.type == "cuda":
        pipe.source = pipe.source.pin_memory()
        if variant == "inline":
            pipe.background, pipe.depth = False, 1
    return pipe


def measure(name: str, epochs: Callable[[int], Any], ds: FastDataset, device: torch.device,
            count: int, threads: int, variant: str) -> Dict[str, Any]:
    torch.manual_seed(0)
    model = SAGE(ds.num_features, HIDDEN, ds.num_classes, len(FANOUTS)).to(device)
    cuda = device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003, fused=True if cuda else None,
                                 capturable=variant == "step" and cuda)
    if variant == "step":  # the compiled model's whole step recorded as one CUDA graph
        step: Any = CapturedStep(compile_model(model), optimizer, capture=cuda)
    else:
        step = model if variant == "eager" else compile_model(model,
                                                              cuda_graphs=variant == "graphs")
    runs, hits = [], []
    for e in range(count + 1):
        runs.append(train_epoch(step, epochs(e), optimizer, progress=False))
        hits += [s["device_cache_hit_rate"] for s in pipeline_stats(getattr(epochs, "pipe", None))
                 if "device_cache_hit_rate" in s]
    timed = runs[1:]
    row = {"loader": name, "threads": threads, "model": variant,
           "seconds": statistics.median(r.seconds for r in timed),
           "data_wait_share": statistics.median(r.data_wait_share for r in timed),
           "first_wait_s": statistics.median(r.first_wait_s for r in timed),
           "device_idle_share": statistics.median(r.device_idle_share for r in timed),
           "loss": timed[-1].loss, "batches": timed[-1].batches}
    if hits:
        row["device_cache_hit_rate"] = statistics.median(hits)
    print(row, flush=True)
    return row


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=["arxiv", "products"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one more)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="sampling threads of ours (default: the cores); SALIENT gets "
                             "the first")
    parser.add_argument("--compile", action="store_true",
                        help="short for --models eager compiled")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None,
                        help="the model variants every loader feeds (default: eager)")
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=None,
                        help="also ours with earlier designs of its last stages or "
                             "without overlapping epochs, compiled model (all of them "
                             "when none is named)")
    parser.add_argument("--features", nargs="+", default=["host"], metavar="WHERE",
                        help="where ours keeps the features, one run each: host (gathered "
                             "by the workers), device (all on the GPU), or a share of the "
                             "rows cached on the GPU such as 25%%")
    parser.add_argument("--fast-sampler-dir", default=None)
    parser.add_argument("--loaders", nargs="+", choices=("ours", "salient", "pyg"),
                        default=["ours", "salient", "pyg"],
                        help="which loaders run (SALIENT needs --fast-sampler-dir; PyG "
                             "pyg-lib or torch-sparse)")
    parser.add_argument("--pyg-workers", type=int, default=2,
                        help="NeighborLoader's worker processes")
    parser.add_argument("--name", default="gpu_epoch",
                        help="the results file (benchmarks/results/NAME.json) and the "
                             "section of docs/benchmarks.md they go to")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the docs from benchmarks/results/gpu_epoch.json")
    args = parser.parse_args(argv)
    if args.render_only:
        write_section(args.name, render(json.loads((RESULTS / f"{args.name}.json").read_text())))
        return
    warnings.filterwarnings("ignore", message=".*pyg-lib.*")
    device = torch.device(args.device)
    counts = args.threads or [max(1, len(os.sched_getaffinity(0)))]
    threads = counts[0]
    models = args.models or (["eager", "compiled"] if args.compile else ["eager"])
    variants = [] if args.variants is None else args.variants or list(VARIANTS)
    if "graphs" in models and device.type != "cuda":
        parser.error("--models graphs needs a CUDA device")
    fast_sampler = None
    if args.fast_sampler_dir:
        sys.path.insert(0, args.fast_sampler_dir)
        import fast_sampler  # noqa: F811
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU run)"
    results: Dict[str, Any] = {"machine": machine(), "gpu": gpu, "threads": threads,
                               "rows": []}
    for name in args.graphs:
        ds = graph(name)
        loaders = []
        for count in counts if "ours" in args.loaders else []:
            runs = [("default", where) for where in args.features] + \
                [(variant, "host") for variant in variants]
            for variant, where in runs:
                pipe = ours_pipeline(ds, device, count, variant, where)

                def ours(e: int, pipe=pipe) -> Any:
                    pipe.set_epoch(e)
                    return pipe

                ours.pipe = pipe  # type: ignore[attr-defined]
                label = "salient_pipes" + ("" if variant == "default"
                                           else f", {VARIANTS[variant]}") + \
                    features_label(where)
                loaders.append((label, ours, count))
        if fast_sampler is not None and "salient" in args.loaders:
            loaders.append(("SALIENT fast_sampler", salient_batches(fast_sampler, ds, device,
                                                                   threads), threads))
        pyg = pyg_batches(ds, device, args.pyg_workers) if "pyg" in args.loaders else None
        if pyg is not None:
            loaders.append((f"PyG NeighborLoader, {args.pyg_workers} workers", pyg,
                            args.pyg_workers))
        for loader, epochs, count in loaders:
            # the prefetch variants of ours: with the compiled model only
            variant_run = any(v in loader for v in VARIANTS.values())
            for variant in (["compiled"] if variant_run else models):
                try:
                    row = measure(loader, epochs, ds, device, args.epochs, count, variant)
                except Exception as exc:  # a baseline that fails is reported, not fatal
                    print(f"{loader} on {ds.name} failed: {exc!r}", file=sys.stderr)
                    continue
                results["rows"].append({"graph": ds.name, **row})
                save_json(args.name, {**results, "epochs": args.epochs})
        del loaders, ds
    results["epochs"] = args.epochs
    save_json(args.name, results)
    write_section(args.name, render(results))


def render(results: Dict[str, Any]) -> str:
    lines = [f"`python -m benchmarks.gpu_epoch` on **{results['gpu']}** "
             f"({results['machine']['cores']} host cores, torch {results['machine']['torch']}): "
             "3-layer GraphSAGE (hidden 256), 15/10/5, batch 1024; median of "
             f"{results['epochs']} timed epochs after one untimed. Model: `SAGE` eager, "
             "through `torch.compile(dynamic=True)` (compiled), compiled and replayed as "
             "CUDA graphs over padded batches (graphs), or with the whole step recorded as "
             "one CUDA graph (step). GPU idle: the share of the epoch with "
             "no training step on the GPU (CUDA events).", "",
             "| graph | loader | sampling threads | model | seconds per epoch | data wait "
             "| of which first batch | GPU idle | GPU cache hits |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["rows"]:
        first = f"{r['first_wait_s'] * 1000:.0f} ms" if "first_wait_s" in r else ""
        hits = f"{r['device_cache_hit_rate']:.0%}" if "device_cache_hit_rate" in r else ""
        lines.append(f"| {r['graph']} | {r['loader']} | {r.get('threads', results['threads'])} "
                     f"| {r.get('model', 'eager')} | {r['seconds']:.3f} | "
                     f"{r['data_wait_share']:.0%} | {first} | {r['device_idle_share']:.0%} "
                     f"| {hits} |")
    return "\n".join(lines + [results.get("notes", "")])

if __name__ == "__main__":
    main()
