"""The Faust application. Agents are short: they take micro-batches, call plain objects, and publish.

- ``score``: ``transactions`` -> :class:`streams.pipeline.ScoringPipeline` -> ``scores``,
  ``transactions.dlq`` and (on window close) ``drift.partials``.
- ``aggregate``: ``drift.partials`` -> :class:`streams.windows.Aggregator` -> ``drift.stats``.
- ``labels``: ``labels`` -> the pipeline's label join (rolling performance, concept drift).
- ``incidents`` (role incident): ``drift.stats`` -> :class:`incident.service.IncidentService` -> ``incidents``.
Timers close windows when traffic stops (Faust's own window close only fires on a later event).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from breeboost.logs import log
from breeboost.settings import Settings
from streams.faust_config import faust_app_kwargs

__all__ = ["create_app", "Publisher", "ROLES", "tune_gc"]

ROLES = ("scoring", "incident", "all")
_log = logging.getLogger("breeboost.worker")


def _raw_topic(app: Any, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=None)


async def _publish(topic: Any, records: list[tuple[bytes | None, bytes]]) -> None:
    """Hand records to the producer; Faust flushes the producer before committing offsets, so a batch's
    outputs are on the broker before its input offsets are committed (at-least-once)."""
    for key, value in records:
        await topic.send(key=key, value=value)


class Publisher:
    """Publish the high-volume outputs (scores, dead letters) straight to the aiokafka producer.

    Why: ``topic.send()`` costs ~40 µs a record in Faust (a FutureMessage, sensors, callbacks, then the
    pure-Python murmur2 partitioner), more than decoding, validating and scoring the event; the aiokafka
    ``send`` ~5 µs, and whole record batches (``create_batch``/``send_batch``) ~1 µs. Each record goes to
    the partition its input came from: outputs are co-partitioned with ``transactions``, which is the partition key hashing gives when the
    input was produced with Kafka's default partitioner. If an output topic has another partition count,
    the producer hashes the key as before. It is the producer Faust flushes before committing input
    offsets, so at-least-once is unchanged.
    """

    def __init__(self, app: Any, input_topic: str) -> None:
        self.app = app
        self.input_topic = input_topic
        self._same: dict[str, bool] = {}   # output topic -> same partition count as the input

    async def publish(self, topic: Any, records: list[tuple[bytes | None, bytes]], partitions: list[int]) -> None:
        if not records:
            return
        producer = getattr(self.app.producer, "_producer", None)   # aiokafka's, once Faust started it
        if producer is None or len(partitions) != len(records):
            await _publish(topic, records)
            return
        name = topic.get_topic_name()
        same = self._same.get(name)
        if same is None:
            n_out = await producer.partitions_for(name)
            n_in = await producer.partitions_for(self.input_topic)
            same = self._same[name] = bool(n_out) and n_out == n_in
        if not same:
            for key, value in records:
                await producer.send(name, value, key=key)
            return
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for record, p in zip(records, partitions):
            by_partition.setdefault(p, []).append(record)
        for p, recs in by_partition.items():
            # whole record batches: ~1 µs a record against ~5 µs for producer.send()
            batch = producer.create_batch()
            for key, value in recs:
                if batch.append(key=key, value=value, timestamp=None) is None:   # full: ship it
                    await producer.send_batch(batch, name, partition=p)
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)   # an empty batch takes any record
            await producer.send_batch(batch, name, partition=p)


def tune_gc() -> None:
    """Fewer, cheaper garbage collections in the worker: a scoring batch allocates a dict per transaction
    (tens of thousands with envelopes), which triggers young collections every 700 allocations and full
    ones that rescan the model, Faust and numpy. Freezing what start-up loaded and collecting the young
    generation every 50k allocations took ~15 % off the batched path's CPU time (``python -m bench``)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def create_app(settings: Settings, role: str, scoring: Any = None, incident_service: Any = None,
               metrics: Any = None, faust_options: dict[str, Any] | None = None,
               model_watcher: Any = None) -> Any:
    """Build the Faust app for ``role``. ``scoring`` is a :class:`streams.pipeline.StreamProcessor`
    (pipeline + aggregator + label join); ``incident_service`` an :class:`incident.service.IncidentService`;
    ``faust_options`` override :func:`streams.faust_config.faust_app_kwargs` (the benchmark compares them)."""
    import faust

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    app = faust.App(f"{settings.group_id}-{role}", **{**faust_app_kwargs(settings), **(faust_options or {})})

    if role in ("scoring", "all"):
        tune_gc()
        tx_topic = _raw_topic(app, settings.topic_transactions)
        scores_topic = _raw_topic(app, settings.topic_scores)
        dlq_topic = _raw_topic(app, settings.topic_dlq)
        partials_topic = _raw_topic(app, settings.topic_drift_partials)
        stats_topic = _raw_topic(app, settings.topic_drift_stats)
        labels_topic = _raw_topic(app, settings.topic_labels)

        publisher = Publisher(app, settings.topic_transactions)

        async def ship(outcome: Any) -> None:
            await publisher.publish(scores_topic, outcome.scores, outcome.score_partitions)
            await publisher.publish(dlq_topic, outcome.dead_letters, outcome.dead_letter_partitions)
            await _publish(partials_topic, outcome.partials)

        @app.agent(tx_topic, name="score")
        async def score(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_s):
                outcome = scoring.process([e.message for e in events])
                await ship(outcome)

        @app.agent(partials_topic, name="aggregate")
        async def aggregate(stream: Any) -> None:
            async for events in stream.take_events(100, within=0.2):
                stats = scoring.aggregate([e.message.value for e in events])
                await _publish(stats_topic, stats)

        @app.agent(labels_topic, name="labels")
        async def labels(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_s):
                scoring.join_labels([e.message for e in events])

        def caught_up(partition: int, last_offset: int) -> bool:
            """Read to the high watermark the last fetch reported (this broker's ListOffsets "latest" can
            be wrong, fetch responses are right); unknown counts as caught up."""
            from faust.types import TP

            hw = app.consumer.highwater(TP(settings.topic_transactions, partition))
            return hw is None or last_offset + 1 >= hw

        def has_backlog(partition: int) -> bool:
            """For a partition this worker holds but has read nothing from since it started: is anything
            waiting? Unknown high watermark (no fetch yet) counts as yes. Faust keeps the position it seeked
            to (the committed offset: the next one to read) in ``_read_offset``."""
            from faust.types import TP

            tp = TP(settings.topic_transactions, partition)
            hw = app.consumer.highwater(tp)
            if hw is None:
                return True
            position = getattr(app.consumer, "_read_offset", {}).get(tp)
            return position < hw if position is not None else hw > 0

        def assigned() -> list[int]:
            return [tp.partition for tp in app.consumer.assignment() if tp.topic == settings.topic_transactions]

        @app.timer(0.5)
        async def close_idle_windows() -> None:
            await ship(scoring.tick(time.time(), caught_up, assigned(), has_backlog))
            await _publish(stats_topic, scoring.aggregate_tick(time.time()))

        if model_watcher is not None:
            @app.timer(2.0)
            async def reload_model() -> None:
                # runs between two micro-batches (one event loop): no batch sees two models
                new = model_watcher.poll()
                if new is not None:
                    await _publish(partials_topic, scoring.reload(new))

    if role in ("incident", "all"):
        stats_in = _raw_topic(app, settings.topic_drift_stats)
        incidents_topic = _raw_topic(app, settings.topic_incidents)

        @app.agent(stats_in, name="incidents")
        async def incidents(stream: Any) -> None:
            async for events in stream.take_events(100, within=0.2):
                out = incident_service.process([e.message.value for e in events])
                await _publish(incidents_topic, out)
                await app.producer.flush()  # events on the broker before the state says they were sent
                incident_service.save_state()

    @app.on_rebalance_complete.connect
    async def on_rebalance(sender: Any, **_: Any) -> None:  # pragma: no cover - logging only
        log(_log, "partitions assigned", assignment=sorted(f"{tp.topic}:{tp.partition}"
                                                          for tp in app.consumer.assignment()))

    return app
