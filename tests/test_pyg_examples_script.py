"""scripts/pyg_examples.py, which runs PyG's example scripts against our
loaders (docs/pyg.md): it must change exactly what it says it changes, and
its offline stand-ins must have the schema of the datasets they replace."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


runner = _load("pyg_examples_runner", SCRIPTS / "pyg_examples.py")
stand_ins = _load("offline_datasets", SCRIPTS / "pyg_examples" / "offline_datasets.py")

EXAMPLE = """import torch
from torch_geometric.datasets import OGB_MAG
from torch_geometric.loader import HGTLoader, NeighborLoader
from ogb.nodeproppred import PygNodePropPredDataset

for epoch in range(1, 101):
    pass
    for step in range(1, 50):
        pass
"""


def test_only_the_two_loaders_move_to_our_import():
    ours = runner.adapt(EXAMPLE, ours=True)
    assert "from torch_geometric.loader import HGTLoader\n" in ours
    assert "from salient_pipes.pyg import NeighborLoader\n" in ours
    assert "from offline_datasets import OGB_MAG\n" in ours
    assert "from offline_datasets import PygNodePropPredDataset\n" in ours
    assert "for epoch in range(1, 3):" in ours
    assert "for step in range(1, 50):" in ours  # only the top-level epoch loop
    moved, count = runner.swap_loaders(
        "from torch_geometric.loader import LinkNeighborLoader, NeighborLoader\n")
    assert (moved, count) == ("from salient_pipes.pyg import LinkNeighborLoader, "
                              "NeighborLoader\n", 2)
    # the reference run keeps PyG's loaders; the rest changes as for ours
    reference = runner.adapt(EXAMPLE, ours=False)
    assert "from torch_geometric.loader import HGTLoader, NeighborLoader\n" in reference
    assert "salient_pipes" not in reference
    assert "for epoch in range(1, 3):" in reference


def test_an_example_without_the_loaders_is_refused_not_run_as_pyg():
    with pytest.raises(ValueError, match="no NeighborLoader/LinkNeighborLoader import"):
        runner.adapt("from torch_geometric.loader import DataLoader\n", ours=True)


def test_every_listed_example_is_named_once():
    names = [e.name for e in runner.EXAMPLES]
    assert len(names) == len(set(names))


def _check_masks(store, num_nodes):
    masks = torch.stack([store.train_mask, store.val_mask, store.test_mask])
    assert masks.shape == (3, num_nodes) and masks.dtype == torch.bool
    assert bool((masks.sum(0) == 1).all())  # disjoint, and every node in one


def test_node_stand_ins_have_their_datasets_schema():
    data = stand_ins.Reddit()[0]
    assert data.x.shape == (data.num_nodes, 602) and data.x.dtype == torch.float32
    assert int(data.y.max()) < 41 and data.y.dtype == torch.int64
    _check_masks(data, data.num_nodes)
    assert data.is_undirected() and not data.has_self_loops()
    assert torch.equal(stand_ins.Reddit()[0].edge_index, data.edge_index)  # seeded

    products = stand_ins.PygNodePropPredDataset(name="ogbn-products", root="unused")
    data, split = products[0], products.get_idx_split()
    assert data.y.shape == (data.num_nodes, 1)  # OGB's labels are [N, 1]
    ids = torch.cat([split["train"], split["valid"], split["test"]])
    assert torch.equal(ids.sort().values, torch.arange(data.num_nodes))

    graphs = stand_ins.PPI(split="train")
    assert len(graphs) == 8 and len(stand_ins.PPI(split="val")) == 2
    assert graphs[0].y.shape == (graphs[0].num_nodes, 121)
    assert graphs[0].y.dtype == torch.float32
    assert not torch.equal(graphs[0].x, stand_ins.PPI(split="test")[0].x)


def test_hetero_stand_ins_have_their_datasets_schema():
    mag = stand_ins.OGB_MAG(preprocess="metapath2vec")[0]
    assert set(mag.node_types) == {"paper", "author", "institution", "field_of_study"}
    assert set(mag.edge_types) == {  # ogbn-mag's four relations, as PyG names them
        ("author", "affiliated_with", "institution"), ("author", "writes", "paper"),
        ("paper", "cites", "paper"), ("paper", "has_topic", "field_of_study")}
    for t in mag.node_types:
        assert mag[t].x.shape == (mag[t].num_nodes, 128)
    _check_masks(mag["paper"], mag["paper"].num_nodes)
    mag.validate()

    taobao = stand_ins.Taobao()[0]
    buys = taobao["user", "to", "item"]
    assert buys.time.numel() == buys.behavior.numel() == buys.edge_index.size(1)
    assert set(taobao.edge_types) == {("user", "to", "item"), ("item", "to", "category")}
    taobao.validate()

    movies = stand_ins.MovieLens(model_name="all-MiniLM-L6-v2")[0]
    rates = movies["user", "rates", "movie"]
    assert movies["movie"].x.shape[1] == 404 and "x" not in movies["user"]
    assert rates.edge_label.min() >= 0 and rates.edge_label.max() <= 5
    assert rates.time.numel() == rates.edge_index.size(1)
    movies.validate()
