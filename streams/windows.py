"""Offset-aligned drift windows per partition, and the aggregator that merges them. Plain Python.

Window ``k`` of partition ``p`` holds the messages at offsets ``[k*S, (k+1)*S)`` of that partition, with
``S = ceil(window_size / partitions)``. Because windows are defined by offsets, not by arrival time or by
which worker holds the partition, the merged window ``k`` (the union over partitions) is the same with one
worker or many, and a redelivered message falls into the window it belonged to before.

A partition ships its partial of window ``k`` when it reaches an offset of window ``k+1`` (``complete``),
or, when traffic stops, after ``idle_s`` without events (``complete=False``; it keeps accumulating and
ships again if more events of window ``k`` arrive). Between partials, each partition sends a small
progress heartbeat (its open window index), so the :class:`Aggregator` can tell a partition that lags
from one that is gone. Partials that arrive after their window was published are counted as late and
ignored.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

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

    def idle(self, now: float, idle_s: float, caught_up: Callable[[int, int], bool] | None = None) -> list[dict]:
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
                   has_backlog: Callable[[int], bool] | None = None) -> list[dict]:
        """One small progress record per open partition window (no sketch), and one per ``assigned``
        partition without a window yet (``window_index`` -1): it is idle unless ``has_backlog(partition)``,
        so the aggregator waits for a partition this worker holds but has not read yet."""
        beats = [{"kind": "progress", "topic": self.topic, "partition": w.partition, "window_index": w.index,
                  "last_offset": w.last_offset, "idle": not w.dirty, "sent_at": now} for w in self.open.values()]
        for p in sorted(set(assigned) - set(self.open)):
            beats.append({"kind": "progress", "topic": self.topic, "partition": p, "window_index": -1,
                          "last_offset": -1, "idle": not (has_backlog and has_backlog(p)), "sent_at": now})
        return beats

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
    first_seen: float = 0.0
    other_models: list[dict] = field(default_factory=list)   # partials superseded across a model reload


class Aggregator:
    """Merge the partials of each window from all partitions; publish each window once, in index order.

    Window ``k`` is published when every partition is final for it (its partial is complete, or the
    partition has moved past ``k``), or when the partitions still missing are silent: no partial and no
    progress heartbeat for ``grace_s`` seconds (their worker died or they have no traffic at all). A
    partition that lags but is alive keeps the window open, so a slow consumer never splits a window.
    ``max_pending`` bounds the state: beyond it the oldest window is published as it is.

    ``merge_partials(list_of_partial_dicts) -> stats dict`` does the statistics (detectors); this class only
    decides *when* a window is whole.
    """

    def __init__(self, partitions: int, grace_s: float, merge_partials: Callable[[list[dict]], dict],
                 max_pending: int = 64) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.partitions = partitions
        self.grace_s = grace_s
        self.merge_partials = merge_partials
        self.max_pending = max_pending
        self.pending: dict[int, _Pending] = {}
        self.heard: dict[int, float] = {}      # partition -> last time a partial or heartbeat came
        self.progress: dict[int, int] = {}     # partition -> highest window index it reported
        self.idle: dict[int, tuple[int, int]] = {}  # partition -> (window, last offset) it idles at
        self.published_upto = -1
        self.late = 0
        self.published = 0

    def add(self, partial: dict, now: float) -> list[dict]:
        p, k = partial["partition"], partial["window_index"]
        self.heard[p] = now
        self.progress[p] = max(self.progress.get(p, -1), k)
        if partial.get("kind") == "progress":
            if partial.get("idle"):
                self.idle[p] = (k, partial["last_offset"])
            else:
                self.idle.pop(p, None)
            return self.ready(now)
        if k <= self.published_upto:
            self.late += 1
            return []
        pend = self.pending.get(k)
        if pend is None:
            pend = self.pending[k] = _Pending(first_seen=now)
        prev = pend.partials.get(p)
        # a later partial of the same partition supersedes (it holds everything the earlier one had) -
        # unless a model reload came between them: then each holds its own part of the window
        if prev is None or partial["last_offset"] >= prev["last_offset"]:
            if prev is not None and prev.get("model_version") != partial.get("model_version"):
                pend.other_models.append(prev)
            pend.partials[p] = partial
        pend.last_update = now
        return self.ready(now)

    def _final(self, k: int, p: int, now: float) -> bool:
        part = self.pending[k].partials.get(p)
        if part is not None and part["complete"]:
            return True
        if part is not None and self.idle.get(p) == (k, part["last_offset"]):
            return True   # the partition shipped all it has and has been idle since
        if p in self.idle and self.idle[p][0] < k:
            return True   # idle below k: it has nothing for k (more traffic would be late for k)
        if self.progress.get(p, -1) > k:
            # it moved on. Its partial for k is either published already (then it is here: a heartbeat can
            # overtake the partial of the batch that opened the next window, hence the grace) or it was
            # lost with a worker that died mid-window.
            return now - self.pending[k].first_seen >= self.grace_s
        return False

    def _alive(self, p: int, k: int, now: float) -> bool:
        if p in self.heard:
            return now - self.heard[p] < self.grace_s
        # never heard of: give it grace_s from when the window appeared (workers start at different times)
        return now - self.pending[k].first_seen < self.grace_s

    def ready(self, now: float) -> list[dict]:
        out = []
        for k in sorted(self.pending):
            pend = self.pending[k]
            waiting = [p for p in range(self.partitions) if not self._final(k, p, now)]
            whole = not waiting
            if waiting and any(self._alive(p, k, now) for p in waiting) and len(self.pending) <= self.max_pending:
                break  # publish in order: wait for this one
            parts = pend.other_models + [pend.partials[p] for p in sorted(pend.partials)]
            stats = self.merge_partials(parts)
            stats.setdefault("window", {})["partitions_missing"] = sorted(set(range(self.partitions)) - set(pend.partials))
            stats["window"]["complete"] = whole
            out.append(stats)
            del self.pending[k]
            self.published_upto = k
            self.published += 1
        return out
