"""Checkpoints of a training run, and stopping it cleanly on SIGINT/SIGTERM.

A checkpoint holds the model, the optimizer, the RNG, the pipeline's state
(epoch and batches done) and the part of the epoch trained so far, so the
same command resumes exactly where it stopped, with the resumed epoch's
progress bar and loss covering the whole epoch. Ctrl-C and SIGTERM (what
SLURM and Kubernetes send before preempting a job) stop training at the next
batch boundary: with ``--checkpoint`` a checkpoint is written first. Under
``torchrun`` the ranks agree on the batch at which they stop, so none waits
in a collective for a rank that has left.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Dict, Optional, Tuple

import torch

CHECKPOINT_FILE = "checkpoint.pt"


class Interrupted(Exception):
    """Training stopped at a batch boundary because of signal ``signum``."""

    def __init__(self, signum: int, saved: Optional[Path]) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def save_checkpoint(directory: Path, state: Dict[str, Any]) -> Path:
    """Writes ``state`` to ``directory/checkpoint.pt`` atomically (temp + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT_FILE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, directory / CHECKPOINT_FILE)
    return directory / CHECKPOINT_FILE


def load_checkpoint(directory: Path, key: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The checkpoint in ``directory``, or None; refuses one from another run."""
    path = directory / CHECKPOINT_FILE
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    if state.get("run") != key:
        raise SystemExit(f"salient-pipes: {path} was written by a different run "
                         f"({state.get('run')}); use another --checkpoint directory")
    return state


class StopSignals:
    """Within the ``with`` block, SIGINT and SIGTERM ask training to stop at
    the next batch boundary instead of ending the process; a second one ends
    it at once (the handlers are the usual ones again). Signals can only be
    caught on the main thread; elsewhere this does nothing.

    Under torchrun, :meth:`agreed` all-reduces the request on a gloo group of
    its own every ``sync_every`` batches, so every rank stops after the same
    batch.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, distributed: bool = False, sync_every: int = 8) -> None:
        self.requested: Optional[int] = None
        self.sync_every = sync_every
        self._group = None
        if distributed:
            import torch.distributed as dist

            self._group = dist.new_group(backend="gloo")  # collective: every rank makes it
        self._previous: Dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.requested = signum
        self._restore()  # a second signal acts at once

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def agreed(self, batch: Optional[int] = None) -> Optional[int]:
        """The signal to stop for, agreed by every rank; ``batch`` (within the
        epoch) decides whether ranks compare now (``None``: always)."""
        if self._group is None:
            return self.requested
        if batch is not None and batch % self.sync_every:
            return None
        import torch.distributed as dist

        flag = torch.tensor([self.requested or 0])
        dist.all_reduce(flag, dist.ReduceOp.MAX, group=self._group)
        return int(flag) or None


class Schedule:
    """When to save: every ``n`` batches or every ``n`` seconds."""

    def __init__(self, every: Tuple[str, float]) -> None:
        self.unit, self.n = every
        self._last = time.monotonic()

    def due(self, batch: int) -> bool:
        if self.unit == "batches":
            return batch % int(self.n) == 0
        if time.monotonic() - self._last >= self.n:
            self._last = time.monotonic()
            return True
        return False
