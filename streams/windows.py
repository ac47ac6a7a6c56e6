"""Offset-aligned drift windows per partition, and the aggregator that merges them. Plain Python.

Window ``k`` of partition ``p`` holds the messages at offsets ``[k*S, (k+1)*S)`` of that partition, with
``S = ceil(window_size / partitions)``. Because windows are defined by offsets, not by arrival time or by
which worker holds the partition, the merged window ``k`` (the union over partitions) is the same with one
worker or many, and a redelivered message falls into the window it belonged to before.

A partition ships its partial of window ``k`` when it reaches an offset of window ``k+1`` (``complete``),
or, when traffic stops, after ``idle_s`` without events (``complete=False``; it keeps accumulating and
ships again if more events of window ``k`` arrive). The :class:`Aggregator` publishes window ``k`` once:
when every partition's partial is final, or ``grace_s`` after the last partial of ``k`` arrived. Partials
that arrive after their window was published are counted as late and ignored.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["PartitionWindow", "PartitionWindows", "Aggregator", "window_messages"]


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

    def partial(self, topic: str, complete: bool, model_version: str, size: int) -> dict:
        return {"kind": "partial", "topic": topic, "window_index": self.index, "partition": self.partition,
                "complete": complete, "first_offset": self.first_offset, "last_offset": self.last_offset,
                "window_messages": size, "model_version": model_version, "sent_at": time.time(),
                "sketch": self.sketch.to_dict()}


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

    def window(self, partition: int, offset: int, now: float, shipped: list[dict]) -> PartitionWindow:
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

    def idle(self, now: float, idle_s: float) -> list[dict]:
        """Partials of windows with no event for ``idle_s`` seconds and unshipped events."""
        out = []
        for w in self.open.values():
            if w.dirty and now - w.updated_at >= idle_s:
                out.append(w.partial(self.topic, False, self.model_version, self.size))
                w.dirty = False
        return out

    def drop(self, partitions: set[int]) -> None:
        """Forget revoked partitions (their new owner restarts from the committed offset)."""
        for p in partitions:
            self.open.pop(p, None)

    def flush(self) -> list[dict]:
        out = [w.partial(self.topic, False, self.model_version, self.size) for w in self.open.values() if w.dirty]
        for w in self.open.values():
            w.dirty = False
        return out


@dataclass
class _Pending:
    partials: dict[int, dict] = field(default_factory=dict)
    last_update: float = 0.0


class Aggregator:
    """Merge the partials of each window from all partitions; publish each window once, in index order.

    ``merge_partials(list_of_partial_dicts) -> stats dict`` does the statistics (detectors); this class only
    decides *when* a window is whole.
    """

    def __init__(self, partitions: int, grace_s: float, merge_partials: Callable[[list[dict]], dict]) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self.grace_s = grace_s
        self.merge_partials = merge_partials
        self.pending: dict[int, _Pending] = {}
        self.published_upto = -1
        self.late = 0
        self.published = 0

    def add(self, partial: dict, now: float) -> list[dict]:
        k = partial["window_index"]
        if k <= self.published_upto:
            self.late += 1
            return []
        pend = self.pending.setdefault(k, _Pending())
        prev = pend.partials.get(partial["partition"])
        # a later partial of the same partition supersedes (it holds everything the earlier one had)
        if prev is None or partial["last_offset"] >= prev["last_offset"]:
            pend.partials[partial["partition"]] = partial
        pend.last_update = now
        return self.ready(now)

    def _final(self, k: int, p: int) -> bool:
        part = self.pending[k].partials.get(p)
        if part is None:
            return False
        if part["complete"]:
            return True
        # a partition that has moved on to a later window will not add to this one
        return any(p in self.pending[j].partials for j in self.pending if j > k)

    def ready(self, now: float) -> list[dict]:
        out = []
        for k in sorted(self.pending):
            pend = self.pending[k]
            whole = all(self._final(k, p) for p in range(self.partitions))
            if not whole and now - pend.last_update < self.grace_s:
                break  # publish in order: wait for this one
            parts = [pend.partials[p] for p in sorted(pend.partials)]
            stats = self.merge_partials(parts)
            stats.setdefault("window", {})["partitions_missing"] = sorted(set(range(self.partitions)) - set(pend.partials))
            stats["window"]["complete"] = whole
            out.append(stats)
            del self.pending[k]
            self.published_upto = k
            self.published += 1
        return out
