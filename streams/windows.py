"""Offset-aligned drift windows per partition, and the aggregator that merges them. Plain Python.

Window ``k`` of partition ``p`` holds the messages at offsets ``[k*S, (k+1)*S)`` of that partition, with
``S = ceil(window_size / partitions)``. Because windows are defined by offsets, not by arrival time or by
which worker holds the partition, the merged window ``k`` (the union over partitions) is the same with one
worker or many, and a redelivered message falls into the window it belonged to before.

A partition ships its partial of window ``k`` when it reaches an offset of window ``k+1`` (``complete``),
or, when traffic stops, after ``idle_s`` without events (``complete=False``; it keeps accumulating and
ships again if more events of window ``k`` arrive). Between partials, each partition sends a small
progress heartbeat (its open window index), so the window gate (:mod:`streams.gate`) can tell a
partition that lags from one that is gone. Partials that arrive after their window was published are counted as late and
ignored.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from detectors.records import DriftPartial, Progress

__all__ = ["PartitionWindow", "PartitionWindows", "window_messages"]


def window_messages(window_size: int, partitions: int) -> int:
    """Messages per partition window so that a merged window holds about ``window_size`` messages."""
    return max(1, math.ceil(window_size / max(1, partitions)))


@dataclass
class PartitionWindow:
    index: int
    partition: int
    sketch: Any
    first_offset: int
    last_offset: int
    updated_at: float
    dirty: bool = True          # has events not yet shipped

    def partial(self, topic: str, complete: bool, model_version: str, size: int) -> DriftPartial:
        return DriftPartial(topic, self.index, self.partition, complete, self.first_offset, self.last_offset, size,
                            model_version, time.time(), self.sketch.to_dict())


class PartitionWindows:
    """The open window of each partition this worker holds."""

    def __init__(self, new_sketch: Callable[[], Any], size: int, topic: str, model_version: str) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.new_sketch = new_sketch
        self.size = size
        self.topic = topic
        self.model_version = model_version
        self.open: dict[int, PartitionWindow] = {}

    def window(self, partition: int, offset: int, now: float, shipped: list[DriftPartial]) -> PartitionWindow:
        """The window that ``offset`` of ``partition`` belongs to; closes (ships) the previous one."""
        index = offset // self.size
        w = self.open.get(partition)
        if w is not None and w.index == index:
            w.first_offset = min(w.first_offset, offset)
            w.last_offset = max(w.last_offset, offset)
            w.updated_at = now
            w.dirty = True
            return w
        if w is not None and index > w.index:
            shipped.append(w.partial(self.topic, True, self.model_version, self.size))
        elif w is not None:
            # an older offset than the open window (redelivery after a rebalance): start that window again;
            # the aggregator decides whether it is late (already published) or not.
            shipped.append(w.partial(self.topic, False, self.model_version, self.size))
        w = PartitionWindow(index, partition, self.new_sketch(), offset, offset, now)
        self.open[partition] = w
        return w

    def idle(self, now: float, idle_s: float, caught_up: Callable[[int, int], bool] | None = None) -> list[DriftPartial]:
        """Partials of windows with no event for ``idle_s`` seconds and unshipped events.

        ``caught_up(partition, last_offset)`` tells whether the consumer has read the partition to its
        high watermark: a partition that is merely waiting behind a backlog is not idle.
        """
        out = []
        for w in self.open.values():
            if w.dirty and now - w.updated_at >= idle_s and (caught_up is None or caught_up(w.partition, w.last_offset)):
                out.append(w.partial(self.topic, False, self.model_version, self.size))
                w.dirty = False
        return out

    def heartbeats(self, now: float, assigned: Iterable[int] = (),
                   has_backlog: Callable[[int], bool] | None = None) -> list[Progress]:
        """One small progress record per open partition window (no sketch), and one per ``assigned``
        partition without a window yet (``window_index`` -1): it is idle unless ``has_backlog(partition)``,
        so the aggregator waits for a partition this worker holds but has not read yet."""
        beats = [Progress(self.topic, w.partition, w.index, w.last_offset, not w.dirty, now) for w in self.open.values()]
        for p in sorted(set(assigned) - set(self.open)):
            beats.append(Progress(self.topic, p, -1, -1, not (has_backlog and has_backlog(p)), now))
        return beats

    def drop(self, partitions: set[int]) -> None:
        """Forget revoked partitions (their new owner restarts from the committed offset)."""
        for p in partitions:
            self.open.pop(p, None)

    def flush(self) -> list[DriftPartial]:
        out = [w.partial(self.topic, False, self.model_version, self.size) for w in self.open.values() if w.dirty]
        for w in self.open.values():
            w.dirty = False
        return out
