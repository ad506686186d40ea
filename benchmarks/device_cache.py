"""What a device cache saves the host: the batch preparation of an epoch when
the GPU holds all of the features, a share of the rows, or none of them.

Whatever the device, the host's part of an epoch is the same: sample, gather
the rows the device lacks into each batch, hand the batch on. This measures
that part alone (the slice stage's output, before any copy), so it runs on
any machine, with the features gathered on the host (``host``), all of them
on the device (``device``: only labels are gathered) and a device cache of
a share of the rows (``25%``, ``50%``: the hottest by ``--policies``).
Per run: seconds per epoch (median of the timed epochs after one untimed),
the feature bytes per batch that would cross to the device, and the
cache's hit rate; the placements run their epochs in turn, so that the
machine's drifts touch them alike (the share of a batch's rows the device holds). The hit
rates and bytes do not depend on the machine; the seconds are this host's.

Graphs as ``benchmarks.gpu_epoch``: the arxiv-sized and the
ogbn-products-sized synthetic graphs (15/10/5, batch 1024). Writes
benchmarks/results/device_cache.json and a section of docs/benchmarks.md.

Run: python -m benchmarks.device_cache [--graphs arxiv products] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Dict, List, Optional

import torch

from benchmarks.common import machine, save_json, write_section
from benchmarks.gpu_epoch import BATCH, FANOUTS, graph, placement
from salient_pipes import FastDataset, salient_pipeline
from salient_pipes.pipes import pipeline_stats
from salient_pipes.pipes.slice import SliceFeatures


def host_part(pipe: Any) -> SliceFeatures:
    """The stage whose output is what the host hands to the device."""
    while not isinstance(pipe, SliceFeatures):
        pipe = pipe.source
    return pipe


class Run:
    """One placement's pipeline, its host part and what its epochs measured."""

    def __init__(self, ds: FastDataset, where: str, policy: str, threads: int) -> None:
        self.where, self.policy, self.name = where, policy, ds.name
        pipe = salient_pipeline(ds, batch_size=BATCH, fanouts=FANOUTS, device="cpu",
                                num_threads=threads, cache_policy=policy,
                                **placement(ds, torch.device("cpu"), where))
        self.stage = host_part(pipe)
        self.seconds: List[float] = []
        self.hits: List[float] = []
        self.rows = self.crossed = self.batches = 0

    def epoch(self, e: int) -> None:
        self.stage.set_epoch(e)
        start = time.perf_counter()
        for batch in self.stage:
            if e == 0:  # the bytes of the untimed epoch (the same every epoch, near enough)
                self.batches += 1
                self.rows += batch.n_id.numel()
                self.crossed += 0 if batch.x is None else \
                    batch.x.numel() * batch.x.element_size()
        if e:
            self.seconds.append(time.perf_counter() - start)
        self.hits += [s["device_cache_hit_rate"] for s in pipeline_stats(self.stage)
                      if "device_cache_hit_rate" in s]

    def row(self) -> Dict[str, Any]:
        return {"graph": self.name, "features": self.where,
                "policy": self.policy if "%" in self.where else "",
                "seconds": statistics.median(self.seconds), "batches": self.batches,
                "rows_per_batch": self.rows / self.batches,
                "x_bytes_per_batch": self.crossed / self.batches,
                "hit_rate": statistics.median(self.hits) if self.hits else None}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graphs", nargs="+", default=["arxiv", "products"])
    parser.add_argument("--features", nargs="+", default=["host", "device", "25%", "50%"])
    parser.add_argument("--policies", nargs="+", default=["degree", "sampled"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one more)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    results: Dict[str, Any] = {"machine": machine(), "threads": args.threads,
                               "epochs": args.epochs, "rows": []}
    for name in args.graphs:
        ds = graph(name)
        runs = [Run(ds, where, policy, args.threads) for where in args.features
                for policy in (args.policies if "%" in where else ["degree"])]
        # epochs of the placements in turn: drifts of the machine touch them all alike
        for e in range(args.epochs + 1):
            for r in runs:
                r.epoch(e)
        for r in runs:
            results["rows"].append(r.row())
            print(results["rows"][-1], flush=True)
        save_json("device_cache", results)
        del ds, runs
    write_section("device_cache", render(results))


def render(results: Dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"`python -m benchmarks.device_cache`: the host's part of an epoch (sample, "
             "gather what the device lacks, hand on; no copy) with the features gathered "
             "on the host, all on the device, or the hottest 25 % / 50 % of the rows in a "
             f"device cache; 15/10/5, batch 1024, {results['threads']} sampling threads on "
             f"{m['cores']} cores, median of {results['epochs']} epochs after one untimed, the "
             "placements' epochs taken in turn. "
             "Bytes per batch: the features that cross to the device; hit rate: the share "
             "of a batch's rows the device holds (both independent of the machine).", "",
             "| graph | features | policy | host seconds per epoch | rows per batch "
             "| feature bytes crossing per batch | hit rate |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    label = {"host": "gathered on the host", "device": "all on the device"}
    for r in results["rows"]:
        where = label.get(r["features"], f"{r['features']} of rows cached")
        hit = "" if r["hit_rate"] is None else f"{r['hit_rate']:.1%}"
        lines.append(f"| {r['graph']} | {where} | {r['policy']} | {r['seconds']:.2f} "
                     f"| {r['rows_per_batch']:,.0f} | {r['x_bytes_per_batch'] / 2**20:.1f} MiB "
                     f"| {hit} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
