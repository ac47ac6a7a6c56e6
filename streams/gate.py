"""When a merged drift window is whole: the partials of every partition, published once and in order.

See :mod:`streams.windows` for how partitions cut their windows and when they ship partials.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from detectors.records import DriftPartial, Progress

__all__ = ["ClosedWindow", "WindowGate"]


@dataclass
class ClosedWindow:
    """A window to publish: its index, the partials to merge, the partitions that sent none, whether every
    partition was final for it (``complete``)."""
    index: int
    partials: list[DriftPartial]
    partitions_missing: list[int]
    complete: bool


@dataclass
class _Pending:
    partials: dict[int, DriftPartial] = field(default_factory=dict)
    last_update: float = 0.0
    first_seen: float = 0.0
    other_models: list[DriftPartial] = field(default_factory=list)   # partials superseded across a model reload


class WindowGate:
    """Merge the partials of each window from all partitions; publish each window once, in index order.

    Window ``k`` is published when every partition is final for it (its partial is complete, the
    partition has moved past ``k``, or it idles below ``k``; one that has read nothing yet counts as
    idle only after ``grace_s``), or when the partitions still missing are silent: no partial and no
    progress heartbeat for ``grace_s`` seconds (their worker died or they have no traffic at all). A
    partition that lags but is alive keeps the window open, so a slow consumer never splits a window.
    ``max_pending`` bounds the state: beyond it the oldest window is published as it is.

    This class only decides *when* a window is whole: :meth:`add` and :meth:`ready` return the windows to
    publish now (:class:`ClosedWindow`), whose statistics :class:`DriftAggregator` computes.
    """

    def __init__(self, partitions: int, grace_s: float, max_pending: int = 64) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.partitions = partitions
        self.grace_s = grace_s
        self.max_pending = max_pending
        self.pending: dict[int, _Pending] = {}
        self.heard: dict[int, float] = {}      # partition -> last time a partial or heartbeat came
        self.progress: dict[int, int] = {}     # partition -> highest window index it reported
        self.idle: dict[int, tuple[int, int]] = {}  # partition -> (window, last offset) it idles at
        self.published_upto = -1
        self.late = 0
        self.published = 0

    def add(self, partial: DriftPartial | Progress, now: float, publish: bool = True) -> list[ClosedWindow]:
        """Take a partial or a heartbeat; returns the windows whole now (none with ``publish=False``: a
        restore re-reads partials to rebuild the pending windows, and the next :meth:`ready` publishes)."""
        p, k = partial.partition, partial.window_index
        self.heard[p] = now
        self.progress[p] = max(self.progress.get(p, -1), k)
        if isinstance(partial, Progress):
            if partial.idle:
                self.idle[p] = (k, partial.last_offset)
            else:
                self.idle.pop(p, None)
            return self.ready(now) if publish else []
        if k <= self.published_upto:
            self.late += 1
            return []
        pend = self.pending.get(k)
        if pend is None:
            pend = self.pending[k] = _Pending(first_seen=now)
        prev = pend.partials.get(p)
        # a later partial of the same partition supersedes (it holds everything the earlier one had) -
        # unless a model reload came between them: then each holds its own part of the window
        if prev is None or partial.last_offset >= prev.last_offset:
            if prev is not None and prev.model_version != partial.model_version:
                pend.other_models.append(prev)
            pend.partials[p] = partial
        pend.last_update = now
        return self.ready(now) if publish else []

    def _final(self, k: int, p: int, now: float) -> bool:
        part = self.pending[k].partials.get(p)
        if part is not None and part.complete:
            return True
        if part is not None and self.idle.get(p) == (k, part.last_offset):
            return True   # the partition shipped all it has and has been idle since
        if p in self.idle and self.idle[p][0] < k:
            if self.idle[p][0] >= 0:
                return True   # it read up to below k and stopped: it has nothing for k (more would be late)
            # it has read nothing since its worker started. At start-up the first records of one partition
            # can be scored and shipped before the others' are even fetched, so an "idle, no backlog" beat
            # from then says nothing about window k: wait grace_s (a partition with no traffic at all holds
            # each window that long; one with traffic ships its partial well before)
            return now - self.pending[k].first_seen >= self.grace_s
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

    def ready(self, now: float) -> list[ClosedWindow]:
        out = []
        for k in sorted(self.pending):
            pend = self.pending[k]
            waiting = [p for p in range(self.partitions) if not self._final(k, p, now)]
            whole = not waiting
            if waiting and any(self._alive(p, k, now) for p in waiting) and len(self.pending) <= self.max_pending:
                break  # publish in order: wait for this one
            parts = pend.other_models + [pend.partials[p] for p in sorted(pend.partials)]
            out.append(ClosedWindow(k, parts, sorted(set(range(self.partitions)) - set(pend.partials)), whole))
            del self.pending[k]
            self.published_upto = k
            self.published += 1
        return out
