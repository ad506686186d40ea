"""A sampling stage's epoch on its native session, and the next epoch's
first batches started before this one ends (``overlap_epochs``).

Without overlap every epoch begins with an empty pipeline: the first batch
takes one worker a whole batch's sampling time while the consumer (the GPU)
waits. With it, once an epoch has submitted its last seeds, the freed
in-flight places take the next epoch's first batches, so they are ready when
it begins. Batches depend only on ``(seed, epoch, position)``, so they are
the batches that epoch would have sampled anyway; ordered delivery keeps
them behind this epoch's.

The stages above the sampling stage begin the next epoch early for this.
Their ``stats`` of the epoch that is ending stay what :func:`pipeline_stats`
reports until the next epoch begins, and whenever the carried batches are
not used (``set_epoch`` to another epoch, ``load_state_dict``, another
session) they are dropped and those stages are set back to the epoch and
position being started.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional

from salient_pipes.pipes.base import Stage, StageStats, close_iterator, upstream


@dataclass
class Carry:
    """The next epoch's batches submitted before it began."""

    epoch: int
    session: Any
    items: Iterator[Any]  # the source's iteration of that epoch
    stages: List[Stage]  # the Stage instances upstream
    stats: List[StageStats] = field(default_factory=list)  # theirs for that epoch
    payloads: Deque[Dict[str, Any]] = field(default_factory=deque)
    position: int = 0  # next position to submit
    pending: int = 0  # submitted, not yet delivered
    exhausted: bool = False


def upstream_stages(stage: Stage) -> List[Stage]:
    return [s for s in upstream(stage.source) if isinstance(s, Stage)]


def cancel(carry: Carry) -> None:
    """Cancels the carried batches and stops the source's early iteration
    (``run_session`` sets the source back on the epoch it starts)."""
    carry.session.cancel()
    close_iterator(carry.items)


def drop_carry(stage: Any) -> None:
    """Cancels the carried batches of ``stage``, if any."""
    carry: Optional[Carry] = getattr(stage, "_carry", None)
    stage._carry = None
    if carry is not None:
        cancel(carry)


def _submit_next(carry: Carry, seeds_of: Callable) -> bool:
    """Submits one more of the carried epoch's batches, while it has any.
    False if the source failed: the carry is then given up, and the epoch
    meets the failure again when it begins."""
    previous = None if carry.stats else [s.stats for s in carry.stages]
    try:
        item = next(carry.items)
        seeds = seeds_of(item, carry.payloads)
    except StopIteration:
        carry.exhausted = True
        return True
    except Exception:  # noqa: BLE001 - raised again in its own epoch
        close_iterator(carry.items)
        return False
    finally:
        if previous is not None:  # the first pull began their epoch: keep the last one's shown
            carry.stats = [s.stats for s in carry.stages]
            for s, stats in zip(carry.stages, previous):
                s.stats = stats
    carry.session.submit(seeds[0], carry.epoch, carry.position, seeds[1])
    carry.position += 1
    carry.pending += 1
    return True


def run_session(stage: Any, session: Any, epoch: int, start: int,
                seeds_of: Callable[[Any, Deque[Dict[str, Any]]], Any],
                wrap: Callable[[Any, Deque[Dict[str, Any]]], Any]) -> Iterator[Any]:
    """A sampling stage's epoch: submits the seeds (and seed times) that
    ``seeds_of`` makes of each item of
    ``stage.source`` (batch ``start`` onwards) to the native ``session``,
    keeping at most ``stage.max_in_flight`` batches in flight, and yields
    the wrapped results. ``payloads`` holds, in order, what travels with the
    batches in flight. With ``stage.overlap_epochs`` (ordered stages only)
    the next epoch's first batches follow this epoch's last ones; otherwise,
    or when the epoch ends early, the session is cancelled."""
    carry: Optional[Carry] = stage._carry
    stage._carry = None
    if carry is not None and carry.session is session and carry.epoch == epoch and start == 0:
        if carry.stats:  # the source began this epoch when the carry did
            for s, stats in zip(carry.stages, carry.stats):
                s.stats = stats
                s._epoch_fixed, s._start = False, 0  # a set_epoch(epoch) was for it
        items, payloads = carry.items, carry.payloads  # an exhausted source just ends
        position, pending = carry.position, carry.pending
    else:
        if carry is not None:
            cancel(carry)
        if stage._source_ahead:  # an earlier carry began another epoch upstream
            for s in upstream_stages(stage):
                s._epoch, s._epoch_fixed, s._start = epoch, True, start
        items, payloads = iter(stage.source), deque()
        position, pending = start, 0
    stage._source_ahead = False
    stage._busy = session
    following: Optional[Carry] = None
    finished = False
    try:
        for item in items:
            seeds, seed_time = seeds_of(item, payloads)
            session.submit(seeds, epoch, position, seed_time)
            position += 1
            pending += 1
            if session.in_flight >= stage.max_in_flight:
                pending -= 1
                yield wrap(session.next(), payloads)
        if (stage.overlap_epochs and stage.ordered and not stage._epoch_fixed
                and stage._start == 0):  # not when the next iteration is set elsewhere
            stage._source_ahead = True
            following = Carry(epoch + 1, session, iter(stage.source), upstream_stages(stage))
        while True:  # this epoch's last batches; their places go to the next epoch's first
            while (following is not None and not following.exhausted
                   and session.in_flight < stage.max_in_flight):
                if not _submit_next(following, seeds_of):
                    following = None
            if not pending:
                break
            pending -= 1
            yield wrap(session.next(), payloads)
        finished = True
    finally:
        if finished and following is not None:
            stage._carry = following
        else:
            session.cancel()
            if following is not None:
                close_iterator(following.items)
        if stage._busy is session:
            stage._busy = None
