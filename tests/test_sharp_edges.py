"""What a new user tries first: worker processes, masks, odd argument types,
torchdata wrappers, and the teardown of distributed training."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchdata.nodes import IterableWrapper, Loader

from salient_pipes import SAGE, FastDataset, _native, salient_pipeline, train_epoch
from salient_pipes.adapters.torchdata import PipeNode, SeedsFromNode
from salient_pipes.pipes import NodeIndices
from tests.conftest import check_sample, native_sample, pairs, reference_full_sample


def _pipe(ds, **kw):
    return salient_pipeline(ds, batch_size=300, fanouts=(5, 3), device="cpu", **kw)


# ------------------------------------------------------------ worker processes
@pytest.mark.timeout(120)
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_worker_processes_are_refused_not_hung(small_dataset, context):
    loader = DataLoader(_pipe(small_dataset), batch_size=None, num_workers=2,
                        multiprocessing_context=context)
    with pytest.raises((RuntimeError, TypeError), match="num_workers=0"):
        for _ in loader:
            pass


def test_dataloader_without_workers_still_works(small_dataset):
    pipe = NodeIndices(small_dataset.split_idx["train"]).batch_nodes(300) \
        .sample_neighbors(small_dataset, [4])  # the sampler on top: torch's traversal pickles it
    seeds = torch.cat([s.n_id[: s.batch_size] for s in DataLoader(pipe, batch_size=None)])
    assert torch.equal(seeds, small_dataset.split_idx["train"])


# ------------------------------------------------------------------- masks
def test_from_pyg_takes_masks_as_masks(small_dataset):
    from torch_geometric.data import Data

    ds = small_dataset
    n = ds.num_nodes
    mask = torch.zeros(n, dtype=torch.bool)
    mask[ds.split_idx["valid"]] = True
    data = Data(x=ds.x.float(), y=ds.y, edge_index=torch.stack(
        [ds.col.long(), torch.repeat_interleave(torch.arange(n), ds.rowptr.diff())]))
    converted = FastDataset.from_pyg(data, split_idx={"train": mask})
    assert torch.equal(converted.split_idx["train"], mask.nonzero().view(-1))
    with pytest.raises(ValueError, match=r"split_idx\['train'\] is a bool mask of 5 entries"):
        FastDataset.from_pyg(data, split_idx={"train": mask[:5]})
    with pytest.raises(ValueError, match=r"split_idx\['train'\] must hold integer"):
        FastDataset.from_pyg(data, split_idx={"train": mask.float()})
    with pytest.raises(ValueError, match="integer class labels"):
        FastDataset.from_pyg(Data(x=data.x, y=data.y.float(), edge_index=data.edge_index))


def test_stages_take_masks_but_seed_batches_must_be_ids(small_dataset):
    ds = small_dataset
    mask = torch.zeros(ds.num_nodes, dtype=torch.bool)
    mask[ds.split_idx["test"]] = True
    idx, = list(NodeIndices(mask))
    assert torch.equal(idx, ds.split_idx["test"])
    by_mask = salient_pipeline(ds, mask, batch_size=256, fanouts=(3,), device="cpu",
                               shuffle=False)
    by_name = salient_pipeline(ds, "test", batch_size=256, fanouts=(3,), device="cpu",
                               shuffle=False)
    for a, b in pairs(list(by_mask), list(by_name)):
        assert torch.equal(a.n_id, b.n_id)
    with pytest.raises(ValueError, match="bool mask of 3 entries"):
        salient_pipeline(ds, mask[:3], device="cpu")
    bools = IterableWrapper([mask[:64]])
    with pytest.raises(ValueError, match="seed batch must hold node ids, got a bool"):
        list(SeedsFromNode(bools).sample_neighbors(ds, [3]))
    # A matrix of ids (an edge_index, say) is refused, not sampled flattened;
    # a single id (0-d) is a batch of one.
    pairs_of_ids = IterableWrapper([torch.tensor([[0, 1], [2, 3]])])
    with pytest.raises(ValueError, match=r"1-D tensor of node ids, got shape \(2, 2\)"):
        list(SeedsFromNode(pairs_of_ids).sample_neighbors(ds, [3]))
    one, = list(SeedsFromNode(IterableWrapper([torch.tensor(5)])).sample_neighbors(ds, [3]))
    assert one.n_id[:1].tolist() == [5] and one.batch_size == 1


# ------------------------------------------------------- argument checking
@pytest.mark.parametrize("fanouts, message", [
    ([10.5], r"fanouts\[0\] must be an int, got 10.5"),
    ([5, 2.0], r"fanouts\[1\] must be an int"),
    (["5"], r"fanouts\[0\] must be an int"),
    ([True], r"fanouts\[0\] must be an int"),
    ("55", "sequence of ints"),
    ([5, -2], r"fanouts\[1\] = -2"),
])
def test_non_integer_fanouts_are_refused(small_dataset, fanouts, message):
    with pytest.raises(ValueError, match=message):
        salient_pipeline(small_dataset, fanouts=fanouts, device="cpu")
    with pytest.raises(ValueError, match=message):
        NodeIndices(torch.arange(4)).batch_nodes(2).sample_neighbors(small_dataset, fanouts)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_threads": 0}, "num_threads must be >= 1"),
    ({"num_threads": 1.5}, "num_threads must be an int"),
    ({"max_in_flight": 0}, "max_in_flight must be >= 1"),
    ({"batch_size": 2.0}, "batch_size must be an int"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"rank": 1.0, "world_size": 2}, "rank must be an int"),
])
def test_bad_arguments_name_the_argument_passed(small_dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        salient_pipeline(small_dataset, device="cpu", **kwargs)


def test_foreign_objects_get_a_clear_error(small_dataset):
    from torch_geometric.data import Data

    data = Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(TypeError, match=r"FastDataset.from_pyg\(data\)"):
        salient_pipeline(data, device="cpu")
    with pytest.raises(ValueError, match="x must be a torch.Tensor, got ndarray"):
        NodeIndices(torch.arange(3)).batch_nodes(2).sample_neighbors(small_dataset, [2]) \
            .slice_features(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="split_idx must map"):
        FastDataset(name="t", x=small_dataset.x, y=small_dataset.y, rowptr=small_dataset.rowptr,
                    col=small_dataset.col, split_idx=[1, 2], num_classes=4)


def test_salient_pipeline_passes_replace_and_return_e_id(small_dataset):
    ds = small_dataset
    pipe = salient_pipeline(ds, batch_size=500, fanouts=(7, 2), device="cpu", replace=True,
                            return_e_id=True)
    batch = next(iter(pipe))
    rowptr, col = ds.rowptr.numpy(), ds.col.numpy()
    hops = [(a.edge_index.numpy(), a.e_id.numpy(), a.size) for a in batch.adjs]
    check_sample(rowptr, col, batch.n_id[: batch.batch_size].numpy(), [7, 2], True,
                 batch.n_id.numpy(), hops)
    # with replacement some target draws a neighbor position twice
    edge_index, e_id, _ = hops[-1]
    assert len(set(zip(edge_index[1].tolist(), e_id.tolist()))) < len(e_id)


# ------------------------------------------------ replace with fanout -1
@pytest.mark.parametrize("replace", [False, True])
def test_minus_one_takes_every_neighbor_once_with_or_without_replacement(replace):
    from tests.conftest import random_csr

    rowptr, col = random_csr(400, 3000, seed=5)
    graph = _native.CSRGraph(rowptr, col)
    seeds = np.arange(0, 400, 7, dtype=np.int64)
    n_id, hops, _, _ = native_sample(graph, seeds, [-1, -1], replace=replace)
    ref_n_id, ref_hops = reference_full_sample(rowptr, col, seeds.tolist(), 2)
    assert n_id.tolist() == ref_n_id
    for (edge_index, _, size), (ref_edges, ref_size) in pairs(hops, ref_hops):
        np.testing.assert_array_equal(edge_index, ref_edges)
        assert tuple(size) == ref_size


# ------------------------------------------------------ torchdata adapters
def _same(a, b) -> None:
    assert torch.equal(a.n_id, b.n_id) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def _tag(batch):
    batch.tag = int(batch.n_id[0])
    return batch


def test_pipe_node_over_a_mapped_pipe_resumes_exactly(small_dataset):
    full = _pipe(small_dataset)
    full.set_epoch(1)
    expected = list(full)
    loader = Loader(PipeNode(_pipe(small_dataset).map(_tag)))
    epoch0 = list(loader)  # what docs/torchdata.md shows: a mapped pipe under a Loader
    assert len(epoch0) == len(full) and all(b.tag == int(b.n_id[0]) for b in epoch0)
    node = PipeNode(_pipe(small_dataset).map(_tag))
    node.reset({"epoch": 1, "batches_done": 0})
    first = [node.next() for _ in range(2)]
    state = node.get_state()
    assert state == {"epoch": 1, "batches_done": 2}
    resumed = PipeNode(_pipe(small_dataset).map(_tag))
    resumed.reset(state)
    rest = []
    while True:
        try:
            rest.append(resumed.next())
        except StopIteration:
            break
    got = first + rest
    for a, b in pairs(got, expected):
        _same(a, b)
        assert a.tag == int(b.n_id[0])
    with pytest.raises(TypeError, match="stage or a chain holding one"):
        PipeNode(IterableWrapper([]))
    with pytest.raises(TypeError, match="stage or a chain holding one"):
        PipeNode(torch.utils.data.datapipes.iter.IterableWrapper([1, 2]))


def test_train_epoch_on_a_pipe_without_len(small_dataset):
    ds = small_dataset
    chunks = list(torch.split(ds.split_idx["train"], 256))
    pipe = SeedsFromNode(IterableWrapper(chunks)).sample_neighbors(ds, [4, 4]) \
        .slice_features(ds.x, ds.y)
    with pytest.raises(TypeError):
        len(pipe)
    model = SAGE(ds.num_features, 8, ds.num_classes, 2)
    result = train_epoch(model, pipe, torch.optim.Adam(model.parameters()), progress=True)
    assert result.batches == len(chunks)


# --------------------------------------------------- distributed teardown
def test_process_group_frees_ddp_models_before_destroying_the_group(tmp_path, monkeypatch):
    import torch.distributed as dist

    from salient_pipes.distributed import process_group

    alive_at_destroy = []
    refs = []
    destroy = dist.destroy_process_group

    def watched_destroy(*args, **kwargs):
        gc.disable()  # what is still alive now must stay countable
        try:
            alive_at_destroy.append([r() is not None for r in refs])
        finally:
            gc.enable()
        return destroy(*args, **kwargs)

    monkeypatch.setattr(dist, "destroy_process_group", watched_destroy)

    def train(fail: bool) -> None:
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        model.cycle = model  # only the collector frees it
        refs.append(weakref.ref(model))
        model(torch.randn(4, 2)).sum().backward()
        if fail:
            raise RuntimeError("step failed")

    for fail in (False, True):
        init = f"file://{tmp_path / f'init{fail}'}"
        try:
            with process_group("cpu", init_method=init, rank=0, world_size=1):
                train(fail)
        except RuntimeError as error:
            assert fail and "step failed" in str(error)
        assert not dist.is_initialized()
    assert alive_at_destroy == [[False], [False, False]]


# ------------------------------------------------- errors that point the right way
def test_loading_a_directory_without_a_dataset_does_not_advise_deleting_it(tmp_path):
    from salient_pipes import HeteroDataset

    for cls in (FastDataset, HeteroDataset):
        with pytest.raises(FileNotFoundError, match="does not exist") as missing:
            cls.load(tmp_path / "no" / "such" / "dir")
        with pytest.raises(FileNotFoundError, match="holds no saved dataset") as empty:
            cls.load(tmp_path)
        for error in (missing, empty):
            assert "delete" not in str(error.value) and "save() or from_edges()" in str(
                error.value)
    assert not (tmp_path / "no").exists()


def test_a_graph_that_is_not_in_ogb_points_to_from_pyg():
    with pytest.raises(ValueError, match=r"'cora'.*FastDataset\.from_pyg\(data\)"):
        FastDataset.from_path("data", "cora")


def test_node_ids_on_the_meta_device_are_refused_by_name(small_dataset):
    with pytest.raises(ValueError, match="split is on the meta device"):
        salient_pipeline(small_dataset, torch.arange(10, device="meta"), device="cpu")
    from torch_geometric.data import Data

    from salient_pipes.pyg import NeighborLoader

    data = Data(x=torch.randn(6, 2), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]))
    with pytest.raises(ValueError, match="meta device"):
        NeighborLoader(data, num_neighbors=[2], input_nodes=torch.arange(4, device="meta"))


OLD_DATAPIPES = """
from torch.utils.data import IterDataPipe, functional_datapipe

@functional_datapipe("pin_memory")
class TheirPinMemory(IterDataPipe):
    def __init__(self, source):
        self.source = source

    def __iter__(self):
        return iter(self.source)
"""


@pytest.mark.parametrize("package,first", [("eager", "torchdata.datapipes"),
                                           ("eager", "salient_pipes"),
                                           ("lazy", "salient_pipes")])
def test_torchdata_before_0_10_and_ours_share_a_process(tmp_path, package, first):
    """torchdata < 0.10 registers a ``pin_memory`` datapipe with its
    DataPipes (0.7 when the package is imported, 0.8 and 0.9 when its
    datapipes are; DGL 2.1-2.3's GraphBolt imports them); torch refuses a
    name twice. With such a torchdata installed (a stand-in here, first on
    the path), either import order works: our stages' ``.pin_memory()`` is
    ours, other DataPipes' theirs, and our torchdata.nodes adapters say
    what they need."""
    import subprocess
    import sys

    (tmp_path / "torchdata" / "datapipes").mkdir(parents=True)
    (tmp_path / "torchdata" / "datapipes" / "__init__.py").write_text(OLD_DATAPIPES)
    (tmp_path / "torchdata" / "__init__.py").write_text(
        "from torchdata import datapipes\n" if package == "eager" else "")
    other = "salient_pipes" if first != "salient_pipes" else "torchdata.datapipes"
    code = f"""
import {first}, {other}, torch
from salient_pipes.pipes import NodeIndices
from salient_pipes.pipes.pin import PinMemory
ours = NodeIndices(torch.arange(6)).batch_nodes(4).pin_memory()
assert type(ours) is PinMemory, type(ours)
assert [b.tolist() for b in ours] == [[0, 1, 2, 3], [4, 5]]
theirs = NodeIndices(torch.arange(6)).map(lambda i: i).pin_memory()
assert type(theirs).__name__ == "TheirPinMemory", type(theirs)
try:
    import salient_pipes.adapters.torchdata
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": f"{tmp_path}:{os.getcwd()}"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "needs torchdata >= 0.10" in out.stdout
