"""Partition assignment as a lifecycle: restore what the stages need, then let new events in.

Drift windows are offset-aligned per partition (window ``k`` of a partition is its offsets
``[k*S, (k+1)*S)``, see :mod:`streams.windows`) and their sketches live in memory; so do the aggregator's
pending windows. A worker killed -9 loses both. Whoever takes a partition over resumes from the committed
offset ``c``; without help its window would be published short by ``c % S`` events.

- **Assigned** ``transactions`` partitions whose committed offset is inside a window (``c % S != 0``) and
  whose window is not open here: re-read offsets ``[c - c % S, c)`` (a plain consumer, by assignment) and
  feed them to the scoring stage as a replay (nothing published, not counted in the metrics but
  ``breeboost_window_replayed_events_total``; their ids do go into the de-duplication map). A sketch is
  order-independent counts, so the window ends up as if one worker had seen all of it.
- **Assigned** ``drift.partials``: re-read the last published window ``K`` from ``drift.stats`` and the
  partials before the commit, and rebuild the aggregator's pending windows (:meth:`DriftAggregator.restore`).
- **Revoked** partitions: their open windows are dropped (the new owner rebuilds them from the commit).

The reads run as tasks on the worker's event loop: the rebalance callback only starts them and never
blocks. Faust pauses new partitions during a rebalance and its recovery service resumes them without
waiting for our receivers, so the hold is at the agents: the score agent awaits :meth:`ready` for the
partitions of each micro-batch (a window always gets its replayed events before any new one), the aggregate
agent :meth:`aggregator_ready`, and the timer skips the aggregator while :attr:`aggregator_restoring`. On any
error a warning is logged and the window stays short (flagged incomplete, as without a restore).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable

from breeboost.logs import log
from breeboost.settings import Settings
from streams.records import Msg
from streams.reread import (ReplayPlan, chunks, group_consumer, last_published_window, plan_replay,
                            read_range)

__all__ = ["RebalanceLifecycle"]

_log = logging.getLogger("breeboost.replay")


class RebalanceLifecycle:
    """Restore on assignment, drop on revocation (see the module docstring).

    ``stages`` is a :class:`streams.stages.WorkerStages`; ``group_id`` the Faust app id whose committed
    offsets say where the worker resumes; ``now`` a fixed processing time for the replayed events' lags
    (tests; default: each chunk's newest Kafka timestamp, close to when the dead worker scored it)."""

    def __init__(self, stages: Any, settings: Settings, group_id: str, timeout_s: float = 30.0,
                 now: float | None = None, max_partials: int = 20_000) -> None:
        self.stages = stages
        self.settings = settings
        self.group_id = group_id
        self.timeout_s = timeout_s
        self.now = now
        self.max_partials = max_partials
        self.assigned: set[int] = set()            # transactions partitions held
        self.partials_assigned: set[int] = set()   # drift.partials partitions held
        self.pending: dict[int, asyncio.Task] = {}   # partition -> the read of its window, not fed yet
        self._aggregator_read: asyncio.Task | None = None
        self.reports: list[dict] = []
        self.aggregator_reports: list[dict] = []

    # -- Faust signal receivers ------------------------------------------------------------------
    async def on_partitions_assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        self.on_assigned(assigned)

    async def on_partitions_revoked(self, sender: Any, revoked: Iterable[Any], **_: Any) -> None:
        self.on_revoked(revoked)

    # -- the lifecycle ---------------------------------------------------------------------------
    def on_assigned(self, assigned: Iterable[Any]) -> None:
        """The whole new assignment (topic-partitions): start the reads it needs; returns at once."""
        assigned = list(assigned)
        tx = {tp.partition for tp in assigned if tp.topic == self.settings.topic_transactions}
        partials = {tp.partition for tp in assigned if tp.topic == self.settings.topic_drift_partials}
        new = sorted(tx - self.assigned - set(self.pending))
        self.assigned = tx
        if new:
            open_index = {p: w.index for p, w in self.stages.windows.open.items()}
            task = asyncio.ensure_future(self._read_windows(new, open_index))
            for p in new:
                self.pending[p] = task
        new_partials = sorted(partials - self.partials_assigned)
        self.partials_assigned = partials
        if new_partials and self._aggregator_read is None:
            self._aggregator_read = asyncio.ensure_future(self._read_partials(new_partials))

    def on_revoked(self, revoked: Iterable[Any]) -> None:
        """Drop the open windows of revoked ``transactions`` partitions and forget their pending reads."""
        gone = {tp.partition for tp in revoked if tp.topic == self.settings.topic_transactions}
        self.assigned -= gone
        for p in gone:
            self.pending.pop(p, None)
        self.stages.windows.drop(gone)

    async def ready(self, partitions: Iterable[int]) -> None:
        """Before a micro-batch of ``partitions``: await their pending reads, then feed every read done."""
        if not self.pending:
            return
        waiting = {self.pending[p] for p in set(partitions) if p in self.pending}
        if waiting:
            await asyncio.wait(waiting)
        self._feed_done()

    async def restore(self) -> list[dict]:
        """Await and feed every pending read (windows and aggregator); the window reports of this call."""
        before = len(self.reports)
        if self.pending:
            await asyncio.wait(set(self.pending.values()))
            self._feed_done()
        await self.aggregator_ready()
        return self.reports[before:]

    @property
    def restoring(self) -> bool:
        """A re-read is still running: the agents wait for it on purpose."""
        tasks = list(self.pending.values()) + ([self._aggregator_read] if self._aggregator_read else [])
        return any(not t.done() for t in tasks)

    @property
    def aggregator_restoring(self) -> bool:
        return self._aggregator_read is not None

    async def aggregator_ready(self) -> None:
        """Before new partials are aggregated: await and apply a pending re-read of the aggregator."""
        task = self._aggregator_read
        if task is None:
            return
        await asyncio.wait({task})
        self._aggregator_read = None
        try:
            last, values = task.result()
        except Exception as exc:
            self.stages.metrics.consumer_errors.inc()
            log(_log, "aggregator restore failed: windows pending at the crash may be short",
                level=logging.WARNING, error=repr(exc))
            return
        report = self.stages.aggregator.restore(values, last)
        log(_log, "aggregator restored", **report)
        self.aggregator_reports.append(report)

    # -- reading ----------------------------------------------------------------------------------
    async def _read_windows(self, partitions: list[int], open_index: dict[int, int]
                            ) -> tuple[list[ReplayPlan], dict[int, list[Msg]]]:
        from aiokafka import TopicPartition

        topic = self.settings.topic_transactions
        async with group_consumer(self.settings, self.group_id, self.timeout_s) as consumer:
            plans = []
            for p in partitions:
                c = await asyncio.wait_for(consumer.committed(TopicPartition(topic, p)), self.timeout_s)
                plan = plan_replay(c, self.stages.windows.size, p, open_index.get(p))
                if plan is not None:
                    plans.append(plan)
            return plans, await read_range(consumer, topic, plans, self.timeout_s)

    async def _read_partials(self, partitions: list[int]) -> tuple[int, list[bytes]]:
        from aiokafka import TopicPartition

        topic = self.settings.topic_drift_partials
        async with group_consumer(self.settings, self.group_id, self.timeout_s) as consumer:
            plans = []
            for p in partitions:
                c = await asyncio.wait_for(consumer.committed(TopicPartition(topic, p)), self.timeout_s)
                if c:
                    plans.append(ReplayPlan(p, max(0, c - self.max_partials), c))
            last = await last_published_window(consumer, self.settings.topic_drift_stats, self.timeout_s)
            read = await read_range(consumer, topic, plans, self.timeout_s)
            return last, [m.value for p in sorted(read) for m in read[p]]

    # -- feeding ----------------------------------------------------------------------------------
    def _feed_done(self) -> None:
        for task in {t for t in self.pending.values() if t.done()}:
            parts = [p for p, t in self.pending.items() if t is task]
            for p in parts:
                del self.pending[p]
            try:
                plans, read = task.result()
            except Exception as exc:   # broker unreachable, timeout, ...: run on, the window stays short
                self.stages.metrics.consumer_errors.inc()
                log(_log, "window replay failed: the open windows of these partitions will be short",
                    level=logging.WARNING, partitions=parts, error=repr(exc))
                continue
            for plan in plans:
                if plan.partition in self.assigned:
                    self.reports.append(self._feed(plan, read[plan.partition]))

    def _feed(self, plan: ReplayPlan, messages: list[Msg]) -> dict:
        """Rebuild ``plan.partition``'s window from ``messages``: scored as a replay, outputs dropped (they
        are on the broker already). No partial can close (the messages are all in one window)."""
        windows = self.stages.windows
        # a window left from an earlier hold of this partition: whoever held it since resumed from the
        # commit, and the replay rebuilds the current window whole
        windows.drop({plan.partition})
        for part in chunks(messages, 1000, 1_000_000):
            t = self.now if self.now is not None else max(m.timestamp for m in part)
            out = self.stages.scoring.process(part, now=t, replay=True)
            if out.partials:   # would mean the replay crossed a window boundary: a bug, never publish it
                log(_log, "replay closed a window (ignored)", level=logging.WARNING, partition=plan.partition,
                    partials=len(out.partials))
        w = windows.open.get(plan.partition)
        events = 0
        if w is not None:
            # the idle timer starts now: the replayed window must not look idle (and ship) before the first fetch
            w.updated_at = time.time()
            events = int(w.sketch.events)
        report = {"partition": plan.partition, "from": plan.start, "to": plan.end, "messages": len(messages),
                  "events": events}
        log(_log, "window replayed", **report)
        self.stages.metrics.window_replayed_events.inc(events)
        return report
