"""Per-epoch batch preparation on big graphs: ours, SALIENT's fast_sampler
and PyG's NeighborLoader, in the same run.

Synthetic graphs of 4 M and 10 M nodes (12 edges per node before
symmetrization, heavy-tailed degrees, random ids; ``common.random_id_graphs``)
with 128 fp16 features and int64 labels. An epoch is ``--batches`` batches of
1024 seeds drawn at random (the same seeds for every loader), sampled
15/10/5 with features and labels gathered, on 2 threads:

- ours: ``sample_neighbors → slice_features`` (gather fused into sampling);
- SALIENT's ``fast_sampler`` (MITIBMxGraph/SALIENT, built outside this
  repository against the installed torch; pass its directory with
  ``--fast-sampler-dir``), 2 threads, int64 ``col`` as it requires;
- PyG's ``NeighborLoader`` with 2 worker processes, with each sampler PyG
  can use here (pyg-lib, built from source by ``scripts/with_pyg_lib.sh``,
  and torch-sparse), ``--pyg-batches`` batches after a warm-up, scaled to
  the epoch.

Medians of ``--epochs`` epochs after a warm-up. Writes
benchmarks/results/big_graphs.json and a section of docs/benchmarks.md.

Run: python -m benchmarks.big_graphs --fast-sampler-dir /path/to/SALIENT/fast_sampler
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import time
import warnings
from typing import List, Optional

import torch

from benchmarks.common import (
    machine,
    median,
    pyg_backend,
    pyg_backends,
    random_id_graphs,
    save_json,
    write_section,
)
from salient_pipes.pipes import NodeIndices

FANOUTS = [15, 10, 5]
BATCH = 1024
THREADS = 2
FEATURES = 128


def features(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.empty(n, FEATURES, dtype=torch.float16)
    for begin in range(0, n, 1 << 20):
        end = min(n, begin + (1 << 20))
        x[begin:end] = torch.randn(end - begin, FEATURES, generator=gen)
    return x


def epochs(run, count: int) -> List[float]:
    times = []
    for _ in range(count + 1):  # the first one warms up
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times[1:]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4_000_000, 10_000_000])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pyg-batches", type=int, default=20)
    parser.add_argument("--fast-sampler-dir", default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*pyg-lib.*")
    torch.set_num_threads(THREADS)
    fast_sampler = None
    if args.fast_sampler_dir:
        sys.path.insert(0, args.fast_sampler_dir)
        import fast_sampler  # noqa: F811
    rows = []
    for ds in random_id_graphs(args.sizes):
        n = ds.num_nodes
        x = features(n, seed=n)
        y = torch.randint(40, (n,))
        gen = torch.Generator().manual_seed(0)
        seeds = torch.randperm(n, generator=gen)[:args.batches * BATCH]
        row = {"nodes": n, "edges": ds.num_edges}
        pipe = (NodeIndices(seeds).batch_nodes(BATCH)
                .sample_neighbors(ds, FANOUTS, num_threads=THREADS).slice_features(x, y))
        row["ours"] = epochs(lambda pipe=pipe: sum(1 for _ in pipe), args.epochs)
        print(n, "ours", row["ours"], flush=True)
        if fast_sampler is not None:
            config = fast_sampler.Config()
            config.x, config.y = x, y.view(-1, 1)  # it takes 2-D tables
            config.rowptr, config.col = ds.rowptr, ds.col.to(torch.int64)
            config.idx, config.batch_size, config.sizes = seeds, BATCH, FANOUTS
            config.skip_nonfull_batch, config.pin_memory = False, False

            def salient_epoch(config=config) -> None:
                session = fast_sampler.Session(THREADS, 2 * THREADS, config)
                while session.blocking_get_batch() is not None:
                    pass

            row["salient"] = epochs(salient_epoch, args.epochs)
            print(n, "salient", row["salient"], flush=True)
            del config, salient_epoch  # its int64 col copy, before PyG's conversion
        del pipe  # our session and its buffers
        rows.append(row)
        report(args, rows)  # what is measured survives if PyG runs out of memory
        from torch_geometric.data import Data
        from torch_geometric.loader import NeighborLoader

        dst = torch.repeat_interleave(torch.arange(n), ds.rowptr.diff())
        data = Data(x=x, y=y, edge_index=torch.stack([ds.col.to(torch.int64), dst]),
                    num_nodes=n)
        del dst
        row["pyg_2_workers"] = {}
        for backend in pyg_backends():
            with pyg_backend(backend):
                loader = NeighborLoader(data, num_neighbors=FANOUTS, input_nodes=seeds,
                                        batch_size=BATCH, num_workers=THREADS,
                                        persistent_workers=True)
                it = iter(loader)
                for _ in itertools.islice(it, 3):
                    pass
                start = time.perf_counter()
                done = sum(1 for _ in itertools.islice(it, args.pyg_batches))
            row["pyg_2_workers"][backend] = (time.perf_counter() - start) / done * args.batches
            print(n, "pyg", backend, row["pyg_2_workers"][backend], flush=True)
            del loader, it  # its workers and its CSC copy go before the next loader's
            gc.collect()
            report(args, rows)
        del data, x, y


def report(args: argparse.Namespace, rows: List[dict]) -> None:
    """Writes the results so far (a loader not yet measured shows as -)."""
    backends = pyg_backends()
    save_json("big_graphs", {"machine": machine(), "rows": rows, "batches": args.batches,
                             "pyg_batches_timed": args.pyg_batches, "threads": THREADS,
                             "pyg_backends": backends})
    lines = [
        "`python -m benchmarks.big_graphs`: an epoch of "
        f"{args.batches} batches of 1024 random seeds, 15/10/5, 128 fp16 features and the "
        "labels gathered, 2 threads, on graphs with random node ids (12 edges per node "
        f"before symmetrization). Ours and SALIENT's `fast_sampler`: medians of {args.epochs} "
        "epochs after a warm-up; PyG's `NeighborLoader` with 2 workers and "
        f"{' or '.join(backends)} as its sampler (pyg-lib built from source against this "
        "torch by `scripts/with_pyg_lib.sh`): "
        f"{args.pyg_batches} batches after 3 warm-up batches, scaled to the epoch. "
        "vs PyG: PyG's fastest over ours. Same run, same machine.", "",
        "| nodes | CSR entries | ours | SALIENT fast_sampler | "
        + " | ".join(f"PyG ({b}), 2 workers" for b in backends) + " | vs SALIENT | vs PyG |",
        "| ---: | ---: | ---: | ---: | " + "---: | " * len(backends) + "---: | ---: |"]
    for r in rows:
        ours = median(r["ours"])
        salient = median(r["salient"]) if "salient" in r else None
        pyg = r.get("pyg_2_workers", {})
        fastest = min(pyg.values()) if pyg else None
        cells = [f"{salient:.2f} s" if salient else "-",
                 *(f"{pyg[b]:.2f} s" if b in pyg else "-" for b in backends),
                 f"**{salient / ours:.1f}x**" if salient else "-",
                 f"**{fastest / ours:.1f}x**" if fastest else "-"]
        lines.append(f"| {r['nodes'] / 1e6:g} M | {r['edges'] / 1e6:.0f} M | {ours:.2f} s | "
                     + " | ".join(cells) + " |")
    write_section("big_graphs", "\n".join(lines))


if __name__ == "__main__":
    main()
