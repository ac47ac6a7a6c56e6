"""The label join's rebalance lifecycle: a labels partition's state rebuilt from the topics on assignment.

The pending scores and early labels of a labels partition live in memory (:mod:`streams.label_join`); a
worker killed -9 loses them, and a rebalance moves the partition to another worker. Whoever is assigned
labels partition ``p`` (and so scores.by_id partition ``p``: the label agent reads both, co-partitioned)
re-reads, before it joins any new record of ``p``:

- scores.by_id ``p`` backwards from the group's committed offset, in chunks, until the records read hold
  twice ``label_horizon_count`` scores or reach twice ``label_horizon_s`` before the newest in both stream and
  publish time (what :class:`streams.label_pending.PendingScores` would keep), or the start of the partition. Not past
  the commit: the label agent acks labels and routed scores together once the outcomes of their batches are
  delivered, so a join of a committed label with a committed score was shipped, and one with a score past
  the commit (a label that was waiting for it) is made, and counted, when the agent reads the score again;
- labels ``p``: the ``EARLY_LABELS`` messages before the committed offset (labels that came before their
  score and were still waiting; older ones were joined or given up on by the previous owner).

Both go to :meth:`streams.label_join.LabelJoiner.restore` (quietly: what the previous owner counted is not
counted again). Offsets after the commit are read again by the agent as usual, so a label whose outcome
the previous owner counted but did not commit is counted twice (at least once, never lost). Partitions no
longer assigned are dropped. The read runs as a task; the agent awaits :meth:`ready` for the partitions of
each micro-batch.
"""
from __future__ import annotations

import asyncio
import math
import logging
import time
from typing import Any, Iterable

import msgspec

from breeboost.logs import log
from breeboost.settings import Settings
from streams.label_join import EARLY_LABELS, LabelJoiner
from streams.label_route import decode_routed
from streams.records import Msg
from streams.reread import ReplayPlan, group_consumer, read_range

__all__ = ["LabelRestore"]

_log = logging.getLogger("breeboost.labels")


class LabelRestore:
    """Rebuild the join state of newly assigned labels partitions (see the module docstring). ``chunk``:
    scores.by_id records read per step backwards."""

    def __init__(self, joiner: LabelJoiner, settings: Settings, group_id: str, timeout_s: float = 60.0,
                 chunk: int = 2000) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.joiner = joiner
        self.settings = settings
        self.group_id = group_id
        self.timeout_s = timeout_s
        self.chunk = chunk
        self.held: set[int] = set()
        self.pending: dict[int, asyncio.Task] = {}
        self.reports: list[dict] = []

    async def on_partitions_assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        self.on_assigned(assigned)

    def on_assigned(self, assigned: Iterable[Any]) -> None:
        """The whole new assignment: drop the labels partitions gone, start the reads of the new ones."""
        parts = {tp.partition for tp in assigned if tp.topic == self.settings.topic_labels}
        gone = self.held - parts
        for p in gone:
            task = self.pending.pop(p, None)
            if task is not None and not any(t is task for t in self.pending.values()):
                task.cancel()
        self.joiner.drop(gone)
        new = sorted(parts - self.held)
        self.held = parts
        if new:
            task = asyncio.ensure_future(self._read(new))
            for p in new:
                self.pending[p] = task

    async def ready(self, partitions: Iterable[int]) -> None:
        """Before a micro-batch of ``partitions``: await their reads, then apply every read done."""
        waiting = {self.pending[p] for p in partitions if p in self.pending}
        if waiting:
            await asyncio.wait(waiting)
        self.apply_done()

    def apply_done(self) -> None:
        """Apply every read done (also called by the label timer: a partition that gets no new record
        after its assignment is restored all the same, so its expiry and counts start from its state)."""
        for p, task in list(self.pending.items()):
            if not task.done():
                continue
            del self.pending[p]
            try:
                scores, labels = task.result()[p]
            except Exception as e:   # noqa: BLE001 - the join goes on from empty state (labels may be unknown)
                log(_log, "label join restore failed: labels of scores before the commit may be unknown",
                    level=logging.WARNING, partition=p, error=repr(e))
                continue
            report = self.joiner.restore(p, scores, labels)
            self.reports.append(report)
            log(_log, "label join restored", **report)

    async def _read(self, partitions: list[int]) -> dict[int, tuple[list[Msg], list[Msg]]]:
        from aiokafka import TopicPartition

        s = self.settings
        out: dict[int, tuple[list[Msg], list[Msg]]] = {}
        async with group_consumer(s, self.group_id, self.timeout_s) as consumer:
            for p in partitions:
                cs = await consumer.committed(TopicPartition(s.scores_by_id, p))
                cl = await consumer.committed(TopicPartition(s.topic_labels, p))
                scores = await self._scores_before(consumer, p, cs or 0)
                labels = (await read_range(consumer, s.topic_labels, [ReplayPlan(p, max(0, cl - EARLY_LABELS), cl)],
                                           self.timeout_s))[p] if cl else []
                cutoff = time.time() - s.label_wait_s
                out[p] = scores, [m for m in labels if (m.timestamp or 0) >= cutoff]
        return out

    async def _scores_before(self, consumer: Any, partition: int, end: int) -> list[Msg]:
        """The scores.by_id records before ``end`` that the horizon would still hold, in offset order."""
        s = self.settings
        chunks: list[list[Msg]] = []
        ids, newest, newest_at = 0, -math.inf, -math.inf
        while end > 0:
            start = max(0, end - self.chunk)
            msgs = (await read_range(consumer, s.scores_by_id, [ReplayPlan(partition, start, end)],
                                     self.timeout_s))[partition]
            chunks.append(msgs)
            oldest, oldest_at = math.inf, math.inf
            for m in msgs:
                try:
                    rec = decode_routed(m.value or b"")
                except msgspec.DecodeError:
                    continue
                ids += len(rec.ids)
                newest, oldest = max(newest, rec.event_time_max), min(oldest, rec.event_time_max)
                newest_at, oldest_at = max(newest_at, m.timestamp or 0.0), min(oldest_at, m.timestamp or 0.0)
            end = start
            # PendingScores keeps a score until the count bound, or twice the horizon on both clocks
            if ids >= 2 * s.label_horizon_count or (oldest < newest - 2 * s.label_horizon_s
                                                    and oldest_at < newest_at - 2 * s.label_horizon_s):
                break
        return [m for msgs in reversed(chunks) for m in msgs]
