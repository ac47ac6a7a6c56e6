"""The label join's agents: the route task (scores.by_id out) and the label agent (labels and scores.by_id in).

- ``route_scores`` (a task): what :class:`streams.label_route.ScoreRoute` collected on the scoring path,
  handed to the producer at once, on the labels partition of its ids. Faust flushes the producer before it
  commits offsets, and the score agent acks a batch only after its scores were delivered (one produce round
  trip at least after the route records were handed over), so a committed transaction's routed scores are
  on the broker. A failed delivery crashes the worker (``on_error``).
- ``labels`` (an agent on ``labels`` and ``scores.by_id``, co-partitioned): awaits the restore of newly
  assigned partitions (:class:`streams.label_restore.LabelRestore`), joins each micro-batch
  (:class:`streams.label_join.LabelJoiner`), and acks its events (labels and routed scores alike) once the
  label partials and dead letters that hold their outcomes are delivered (:class:`LabelShipper`), every
  ``FLUSH_S`` seconds: a flush takes the events and the counts of the same batches, so the committed
  positions of both topics are those of delivered flushes (:mod:`streams.label_restore`).
- ``flush_labels`` (a timer): gives up on labels that waited too long for a score (``unknown``) and ships.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from breeboost.settings import Settings
from detectors.records import encode_partial
from streams.delivery import publish_records
from streams.frameworks import aiokafka_producer
from streams.label_join import JoinOutcome, LabelJoiner
from streams.label_restore import LabelRestore
from streams.label_route import ScoreRoute
from streams.records import PARTIALS_KEY

__all__ = ["FLUSH_S", "LabelShipper", "install_label_agents"]

#: How often the label agent ships its partials and acks (the label side's commit cadence).
FLUSH_S = 0.5


def _raw(app: Any, *names: str) -> Any:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=None)


class LabelShipper:
    """Hold the label agent's events until the label partials and dead letters holding their outcomes are
    delivered, then ack them (at least once: a crash before the ack re-reads them)."""

    def __init__(self, joiner: LabelJoiner, partials_topic: Any, dlq_topic: Any) -> None:
        self.joiner = joiner
        self.partials_topic = partials_topic
        self.dlq_topic = dlq_topic
        self._events: list[Any] = []
        self._dead: list[tuple[bytes | None, bytes]] = []
        self._last = time.monotonic()

    def hold(self, events: list[Any], out: JoinOutcome) -> None:
        self._events += events
        self._dead += out.dead_letters

    def due(self) -> bool:
        return time.monotonic() - self._last >= FLUSH_S

    async def flush(self) -> None:
        """Ship the partials and dead letters so far, wait for their delivery, ack the events held."""
        self._last = time.monotonic()
        events, self._events = self._events, []
        dead, self._dead = self._dead, []
        partials = [(PARTIALS_KEY, encode_partial(p)) for p in self.joiner.take_partials()]
        futures = await publish_records(self.partials_topic, partials)
        futures += await publish_records(self.dlq_topic, dead)
        if futures:
            await asyncio.gather(*futures)
        for e in events:
            e.ack()


async def _send_routed(app: Any, topic: Any, name: str, route: ScoreRoute, on_error: Callable) -> None:
    def delivered(fut: asyncio.Future) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is not None:
            on_error(exc)

    for partition, key, value in route.take():
        producer = aiokafka_producer(app)
        if producer is not None:   # ~5 us a record against ~40 us through Faust
            fut = await producer.send(name, value, key=key, partition=partition)
        else:
            fut = await topic.send(key=key, value=value, partition=partition)
        fut.add_done_callback(delivered)


def install_label_agents(app: Any, stages: Any, settings: Settings, on_error: Callable,
                         fetch_batches: bool = False) -> LabelRestore:
    """Install the route task, the label agent, its timer and its rebalance receiver (see the module
    docstring) for ``stages`` (a :class:`streams.stages.WorkerStages`); returns the restore lifecycle.

    ``fetch_batches``: the label agent receives each fetch of ``labels`` and ``scores.by_id`` as one
    :class:`streams.fastpath.FetchedBatch` (one label per message runs at Faust's per-event speed
    otherwise, ~10k labels/s a worker); the caller checked :func:`streams.fastpath.supported`."""
    joiner: LabelJoiner = stages.label_join
    route: ScoreRoute = stages.route.activate()
    restore = LabelRestore(joiner, settings, app.conf.id)
    routed = _raw(app, settings.scores_by_id)
    shipper = LabelShipper(joiner, _raw(app, settings.topic_drift_partials), _raw(app, settings.labels_dlq))

    @app.task
    async def route_scores() -> None:
        while True:
            await route.wait()
            try:
                await _send_routed(app, routed, settings.scores_by_id, route, on_error)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # noqa: BLE001 - no hand-over: stop before anything is committed
                on_error(exc)
                return

    async def join(messages: list, acks: list) -> None:
        await restore.ready({m.partition for m in messages})
        shipper.hold(acks, joiner.join(messages))
        if shipper.due():
            await shipper.flush()

    if fetch_batches:
        from streams.fastpath import fetch_batches as batches_of
        from streams.fastpath import while_stream_runs

        batches = batches_of(app, settings.topic_labels)
        batches_of(app, settings.scores_by_id, sink=batches)

        async def join_batches() -> None:
            async for batch in batches:
                await join(batch.messages, [batch])

        @app.agent(_raw(app, settings.topic_labels, settings.scores_by_id), name="labels")
        async def labels_batches(stream: Any) -> None:
            await while_stream_runs(stream, join_batches())
    else:
        @app.agent(_raw(app, settings.topic_labels, settings.scores_by_id), name="labels")
        async def labels(stream: Any) -> None:
            async for events in stream.noack_take(settings.batch_size, within=settings.batch_wait_s):
                await join([e.message for e in events], events)

    @app.timer(FLUSH_S / 2)
    async def flush_labels() -> None:
        restore.apply_done()
        joiner.expire()
        if shipper.due():
            await shipper.flush()

    app.on_partitions_assigned.connect(restore.on_partitions_assigned)
    return restore
