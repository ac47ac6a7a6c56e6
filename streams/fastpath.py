"""The fetch-batch path: a Faust agent that receives each fetch of its topic's partitions as one object.

Faust turns every fetched record into a ``Message``, an ``Event``, a queue hop and an ack (~70 µs a
message on this machine, against ~2-3 µs for aiokafka's own ``getmany`` loop). This module keeps
everything Faust is there for (the consumer group, assignment and the rebalance signals, flow control,
offsets and commits, the agents' lifecycle) and replaces only the per-message hand-over for the topics
that ask for it:

- :class:`BatchConsumer` (a subclass of Faust's aiokafka consumer) takes the records of those topics out
  of each fetch before Faust's per-message loop sees them, and hands them to the topic's
  :class:`BatchSink` as one :class:`FetchedBatch` (the other topics go on through Faust as before).
- The agent reads the sink (``async for batch in sink``) and, once every output of a batch is delivered,
  calls :meth:`FetchedBatch.ack`: the consumer then lets Faust commit, for each partition, the offset
  after the batch's last record (:meth:`BatchConsumer._new_offset`). Batches are acked in the order they
  were fetched (the :class:`streams.delivery.Shipper` acks in submission order), so a commit never passes
  a record whose outputs are not on the broker.
- Rebalances: a batch in flight is in the consumer's unacked set, so Faust's revocation waits for it as for
  an event (``wait_empty``); the sink is a flow-controlled queue that Faust clears on revocation, and a
  batch fetched while the flow is stopped is dropped (Faust then seeks every partition to its committed
  offset before it resumes, so nothing dropped is lost).

:class:`BatchTransport` is how the consumer gets into the app: Faust builds its consumer from
``app.transport.Consumer``, and ``app.transport`` has a public setter. Every Faust/aiokafka internal used
here is listed in :data:`NEEDS` and checked by :func:`supported` (with the version ranges of
:data:`streams.frameworks.TESTED`); the worker takes Faust's per-event path when it fails.

>>> import asyncio
>>> sink = BatchSink(maxsize=1)
>>> async def demo():
...     ok = await sink.put("batch 1", lambda: True)
...     return ok, len(sink), await sink.get(), len(sink)
>>> asyncio.run(demo())
(True, 1, 'batch 1', 0)
"""
from __future__ import annotations

import asyncio
import collections
import logging
from time import monotonic
from typing import Any, Callable

import msgspec
from faust.transport.drivers import aiokafka as _driver
from faust.types.tuples import ack_lock as _ack_lock
from mode.utils.futures import notify as _notify

from breeboost.logs import log
from streams.frameworks import check_versions

__all__ = ["BatchConsumer", "BatchSink", "BatchTransport", "FetchedBatch", "FetchedRecord", "NEEDS", "NEEDS_ON_INSTANCE",
           "fetch_batches", "supported", "while_stream_runs"]

_log = logging.getLogger("breeboost.worker")

#: The Faust consumer methods this path overrides or calls (checked by :func:`supported`), and the
#: attributes of a consumer it reads and updates (checked when one is made).
NEEDS = ("_wait_next_records", "_new_offset", "on_partitions_revoked", "wait_empty", "unacked", "commit",
         "flow_active")
NEEDS_ON_INSTANCE = ("_read_offset", "_acked", "_n_acked", "_waiting_for_ack", "_commit_every")


class FetchedRecord(msgspec.Struct, array_like=True, gc=False):
    """One fetched record as the stages read it (:class:`streams.records.Message`): timestamps in seconds
    as Faust gives them. A msgspec struct: ~0.4 µs to build, against ~2 µs for Faust's ``ConsumerMessage``."""
    topic: str
    partition: int
    offset: int
    timestamp: Any
    key: Any
    value: Any


class FetchedBatch:
    """The records one fetch returned for a topic's partitions (``messages``, each partition's in offset
    order) and, per partition, the offset to commit once they are all handled (``ends``)."""

    __slots__ = ("messages", "ends", "generation", "acked", "refcount", "_consumer", "__weakref__")

    def __init__(self, consumer: Any, messages: list[FetchedRecord], ends: dict[Any, int], generation: int) -> None:
        self.messages = messages
        self.ends = ends
        self.generation = generation
        self.acked = False
        self.refcount = 1          # read by Faust's wait_empty when it logs what it waits for
        self._consumer = consumer

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return f"<FetchedBatch {len(self.messages)} records up to {dict(self.ends)}>"

    @property
    def partitions(self) -> set[int]:
        return {tp.partition for tp in self.ends}

    def ack(self) -> None:
        """Every output of the batch is delivered: its offsets may be committed."""
        self._consumer.ack_batch(self)

    def abandon(self) -> None:
        """The batch will never be acked (its worker is crashing): nothing waits for it any more, and its
        offsets are not committed (a restarted worker reads it again)."""
        self._consumer.unacked.discard(self)


class BatchSink:
    """Fetched batches of one topic on their way from the consumer's fetch loop to the agent: at most
    ``maxsize`` wait (back-pressure on the fetch loop). Faust's flow control clears it on revocation."""

    def __init__(self, maxsize: int = 2) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: collections.deque = collections.deque()
        self._ready: asyncio.Event | None = None
        self._space: asyncio.Event | None = None

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._ready is None:   # made in the running loop (Faust's), not at import
            self._ready, self._space = asyncio.Event(), asyncio.Event()
        return self._ready, self._space

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, batch: Any, active: Callable[[], bool]) -> bool:
        """Queue ``batch``, waiting for room; ``False`` (batch dropped) when ``active()`` turned false
        while waiting (the flow stopped for a rebalance)."""
        ready, space = self._events()
        while len(self._items) >= self.maxsize:
            space.clear()
            await space.wait()
            if not active():
                return False
        self._items.append(batch)
        ready.set()
        return True

    async def get(self) -> Any:
        ready, space = self._events()
        while not self._items:
            ready.clear()
            await ready.wait()
        batch = self._items.popleft()
        space.set()
        return batch

    def clear(self) -> None:
        """Drop every waiting batch (Faust's ``flow_control.clear()`` on revocation and resumption)."""
        self._items.clear()
        if self._space is not None:
            self._space.set()

    def __aiter__(self) -> "BatchSink":
        return self

    async def __anext__(self) -> Any:
        return await self.get()


def supported() -> list[str]:
    """Why the batch path cannot run with the installed Faust (empty: it can)."""
    problems = [p for p in check_versions() if p.startswith(("faust-streaming", "aiokafka"))]
    missing = [name for name in NEEDS if not hasattr(_driver.Consumer, name)]
    if missing:
        problems.append(f"faust's aiokafka Consumer lacks {', '.join(missing)}")
    return problems


class BatchConsumer(_driver.Consumer):
    """Faust's aiokafka consumer, with the records of the transport's batch topics handed over per fetch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        missing = [name for name in NEEDS_ON_INSTANCE if not hasattr(self, name)]
        if missing:
            raise RuntimeError(f"faust's consumer lacks {', '.join(missing)}: set BREEBOOST_FETCH_BATCHES=false")
        self._batch_acked: dict[Any, int] = {}   # tp -> offset after the last acked batch's last record
        self._commit_soon: asyncio.Future | None = None

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        if records and self.flow_active and not self.should_stop:
            for topic, sink in getattr(self.transport, "sinks", {}).items():
                taken = {tp: records.pop(tp) for tp in [tp for tp in records if tp.topic == topic]}
                if taken:
                    await self._hand_over(sink, taken, active)
        return records, active

    async def _hand_over(self, sink: BatchSink, taken: dict[Any, list], active: Any) -> None:
        generation = self.app.consumer_generation_id
        read_offset = self._read_offset
        messages: list[FetchedRecord] = []
        ends: dict[Any, int] = {}
        for tp, recs in taken.items():
            if active is not None and tp not in active:
                continue                     # paused since the fetch: Faust drops these too
            first = read_offset[tp]
            if first is not None and recs[0].offset < first:   # read already (after a seek back)
                recs = [r for r in recs if r.offset >= first]
                if not recs:
                    continue
            messages += [FetchedRecord(r.topic, r.partition, r.offset, r.timestamp / 1000.0, r.key, r.value)
                         for r in recs]
            ends[tp] = recs[-1].offset + 1
            read_offset[tp] = recs[-1].offset
        if not messages:
            return
        # Faust's livelock check logs "Stream has not started processing TP" for a partition with records
        # waiting and no stream inbound time; the batch is this topic's stream (Faust's Stream sets it)
        inbound = getattr(self.app.monitor, "stream_inbound_time", None)
        if inbound is not None:
            now = monotonic()
            for tp in ends:
                inbound[tp] = now
        batch = FetchedBatch(self, messages, ends, generation)
        self.unacked.add(batch)              # a revocation waits for it (Faust's wait_empty)
        if not await sink.put(batch, lambda: self.flow_active):
            self.unacked.discard(batch)      # the flow stopped: Faust seeks back to the commit

    def ack_batch(self, batch: FetchedBatch) -> None:
        """Let Faust commit the batch's ends (at the next commit: every ``broker_commit_every`` acked
        records, or ``broker_commit_interval``)."""
        with _ack_lock:
            if batch.acked:
                return
            batch.acked = True
            self.unacked.discard(batch)
            try:
                if batch.generation != self.app.consumer_generation_id:
                    return   # an earlier assignment's: the partition was read again from its commit since
                acked = self._batch_acked
                for tp, end in batch.ends.items():
                    if end > acked.get(tp, -1):
                        acked[tp] = end
                    self._acked[tp]          # the commit loop goes over the partitions of Faust's map
                self._n_acked += len(batch.messages)
            finally:
                _notify(self._waiting_for_ack)
        every = self._commit_every
        if every and self._n_acked >= every and (self._commit_soon is None or self._commit_soon.done()):
            self._n_acked = 0
            self._commit_soon = asyncio.ensure_future(self.commit())

    async def wait_empty(self) -> None:
        """Faust's wait for every unacked message (on revocation and shutdown), except for batches once the
        app crashed: a crashed worker never acks them (they are read again from the commit)."""
        if self.app.crashed:
            for batch in [m for m in self.unacked if isinstance(m, FetchedBatch)]:
                batch.abandon()
        await super().wait_empty()

    def _new_offset(self, tp: Any) -> int | None:
        end = self._batch_acked.pop(tp, None)
        return end if end is not None else super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self._batch_acked.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class BatchTransport(_driver.Transport):
    """Faust's aiokafka transport whose consumer hands the records of ``sinks``' topics over per fetch."""

    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sinks: dict[str, BatchSink] = {}


def fetch_batches(app: Any, topic: str, maxsize: int = 2, sink: BatchSink | None = None) -> BatchSink:
    """Deliver ``topic``'s records to the returned sink (``sink``, to share one between topics read by
    the same agent), one :class:`FetchedBatch` per fetch and topic, instead of as events. Call before the
    app starts: its consumer is made from ``app.transport``, set here."""
    current = getattr(app, "_transport", None)
    if not isinstance(current, BatchTransport):
        if getattr(app, "_consumer", None) is not None:
            raise RuntimeError("fetch_batches: the app made its consumer already (call it before the app starts)")
        # the consumer is made from app.transport at start-up; the conductor an agent made keeps no reference
        current = app.transport = BatchTransport(app.conf.broker_consumer, app)
    if sink is None:
        sink = BatchSink(maxsize)
        app.flow_control.manage_queue(sink)   # cleared with the agents' queues on revocation
    current.sinks[topic] = sink
    log(_log, "fetch batches", topic=topic)
    return sink


async def while_stream_runs(stream: Any, body: Any) -> None:
    """Run ``body`` (the agent's loop over its sink) for as long as the agent's own ``stream`` runs.

    The stream stays idle (its records go to the sink), but it is how Faust stops an actor: it throws
    StopAsyncIteration into the stream. An agent that only awaited its sink never stopped, so a crashed
    worker waited for it forever instead of exiting 1. An error of ``body`` is raised here (the agent
    crashes as it would on Faust's path)."""
    async def drain() -> None:
        async for _ in stream:
            pass

    tasks = [asyncio.ensure_future(body), asyncio.ensure_future(drain())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
    if tasks[0] in done and not tasks[0].cancelled() and tasks[0].exception() is not None:
        raise tasks[0].exception()
