"""Runs PyG's own example scripts with salient_pipes.pyg's loaders.

    python scripts/pyg_examples.py PYG_SOURCE [--reference] [--only NAME ...]
        [--timeout SECONDS] [--out FILE]

PYG_SOURCE is a checkout of pyg-team/pytorch_geometric. Each example is
copied to a scratch directory and changed in three ways only:

1. its ``NeighborLoader``/``LinkNeighborLoader`` come from
   ``salient_pipes.pyg`` (the other names of the same import line, e.g.
   ``HGTLoader`` or ``DataLoader``, stay PyG's); with ``--reference`` the
   import is left alone, to see what PyG's own loaders do here;
2. a dataset it would download is replaced by an offline stand-in of the
   same schema (``scripts/pyg_examples/offline_datasets.py``); Cora is the
   real one, read from ``--cora`` (Planetoid's raw files);
3. its epoch loop runs 2 epochs (``for epoch in range(1, 3)`` or the
   example's own epoch option).

Each example runs in its own process; the table of what passed (with the
last line each printed) goes to stdout and, as JSON, to ``--out`` (one
entry per kind of loader, so that a run of each fills one file).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
STAND_INS = HERE / "pyg_examples" / "offline_datasets.py"
OURS = {"NeighborLoader", "LinkNeighborLoader"}
DEFAULT_CORA = HERE.parent.parent / "shared" / "data" / "planetoid" / "Cora" / "raw"


@dataclass(frozen=True)
class Example:
    """One run of one example script."""

    path: str                       # under examples/
    args: Tuple[str, ...] = ()
    label: str = ""                 # to tell runs of one script apart
    note: str = ""                  # what the run shows

    @property
    def name(self) -> str:
        return self.label or self.path


EXAMPLES = (
    Example("graph_sage_unsup.py", note="LinkNeighborLoader, real Cora"),
    Example("reddit.py", note="layer-wise inference, loader.data edited after construction"),
    Example("hierarchical_sampling.py", note="num_sampled_nodes, trim_to_layer"),
    Example("infomax_inductive.py", note="Deep Graph Infomax on sampled subgraphs"),
    Example("graph_sage_unsup_ppi.py", note="LinkNeighborLoader over a Batch of graphs"),
    Example("ogbn_train.py", ("--epochs", "2", "--model", "sage", "--num_workers", "2"),
            "ogbn_train.py --model sage", "input_nodes as an index, persistent workers"),
    Example("ogbn_train.py", ("--epochs", "2", "--model", "gat", "--num_workers", "2"),
            "ogbn_train.py --model gat"),
    # a disjoint batch of 1,024 seeds holds ~770k nodes: smaller, to fit a CPU's time
    Example("ogbn_train.py", ("--epochs", "1", "--local_epochs", "1", "--model", "sgformer",
                              "--num_workers", "2", "--batch_size", "256", "--fan_out", "5",
                              "--hidden_channels", "64"),
            "ogbn_train.py --model sgformer", "disjoint subgraphs (PyG needs pyg-lib)"),
    Example("hetero/to_hetero_mag.py", note="HeteroData, to_hetero"),
    Example("hetero/hierarchical_sage.py", note="HeteroData, num_sampled_nodes_dict"),
    Example("hetero/bipartite_sage_unsup.py",
            note="HeteroData links, RandomLinkSplit, binary negatives"),
    Example("hetero/temporal_link_pred.py",
            note="temporal links, temporal_strategy='last' (PyG needs pyg-lib)"),
    Example("hetero/recommender_system.py",
            note="temporal links and nodes, binary negatives (PyG needs pyg-lib)"),
)

DATASETS = ("Reddit", "PPI", "OGB_MAG", "Taobao", "MovieLens")
EPOCH_LOOP = re.compile(r"^for epoch in range\(1, \d+\):$", re.M)
LOADER_IMPORT = re.compile(r"^from torch_geometric\.loader import (.+)$", re.M)


def swap_loaders(source: str) -> Tuple[str, int]:
    """``source`` with NeighborLoader/LinkNeighborLoader imported from
    salient_pipes.pyg, and how many names moved."""
    moved = 0

    def one(match: re.Match[str]) -> str:
        nonlocal moved
        names = [n.strip() for n in match.group(1).split(",")]
        ours = [n for n in names if n in OURS]
        rest = [n for n in names if n not in OURS]
        moved += len(ours)
        lines = [f"from torch_geometric.loader import {', '.join(rest)}"] if rest else []
        if ours:
            lines.append(f"from salient_pipes.pyg import {', '.join(ours)}")
        return "\n".join(lines)

    return LOADER_IMPORT.sub(one, source), moved


def adapt(source: str, ours: bool) -> str:
    """The three changes of the module docstring; raises if the example no
    longer has the lines they change."""
    if ours:
        source, moved = swap_loaders(source)
        if not moved:
            raise ValueError("no NeighborLoader/LinkNeighborLoader import to change")
    for name in DATASETS:
        source = re.sub(rf"^from torch_geometric\.datasets import {name}$",
                        f"from offline_datasets import {name}", source, flags=re.M)
    source = source.replace("from ogb.nodeproppred import PygNodePropPredDataset",
                            "from offline_datasets import PygNodePropPredDataset")
    return EPOCH_LOOP.sub("for epoch in range(1, 3):", source)


def run_one(example: Example, pyg: Path, work: Path, cora: Optional[Path], ours: bool,
            timeout: float) -> Dict[str, object]:
    src = pyg / "examples" / example.path
    target = work / "examples" / example.path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(STAND_INS, target.parent / STAND_INS.name)
    try:
        target.write_text(adapt(src.read_text(), ours))
    except (OSError, ValueError) as exc:
        return {"example": example.name, "passed": False, "seconds": 0.0,
                "last_line": f"not run: {exc}"}
    if cora is not None:  # where Planetoid looks for examples/../data/Cora
        raw = work / "data" / "Cora" / "Cora" / "raw"
        if not raw.exists():
            shutil.copytree(cora, raw)
    env = dict(os.environ, PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, target.name, *example.args], cwd=target.parent,
                              env=env, capture_output=True, text=True, timeout=timeout)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        output = f"{exc.stdout or ''}timed out after {timeout:.0f} s"
    lines = [line for line in output.splitlines() if line.strip()]
    return {"example": example.name, "passed": code == 0,
            "seconds": round(time.perf_counter() - start, 1),
            "last_line": lines[-1][:160] if lines else ""}


def describe(pyg: Path) -> str:
    """The installed PyG's version and the examples' commit, where known."""
    import torch_geometric

    try:
        commit = subprocess.run(["git", "-C", str(pyg), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"torch_geometric {torch_geometric.__version__}, examples at {commit}"


def pyg_sampler() -> str:
    """The sampler PyG's loaders use here: pyg-lib where it imports, else
    torch-sparse (PyG's order)."""
    import importlib.util

    return next((name for name, module in (("pyg-lib", "pyg_lib"), ("torch-sparse", "torch_sparse"))
                 if importlib.util.find_spec(module)), "no sampler")


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pyg", type=Path, help="a pytorch_geometric checkout")
    parser.add_argument("--reference", action="store_true",
                        help="PyG's own loaders instead of salient_pipes.pyg's")
    parser.add_argument("--only", nargs="+", default=None, help="examples by name")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per example")
    parser.add_argument("--cora", type=Path, default=DEFAULT_CORA,
                        help="Cora's raw Planetoid files (else Planetoid downloads them)")
    parser.add_argument("--out", type=Path, default=None, help="the results as JSON")
    args = parser.parse_args(list(argv) or None)
    if not (args.pyg / "examples").is_dir():
        parser.error(f"{args.pyg} is not a pytorch_geometric checkout (no examples/)")
    chosen: List[Example] = [e for e in EXAMPLES if not args.only or e.name in args.only
                             or e.path in args.only]
    if not chosen:
        parser.error(f"--only names no example; they are: {[e.name for e in EXAMPLES]}")
    cora = args.cora if (args.cora / "ind.cora.x").exists() else None
    loaders = f"PyG's own loaders ({pyg_sampler()})" if args.reference else "salient_pipes.pyg"
    print(f"pyg_examples: {len(chosen)} runs of PyG's examples with {loaders}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for example in chosen:
            result = run_one(example, args.pyg, Path(work), cora, not args.reference,
                             args.timeout)
            results.append(result)
            print(f"{'passed' if result['passed'] else 'FAILED':6}  {result['seconds']:6.1f} s"
                  f"  {example.name}: {result['last_line']}", flush=True)
    passed = sum(bool(r["passed"]) for r in results)
    print(f"pyg_examples: {passed} of {len(results)} passed with {loaders}")
    if args.out is not None:
        record = json.loads(args.out.read_text()) if args.out.exists() else {}
        record[loaders] = {"pyg_source": describe(args.pyg), "results": results}
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
