"""Give a restarted worker back the start of the window that was open when its predecessor died.

Drift windows are offset-aligned per partition (window ``k`` of a partition is its offsets
``[k*S, (k+1)*S)``, see :mod:`streams.windows`) and their sketches live in memory. A worker killed -9
mid-window loses that sketch; whoever takes the partition over resumes from the committed offset ``c``,
so without help the window would be published short by ``c % S`` events (flagged incomplete).

On partition assignment, for each ``transactions`` partition whose committed offset is inside a window
(``c % S != 0``) and whose window is not open in this worker, :class:`WindowReplayer` reads offsets
``[c - c % S, c)`` with a plain consumer (assign + seek, no group membership) and feeds them to the
processor, so the window's sketch gets those events back. Their scores and dead letters were published
(and counted in the metrics) by the worker that scored them before the commit: the replay publishes
nothing and counts them only in ``breeboost_window_replayed_events_total``; their transaction ids do go
into the de-duplication map. A sketch is order-independent counts, so the window ends up exactly as if
one worker had seen all of it. The read starts in Faust's ``on_partitions_assigned`` signal; because
Faust resumes the partitions without waiting for that signal, a guard on ``processor.process`` feeds the
replay before the first new event of its partition is processed, so the window can never close without
it. It reads at most one window's worth of messages per partition; on any error it logs a warning and the
window stays short (flagged incomplete, as before).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable

import orjson

from breeboost.kafka_io import aiokafka_config
from breeboost.logs import log
from breeboost.settings import Settings
from streams.pipeline import Msg

__all__ = ["AggregatorRestorer", "ReplayPlan", "WindowReplayer", "aiokafka_config", "feed_replayed",
           "install_replay", "last_published_window", "plan_replay", "read_range"]

_log = logging.getLogger("breeboost.replay")


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
async def _group_consumer(settings: Settings, group_id: str, timeout_s: float) -> AsyncIterator[Any]:
    """A started aiokafka consumer that knows ``group_id``'s committed offsets without joining the group
    (it reads by assignment); stopped on exit."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50, request_timeout_ms=int(timeout_s * 1000) + 5000,
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


def _chunks(messages: list[Msg], max_messages: int, max_bytes: int) -> Iterable[list[Msg]]:
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


def feed_replayed(processor: Any, messages: list[Msg], now: float | None = None, chunk: int = 1000,
                  chunk_bytes: int = 1_000_000, process: Any = None) -> int:
    """Add ``messages`` to the processor's windows and de-duplication map without publishing anything and
    without counting them in its metrics; returns the events (transactions) the window got back.

    ``now`` is the processing time the sketch's event lags are measured against. By default each chunk
    uses its newest Kafka timestamp, close to when the dead worker scored it: replay time (seconds to
    minutes later) would show the replayed events as late. The outputs of ``process`` (scores, dead
    letters) are dropped: they are on the broker already. No partial can close here (the messages are
    all in one window and the caller drops any other open window of the partition first)."""
    if not messages:
        return 0
    partition = messages[0].partition
    windows = processor.windows
    before = windows.open.get(partition)
    before_events = before.sketch.events if before is not None else 0
    process = process or processor.process
    replay_flag = "replay" in inspect.signature(process).parameters
    saved = processor.metrics
    if not replay_flag:
        processor.metrics = None   # counted by the worker that scored them
    try:
        for part in _chunks(messages, chunk, chunk_bytes):
            t = now if now is not None else max(m.timestamp for m in part)
            out = process(part, now=t, replay=True) if replay_flag else process(part, now=t)
            if out.partials:   # would mean the replay crossed a window boundary: a bug, never publish it
                log(_log, "replay closed a window (ignored)", level=logging.WARNING, partition=partition,
                    partials=len(out.partials))
    finally:
        processor.metrics = saved
    w = windows.open.get(partition)
    if w is None:
        return 0
    # the idle timer starts now: the replayed window must not look idle (and ship) before the first fetch
    w.updated_at = time.time()
    return int(w.sketch.events) - (before_events if before is w else 0)


class WindowReplayer:
    """Re-reads the start of the open window of newly assigned partitions (see the module docstring).

    ``group_id`` is the Faust app id (``f"{settings.group_id}-{role}"``): its committed offsets say where
    the worker resumes. ``metrics`` is a :class:`streams.metrics.WorkerMetrics` (or None).

    Why a thread and a guard: Faust's recovery service resumes the new partitions concurrently with the
    ``on_partitions_assigned`` signal (it does not wait for its receivers), so new events of a partition
    can reach the score agent while its replay is still being read. The read runs in a thread with its own
    event loop (the worker's loop stays free), and :meth:`before_process`, called by the processor before
    each micro-batch (:func:`install_replay`), feeds a pending replay first, waiting for its read if the
    batch holds one of its partitions. So a window always gets its replayed events before any new one and
    never closes without them."""

    def __init__(self, processor: Any, settings: Settings, group_id: str, metrics: Any = None,
                 timeout_s: float = 30.0, now: float | None = None) -> None:
        self.processor = processor
        self.settings = settings
        self.group_id = group_id
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.now = now   # fixed processing time for the sketch's lags (tests); None: Kafka timestamps
        self.process = processor.process    # the unguarded one, for feeding
        self.pending: dict[int, concurrent.futures.Future] = {}   # partition -> its read, not fed yet
        self.assigned: set[int] = set()
        self.reports: list[dict] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="window-replay")
        self.restorer = AggregatorRestorer(processor, settings, group_id, timeout_s)

    # -- reading (in the replay thread) ----------------------------------------------------------
    async def _read(self, partitions: list[int], open_index: dict[int, int]) -> tuple[list[ReplayPlan], dict]:
        from aiokafka import TopicPartition

        topic = self.settings.topic_transactions
        async with _group_consumer(self.settings, self.group_id, self.timeout_s) as consumer:
            plans = []
            for p in partitions:
                c = await asyncio.wait_for(consumer.committed(TopicPartition(topic, p)), self.timeout_s)
                plan = plan_replay(c, self.processor.windows.size, p, open_index.get(p))
                if plan is not None:
                    plans.append(plan)
            return plans, await read_range(consumer, topic, plans, self.timeout_s)

    def _read_blocking(self, partitions: list[int], open_index: dict[int, int]) -> tuple[list[ReplayPlan], dict]:
        return asyncio.run(self._read(partitions, open_index))

    # -- in the worker's event loop ----------------------------------------------------------------
    def start(self, partitions: Iterable[int]) -> concurrent.futures.Future | None:
        """Start reading the replays of ``partitions`` (the worker's whole ``transactions`` assignment);
        partitions already held, or with a read under way, are left alone."""
        partitions = set(partitions)
        new = sorted(partitions - self.assigned - set(self.pending))
        self.assigned = partitions
        if not new:
            return None
        open_index = {p: w.index for p, w in self.processor.windows.open.items()}
        fut = self._executor.submit(self._read_blocking, new, open_index)
        for p in new:
            self.pending[p] = fut
        return fut

    def before_process(self, messages: list[Any]) -> None:
        """Feed pending replays before a micro-batch that holds one of their partitions (waits for the
        read: at most ``2 * timeout_s``, in practice well under a second)."""
        if self.pending and not self.pending.keys().isdisjoint({m.partition for m in messages}):
            self.finish()

    async def ready(self, messages: list[Any]) -> None:
        """:meth:`before_process` without blocking the event loop, for an agent that can await it."""
        if self.pending and not self.pending.keys().isdisjoint({m.partition for m in messages}):
            for fut in set(self.pending.values()):
                await asyncio.wait([asyncio.wrap_future(fut)])
            self.finish()

    def finish(self) -> list[dict]:
        """Feed every pending replay (waiting for its read); one report per partition replayed."""
        done = []
        for fut in dict.fromkeys(self.pending.values()):
            parts = [p for p, f in self.pending.items() if f is fut]
            for p in parts:
                del self.pending[p]
            try:
                plans, read = fut.result(timeout=2 * self.timeout_s + 5)
            except Exception as exc:   # broker unreachable, timeout, ...: run on, the window stays short
                log(_log, "window replay failed: the open windows of these partitions will be short",
                    level=logging.WARNING, partitions=parts, error=repr(exc))
                continue
            for plan in plans:
                if plan.partition in self.assigned:
                    done.append(self._feed(plan, read[plan.partition]))
        self.reports += done
        return done

    def _feed(self, plan: ReplayPlan, messages: list[Msg]) -> dict:
        windows = self.processor.windows
        w = windows.open.get(plan.partition)
        if w is not None:
            # a window left from an earlier hold of this partition: whoever held it since resumed from the
            # commit, and the replay rebuilds the current window whole
            windows.drop({plan.partition})
        events = feed_replayed(self.processor, messages, now=self.now, process=self.process)
        report = {"partition": plan.partition, "from": plan.start, "to": plan.end, "messages": len(messages),
                  "events": events}
        log(_log, "window replayed", **report)
        if self.metrics is not None:
            self.metrics.window_replayed_events.inc(events)
        return report

    async def replay(self, partitions: Iterable[int]) -> list[dict]:
        """Read and feed the replays of ``partitions`` (of ``transactions``, the whole assignment); returns
        one report per partition replayed. Never raises (except cancellation)."""
        fut = self.start(partitions)
        if fut is not None:
            try:
                await asyncio.wrap_future(fut)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass            # reported by finish()
        return self.finish()

    async def on_partitions_assigned(self, sender: Any, assigned: Iterable[Any], **_: Any) -> None:
        """Faust's ``app.on_partitions_assigned`` receiver: the windows of ``transactions`` partitions and,
        if ``drift.partials`` is assigned, the aggregator (:class:`AggregatorRestorer`)."""
        assigned = list(assigned)
        restorer = self.restorer
        fut = restorer.start((tp.partition for tp in assigned if tp.topic == self.settings.topic_drift_partials),
                             self._executor)
        topic = self.settings.topic_transactions
        await self.replay(tp.partition for tp in assigned if tp.topic == topic)
        if fut is not None:
            await restorer.ready()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def last_published_window(consumer: Any, topic: str, timeout_s: float) -> int:
    """The highest ``window.index`` among the last record of each partition of ``drift.stats`` (-1 if
    none). The high watermark comes from a fetch response: this broker's ListOffsets "latest" can be wrong
    (it answered 1 for a partition of 37 records), fetch responses are right."""
    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if parts is None:
        await consumer._client.force_metadata_update()   # noqa: SLF001 - aiokafka has no public refresh
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


class AggregatorRestorer:
    """Gives a restarted aggregator back the partials of windows it had not published yet.

    The aggregate agent commits ``drift.partials`` offsets as it consumes them, while a window waits in
    memory until every partition is final for it; a worker killed -9 loses those partials (a partition
    that ran ahead shipped its share of several pending windows). On assignment of ``drift.partials``
    this reads the last published window ``K`` from ``drift.stats``, sets the aggregator's
    ``published_upto`` to it (re-delivered partials of published windows are then late, not published
    twice), and feeds it the last ``max_messages`` partials before the committed offset, without
    publishing: partials of windows ``<= K`` are ignored, later ones are pending again, heartbeats update
    each partition's progress in order. The next timer tick publishes what is whole."""

    def __init__(self, processor: Any, settings: Settings, group_id: str, timeout_s: float = 30.0,
                 max_messages: int = 20_000) -> None:
        self.processor = processor
        self.settings = settings
        self.group_id = group_id
        self.timeout_s = timeout_s
        self.max_messages = max_messages
        self.pending: concurrent.futures.Future | None = None
        self.assigned: set[int] = set()
        self.reports: list[dict] = []

    async def _read(self, partitions: list[int]) -> tuple[int, list[Msg]]:
        from aiokafka import TopicPartition

        topic = self.settings.topic_drift_partials
        async with _group_consumer(self.settings, self.group_id, self.timeout_s) as consumer:
            plans = []
            for p in partitions:
                c = await asyncio.wait_for(consumer.committed(TopicPartition(topic, p)), self.timeout_s)
                if c:
                    plans.append(ReplayPlan(p, max(0, c - self.max_messages), c))
            last = await last_published_window(consumer, self.settings.topic_drift_stats, self.timeout_s)
            read = await read_range(consumer, topic, plans, self.timeout_s)
            return last, [m for p in sorted(read) for m in read[p]]

    def start(self, partitions: Iterable[int],
              executor: concurrent.futures.Executor) -> concurrent.futures.Future | None:
        """Start the re-read if ``drift.partials`` partitions are newly assigned (and none is under way)."""
        partitions = set(partitions)
        new = sorted(partitions - self.assigned)
        self.assigned = partitions
        if not new or self.pending is not None:
            return None
        self.pending = executor.submit(lambda: asyncio.run(self._read(new)))
        return self.pending

    async def ready(self) -> None:
        """Feed a pending re-read (awaiting it) before new partials are aggregated."""
        if self.pending is not None:
            await asyncio.wait([asyncio.wrap_future(self.pending)])
            self.finish()

    def finish(self) -> dict | None:
        fut, self.pending = self.pending, None
        if fut is None:
            return None
        try:
            last, msgs = fut.result(timeout=3 * self.timeout_s + 5)
        except Exception as exc:
            log(_log, "aggregator restore failed: windows pending at the crash may be short", level=logging.WARNING,
                error=repr(exc))
            return None
        agg = self.processor.aggregator
        agg.published_upto = max(agg.published_upto, last)
        late, now = agg.late, time.time()
        agg.ready = lambda _now: []     # rebuild only; the timer publishes (instance attribute, removed below)
        pending_partials = 0
        try:
            for m in msgs:
                try:
                    partial = orjson.loads(m.value)
                except orjson.JSONDecodeError:
                    continue
                agg.add(partial, now)
                pending_partials += partial.get("kind") != "progress" and partial["window_index"] > agg.published_upto
        finally:
            del agg.ready
            agg.late = late           # not late arrivals: this is a re-read
        report = {"published_upto": agg.published_upto, "messages": len(msgs), "partials": int(pending_partials),
                  "windows_pending": sorted(agg.pending)}
        log(_log, "aggregator restored", **report)
        self.reports.append(report)
        return report


def install_replay(app: Any, processor: Any, settings: Settings, metrics: Any = None) -> WindowReplayer:
    """Connect a :class:`WindowReplayer` (windows and aggregator) to ``app``'s partition assignment, and
    guard ``processor.process`` / ``aggregate`` / ``aggregate_tick`` (instance attributes wrapping the
    methods: the agents call them through ``processor``) so nothing new is processed before the state it
    belongs to is back. An app whose agents await :meth:`WindowReplayer.ready` and
    :meth:`AggregatorRestorer.ready` themselves needs only the ``connect``."""
    replayer = WindowReplayer(processor, settings, app.conf.id, metrics)
    restorer = replayer.restorer
    process, aggregate, aggregate_tick = replayer.process, processor.aggregate, processor.aggregate_tick

    def guarded(messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        replayer.before_process(messages)
        return process(messages, *args, **kwargs)

    def guarded_aggregate(values: list[bytes], *args: Any, **kwargs: Any) -> Any:
        restorer.finish()               # new partials after the re-read ones
        return aggregate(values, *args, **kwargs)

    def guarded_tick(*args: Any, **kwargs: Any) -> Any:
        return [] if restorer.pending is not None else aggregate_tick(*args, **kwargs)

    processor.process, processor.aggregate, processor.aggregate_tick = guarded, guarded_aggregate, guarded_tick
    app.on_partitions_assigned.connect(replayer.on_partitions_assigned)
    return replayer
