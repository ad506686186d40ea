"""What keeping freed memory buys CPU training: the README's main job
(``python -m salient_pipes train`` on the built-in graph) with the host
allocator as the train command sets it (``keep_freed_memory``) and with the
C library's defaults (``--system-malloc``).

Each run is a child process training ``--epochs`` epochs; the runs
alternate between the two settings. Per run: the median of its epochs'
training seconds after the first, and the child's CPU seconds in user and
kernel mode and its minor page faults over the whole run (training,
evaluation, startup). Writes benchmarks/results/host_allocator.json and a
section of docs/benchmarks.md.

Run: python -m benchmarks.host_allocator [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks.common import machine, save_json, write_section

SETTINGS = {"kept": [], "system": ["--system-malloc"]}


def train_run(flags: List[str], epochs: int) -> Dict[str, Any]:
    """One child process's training run and what it cost."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "summary.json"
        subprocess.run([sys.executable, "-m", "salient_pipes", "train", "--device", "cpu",
                        "--epochs", str(epochs), "--no-progress", "--out", str(out), *flags],
                       check=True, capture_output=True, text=True)
        summary = json.loads(out.read_text())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    epochs_s = [row["train_s"] for row in summary["history"]][1:]
    return {"epoch_s": statistics.median(epochs_s), "user_s": after.ru_utime - before.ru_utime,
            "sys_s": after.ru_stime - before.ru_stime,
            "minor_faults": after.ru_minflt - before.ru_minflt,
            "test_acc": summary["test_acc"], "dataset": summary["dataset"]}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each setting")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, flags in SETTINGS.items():
            runs[name].append(train_run(flags, args.epochs))
            print(name, runs[name][-1], flush=True)
    results = {"machine": machine(), "epochs": args.epochs, "rounds": args.rounds,
               "runs": runs}
    save_json("host_allocator", results)
    write_section("host_allocator", render(results))


def render(results: Dict[str, Any]) -> str:
    runs = results["runs"]

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    lines = ["## The host allocator in CPU training (`benchmarks/host_allocator.py`)", "",
             f"`python -m benchmarks.host_allocator`: the README's main job (`python -m "
             f"salient_pipes train` on {runs['kept'][0]['dataset']}, 3-layer GraphSAGE, CPU, "
             f"{results['machine']['cores']} cores) in child processes, {results['epochs']} "
             f"epochs per run, {results['rounds']} runs of each setting taken in turn; "
             "medians over the runs of each run's median epoch after the first, and of the "
             "whole run's CPU time and minor page faults.", "",
             "| host allocator | seconds per training epoch | user CPU s | kernel CPU s "
             "| minor page faults | test accuracy |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    labels = {"kept": "freed memory kept (the default of `train` on a CPU)",
              "system": "the C library's defaults (`--system-malloc`)"}
    for name in ("system", "kept"):
        lines.append(f"| {labels[name]} | {med(name, 'epoch_s'):.2f} | {med(name, 'user_s'):.1f} "
                     f"| {med(name, 'sys_s'):.1f} | {med(name, 'minor_faults'):,.0f} "
                     f"| {med(name, 'test_acc'):.4f} |")
    speedup = med("system", "epoch_s") / med("kept", "epoch_s")
    lines += ["", f"Training epochs {speedup:.2f}x faster with freed memory kept."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
