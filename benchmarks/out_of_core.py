"""Graphs larger than memory: conversion within a memory budget, and epochs
over a feature file larger than physical memory.

1. Conversion: random heavy-tailed edge lists of 120 M and 500 M edges
   (``.npy`` files on disk) become datasets through ``FastDataset.from_edges``
   at ``memory_limit="1GiB"``, and through the in-memory path
   (``np.load`` + ``csr_from_edge_index``) where it fits in memory. Each run
   is a subprocess whose anonymous memory (RssAnon) is sampled every 5 ms.
2. Epochs: a 64 M-node graph whose fp16 features (256 columns, 30.5 GiB)
   exceed physical memory. Batches (15/10/5, batch 1024, gathered features)
   are timed with the feature file evicted from the page cache first, for
   plain ``mmap`` (kernel read-ahead), random-access advice alone, and hot-row
   caches of 10 % and 25 % of the features chosen by degree.

Everything written goes to a scratch directory (``--scratch``, default
/tmp) and is deleted at the end. Writes benchmarks/results/out_of_core.json,
docs/img/out_of_core.png and a section of docs/benchmarks.md.

3. Epochs read a window ahead (``out_of_core=True``): the same 64 M-node
   graph, a whole epoch, the disk's rates measured beside it.
4. ``--papers100m``: a papers100M-shaped graph end to end on this machine
   (generated, converted at ``--memory-limit``, an epoch read a window
   ahead), about 45 GiB of disk at the peak.

Run: python -m benchmarks.out_of_core [conversion|epochs|all] [--quick] [--papers100m]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from benchmarks.common import RESULTS, machine, save_figure, save_json, write_edges, write_section

GIB = 2**30
WATCH = textwrap.dedent("""
    import json, threading, time
    def anon():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("RssAnon"))
    base, peak, done = anon(), [anon()], threading.Event()
    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], anon())
            time.sleep(0.005)
    threading.Thread(target=watch, daemon=True).start()
    t0 = time.perf_counter()
""")
REPORT = textwrap.dedent("""
    seconds = time.perf_counter() - t0
    done.set()
    print(json.dumps({"seconds": seconds, "base": base, "peak": peak[0], "edges": edges}))
""")


def memory_total() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))


SETUP = textwrap.dedent("""
    import numpy as np, torch
    from salient_pipes import FastDataset, csr_from_edge_index
""")


def run_measured(body: str, show_progress: bool = False) -> Dict[str, float]:
    """Runs ``body`` in a fresh interpreter (libraries already imported when
    the clock and the memory baseline start); its progress bars (stderr)
    shown as it runs with ``show_progress``."""
    proc = subprocess.run([sys.executable, "-c", SETUP + WATCH + body + REPORT],
                          stdout=subprocess.PIPE,
                          stderr=None if show_progress else subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return {"failed": proc.returncode, "stderr": (proc.stderr or "")[-500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def conversion(scratch: Path, sizes: List[int], limit: str) -> List[dict]:
    rows = []
    for num_edges in sizes:
        num_nodes = num_edges // 12
        edges = scratch / f"edges-{num_edges}.npy"
        t0 = time.perf_counter()
        write_edges(edges, num_edges, num_nodes)
        print(f"{num_edges:,} edges written in {time.perf_counter() - t0:.0f} s", flush=True)
        row = {"edges": num_edges, "nodes": num_nodes, "input_gib": edges.stat().st_size / GIB}
        bounded = run_measured(textwrap.dedent(f"""
            ds = FastDataset.from_edges({str(scratch / 'bounded')!r}, {str(edges)!r},
                                        {num_nodes}, memory_limit={limit!r}, progress=False)
            edges = ds.num_edges
        """))
        shutil.rmtree(scratch / "bounded", ignore_errors=True)
        row["bounded"] = bounded
        print("bounded", bounded, flush=True)
        # the in-memory path holds the int64 edges (16 bytes each), the rows'
        # raw int32 entries (both ways: 8) and the deduplicated copy (up to 8)
        if 40 * num_edges < 0.85 * memory_total():
            row["in_memory"] = run_measured(textwrap.dedent(f"""
                ei = torch.from_numpy(np.load({str(edges)!r}))
                rowptr, col = csr_from_edge_index(ei, {num_nodes})
                edges = col.numel()
            """))
        else:
            row["in_memory"] = {"skipped": f"needs about {40 * num_edges / GIB:.0f} GiB"}
        print("in memory", row["in_memory"], flush=True)
        edges.unlink()
        rows.append(row)
    return rows


def evict(path: Path) -> None:
    """Drops a file's pages from the page cache (clean pages; no privileges needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def big_feature_dataset(scratch: Path, num_nodes: int, width: int):
    """A heavy-tailed graph with a train split of 1 % of its nodes and an
    fp16 feature file of ``num_nodes x width`` written in place."""
    from salient_pipes import FastDataset
    from salient_pipes.data.format import create_npy, dataset_meta, write_meta

    edges = scratch / "edges.npy"
    write_edges(edges, num_nodes * 4, num_nodes, seed=1)
    rng = np.random.default_rng(2)
    train = np.sort(rng.choice(num_nodes, num_nodes // 100, replace=False))
    path = scratch / "big"
    FastDataset.from_edges(path, edges, num_nodes, y=np.zeros(num_nodes, dtype=np.int64),
                           split_idx={"train": train}, progress=True)
    edges.unlink()
    (path / "x.npy").unlink()
    create_npy(path / "x.npy", np.float16, (num_nodes, width))
    chunk = rng.standard_normal((1 << 16, width)).astype(np.float16).tobytes()
    total = num_nodes * width * 2
    t0 = time.perf_counter()
    with open(path / "x.npy", "r+b") as f:
        f.seek(128)
        written = 0
        while written < total:
            data = chunk[: min(len(chunk), total - written)]
            f.write(data)
            written += len(data)
    print(f"features written: {total / GIB:.1f} GiB in {time.perf_counter() - t0:.0f} s",
          flush=True)
    meta = json.loads((path / "meta.json").read_text())
    dtypes = {k: v["dtype"] for k, v in meta["files"].items()}
    dtypes["x"] = "float16"
    write_meta(path, dataset_meta(path, "big", num_nodes, meta["num_edges"], 1, ["train"],
                                  dtypes))
    return path


def anon_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon"))


def watch_anon() -> tuple:
    """``(base, peak, done)``: anonymous memory now, a list whose item a
    thread keeps at the peak every 10 ms, and the event that stops it."""
    import threading

    base, peak, done = anon_bytes(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], anon_bytes())
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return base, peak, done


def time_batches(path: Path, budget_share: Optional[float], random_access: bool,
                 batches: int, threads: int, progress: Optional[Path] = None) -> dict:
    """Times the first ``batches`` batches; each batch's seconds are also
    appended to ``progress`` as they finish (a timed-out run still tells)."""
    from salient_pipes import FastDataset, FeatureCache, pipeline_stats, salient_pipeline

    base, peak, done = watch_anon()
    ds = FastDataset.load(path, random_access=random_access)
    x_bytes = ds.x.numel() * ds.x.element_size()
    cache = None
    fill_s = 0.0
    if budget_share:
        t0 = time.perf_counter()
        cache = FeatureCache.for_dataset(ds, int(budget_share * x_bytes) + 4 * ds.num_nodes,
                                         num_threads=threads)
        fill_s = time.perf_counter() - t0
        # Pages mapped by a process cannot be evicted: drop the mapping the
        # fill read through and open the dataset again.
        del ds
        gc.collect()
        ds = FastDataset.load(path, random_access=random_access)
    evict(path / "x.npy")
    pipe = salient_pipeline(ds, "train", batch_size=1024, fanouts=(15, 10, 5), device="cpu",
                            num_threads=threads, feature_cache=cache, overlap_epochs=False)
    times = []
    rows = 0
    it = iter(pipe)
    t0 = time.perf_counter()
    for _ in range(min(batches, len(pipe))):
        batch = next(it)
        rows += batch.n_id.numel()
        now = time.perf_counter()
        times.append(now - t0)
        t0 = now
        if progress is not None:
            with open(progress, "a") as f:
                f.write(f"{times[-1]}\n")
    del it
    done.set()
    stats = pipeline_stats(pipe)
    hit = [s["cache_hit_rate"] for s in stats if "cache_hit_rate" in s]
    # Batches are prepared in parallel (up to max_in_flight), so the first one
    # comes late and the next ones close behind: the rate is the mean over
    # many more batches than are in flight.
    per_batch = float(np.mean(times))
    return {"batch_s": times, "first_batch_s": times[0],
            "per_batch_s": per_batch, "epoch_s": per_batch * len(pipe),
            "batches_per_epoch": len(pipe), "rows_per_batch": rows / len(times),
            "cache_fill_s": fill_s, "cache_hit_rate": hit[0] if hit else None,
            "cached_rows": 0 if cache is None else cache.num_cached,
            "cache_bytes": 0 if cache is None else cache.budget,
            "anon_peak_bytes": peak[0] - base}


def lookahead_of(pipe: Any) -> Any:
    """The look-ahead reading of a pipe's slice stage."""
    from salient_pipes.pipes.base import upstream

    return next(s.lookahead for s in upstream(pipe) if getattr(s, "lookahead", None))


def time_lookahead(path: Path, budget: str, threads: int, batches: Optional[int] = None,
                   graph_in_memory: bool = True) -> dict:
    """One epoch (or its first ``batches``) of batch preparation with the
    features read a window ahead (``out_of_core=True``): the disk's rates
    measured on the feature file first, the file evicted, then every batch
    of the train split (15/10/5, batch 1024) gathered."""
    from tqdm import tqdm

    from salient_pipes import FastDataset, pipeline_stats, salient_pipeline
    from salient_pipes.data.feature_file import FeatureFile

    rates = FeatureFile(path / "x.npy").measure(seconds=2.0)
    print(f"disk: {rates}", flush=True)
    evict(path / "x.npy")
    base, peak, done = watch_anon()
    t0 = time.perf_counter()
    ds = FastDataset.load(path, graph_in_memory=graph_in_memory)
    if not graph_in_memory:  # the graph's pages in the page cache before the clock starts
        for name in ("rowptr", "col"):
            with open(path / f"{name}.npy", "rb") as f:
                while f.read(64 << 20):
                    pass
    load_s = time.perf_counter() - t0
    pipe = salient_pipeline(ds, "train", batch_size=1024, fanouts=(15, 10, 5), device="cpu",
                            num_threads=threads, out_of_core=True, feature_cache=budget,
                            overlap_epochs=False)
    ahead = lookahead_of(pipe)
    for f in ahead.files.values():
        f.disk_rates = rates
    total = len(pipe) if batches is None else min(batches, len(pipe))
    rows = 0
    first = None
    t0 = time.perf_counter()
    with tqdm(total=total, desc="epoch (look-ahead)", unit="batch", mininterval=5) as bar:
        for i, batch in enumerate(pipe):
            rows += batch.n_id.numel()
            if first is None:
                first = time.perf_counter() - t0
            bar.update()
            if i + 1 >= total:
                break
    seconds = time.perf_counter() - t0
    done.set()
    stats = next(s for s in pipeline_stats(pipe) if s["stage"] == "SliceFeatures")
    return {"budget": budget, "threads": threads, "batches": total,
            "batches_per_epoch": len(pipe), "seconds": seconds,
            "epoch_s": seconds * len(pipe) / total, "first_batch_s": first,
            "load_s": load_s, "rows_per_batch": rows / total,
            "direct": all(f.direct for f in ahead.files.values()),
            "disk_sequential_bytes_s": rates.sequential_bytes_s,
            "disk_random_reads_s": rates.random_reads_s,
            "anon_peak_bytes": peak[0] - base,
            **{k: v for k, v in stats.items() if k not in ("stage", "disk")}}


def run_lookahead(path: Path, budget: str, threads: int, limit_s: float,
                  batches: Optional[int] = None, graph_in_memory: bool = True) -> dict:
    """:func:`time_lookahead` in a fresh interpreter (its own memory peak),
    its progress bar shown as it runs."""
    proc = subprocess.run(
        [sys.executable, "-c",
         "import json; from pathlib import Path; "
         "from benchmarks.out_of_core import time_lookahead; "
         f"print(json.dumps(time_lookahead(Path({str(path)!r}), {budget!r}, {threads}, "
         f"{batches!r}, {graph_in_memory!r})))"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
        timeout=limit_s)
    if proc.returncode != 0:
        return {"failed": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def epochs(scratch: Path, num_nodes: int, width: int, batches: int, threads: int,
           budget_s: float, existing: Optional[Path] = None, skip: Sequence[str] = (),
           lookahead_budget: str = "12GiB") -> dict:
    path = existing or big_feature_dataset(scratch, num_nodes, width)
    configs = [("plain mmap", None, False), ("random-access advice", None, True),
               ("cache 10 %", 0.10, True), ("cache 25 %", 0.25, True)]
    results = {"nodes": num_nodes, "width": width,
               "feature_gib": num_nodes * width * 2 / GIB,
               "memory_gib": memory_total() / GIB, "threads": threads, "batches": batches,
               "batches_per_epoch": -(-(num_nodes // 100) // 1024), "configs": {}}
    if "look-ahead" not in skip:  # a whole epoch, on as many threads as cores
        cores = len(os.sched_getaffinity(0))
        results["lookahead"] = run_lookahead(path, lookahead_budget, cores, limit_s=3600)
        print("look-ahead", results["lookahead"], flush=True)
    for name, share, random_access in configs:
        if name in skip:
            continue
        progress = scratch / f"progress-{len(results['configs'])}"
        progress.write_text("")
        try:
            proc = subprocess.run(
                [sys.executable, "-c",
                 "import json, sys; from pathlib import Path; "
                 "from benchmarks.out_of_core import time_batches; "
                 f"print(json.dumps(time_batches(Path({str(path)!r}), {share!r}, "
                 f"{random_access!r}, {batches}, {threads}, Path({str(progress)!r}))))"],
                capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                timeout=budget_s)
        except subprocess.TimeoutExpired:
            done = [float(t) for t in progress.read_text().split()]
            results["configs"][name] = {"timed_out_s": budget_s, "batch_s": done}
        else:
            if proc.returncode != 0:
                results["configs"][name] = {"failed": proc.returncode,
                                            "stderr": proc.stderr[-800:]}
            else:
                results["configs"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, {k: v for k, v in results["configs"][name].items() if k != "batch_s"},
              flush=True)
    if existing is None:
        shutil.rmtree(path, ignore_errors=True)
    return results


PAPERS = {"nodes": 111_059_956, "edges": 1_615_685_872, "width": 128, "classes": 172,
          "train": 1_207_179}


def papers_disk_bytes(shape: Dict[str, int]) -> int:
    """Disk a papers100M-shaped run needs at its peak (after the conversion,
    before the edge list is deleted, then features written): the int32
    edge list, the CSR of both directions (int32 col), labels and fp16
    features, with 2 GiB to spare."""
    edges = 2 * shape["edges"] * 4
    csr = 2 * shape["edges"] * 4 + 8 * (shape["nodes"] + 1)
    features = shape["nodes"] * shape["width"] * 2
    return max(edges + csr, csr + features) + 8 * shape["nodes"] + 2 * GIB


def write_edges_int32(path: Path, num_edges: int, num_nodes: int, seed: int = 0) -> None:
    """``write_edges``'s heavy-tailed graph as an int32 ``[2, E]`` file,
    chunk by chunk (memory: one chunk and a permutation of the nodes)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_nodes).astype(np.int32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int32, shape=(2, num_edges))
    step = 1 << 24
    with tqdm(total=num_edges, desc="generating edges", unit="edge", unit_scale=True,
              mininterval=5) as bar:
        for begin in range(0, num_edges, step):
            end = min(num_edges, begin + step)
            out[0, begin:end] = rng.integers(0, num_nodes, end - begin, dtype=np.int32)
            heavy = (num_nodes * rng.random(end - begin, dtype=np.float32) ** 3)
            out[1, begin:end] = perm[np.minimum(heavy.astype(np.int64), num_nodes - 1)]
            bar.update(end - begin)
    out.flush()
    del out


def write_features(path: Path, num_nodes: int, width: int, classes: int, seed: int) -> None:
    """Random fp16 features and labels written in place, chunk by chunk,
    into a dataset converted without them; meta.json updated."""
    from tqdm import tqdm

    from salient_pipes.data.format import create_npy, dataset_meta, write_meta

    rng = np.random.default_rng(seed)
    (path / "x.npy").unlink()
    x = create_npy(path / "x.npy", np.float16, (num_nodes, width))
    y = create_npy(path / "y.npy", np.int64, (num_nodes,)) if classes else None
    block = rng.standard_normal((1 << 16, width)).astype(np.float16)
    step = 1 << 20
    with tqdm(total=num_nodes * width * 2, desc="writing features", unit="B", unit_scale=True,
              mininterval=5) as bar:
        for begin in range(0, num_nodes, step):
            end = min(num_nodes, begin + step)
            for b in range(begin, end, block.shape[0]):
                e = min(end, b + block.shape[0])
                x[b:e] = block[: e - b]
            if y is not None:
                y[begin:end] = rng.integers(0, classes, end - begin)
            bar.update((end - begin) * width * 2)
    x.flush()
    del x
    if y is not None:
        y.flush()
        del y
    meta = json.loads((path / "meta.json").read_text())
    dtypes = {k: v["dtype"] for k, v in meta["files"].items()}
    dtypes["x"] = "float16"
    write_meta(path, dataset_meta(path, meta["name"], num_nodes, meta["num_edges"],
                                  max(classes, 1), meta["splits"], dtypes))


def papers100m_run(scratch: Path, limit: str, budget: str, threads: int,
                   shape: Dict[str, int] = PAPERS, keep: bool = False) -> dict:
    """A papers100M-shaped graph end to end: generated to disk, converted
    by ``FastDataset.from_edges`` at ``memory_limit=limit`` (a fresh
    interpreter, its anonymous memory sampled), features written, then an
    epoch of batch preparation read a window ahead."""
    need = papers_disk_bytes(shape)
    free = shutil.disk_usage(scratch).free
    print(f"papers100M-shaped run: {shape['nodes'] / 1e6:.0f} M nodes, "
          f"{shape['edges'] / 1e9:.2f} B edges, {shape['width']} fp16 features; needs "
          f"{need / GIB:.1f} GiB of disk at its peak, {free / GIB:.1f} GiB free in {scratch}",
          flush=True)
    if free < need:
        raise SystemExit(f"not enough disk in {scratch}: {need / GIB:.1f} GiB needed, "
                         f"{free / GIB:.1f} GiB free (--scratch elsewhere)")
    result: Dict[str, Any] = {"shape": dict(shape), "memory_limit": limit, "budget": budget,
                              "disk_needed_bytes": need}
    edges = scratch / "papers-edges.npy"
    path = scratch / "papers"
    try:
        t0 = time.perf_counter()
        write_edges_int32(edges, shape["edges"], shape["nodes"], seed=7)
        result["generate_s"] = time.perf_counter() - t0
        rng = np.random.default_rng(8)
        train = np.sort(rng.choice(shape["nodes"], shape["train"], replace=False))
        np.save(scratch / "papers-train.npy", train)
        del train
        conv = run_measured(textwrap.dedent(f"""
            train = np.load({str(scratch / 'papers-train.npy')!r})
            ds = FastDataset.from_edges({str(path)!r}, {str(edges)!r}, {shape['nodes']},
                                        split_idx={{"train": train}},
                                        memory_limit={limit!r}, progress=True)
            edges = ds.num_edges
        """), show_progress=True)
        result["conversion"] = conv
        print("conversion", conv, flush=True)
        edges.unlink()
        if "seconds" not in conv:
            return result
        t0 = time.perf_counter()
        write_features(path, shape["nodes"], shape["width"], shape["classes"], seed=9)
        result["features_s"] = time.perf_counter() - t0
        result["epoch"] = run_lookahead(path, budget, threads, limit_s=3600,
                                        graph_in_memory=False)
        print("epoch", result["epoch"], flush=True)
    finally:
        edges.unlink(missing_ok=True)
        (scratch / "papers-train.npy").unlink(missing_ok=True)
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
    return result


def papers100m(conv: List[dict]) -> dict:
    """ogbn-papers100M from the largest measured conversion: 111 M nodes,
    1.6 B edges (3.2 B CSR entries), 128 fp16 features."""
    largest = max((r for r in conv if "seconds" in r["bounded"]), key=lambda r: r["edges"])
    rate = largest["edges"] / largest["bounded"]["seconds"]
    buckets_measured = 2 * largest["edges"] * 4 / GIB
    buckets_papers = 2 * 1.6e9 * 4 / GIB
    # each bucket is one more pass over the edges: scale time by passes
    seconds = 1.6e9 / rate * (1 + buckets_papers) / (1 + buckets_measured)
    return {"edges": 1.6e9, "nodes": 111e6, "conversion_s": seconds,
            "peak_anon_gib": (largest["bounded"]["peak"] - largest["bounded"]["base"]) / GIB,
            "features_gib": 111e6 * 128 * 2 / GIB, "slot_map_gib": 4 * 111e6 / GIB}


def report(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["Measured on this machine (2 cores, "
             f"{memory_total() / GIB:.1f} GiB of memory), `python -m benchmarks.out_of_core`.", ""]
    conv = result.get("conversion", [])
    if conv:
        lines += ["**Conversion** of a heavy-tailed edge list (`.npy` on disk, 12 edges per "
                  "node, symmetrized and deduplicated) at `memory_limit=\"1GiB\"`, against "
                  "today's in-memory path (`np.load` + `csr_from_edge_index`). Peak anonymous "
                  "memory is RssAnon above the interpreter's own, sampled every 5 ms.", "",
                  "| edges | input | bounded build | peak anon. memory | in-memory build "
                  "| peak anon. memory |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in conv:
            b, m = row["bounded"], row["in_memory"]
            mem = (f"{m['seconds']:.0f} s | {(m['peak'] - m['base']) / GIB:.2f} GiB"
                   if "seconds" in m else f"{m.get('skipped', 'failed')} | –")
            lines.append(f"| {row['edges'] / 1e6:.0f} M | {row['input_gib']:.1f} GiB | "
                         f"{b['seconds']:.0f} s | {(b['peak'] - b['base']) / GIB:.2f} GiB | "
                         f"{mem} |")
        lines.append("")
    ep = result.get("epochs")
    if ep:
        lines += [f"**Epochs over features larger than memory**: {ep['nodes'] / 1e6:.0f} M "
                  f"nodes, {ep['width']} fp16 features ({ep['feature_gib']:.1f} GiB, "
                  f"{ep['feature_gib'] / ep['memory_gib']:.2f}x physical memory), train split "
                  "1 %, 15/10/5, batch 1024, features gathered, "
                  f"{ep['threads']} sampling threads (the gather waits on the disk, so more "
                  "threads than cores keep more reads in flight). The feature file is evicted "
                  "from the page cache before each configuration. Batches are prepared "
                  "in parallel (16 in flight on 8 threads), so the first one arrives when most "
                  "of the first 16 are done and the next ones close behind: the table gives "
                  "the first batch's time and the mean over the first "
                  f"{ep.get('batches', 4)} batches, from which the epoch is extrapolated.",
                  "",
                  "| configuration | first batch | s / batch (mean) | epoch (extrapolated) "
                  "| cache hit rate | cache fill | peak anon. memory (cache) "
                  "| first batch vs plain mmap |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        plain = ep["configs"].get("plain mmap", {})
        base = plain.get("first_batch_s")
        if "timed_out_s" in plain and not plain.get("batch_s"):  # a lower bound
            base = plain["timed_out_s"]
        count = ep.get("batches", 4)
        order = ["plain mmap", "random-access advice", "cache 10 %", "cache 25 %"]
        for name, c in sorted(ep["configs"].items(),
                              key=lambda kv: order.index(kv[0]) if kv[0] in order else 9):
            if "timed_out_s" in c and len(c.get("batch_s", [])) >= count:
                # stopped at its time budget after enough batches: the same count as the rest
                times = c["batch_s"][:count]
                c = {**c, "first_batch_s": times[0], "per_batch_s": float(np.mean(times)),
                     "epoch_s": float(np.mean(times)) * ep.get("batches_per_epoch", 625),
                     "cache_hit_rate": None, "cache_fill_s": 0.0, "anon_peak_bytes": None,
                     "cache_bytes": 0}
            if "timed_out_s" in c and "per_batch_s" not in c:
                done = len(c.get("batch_s", []))
                lines.append(f"| {name} | > {c['timed_out_s']:.0f} s ({done} batches in "
                             f"{c['timed_out_s']:.0f} s) | | | | | | 1x |")
                continue
            if "per_batch_s" not in c:
                lines.append(f"| {name} | failed | | | | | | |")
                continue
            hit = "–" if c["cache_hit_rate"] is None else f"{c['cache_hit_rate']:.1%}"
            speed = f"{base / c['first_batch_s']:.1f}x" if base else "–"
            if "timed_out_s" in plain and name != "plain mmap" and base:
                speed = f"> {speed}"
            memory = "–" if c["anon_peak_bytes"] is None else \
                (f"{c['anon_peak_bytes'] / GIB:.2f} GiB ({c['cache_bytes'] / GIB:.2f} GiB)")
            lines.append(f"| {name} | {c['first_batch_s']:.0f} s | {c['per_batch_s']:.1f} s | "
                         f"{c['epoch_s'] / 3600:.1f} h | {hit} | {c['cache_fill_s']:.0f} s | "
                         f"{memory} | {speed} |")
        lines.append("")
        fig, ax = plt.subplots(figsize=(6, 3))
        names = [n for n in order if len(ep["configs"].get(n, {}).get("batch_s", [])) >= count]
        ax.barh(names, [float(np.mean(ep["configs"][n]["batch_s"][:count])) for n in names],
                color="tab:blue")
        ax.set_xlabel("mean seconds per batch (15/10/5, batch 1024)")
        ax.invert_yaxis()
        ax.set_title(f"features {ep['feature_gib']:.0f} GiB on a {ep['memory_gib']:.0f} GiB "
                     "machine")
        save_figure(fig, "out_of_core")
        lines += ["![batch time by configuration](img/out_of_core.png)", ""]
        if "lookahead" in ep and "epoch_s" in ep["lookahead"]:
            lines += lookahead_lines("64 M-node graph, features read a window ahead "
                                     "(`out_of_core=True`)", ep["lookahead"],
                                     ep["configs"].get("cache 25 %", {}).get("epoch_s"))
    run = result.get("papers100m_run", {})
    if "epoch" in run and "epoch_s" in run["epoch"]:
        shape, conv = run["shape"], run["conversion"]
        lines += [f"**A papers100M-shaped graph, end to end** "
                  "(`python -m benchmarks.out_of_core --papers100m`): "
                  f"{shape['nodes'] / 1e6:.0f} M nodes, {shape['edges'] / 1e9:.2f} B directed "
                  f"edges (heavy-tailed in-degrees, an int32 edge list of "
                  f"{2 * shape['edges'] * 4 / GIB:.1f} GiB), {shape['width']} fp16 features "
                  f"({shape['nodes'] * shape['width'] * 2 / GIB:.1f} GiB), "
                  f"{shape['train'] / 1e6:.1f} M train nodes, {shape['classes']} classes; "
                  f"{run['disk_needed_bytes'] / GIB:.0f} GiB of disk at the peak, checked "
                  "before it starts, everything deleted at the end.", "",
                  "| step | time | peak anon. memory |", "| --- | ---: | ---: |",
                  f"| generate the edge list | {run['generate_s'] / 60:.1f} min | one chunk |",
                  f"| `FastDataset.from_edges(..., memory_limit={run['memory_limit']!r})` "
                  f"({conv['edges'] / 1e9:.2f} B CSR entries) | {conv['seconds'] / 60:.1f} min | "
                  f"{(conv['peak'] - conv['base']) / GIB:.2f} GiB |",
                  f"| write features and labels | {run['features_s'] / 60:.1f} min | one chunk |",
                  f"| one epoch of batch preparation | {run['epoch']['epoch_s'] / 60:.1f} min | "
                  f"{run['epoch']['anon_peak_bytes'] / GIB:.1f} GiB |", ""]
        lines += lookahead_lines("Its epoch", run["epoch"])
    if "papers100m" in result:
        p = result["papers100m"]
        lines += [f"**ogbn-papers100M, extrapolated** from the largest conversion: about "
                  f"{p['conversion_s'] / 60:.0f} min to convert its 1.6 B edges at 1 GiB "
                  f"(time scales with the edges times the passes, one per bucket), peak "
                  f"anonymous memory about {p['peak_anon_gib']:.2f} GiB as measured (the "
                  "bucket budget plus a fixed overhead; OGB's own loader needs more than "
                  f"256 GB). Training: features {p['features_gib']:.0f} GiB on disk; each "
                  "process holds its cache budget, the slot map "
                  f"({p['slot_map_gib']:.2f} GiB) and its batch buffers (docs/datasets.md).", ""]
    write_section("out_of_core", "\n".join(lines))


def lookahead_lines(title: str, r: dict, before_s: Optional[float] = None) -> List[str]:
    """The table of one look-ahead epoch."""
    vs = f" ({before_s / r['epoch_s']:.0f}x faster than the 25 % cache's extrapolated " \
        f"{before_s / 3600:.1f} h)" if before_s else ""
    return [f"**{title}**: one whole epoch of batch preparation ({r['batches']} batches, "
            f"15/10/5, batch 1024, features gathered), {r['threads']} sampling threads, "
            f"look-ahead budget {r['budget']}; the feature file evicted from the page cache "
            "first, the disk's rates measured on it just before "
            f"({'O_DIRECT' if r['direct'] else 'buffered'} reads).", "",
            "| epoch | first batch | windows (batches each) | read | read rate "
            "| disk sequential / random 4 KiB | read rate / sequential "
            "| rows read per row delivered | peak anon. memory |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {r['epoch_s']:.0f} s{vs} | {r['first_batch_s']:.0f} s | {r['windows']} "
            f"({r['batches_per_window']:.0f}) | {r['bytes_read'] / GIB:.0f} GiB in "
            f"{r['read_s']:.0f} s | {r['read_bytes_s'] / 1e9:.2f} GB/s | "
            f"{r['disk_sequential_bytes_s'] / 1e9:.2f} GB/s / "
            f"{r['disk_random_reads_s'] / 1e3:.0f} k/s | {r['read_vs_sequential']:.0%} | "
            f"{r['rows_read_per_row_delivered']:.2f} | {r['anon_peak_bytes'] / GIB:.1f} GiB |",
            ""]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=("conversion", "epochs", "all"), default="all")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--budget", type=float, default=600,
                        help="seconds one configuration may take before it is stopped")
    parser.add_argument("--skip", action="append", default=[],
                        help="a configuration to leave out (its previous figures are kept)")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="reuse a feature dataset a previous run left (kept afterwards)")
    parser.add_argument("--lookahead-budget", default=None,
                        help="memory of the look-ahead windows (default: 12GiB for the epochs, "
                        "7GiB for papers100M, whose CSR takes 12.8 GiB of page cache)")
    parser.add_argument("--papers100m", action="store_true",
                        help="a papers100M-shaped graph end to end: generated, converted at "
                        "--memory-limit, an epoch read a window ahead (~45 GiB of disk)")
    parser.add_argument("--memory-limit", default="2GiB", help="conversion budget (papers100M)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="salient-ooc-", dir=args.scratch))
    previous = RESULTS / "out_of_core.json"
    result = json.loads(previous.read_text()) if previous.exists() else {}
    result["machine"] = machine()
    try:
        if args.papers100m:
            run = papers100m_run(scratch, args.memory_limit, args.lookahead_budget or "7GiB",
                                 len(os.sched_getaffinity(0)))
            result["papers100m_run"] = run
            save_json("out_of_core", result)
            report(result)
            return
        if args.what in ("conversion", "all"):
            sizes = [2_000_000, 4_000_000] if args.quick else [120_000_000, 500_000_000]
            result["conversion"] = conversion(scratch, sizes, "64MiB" if args.quick else "1GiB")
            result["papers100m"] = papers100m(result["conversion"])
        if args.what in ("epochs", "all"):
            nodes = 200_000 if args.quick else 64_000_000
            kept = result.get("epochs", {}).get("configs", {})
            kept_ahead = result.get("epochs", {})
            result["epochs"] = epochs(scratch, nodes, 256, args.batches, args.threads,
                                      args.budget, args.dataset, args.skip,
                                      args.lookahead_budget or "12GiB")
            if "look-ahead" in args.skip and "lookahead" in kept_ahead:
                result["epochs"]["lookahead"] = kept_ahead["lookahead"]
            if kept and all(name in args.skip for name in kept):  # their batch count
                result["epochs"]["batches"] = kept_ahead.get("batches", args.batches)
            for name in args.skip:
                if name in kept:
                    result["epochs"]["configs"][name] = kept[name]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.quick:  # checks the script; the recorded figures stay as they are
        print(json.dumps(result, indent=1)[:3000])
        return
    save_json("out_of_core", result)
    report(result)


if __name__ == "__main__":
    main()
