"""Partitioned features against replicated training, on one machine.

SNAP's soc-Slashdot0902 (82 k nodes, 948 k edges; symmetrized) with random
128-dim fp16 features and half of its nodes as the train split (as in
``benchmarks.common.slashdot``). gloo ranks started on this machine, 15/10/5,
batch 1024.

1. Bytes each rank fetches from the others per training batch, with remote-row
   cache budgets of 0, 10 % and 25 % of the feature table (VIP policy), for
   METIS and random parts at 2 and 4 ranks and METIS parts at 8 and 16; at
   10 % also the degree and sampled-count policies. Bytes are exact: they do
   not depend on the machine.
2. Per-rank memory (feature rows held, resident set) and seconds per training
   epoch (3-layer GraphSAGE, hidden 128, DDP) for 2 ranks: replicated (every
   rank holds every row) against partitioned with each budget.
3. Rows per batch on a 4 M-node synthetic graph of random ids (a stand-in for a
   large graph where a batch's rows rarely repeat), for the papers100M model
   in docs/distributed.md.

Writes benchmarks/results/partitioned.json and a section of docs/benchmarks.md.

Run: python -m benchmarks.partitioned
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from benchmarks.common import RESULTS, ROOT, machine, save_json, slashdot, write_section

FANOUTS = (15, 10, 5)
BATCH = 1024
BUDGETS = (None, "10%", "25%")


def _rank_main(rank: int, world: int, tmp: str, job: Dict[str, Any]) -> None:
    import psutil

    from salient_pipes import SAGE, salient_pipeline
    from salient_pipes.distributed import PartitionedDataset, process_group
    from salient_pipes.pipes import pipeline_stats
    from salient_pipes.train import train_epoch

    torch.set_num_threads(1)
    threads = max(1, (os.cpu_count() or 1) // world)
    with process_group("cpu", init_method=f"file://{tmp}/init-{job['tag']}", rank=rank,
                       world_size=world):
        if job["partitioned"]:
            ds = PartitionedDataset.load(job["path"], cache=job["budget"],
                                         cache_policy=job["policy"], fanouts=FANOUTS,
                                         batch_size=BATCH)
            held = ds.feature_nbytes
        else:
            from salient_pipes import FastDataset

            ds = FastDataset.load(job["path"], mmap=False)
            held = ds.x.numel() * ds.x.element_size()
        pipe = salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                                num_threads=threads)
        result: Dict[str, Any] = {"held_bytes": held, "batches": len(pipe), "epochs": []}
        if job["train"]:
            torch.manual_seed(0)
            core = SAGE(ds.num_features, 128, ds.num_classes, len(FANOUTS))
            model = torch.nn.parallel.DistributedDataParallel(core)
            optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
        for epoch in range(job["epochs"]):
            pipe.set_epoch(epoch)
            start = time.perf_counter()
            if job["train"]:
                run = train_epoch(model, pipe, optimizer, progress=False)
                wait = run.data_wait_s
            else:
                wait = 0.0
                for _ in pipe:
                    pass
            row = {"seconds": time.perf_counter() - start, "data_wait_s": wait}
            fetched = [s for s in pipeline_stats(pipe) if "remote_bytes" in s]
            if fetched:
                row.update({k: fetched[0][k] for k in (
                    "local_rows", "cached_rows", "remote_rows", "remote_bytes",
                    "remote_bytes_per_batch", "remote_share")})
            result["epochs"].append(row)
        result["rss_bytes"] = psutil.Process().memory_info().rss
        (Path(tmp) / f"{job['tag']}-{rank}.json").write_text(json.dumps(result))


def run_ranks(world: int, tmp: Path, job: Dict[str, Any], timeout: float = 1800) -> List[dict]:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(r, world, str(tmp), job))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"{job['tag']}: ranks exited with {[p.exitcode for p in procs]}")
    return [json.loads((tmp / f"{job['tag']}-{r}.json").read_text()) for r in range(world)]


def summarize(ranks: List[dict], timed_from: int = 1) -> Dict[str, Any]:
    """Means over ranks of the epochs from ``timed_from`` on."""
    epochs = [e for r in ranks for e in r["epochs"][timed_from:]]

    def mean(key: str) -> float:
        values = [e[key] for e in epochs if key in e]
        return sum(values) / len(values) if values else 0.0

    rows = sum(mean(k) for k in ("local_rows", "cached_rows", "remote_rows"))
    return {"seconds": max(e["seconds"] for e in epochs),
            "data_wait_s": mean("data_wait_s"),
            "remote_bytes_per_batch": mean("remote_bytes_per_batch"),
            "remote_share": mean("remote_share"),
            "cached_share": mean("cached_rows") / rows if rows else 0.0,
            "rows_per_batch": rows / ranks[0]["batches"] if ranks[0]["batches"] else 0.0,
            "held_mib": max(r["held_bytes"] for r in ranks) / 2**20,
            "rss_mib": max(r["rss_bytes"] for r in ranks) / 2**20}


def rows_per_batch_big(num_nodes: int, batches: int = 8) -> float:
    """Mean rows (``n_id``) per 15/10/5 batch of 1024 random seeds on a
    random-id graph of ``num_nodes`` nodes (benchmarks.latency's graphs)."""
    from benchmarks.common import random_id_graphs
    from salient_pipes import _native

    for ds in random_id_graphs([num_nodes]):
        session = _native.Session(ds.graph, list(FANOUTS), seed=0)
        gen = torch.Generator().manual_seed(0)
        total = 0
        for position in range(batches):
            seeds = torch.randint(0, ds.num_nodes, (BATCH,), generator=gen).unique()
            session.submit(seeds.numpy(), 0, position)
            total += session.next()[0][0].shape[0]
        return total / batches
    raise RuntimeError("no graph")


# papers100M (OGB): nodes, directed edges, features, train nodes.
PAPERS = {"nodes": 111_059_956, "edges": 1_615_685_872, "features": 128,
          "train": 1_207_179}


def papers_model(fetch: List[Dict[str, Any]], rows_per_batch: float) -> List[Dict[str, Any]]:
    """Per-rank memory, bytes per batch and communication seconds per epoch
    for papers100M on 8 and 16 machines at 25 Gb/s, with the remote shares
    measured here at the same number of ranks (METIS, VIP cache)."""
    row_bytes = PAPERS["features"] * 2
    table = PAPERS["nodes"] * row_bytes
    topology = PAPERS["nodes"] * 8 + 2 * PAPERS["edges"] * 4  # rowptr, symmetrized col
    out = []
    for machines in (8, 16):
        batches = math.ceil(PAPERS["train"] / machines / BATCH)
        for budget in BUDGETS:
            share, = [r["remote_share"] for r in fetch if r["world"] == machines and
                      r["method"] == "metis" and r["budget"] == (budget or "0%") and
                      r["policy"] == "vip"]
            per_batch = rows_per_batch * share * row_bytes
            cache = 0 if budget is None else float(budget[:-1]) / 100 * table
            out.append({"machines": machines, "budget": budget or "0%",
                        "features_gib": (table / machines + cache) / 2**30,
                        "replicated_gib": table / 2**30, "topology_gib": topology / 2**30,
                        "remote_share": share, "mib_per_batch": per_batch / 2**20,
                        "batches": batches,
                        "comm_s_per_epoch": batches * per_batch / (25e9 / 8)})
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (first untimed)")
    # (render() names 2 timed epochs: the default)
    parser.add_argument("--big-nodes", type=int, default=4_000_000)
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the docs from benchmarks/results/partitioned.json")
    args = parser.parse_args(argv)
    if args.render_only:
        write_docs(json.loads((RESULTS / "partitioned.json").read_text()))
        return
    from salient_pipes.distributed import partition

    tmp = Path(tempfile.mkdtemp(prefix="salient-partitioned-"))
    try:
        ds = slashdot()
        ds.save(tmp / "full", progress=False)
        results: Dict[str, Any] = {"machine": machine(), "dataset": ds.summary(),
                                   "fetch": [], "train": []}
        for world in (2, 4, 8, 16):
            for method in ("metis", "random") if world <= 4 else ("metis",):
                path = tmp / f"{method}-{world}"
                t0 = time.perf_counter()
                partition(ds, world, path, method=method, progress=False)
                seconds = time.perf_counter() - t0
                runs = [(b, "vip") for b in BUDGETS]
                if method == "metis" and world == 2:
                    runs += [("10%", "degree"), ("10%", "sampled")]
                for budget, policy in runs:
                    tag = f"fetch-{method}-{world}-{budget}-{policy}".replace("%", "")
                    job = {"tag": tag, "path": str(path), "partitioned": True, "budget": budget,
                           "policy": policy, "train": False, "epochs": 2}
                    row = {"world": world, "method": method, "budget": budget or "0%",
                           "policy": policy, "partition_s": seconds,
                           **summarize(run_ranks(world, tmp, job))}
                    results["fetch"].append(row)
                    print(row, flush=True)
        for budget in ("replicated",) + BUDGETS:
            partitioned = budget != "replicated"
            job = {"tag": f"train-{budget}".replace("%", ""), "partitioned": partitioned,
                   "path": str(tmp / ("metis-2" if partitioned else "full")),
                   "budget": budget, "policy": "vip", "train": True, "epochs": args.epochs}
            row = {"mode": "replicated" if not partitioned else f"partitioned, {budget or '0%'}",
                   **summarize(run_ranks(2, tmp, job))}
            results["train"].append(row)
            print(row, flush=True)
        results["big_nodes"] = args.big_nodes
        results["rows_per_batch_big"] = rows_per_batch_big(args.big_nodes)
        results["papers100m"] = papers_model(results["fetch"], results["rows_per_batch_big"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    save_json("partitioned", results)
    write_docs(results)


def write_docs(results: Dict[str, Any]) -> None:
    write_section("partitioned", render(results))
    write_section("partitioned-model", render_model(results),
                  doc=ROOT / "docs" / "distributed.md")


def render_model(results: Dict[str, Any]) -> str:
    lines = ["| machines | cache | features per machine (replicated) | remote rows | "
             "MiB per batch | batches per epoch | network seconds per epoch at 25 Gb/s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["papers100m"]:
        lines.append(f"| {r['machines']} | {r['budget']} | {r['features_gib']:.1f} GiB "
                     f"({r['replicated_gib']:.1f} GiB) | {r['remote_share']:.0%} | "
                     f"{r['mib_per_batch']:,.0f} | {r['batches']:,} | "
                     f"{r['comm_s_per_epoch']:.1f} |")
    return "\n".join(lines)


def render(results: Dict[str, Any]) -> str:
    big_nodes = results["big_nodes"]
    lines = ["`python -m benchmarks.partitioned`: " + results["dataset"] + "; gloo ranks on "
             f"this machine ({results['machine']['cores']} cores), 15/10/5, batch 1024.", "",
             "Rows fetched from other ranks per training batch (means over ranks and "
             "epochs; exact counts, independent of the machine):", "",
             "| ranks | parts | cache | policy | rows per batch | from other ranks | "
             "from the cache | KiB fetched per batch | features held per rank |",
             "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["fetch"]:
        lines.append(f"| {r['world']} | {r['method']} | {r['budget']} | {r['policy']} | "
                     f"{r['rows_per_batch']:,.0f} | {r['remote_share']:.1%} | "
                     f"{r['cached_share']:.1%} | {r['remote_bytes_per_batch'] / 1024:,.0f} | "
                     f"{r['held_mib']:.1f} MiB |")
    lines += ["", "Training (3-layer GraphSAGE, hidden 128, DDP over 2 gloo ranks on this "
              "machine; the slowest epoch of any rank, of 2 timed epochs after 1 untimed):", "",
              "| features | seconds per epoch | data wait per epoch | features held per rank "
              "| resident set per rank |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in results["train"]:
        lines.append(f"| {r['mode']} | {r['seconds']:.2f} | {r['data_wait_s']:.2f} s | "
                     f"{r['held_mib']:.1f} MiB | {r['rss_mib']:,.0f} MiB |")
    lines += ["", f"Rows per batch on a {big_nodes / 1e6:g} M-node random-id graph "
              f"(15/10/5, batch 1024): {results['rows_per_batch_big']:,.0f}. The papers100M "
              "model built on it is in docs/distributed.md."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
