"""Stage: page-locked batches, prepared on a background thread."""

from __future__ import annotations

import importlib.util
import threading
import warnings
from typing import Any, Iterator

import torch
from torch.utils.data import IterDataPipe, functional_datapipe

from salient_pipes._checks import check_int
from salient_pipes.pipes._handoff import run_ahead
from salient_pipes.pipes.base import Stage, close_iterator


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


def _register() -> None:
    """``.pin_memory()`` on any IterDataPipe, as torch's functional forms are;
    but torchdata < 0.10 registers a ``pin_memory`` datapipe of its own with
    its datapipes (DGL 2.1-2.3's GraphBolt imports them), and torch refuses a
    name twice, so whichever came second would fail to import. Where those
    datapipes are installed, ours is a method of our stages instead, and
    theirs stays the functional form of other DataPipes."""
    try:  # imports the package (0.7 registers its datapipes then), not its datapipes
        older = importlib.util.find_spec("torchdata.datapipes") is not None
    except ImportError:  # no torchdata
        older = False
    if older or "pin_memory" in IterDataPipe.functions:
        def pin_memory(self: Stage, depth: int = 2) -> PinMemory:
            return PinMemory(self, depth)

        setattr(Stage, "pin_memory", pin_memory)  # noqa: B010  (Stage does not declare it)
    else:
        functional_datapipe("pin_memory")(PinMemory)


_register()
