"""Soak: 200 epochs of the pipeline on the arxiv-sized graph, recording
resident memory and thread count per epoch. Excluded from the default run;
scripts/soak.sh runs it and records the figures in docs/reliability.md."""

from __future__ import annotations

import json
import os
import statistics
import time

import psutil
import pytest

from salient_pipes import FastDataset, salient_pipeline
from tests.conftest import thread_count

EPOCHS = int(os.environ.get("SOAK_EPOCHS", "200"))
WARMUP = 20
RESULT = os.environ.get("SOAK_RESULT", "benchmarks/results/soak.json")


@pytest.mark.soak
def test_soak_memory_and_threads_stay_flat():
    ds = FastDataset.arxiv_like()
    pipe = salient_pipeline(ds, batch_size=1024, fanouts=(15, 10, 5), device="cpu",
                            num_threads=2)
    process = psutil.Process()
    rows = []
    train = ds.split_idx["train"].numel()
    for epoch in range(EPOCHS):
        t0 = time.perf_counter()
        seeds = 0
        for i, batch in enumerate(pipe):
            seeds += batch.batch_size
            if epoch % 10 == 9 and i == 5:
                break  # now and then an epoch ends early, as on an interruption
        else:
            assert seeds == train
        rows.append({"epoch": epoch, "seconds": time.perf_counter() - t0,
                     "rss_mib": process.memory_info().rss / 2**20, "threads": thread_count()})
    settled = [r["rss_mib"] for r in rows[WARMUP:WARMUP + 20]]
    last = [r["rss_mib"] for r in rows[-20:]]
    growth = statistics.median(last) / statistics.median(settled) - 1
    threads = {r["threads"] for r in rows[WARMUP:]}
    summary = {"epochs": EPOCHS, "warmup": WARMUP, "rss_growth": growth,
               "rss_settled_mib": statistics.median(settled),
               "rss_last_mib": statistics.median(last), "threads": sorted(threads),
               "median_epoch_s": statistics.median(r["seconds"] for r in rows), "rows": rows}
    os.makedirs(os.path.dirname(RESULT), exist_ok=True)
    with open(RESULT, "w") as f:
        json.dump(summary, f, indent=1)
    assert growth < 0.01, f"resident memory grew {growth:.2%} after warm-up"
    assert len(threads) == 1, f"thread count changed: {sorted(threads)}"
