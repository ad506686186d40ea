"""One training epoch and batchwise evaluation over our pipelines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from salient_pipes.batch import HeteroBatch, PreparedBatch
from salient_pipes.data import FastDataset, HeteroDataset, iter_splits
from salient_pipes.pipeline import resolve_device, resolve_rank, salient_pipeline


@dataclass
class EpochResult:
    """Mean training loss over the epoch's seeds, wall seconds, batches, and
    the seconds the training loop waited for its next batch (``data_wait_s``;
    the rest of ``seconds`` is the step itself). On CUDA, ``device_busy_s``
    is the GPU time of the steps, between CUDA events recorded around each."""

    loss: float
    seconds: float
    batches: int
    data_wait_s: float = 0.0
    device_busy_s: Optional[float] = None

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


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def batches_per_epoch(pipe: Iterable[Any]) -> Optional[int]:
    """``len(pipe)``, or ``None`` for a pipe that cannot know it in advance
    (a source of seeds read from a user's node, a filter)."""
    try:
        return len(pipe)  # type: ignore[arg-type]
    except TypeError:
        return None


def forward(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """The model's output for the seeds of ``batch``: ``model(x, adjs)`` for a
    :class:`PreparedBatch`; for a :class:`HeteroBatch`,
    ``model(x_dict, edge_index_dict)`` (a dict of outputs per node type is
    read at the input type), first ``batch_size`` rows."""
    if isinstance(batch, HeteroBatch):
        out = model(batch.x, batch.edge_index)
        if isinstance(out, dict):
            out = out[batch.input_type]
        return out[: batch.batch_size]
    return model(batch.x, batch.adjs)


def train_epoch(model: torch.nn.Module, pipe: Iterable[Union[PreparedBatch, HeteroBatch]],
                optimizer: torch.optim.Optimizer, *, progress: bool = True,
                desc: str = "train",
                on_batch: Optional[Callable[[int], None]] = None) -> EpochResult:
    """Trains ``model`` on one pass over ``pipe`` with NLL loss (labels -1
    ignored). The loss is summed on the device and read once at the end: no
    host-device synchronization per batch. ``on_batch(i)`` runs after the
    optimizer step of the ``i``-th batch of this pass (checkpointing hooks in
    there).

    Example:
        >>> from salient_pipes import FastDataset, salient_pipeline, SAGE
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> model = SAGE(ds.num_features, 16, ds.num_classes, 2)
        >>> pipe = salient_pipeline(ds, batch_size=128, fanouts=(5, 5), device="cpu")
        >>> opt = torch.optim.Adam(model.parameters(), lr=0.01)
        >>> train_epoch(model, pipe, opt, progress=False).batches
        3
    """
    model.train()
    device = _model_device(model)
    total = torch.zeros((), device=device)
    seeds = 0
    batches = 0
    start = time.perf_counter()
    waited = 0.0
    items = iter(tqdm(pipe, total=batches_per_epoch(pipe), desc=desc, disable=not progress,
                      leave=False))
    timed = device.type == "cuda"
    steps: list = []  # (start, end) CUDA events of each step, read once at the end
    while True:
        asked = time.perf_counter()
        batch = next(items, None)
        waited += time.perf_counter() - asked
        if batch is None:
            break
        if batch.y.device != device:
            batch = batch.to(device, non_blocking=True)
        if timed:
            steps.append((torch.cuda.Event(enable_timing=True),
                          torch.cuda.Event(enable_timing=True)))
            steps[-1][0].record()
        optimizer.zero_grad(set_to_none=True)
        out = forward(model, batch)
        loss = F.nll_loss(out, batch.y, ignore_index=-1)
        loss.backward()
        optimizer.step()
        if timed:
            steps[-1][1].record()
        total += loss.detach() * batch.batch_size
        seeds += batch.batch_size
        batches += 1
        if on_batch is not None:
            on_batch(batches)
    mean = (total / max(seeds, 1)).item()
    seconds = time.perf_counter() - start
    busy = None
    if timed:
        torch.cuda.synchronize(device)
        busy = sum(a.elapsed_time(b) for a, b in steps) / 1000
    return EpochResult(loss=mean, seconds=seconds, batches=batches, data_wait_s=waited,
                       device_busy_s=busy)


@torch.no_grad()
def batchwise_test(
    model: torch.nn.Module,
    dataset: Union[FastDataset, HeteroDataset],
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

    Example:
        >>> from salient_pipes import FastDataset, SAGE
        >>> ds = FastDataset.synthetic(num_nodes=500, seed=0)
        >>> acc = batchwise_test(SAGE(ds.num_features, 16, ds.num_classes, 2), ds,
        ...                      fanouts=(5, 5), device="cpu", progress=False)
        >>> 0.0 <= acc["valid"] <= 1.0
        True
    """
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
