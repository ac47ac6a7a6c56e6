"""Delivery: the worker's outputs on the broker before its inputs are acked.

:class:`Publisher` hands records to the aiokafka producer in whole record batches; :class:`Shipper` is the
delivery object of the score agent: it publishes each micro-batch's :class:`streams.records.Outcome` in
the background, in order, and acks the batch's input events only once all of it is delivered.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from breeboost.logs import log
from streams.frameworks import aiokafka_producer
from streams.records import Outcome

__all__ = ["Publisher", "Shipper", "publish_records", "split_by_bytes"]

_log = logging.getLogger("breeboost.worker")


async def publish_records(topic: Any, records: list[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
    """Hand records to the producer through Faust; returns their delivery futures."""
    return [await topic.send(key=key, value=value) for key, value in records]


class Publisher:
    """Publish the high-volume outputs (scores, dead letters) straight to the aiokafka producer.

    Why: ``topic.send()`` costs ~40 µs a record in Faust (a FutureMessage, sensors, callbacks, then the
    pure-Python murmur2 partitioner), more than decoding, validating and scoring the event; the aiokafka
    ``send`` ~5 µs, and whole record batches (``create_batch``/``send_batch``) ~1 µs. Each record goes to
    the partition its input came from: outputs are co-partitioned with ``transactions``, which is the
    partition key hashing gives when the input was produced with Kafka's default partitioner. If an output
    topic has another partition count, the producer hashes the key as before. :meth:`publish` returns the
    delivery futures, which :class:`Shipper` waits for before acking the inputs.
    """

    def __init__(self, app: Any, input_topic: str) -> None:
        self.app = app
        self.input_topic = input_topic
        self._same: dict[str, bool] = {}   # output topic -> same partition count as the input

    async def publish(self, topic: Any, records: list[tuple[bytes | None, bytes]],
                      partitions: list[int]) -> list[asyncio.Future]:
        if not records:
            return []
        producer = aiokafka_producer(self.app)   # aiokafka's, once Faust started it
        if producer is None or len(partitions) != len(records):
            return await publish_records(topic, records)
        name = topic.get_topic_name()
        same = self._same.get(name)
        if same is None:
            n_out = await producer.partitions_for(name)
            n_in = await producer.partitions_for(self.input_topic)
            same = self._same[name] = bool(n_out) and n_out == n_in
        if not same:
            return [await producer.send(name, value, key=key) for key, value in records]
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for record, p in zip(records, partitions):
            by_partition.setdefault(p, []).append(record)
        futures = []
        for p, recs in by_partition.items():
            # whole record batches: ~1 µs a record against ~5 µs for producer.send()
            batch = producer.create_batch()
            for key, value in recs:
                if batch.append(key=key, value=value, timestamp=None) is None:   # full: ship it
                    futures.append(await self._send(producer, batch, name, p))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)   # an empty batch takes any record
            futures.append(await self._send(producer, batch, name, p))
        return futures

    @staticmethod
    async def _send(producer: Any, batch: Any, topic: str, partition: int) -> asyncio.Future:
        # Closed: complete, so the sender takes it at once instead of lingering ``producer_linger`` for
        # records that will never come. Waits while the partition's previous batch is not yet sent.
        batch.close()
        return await producer.send_batch(batch, topic, partition=partition)


class Shipper:
    """Publishes the score agent's outputs in the background, in order, and acks the input events only
    once every output of their micro-batch is delivered (at-least-once, by delivery rather than by
    Faust's flush-before-commit).

    Why a task: aiokafka takes a partition's next record batch only after the previous one was sent, so
    an agent that publishes inline waits for the broker between micro-batches; here the agent scores
    micro-batch k+1 while k is sent. Order: one task hands the outcomes over in submission order (per
    partition, the producer keeps that order), and acks are made in submission order too, so a commit
    never passes an input whose outputs are not on the broker. ``max_pending`` outcomes may wait
    (back-pressure on the agent). A failed delivery or hand-over stops acking and crashes the worker
    (``on_error``): restarted, it reads again from the last commit.
    """

    def __init__(self, publisher: Publisher, scores_topic: Any, dlq_topic: Any, partials_topic: Any,
                 on_error: Any, max_pending: int = 2, shadow_topic: Any = None) -> None:
        self.publisher = publisher
        self.scores_topic, self.dlq_topic, self.partials_topic = scores_topic, dlq_topic, partials_topic
        self.shadow_topic = shadow_topic    # the challenger's scores (None: they are not published)
        self.on_error = on_error
        self.max_pending = max_pending
        self.error: BaseException | None = None
        self._queue: asyncio.Queue | None = None
        self._inflight: collections.deque[tuple[asyncio.Future, Any]] = collections.deque()
        self._unfinished = 0                     # submitted, not yet acked
        self._idle: asyncio.Event | None = None

    def _ensure(self) -> asyncio.Queue:
        if self._queue is None:   # made in the running loop (Faust's), not at import
            self._queue = asyncio.Queue(self.max_pending)
            self._idle = asyncio.Event()
            self._idle.set()
        return self._queue

    async def submit(self, outcome: Any, events: Any = ()) -> None:
        """Queue ``outcome`` (a :class:`streams.records.Outcome`) and the events to ack once it is
        delivered; waits while ``max_pending`` outcomes are queued."""
        if self.error is not None:
            raise self.error
        if not events and not outcome:
            return
        queue = self._ensure()
        self._unfinished += 1
        self._idle.clear()
        await queue.put((outcome, events))

    async def submit_partials(self, partials: list[tuple[bytes | None, bytes]]) -> None:
        if partials:
            await self.submit(Outcome(partials=partials))

    async def wait_idle(self) -> None:
        """Until everything submitted is delivered and acked (or shipping failed)."""
        self._ensure()
        await self._idle.wait()
        if self.error is not None:
            raise self.error

    async def run(self) -> None:
        """The shipping loop (an app task)."""
        queue = self._ensure()
        loop = asyncio.get_running_loop()
        while self.error is None:
            outcome, events = await queue.get()
            try:
                futures = await self.publisher.publish(self.scores_topic, outcome.scores, outcome.score_partitions)
                futures += await self.publisher.publish(self.dlq_topic, outcome.dead_letters,
                                                        outcome.dead_letter_partitions)
                futures += await publish_records(self.partials_topic, outcome.partials)
                if outcome.shadow_scores and self.shadow_topic is not None:
                    futures += await self.publisher.publish(self.shadow_topic, outcome.shadow_scores,
                                                            outcome.shadow_partitions)
            except Exception as exc:
                self.fail(exc)
                return
            if futures:
                delivered = asyncio.gather(*futures)
            else:
                delivered = loop.create_future()
                delivered.set_result(None)
            self._inflight.append((delivered, events))
            delivered.add_done_callback(self._on_delivered)

    def _on_delivered(self, _done: asyncio.Future) -> None:
        inflight = self._inflight
        while inflight and inflight[0][0].done() and self.error is None:
            delivered, events = inflight.popleft()
            exc = asyncio.CancelledError() if delivered.cancelled() else delivered.exception()
            if exc is not None:
                self.fail(exc)
                return
            for event in events:
                event.ack()          # Faust commits an offset once it and every offset before it are acked
            self._unfinished -= 1
        if not self._unfinished and self._idle is not None:
            self._idle.set()

    def fail(self, exc: BaseException) -> None:
        """Stop acking for good and crash the worker (``on_error``): nothing after ``exc`` is committed."""
        if self.error is None:
            self.error = exc
            log(_log, "publishing failed: stopping without acking the unpublished events", level=logging.ERROR,
                error=repr(exc))
            if self._idle is not None:
                self._idle.set()
            self.on_error(exc)


def split_by_bytes(messages: list[Any], max_bytes: int) -> list[tuple[int, int]]:
    """``(start, end)`` index ranges of ``messages`` whose values add up to at most ``max_bytes`` (a single
    larger message is a range of its own). Bounds the transactions one ``process()`` call holds: with batch
    envelopes a take of ``batch_size`` messages can carry hundreds of thousands of transactions."""
    ranges, start, size = [], 0, 0
    for i, m in enumerate(messages):
        n = len(m.value or b"")
        if size + n > max_bytes and i > start:
            ranges.append((start, i))
            start, size = i, 0
        size += n
    ranges.append((start, len(messages)))
    return ranges
