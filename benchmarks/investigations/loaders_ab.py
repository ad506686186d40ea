"""Before and after a change: the epoch of every loader users run, for an
earlier build and this one, in alternating fresh processes on the same
graphs (so both see the same machine state).

Loaders: ``salient_pipeline`` per hop on the arxiv-sized graph (15/10/5,
batch 1024, fp16 features, 2 threads), ``salient_pipes.pyg``'s
``NeighborLoader`` (15/10/5) and ``LinkNeighborLoader`` (10/5, binary
negatives, 100,000 edges) on the same graph as a PyG ``Data``, and on a
mag-shaped graph (scale 0.1) ``salient_pipeline`` node-wise and the
``NeighborLoader`` on its ``HeteroData`` (10/5 per edge type). Each figure is
the best of 5 epochs (``--epochs``) after one warm-up. The baseline is a source tree with
its native core built in place (``python setup.py build_ext --inplace``).

Run: python -m benchmarks.investigations.loaders_ab --baseline /tmp/before [--pairs 4] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from benchmarks.common import ROOT, machine, save_json, write_section

PROBE = r"""
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1])
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
import salient_pipes
from salient_pipes import FastDataset, HeteroDataset, salient_pipeline
from salient_pipes.pyg import LinkNeighborLoader, NeighborLoader
from torch_geometric.data import Data
assert salient_pipes.__file__.startswith(sys.argv[1]), salient_pipes.__file__

def best(loader):
    sum(1 for _ in loader)
    times = []
    for _ in range(int(sys.argv[3])):
        start = time.perf_counter()
        sum(1 for _ in loader)
        times.append(time.perf_counter() - start)
    return min(times)

out = {}
if sys.argv[2] == "homogeneous":
    ds = FastDataset.arxiv_like()
    out["salient_pipeline"] = best(salient_pipeline(
        ds, batch_size=1024, fanouts=(15, 10, 5), device="cpu", num_threads=2,
        overlap_epochs=False))
    src = torch.repeat_interleave(torch.arange(ds.num_nodes), ds.rowptr[1:] - ds.rowptr[:-1])
    data = Data(x=ds.x, y=ds.y, edge_index=torch.stack([ds.col.long(), src]),
                num_nodes=ds.num_nodes)
    out["NeighborLoader"] = best(NeighborLoader(
        data, num_neighbors=[15, 10, 5], input_nodes=ds.split_idx["train"], batch_size=1024,
        shuffle=True))
    out["LinkNeighborLoader"] = best(LinkNeighborLoader(
        data, num_neighbors=[10, 5], edge_label_index=data.edge_index[:, :100000],
        batch_size=1024, shuffle=True, neg_sampling="binary"))
else:
    mag = HeteroDataset.synthetic_mag(scale=0.1, seed=0)
    out["salient_pipeline, mag-shaped"] = best(salient_pipeline(
        mag, batch_size=1024, fanouts=[10, 5], device="cpu", num_threads=2,
        overlap_epochs=False))
    data = mag.to_pyg()
    out["NeighborLoader, HeteroData"] = best(NeighborLoader(
        data, num_neighbors=[10, 5], input_nodes=("paper", data["paper"].train_mask),
        batch_size=1024, shuffle=True))
print(json.dumps(out))
"""


def probe(tree: Path, kind: str, epochs: int) -> Dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tree), kind, str(epochs)],
                         capture_output=True,
                         text=True, check=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True,
                        help="a source tree of the earlier build, native core built in place")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5,
                        help="timed epochs per loader and process (the best counts)")
    parser.add_argument("--label", default="the change",
                        help="what the comparison is of, for the section's text")
    args = parser.parse_args(argv)
    runs: Dict[str, Dict[str, List[float]]] = {"before": {}, "after": {}}
    sides = [("before", args.baseline.resolve()), ("after", ROOT)]
    for pair in range(args.pairs):
        # Alternate which build goes first so that a drift of the machine's
        # state over the run does not favour one side.
        for side, tree in sides if pair % 2 == 0 else sides[::-1]:
            for kind in ("homogeneous", "heterogeneous"):
                for loader, seconds in probe(tree, kind, args.epochs).items():
                    runs[side].setdefault(loader, []).append(seconds)
        print(f"pair {pair + 1}: {json.dumps(runs)}", flush=True)
    save_json("loaders_ab", {"machine": machine(), "label": args.label, "runs": runs})
    lines = [f"`python -m benchmarks.investigations.loaders_ab`: {args.label}; one epoch of "
             f"each loader, best of {args.epochs} after a warm-up, the earlier build and "
             f"this one in {args.pairs} pairs of fresh processes, alternating which goes first "
             "(arxiv-sized graph, 15/10/5, batch 1024, 2 threads; mag-shaped graph at "
             "scale 0.1, 10/5). "
             "Seconds per epoch, each pair's figures, then the medians:", "",
             "| loader | before | after | after / before (medians) |", "| --- | --- | --- | ---: |"]
    for loader, before in runs["before"].items():
        after = runs["after"][loader]
        ratio = statistics.median(after) / statistics.median(before)
        lines.append(f"| {loader} | {' / '.join(f'{t:.3f}' for t in before)} | "
                     f"{' / '.join(f'{t:.3f}' for t in after)} | {ratio:.2f} |")
    write_section("loaders_ab", "\n".join(lines))


if __name__ == "__main__":
    main()
