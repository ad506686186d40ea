"""Joining torchrun's process group, and leaving it in an order that cannot
deadlock.

A ``DistributedDataParallel`` model holds its process group through its
reducer. If the group is destroyed first and the model freed later, the
model's last reference ends the gloo group from a thread that holds the GIL,
while a gloo worker thread waits for the GIL to free the tensors of the last
all-reduce: both wait forever. So every DDP model must be gone before
``destroy_process_group()``; :func:`process_group` makes sure of it.
"""

from __future__ import annotations

import gc
import os
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Union

import torch
import torch.distributed as dist


def init_distributed(device: Union[str, torch.device, None] = None,
                     **init_kwargs: Any) -> torch.device:
    """Joins the process group (NCCL on GPUs, gloo on CPUs) unless already
    joined, and returns this process's device: ``cuda:LOCAL_RANK`` when CUDA
    is available and ``device`` does not ask for the CPU, else the CPU.
    ``init_kwargs`` go to ``torch.distributed.init_process_group`` (by
    default it reads torchrun's environment)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = None if device is None else torch.device(device).type
    use_cuda = torch.cuda.is_available() and wanted in (None, "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", **init_kwargs)
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


@contextmanager
def process_group(device: Union[str, torch.device, None] = None,
                  **init_kwargs: Any) -> Iterator[torch.device]:
    """Joins the process group for the ``with`` block and yields this
    process's device; on leaving, frees what the block's calls left behind
    (their DDP models, even when an exception still holds their frames)
    while the group is alive, then destroys the group.

    Build the DDP model inside a function called in the block, so that its
    last reference goes when that function returns.

    Example:
        >>> from salient_pipes.distributed import process_group
        >>> def train(device): ...  # builds DistributedDataParallel(model), trains
        >>> with process_group() as device:  # doctest: +SKIP
        ...     train(device)
    """
    device_used: Optional[torch.device] = None
    try:
        device_used = init_distributed(device, **init_kwargs)
        yield device_used
    except BaseException as error:
        # The traceback keeps the failed calls' frames, and their DDP models, alive.
        traceback.clear_frames(error.__traceback__)
        raise
    finally:
        gc.collect()  # models caught in reference cycles go now, while the group lives
        if dist.is_initialized():
            dist.destroy_process_group()
