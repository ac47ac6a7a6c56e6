"""Re-reading a topic range with aiokafka: what the rebalance lifecycle needs to restore state.

A plain consumer that knows a group's committed offsets without joining the group (it reads by
assignment), and readers of ``[start, end)`` ranges and of a topic's last records. The high watermark
always comes from a fetch response: this broker's ListOffsets "latest" can be wrong.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable

import orjson

from breeboost.kafka_io import aiokafka_config
from breeboost.settings import Settings
from streams.frameworks import refresh_metadata
from streams.records import Msg

__all__ = ["ReplayPlan", "chunks", "group_consumer", "last_published_window", "plan_replay", "read_range"]


@dataclass(frozen=True)
class ReplayPlan:
    """Re-read ``[start, end)`` of ``partition`` (``end`` = the committed offset)."""
    partition: int
    start: int
    end: int


def plan_replay(committed: int | None, size: int, partition: int, open_index: int | None = None) -> ReplayPlan | None:
    """What to re-read for ``partition`` resuming at ``committed``: nothing at a window boundary, without a
    committed offset, or when this worker already has that window open (``open_index``).

    >>> plan_replay(2500, 1000, 3), plan_replay(3000, 1000, 3), plan_replay(2500, 1000, 3, open_index=2)
    (ReplayPlan(partition=3, start=2000, end=2500), None, None)
    """
    if committed is None or committed <= 0 or committed % size == 0:
        return None
    if open_index is not None and open_index == committed // size:
        return None
    return ReplayPlan(partition, committed - committed % size, committed)


@contextlib.asynccontextmanager
async def group_consumer(settings: Settings, group_id: str, timeout_s: float) -> AsyncIterator[Any]:
    """A started aiokafka consumer that knows ``group_id``'s committed offsets without joining the group
    (it reads by assignment); stopped on exit."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                request_timeout_ms=int(timeout_s * 1000) + 5000,
                                **aiokafka_config(settings))
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
        yield consumer
    finally:
        try:
            await consumer.stop()
        except Exception:   # pragma: no cover - closing a consumer that never connected
            pass


async def read_range(consumer: Any, topic: str, plans: list[ReplayPlan], timeout_s: float) -> dict[int, list[Msg]]:
    """The messages at ``[plan.start, plan.end)`` of each plan's partition, read by assignment (``consumer``
    must be started; it is re-assigned here). Never more than ``end - start`` messages a partition.
    Raises ``TimeoutError`` when a range is not read within ``timeout_s``."""
    from aiokafka import TopicPartition

    tps = {TopicPartition(topic, p.partition): p for p in plans}
    out: dict[int, list[Msg]] = {p.partition: [] for p in plans}
    if not tps:
        return out
    consumer.assign(list(tps))
    for tp, p in tps.items():
        consumer.seek(tp, p.start)
    todo = set(tps)
    deadline = time.monotonic() + timeout_s
    while todo:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"replay of {sorted(tp.partition for tp in todo)} not read within {timeout_s}s")
        batch = await consumer.getmany(*todo, timeout_ms=int(min(left, 0.5) * 1000))
        for tp, records in batch.items():
            if tp not in todo:
                continue
            end = tps[tp].end
            msgs = out[tp.partition]
            for r in records:
                if r.offset >= end:
                    break
                # Kafka timestamps are ms; the pipeline's (Faust's) are seconds
                msgs.append(Msg(r.topic, r.partition, r.offset, r.value, r.key, r.timestamp / 1000.0))
        for tp in list(todo):
            # the position, not the last offset seen: offsets may have gaps (compaction, transactions)
            if await consumer.position(tp) >= tps[tp].end:
                todo.discard(tp)
                consumer.pause(tp)
    return out


def chunks(messages: list[Msg], max_messages: int, max_bytes: int) -> Iterable[list[Msg]]:
    """Consecutive runs of at most ``max_messages`` messages and ``max_bytes`` bytes (a larger message is a
    run of its own): bounds what one ``process`` call holds when the messages are batch envelopes."""
    start, size = 0, 0
    for i, m in enumerate(messages):
        n = len(m.value or b"")
        if i > start and (i - start >= max_messages or size + n > max_bytes):
            yield messages[start:i]
            start, size = i, 0
        size += n
    if start < len(messages):
        yield messages[start:]


async def last_published_window(consumer: Any, topic: str, timeout_s: float) -> int:
    """The highest ``window.index`` among the last record of each partition of ``drift.stats`` (-1 if
    none). The high watermark comes from a fetch response: this broker's ListOffsets "latest" can be wrong
    (it answered 1 for a partition of 37 records), fetch responses are right."""
    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await refresh_metadata(consumer)
        parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    if not tps:
        return -1
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no high watermark for {topic} within {timeout_s}s")
        await consumer.getmany(*tps, timeout_ms=200, max_records=1)
    last = -1
    plans = [ReplayPlan(tp.partition, consumer.highwater(tp) - 1, consumer.highwater(tp))
             for tp in tps if consumer.highwater(tp) > 0]
    for msgs in (await read_range(consumer, topic, plans, timeout_s)).values():
        for m in msgs:
            try:
                last = max(last, int(orjson.loads(m.value)["window"]["index"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                pass
    return last
