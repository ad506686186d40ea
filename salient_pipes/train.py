"""One training epoch and batchwise evaluation over our pipelines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from salient_pipes.batch import Adj, NodeWiseBatch, PreparedBatch
from salient_pipes.data import FastDataset, HeteroDataset, iter_splits
from salient_pipes.distributed import PartitionedDataset
from salient_pipes.models import Capacities, batch_sizes
from salient_pipes.pipeline import resolve_device, resolve_rank, salient_pipeline


@dataclass
class EpochResult:
    """Mean training loss over the epoch's seeds (NaN for an epoch without
    a batch, as :func:`batchwise_test` gives NaN for a split without a
    label), wall seconds, batches, and
    the seconds the training loop waited for its next batch (``data_wait_s``;
    the rest of ``seconds`` is the step itself), of which ``first_wait_s``
    for the epoch's first batch (the pipeline filling up). On CUDA,
    ``device_busy_s`` is the GPU time of the steps, between CUDA events
    recorded around each."""

    loss: float
    seconds: float
    batches: int
    data_wait_s: float = 0.0
    device_busy_s: Optional[float] = None
    first_wait_s: float = 0.0

    @property
    def data_wait_share(self) -> float:
        """The share of the epoch spent waiting for data (0 for an empty epoch)."""
        return self.data_wait_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def compute_s(self) -> float:
        """Seconds of the epoch not spent waiting for data: the steps."""
        return max(0.0, self.seconds - self.data_wait_s)

    @property
    def device_idle_share(self) -> float:
        """The share of the epoch the device ran no step. On CUDA it is
        measured by events around each step (``device_busy_s``); on the CPU
        the steps run on the training loop's thread, so it is the data wait
        share."""
        if self.device_busy_s is None or self.seconds <= 0:
            return self.data_wait_share
        return min(1.0, max(0.0, 1.0 - self.device_busy_s / self.seconds))


@dataclass
class EpochSoFar:
    """The part of an epoch trained so far: its batches and seeds, the sum of
    its batch losses weighted by seeds, and its seconds. A checkpoint taken
    mid-epoch stores it (:meth:`state_dict`); ``train_epoch(...,
    resume=...)`` continues it, so that a resumed epoch's progress bar and
    loss cover the whole epoch.

    Example:
        >>> EpochSoFar(batches=2, seeds=256, loss_sum=512.0).mean_loss
        2.0
    """

    batches: int = 0
    seeds: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.seeds if self.seeds else 0.0

    def state_dict(self) -> Dict[str, Any]:
        return {"batches": self.batches, "seeds": self.seeds, "loss_sum": self.loss_sum,
                "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> EpochSoFar:
        return cls(batches=int(state["batches"]), seeds=int(state["seeds"]),
                   loss_sum=float(state["loss_sum"]), seconds=float(state["seconds"]))


def _model_device(model: torch.nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    if first is None:
        raise ValueError(f"the model ({type(model).__name__}) has no parameters to tell its "
                         "device")
    return first.device


def batches_per_epoch(pipe: Iterable[Any]) -> Optional[int]:
    """``len(pipe)``, or ``None`` for a pipe that cannot know it in advance
    (a source of seeds read from a user's node, a filter)."""
    try:
        return len(pipe)  # type: ignore[arg-type]
    except TypeError:
        return None


def forward(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """The model's output for the seeds of ``batch``: ``model(x, adjs)`` for a
    :class:`PreparedBatch`; for a :class:`NodeWiseBatch`,
    ``model(x_dict, edge_index_dict)`` (a dict of outputs per node type is
    read at the input type), first ``batch_size`` rows."""
    if isinstance(batch, NodeWiseBatch):
        out = model(batch.x, batch.edge_index)
        if isinstance(out, dict):
            out = out[batch.input_type]
        return out[: batch.batch_size]
    return model(batch.x, batch.adjs)


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Any) -> torch.Tensor:
    """One training step on ``batch`` (NLL loss, labels -1 ignored); its loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.nll_loss(forward(model, batch), batch.y, ignore_index=-1)
    loss.backward()
    optimizer.step()
    return loss.detach()


class _Shape:
    """The static buffers of one padded batch shape, and its recorded step."""

    def __init__(self, cap_n: List[int], cap_e: List[int], x: torch.Tensor,
                 device: torch.device) -> None:
        self.x = torch.zeros(cap_n[0], x.size(1), dtype=x.dtype, device=device)
        self.y = torch.full((cap_n[-1],), -1, dtype=torch.int64, device=device)
        self.edges = [torch.empty(2, e, dtype=torch.int64, device=device) for e in cap_e]
        self.batch = PreparedBatch(  # the static buffers as the batch the step sees
            x=self.x, y=self.y, n_id=torch.empty(0, dtype=torch.int64, device=device),
            adjs=[Adj(ei, None, (cap_n[i], cap_n[i + 1])) for i, ei in enumerate(self.edges)])
        self.pad_to = Capacities.spare_rows(cap_n)  # each hop's padding edges' row
        self.runs = 0
        self.graph: Optional[Any] = None
        self.loss: Optional[torch.Tensor] = None

    def fill(self, x: torch.Tensor, y: torch.Tensor, adjs: List[Adj], nodes: List[int],
             edges: List[int]) -> None:
        self.x[: nodes[0]].copy_(x)
        self.x[nodes[0]:].zero_()
        for ei, adj, count, spare in zip(self.edges, adjs, edges, self.pad_to):
            ei[:, :count].copy_(adj.edge_index)
            ei[:, count:].fill_(spare)
        self.y[: nodes[-1]].copy_(y)
        self.y[nodes[-1]:].fill_(-1)


class CapturedStep:
    """A whole training step of a GraphSAGE-style ``model(x, adjs)``
    (forward, NLL loss, backward, ``optimizer.step()``) on batches padded to
    rarely changing shapes (:class:`~salient_pipes.models.Capacities`), and
    on CUDA recorded as one CUDA graph per shape, so that a step costs the
    training thread a few copies into the shape's buffers and one replay.

    Each shape's first ``warmup`` steps run as they are (on a side stream:
    compilation and the optimizer's state happen there), the next one is
    recorded and every later one replayed. Train it with
    ``train_epoch(step, pipe, step.optimizer)``. On CUDA the optimizer must
    be made with ``capturable=True``. The padding never reaches a real row
    (see :class:`~salient_pipes.models.StaticShapes`), so the losses and the
    updates are those of the unpadded batches (with dropout, up to the
    random masks). ``capture=False`` runs the same padded step without
    recording (on any device).

    Example:
        >>> from salient_pipes import FastDataset, SAGE, salient_pipeline
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> model = SAGE(ds.num_features, 16, ds.num_classes, 2)
        >>> step = CapturedStep(model, torch.optim.Adam(model.parameters()), capture=False)
        >>> pipe = salient_pipeline(ds, batch_size=128, fanouts=(5, 5), device="cpu")
        >>> train_epoch(step, pipe, step.optimizer, progress=False).batches
        3
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 capture: Optional[bool] = None, warmup: int = 2, headroom: float = 1.1,
                 multiple: int = 256) -> None:
        self.model, self.optimizer = model, optimizer
        self.device = _model_device(model)
        self.capture = self.device.type == "cuda" if capture is None else bool(capture)
        if self.capture:
            if not all(group.get("capturable", False) for group in optimizer.param_groups):
                raise ValueError("a captured step needs an optimizer made with "
                                 "capturable=True, e.g. torch.optim.Adam(params, "
                                 "capturable=True)")
            if self.device.type != "cuda":
                raise ValueError(f"capture needs the model on a CUDA device, not {self.device}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1, got {warmup!r}")
        self.warmup = warmup
        self.capacities = Capacities(headroom, multiple)
        # The capacities never shrink, so only the current shape is kept: a
        # shape left behind (its buffers and its graph's memory) is freed.
        self._key: Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]] = None
        self._shape: Optional[_Shape] = None
        self._stream = torch.cuda.Stream(self.device) if self.capture else None
        self.captures = 0  # graphs recorded
        self.replays = 0

    def __call__(self, batch: PreparedBatch) -> torch.Tensor:
        """One step on ``batch``; returns its loss (mean over the labeled
        seeds), a device tensor valid until the next call."""
        if not isinstance(batch, PreparedBatch):
            raise TypeError("a captured step trains on PreparedBatch items with features and "
                            f"labels, got {type(batch).__name__}")
        x, y = batch.x, batch.y
        if x is None or y is None:
            raise TypeError("a captured step trains on PreparedBatch items with features and "
                            f"labels, got one without {'x' if x is None else 'y'}")
        nodes, edges = batch_sizes(x, batch.adjs)
        cap_n, cap_e = self.capacities.fit(nodes, edges)
        key = (tuple(cap_n), tuple(cap_e))
        if self._shape is None or key != self._key:
            self._shape = None  # before the new buffers: the old ones can go first
            self._key, self._shape = key, _Shape(cap_n, cap_e, x, self.device)
        shape = self._shape
        shape.fill(x, y, batch.adjs, nodes, edges)
        if self._stream is None:
            return _step(self.model, self.optimizer, shape.batch)
        if shape.graph is not None:
            shape.graph.replay()
            self.replays += 1
            return shape.loss  # type: ignore[return-value]
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)  # the buffers are filled on the current stream
        with torch.cuda.stream(self._stream):
            if shape.runs < self.warmup:
                shape.runs += 1
                loss = _step(self.model, self.optimizer, shape.batch)
            else:
                graph = torch.cuda.CUDAGraph()
                # other threads (the prefetch stage's) keep copying meanwhile
                with torch.cuda.graph(graph, stream=self._stream,
                                      capture_error_mode="thread_local"):
                    shape.loss = _step(self.model, self.optimizer, shape.batch)
                shape.graph = graph
                self.captures += 1
                graph.replay()  # recording ran nothing: this is the step
                self.replays += 1
                loss = shape.loss
        current.wait_stream(self._stream)
        loss.record_stream(current)  # made on the side stream, read on this one
        return loss


def train_epoch(model: Union[torch.nn.Module, CapturedStep],
                pipe: Iterable[Union[PreparedBatch, NodeWiseBatch]],
                optimizer: torch.optim.Optimizer, *, progress: bool = True,
                desc: str = "train",
                on_batch: Optional[Callable[[Callable[[], EpochSoFar]], None]] = None,
                resume: Optional[EpochSoFar] = None) -> EpochResult:
    """Trains ``model`` on one pass over ``pipe`` with NLL loss (labels -1
    ignored). The loss is summed on the device and read once at the end: no
    host-device synchronization per batch.

    Args:
        model: a module called as :func:`forward` calls it, or a
            :class:`CapturedStep`.
        pipe: the batches (one epoch of a pipeline).
        optimizer: steps after every batch.
        progress: a progress bar.
        desc: the progress bar's label.
        on_batch: runs after each optimizer step (checkpointing hooks in
            there) as ``on_batch(so_far)``; ``so_far()`` returns the
            :class:`EpochSoFar` of the epoch up to this batch (reading the
            loss sum from the device: call it only when needed).
        resume: what an interrupted epoch had done before ``pipe`` (resumed
            with ``load_state_dict``) continues it: the progress bar starts
            there and the result covers the whole epoch.

    Example:
        >>> from salient_pipes import FastDataset, salient_pipeline, SAGE
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> model = SAGE(ds.num_features, 16, ds.num_classes, 2)
        >>> pipe = salient_pipeline(ds, batch_size=128, fanouts=(5, 5), device="cpu")
        >>> opt = torch.optim.Adam(model.parameters(), lr=0.01)
        >>> train_epoch(model, pipe, opt, progress=False).batches
        3
    """
    captured: Optional[CapturedStep] = None
    if isinstance(model, CapturedStep):
        if optimizer is not model.optimizer:
            raise ValueError("train a CapturedStep with its own optimizer: "
                             "train_epoch(step, pipe, step.optimizer)")
        captured, net = model, model.model
    else:
        net = model
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a CapturedStep, got "
                        f"{type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                        f"{type(optimizer).__name__}")
    net.train()
    device = _model_device(net)
    before = resume or EpochSoFar()
    total = torch.full((), before.loss_sum, device=device)
    seeds = before.seeds
    batches = before.batches
    start = time.perf_counter() - before.seconds
    waited = first_wait = 0.0
    items = iter(tqdm(pipe, total=batches_per_epoch(pipe), initial=batches, desc=desc,
                      disable=not progress, leave=False))

    def so_far() -> EpochSoFar:
        return EpochSoFar(batches=batches, seeds=seeds, loss_sum=float(total.item()),
                          seconds=time.perf_counter() - start)

    timed = device.type == "cuda"
    steps: list = []  # (start, end) CUDA events of each step, read once at the end
    while True:
        asked = time.perf_counter()
        batch = next(items, None)
        waited += time.perf_counter() - asked
        if batches == before.batches:
            first_wait = waited
        if batch is None:
            break
        if getattr(batch, "y", None) is None:
            raise TypeError("train_epoch trains on batches with labels (PreparedBatch or "
                            f"NodeWiseBatch with y); the pipe yielded {type(batch).__name__}"
                            + (" without y" if hasattr(batch, "y") else ""))
        if batch.y.device != device:
            batch = batch.to(device, non_blocking=True)
        if timed:
            steps.append((torch.cuda.Event(enable_timing=True),
                          torch.cuda.Event(enable_timing=True)))
            steps[-1][0].record()
        loss = captured(batch) if captured is not None else _step(net, optimizer, batch)
        if timed:
            steps[-1][1].record()
        total.add_(loss, alpha=batch.batch_size)  # one kernel, no temporary
        seeds += batch.batch_size
        batches += 1
        if on_batch is not None:
            on_batch(so_far)
    mean = (total / seeds).item() if seeds else float("nan")  # no seed: no mean loss
    seconds = time.perf_counter() - start
    busy = None
    if timed:
        torch.cuda.synchronize(device)
        busy = sum(a.elapsed_time(b) for a, b in steps) / 1000
    return EpochResult(loss=mean, seconds=seconds, batches=batches, data_wait_s=waited,
                       device_busy_s=busy, first_wait_s=first_wait)


@torch.no_grad()
def batchwise_test(
    model: torch.nn.Module,
    dataset: Union[FastDataset, HeteroDataset, PartitionedDataset],
    fanouts: Sequence[int] = (20, 20, 20),
    batch_size: int = 1024,
    sets: Sequence[str] = ("valid",),
    device: Union[str, torch.device, None] = None,
    *,
    num_threads: Optional[int] = None,
    progress: bool = True,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
) -> Dict[str, float]:
    """Accuracy of ``model`` on each split in ``sets``, by sampled mini-batch
    inference (``-1`` fanouts give exact full-neighborhood inference).

    Correct predictions are counted on the device and read once per split.
    Under ``torch.distributed`` every rank evaluates its shard and the counts
    are all-reduced, so every rank returns the accuracy over the whole split.

    Args:
        model: called as :func:`forward` calls it (log-probabilities per seed).
        dataset: a FastDataset, HeteroDataset or PartitionedDataset.
        fanouts: neighbors per hop (``-1``: all).
        batch_size: seeds per batch.
        sets: the splits to evaluate, by name (one name alone too).
        device: where batches go (default: the model's device).
        num_threads: native sampling threads.
        progress: a progress bar per split.
        rank: this process's rank (default: the process group's).
        world_size: ranks in all (default: the process group's).

    Example:
        >>> from salient_pipes import FastDataset, SAGE
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> acc = batchwise_test(SAGE(ds.num_features, 16, ds.num_classes, 2), ds,
        ...                      fanouts=(5, 5), device="cpu", progress=False)
        >>> 0.0 <= acc["valid"] <= 1.0
        True
    """
    if not isinstance(dataset, (FastDataset, HeteroDataset, PartitionedDataset)):
        raise TypeError(f"dataset must be a FastDataset, HeteroDataset or PartitionedDataset, "
                        f"got {type(dataset).__name__}")
    if isinstance(sets, str):
        sets = (sets,)
    model.eval()
    device = resolve_device(device) if device is not None else _model_device(model)
    rank, world_size = resolve_rank(rank, world_size)
    results = {}
    for name, _ in iter_splits(dataset, sets):
        pipe = salient_pipeline(dataset, name, batch_size=batch_size, fanouts=fanouts,
                                shuffle=False, device=device, num_threads=num_threads,
                                rank=rank, world_size=world_size)
        counts = torch.zeros(2, dtype=torch.int64, device=device)  # correct, labeled
        for batch in tqdm(pipe, total=len(pipe), desc=f"eval {name}", disable=not progress,
                          leave=False):
            pred = forward(model, batch).argmax(dim=-1)
            labeled = batch.y >= 0
            counts[0] += ((pred == batch.y) & labeled).sum()
            counts[1] += labeled.sum()
        if world_size > 1:
            torch.distributed.all_reduce(counts)
        correct, labeled = counts.tolist()
        results[name] = correct / labeled if labeled else float("nan")
    return results
