"""A stalled input: records are waiting on a partition the worker holds, and it reads none of them.

Seen after a kill -9 and restart of the broker (Tansu on S3 storage): the worker's consumer reconnected,
logged nothing, and fetched nothing more from its input partitions while the records were there to read
(a plain consumer read them from the committed offsets). A worker in that state is alive but useless, and
nothing else would notice; so it exits 1, unacked, and its supervisor restarts it (docs/reliability.md),
which resumes from the commit.

>>> dog = StallWatchdog(stall_s=30)
>>> dog.update(0.0, {0: 10}, {0: 50})          # records waiting: the clock starts
False
>>> dog.update(20.0, {0: 30}, {0: 50})         # it moved: the clock starts again
False
>>> dog.update(45.0, {0: 30}, {0: 50}), dog.update(50.0, {0: 30}, {0: 50})
(False, True)
>>> dog.update(90.0, {0: 50}, {0: 50})         # caught up: nothing waiting, never stalled
False
"""
from __future__ import annotations

from typing import Mapping

__all__ = ["StallWatchdog"]


class StallWatchdog:
    """``update(now, positions, highwaters)`` (by partition: Faust's read offset, the high watermark of the
    last fetch; ``None`` unknown) returns ``True`` once records have been waiting on some partition and no
    partition's position moved for ``stall_s`` seconds.

    Faust's read offset is the committed offset right after a seek but the offset of the last record read
    once it reads (one below the high watermark when caught up); so "waiting" needs more than one record
    past it, or an idle worker that has read everything looks stalled.

    >>> idle = StallWatchdog(stall_s=1)
    >>> idle.update(0.0, {0: 49}, {0: 50}), idle.update(9.0, {0: 49}, {0: 50})   # read up to offset 49 of 0..49
    (False, False)
    """

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self._positions: dict[int, int | None] = {}
        self._since: float | None = None

    def update(self, now: float, positions: Mapping[int, int | None], highwaters: Mapping[int, int | None]) -> bool:
        waiting = any(pos is not None and highwaters.get(p) is not None and pos + 1 < highwaters[p]
                      for p, pos in positions.items())
        if not waiting or dict(positions) != self._positions or self._since is None:
            self._positions = dict(positions)
            self._since = now
            return False
        return now - self._since >= self.stall_s
