"""Stage: page-locked batches, prepared on a background thread."""

from __future__ import annotations

import threading
import warnings
from typing import Any, Iterator

import torch
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes._handoff import run_ahead
from salient_pipes.pipes.base import Stage, close_iterator

if "pin_memory" in IterDataPipe.functions:  # torch would say "already taken", no more
    _holder = (getattr(IterDataPipe.functions["pin_memory"], "args", None) or [None])[0]
    raise ImportError(
        "salient_pipes registers the IterDataPipe stage 'pin_memory', but "
        f"{getattr(_holder, '__module__', '?')}.{getattr(_holder, '__qualname__', '?')} holds "
        "that name already: torchdata < 0.10's datapipes register one (DGL 2.1-2.3's GraphBolt "
        "imports them). Use torchdata >= 0.10 in this process, or run that library in another")


@functional_datapipe("pin_memory")
class PinMemory(Stage):
    """Copies each batch into page-locked memory on a background thread, up to
    ``depth`` batches ahead, so that ``prefetch_to_device`` can copy it to the
    GPU asynchronously. A batch already pinned is passed on as it is. Without
    CUDA there is nothing to pin for: the stage passes batches through and
    warns once.

    Example:
        >>> from salient_pipes.pipes import NodeIndices
        >>> pipe = NodeIndices(torch.arange(4)).pin_memory()  # doctest: +SKIP
    """

    _warned = False

    def __init__(self, source: IterDataPipe, depth: int = 2) -> None:
        super().__init__(source)
        self.depth = check_int("depth", depth, minimum=1)
        self._stop_previous = threading.Event()

    def _generate(self, epoch: int, start: int, **options: Any) -> Iterator[Any]:
        if not torch.cuda.is_available():
            if not PinMemory._warned:
                warnings.warn("pin_memory: CUDA is not available; batches pass through unpinned",
                              stacklevel=2)
                PinMemory._warned = True
            yield from self.source
            return
        # An earlier iteration abandoned without being closed stops feeding.
        self._stop_previous.set()
        stop = self._stop_previous = threading.Event()
        yield from run_ahead(self._pin_all, self.depth, stop, "salient_pipes-pin")

    def _pin_all(self) -> Iterator[Any]:
        items = iter(self.source)
        try:
            for item in items:
                yield item.pin_memory() if hasattr(item, "pin_memory") else item
        finally:
            close_iterator(items)

    def __len__(self) -> int:
        return len(self.source)
