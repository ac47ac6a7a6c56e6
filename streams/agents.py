"""The scoring worker's Faust agents. Each is short: it takes micro-batches, calls one stage, publishes.

- ``score``: ``transactions`` -> :class:`streams.scoring.ScoringStage` -> ``scores``, ``transactions.dlq``
  and (on window close) ``drift.partials``, through the :class:`streams.delivery.Shipper`.
- ``aggregate``: ``drift.partials`` -> :class:`streams.aggregation.DriftAggregator` -> ``drift.stats``.
- ``labels``: ``labels`` + ``scores.by_id`` -> :class:`streams.label_join.LabelJoiner` (:mod:`streams.label_agents`).
- timers: close idle windows and send heartbeats (Faust's own window close only fires on a later event),
  publish windows whose missing partitions went silent, follow the model directory.
- the rebalance lifecycle (:class:`streams.lifecycle.RebalanceLifecycle`) on assignment and revocation.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from breeboost.logs import log
from breeboost.settings import Settings
from streams.delivery import Publisher, Shipper, publish_records, split_by_bytes
from streams.faust_config import restart_livelock_clock
from streams.frameworks import read_position
from streams.label_agents import install_label_agents
from streams.watchdog import StallWatchdog

__all__ = ["InputStalled", "install_scoring_agents", "raw_topic", "tune_gc"]

_log = logging.getLogger("breeboost.worker")


class InputStalled(RuntimeError):
    """Records wait on an input partition the worker holds and it reads none (:mod:`streams.watchdog`)."""


def raw_topic(app: Any, name: str) -> Any:
    """A Faust topic of raw bytes (keys and values are ours to encode)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=None)


def tune_gc() -> None:
    """Fewer, cheaper garbage collections in the worker: a scoring batch allocates many small objects,
    which triggers young collections every 700 allocations and full ones that rescan the model, Faust and
    numpy. Freezing what start-up loaded and collecting the young generation every 50k allocations took
    ~15 % off the batched path's CPU time (``python -m bench``)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def install_scoring_agents(app: Any, stages: Any, lifecycle: Any, settings: Settings,
                           model_watcher: Any = None, fetch_batches: bool = False) -> Shipper:
    """Install the scoring agents, timers and rebalance receivers of ``stages`` (a
    :class:`streams.stages.WorkerStages`) on ``app``; returns the score agent's :class:`Shipper`.

    ``fetch_batches``: the score agent receives each fetch as one batch (:mod:`streams.fastpath`) rather
    than an event per message, when the installed Faust supports it (:func:`streams.fastpath.supported`);
    so does the label agent (``labels`` and ``scores.by_id``). The worker's default
    (``Settings.input_path``)."""
    tune_gc()
    if fetch_batches:
        from streams.fastpath import supported

        problems = supported()
        for problem in problems:
            log(_log, "fetch batches not used: Faust's per-event path instead", level=logging.WARNING,
                problem=problem)
        fetch_batches = not problems

    def crash(exc: BaseException) -> None:
        stages.metrics.consumer_errors.inc()   # a failed hand-over or delivery: the worker stops unacked
        asyncio.ensure_future(app.crash(exc))

    shadow_topic = raw_topic(app, settings.scores_shadow) if settings.shadow != "off" else None
    shipper = Shipper(Publisher(app, settings.topic_transactions), raw_topic(app, settings.topic_scores),
                      raw_topic(app, settings.topic_dlq), raw_topic(app, settings.topic_drift_partials),
                      on_error=crash, shadow_topic=shadow_topic)
    stats_topic = raw_topic(app, settings.topic_drift_stats)

    @app.task
    async def ship_outputs() -> None:
        if shadow_topic is not None:
            await shadow_topic.maybe_declare()   # no agent reads it: Faust would not create it
        await shipper.run()

    _install_score_agent(app, stages, lifecycle, settings, shipper, fetch_batches)

    @app.agent(raw_topic(app, settings.topic_drift_partials), name="aggregate")
    async def aggregate(stream: Any) -> None:
        async for events in stream.take_events(100, within=0.2):
            await lifecycle.aggregator_ready()
            await publish_records(stats_topic, stages.aggregator.aggregate([e.message.value for e in events]))

    # labels: joined to the scores of every worker (scores.by_id, co-partitioned with labels)
    install_label_agents(app, stages, settings, crash, fetch_batches)

    _install_timers(app, stages, lifecycle, settings, shipper, stats_topic, model_watcher)
    app.on_partitions_assigned.connect(lifecycle.on_partitions_assigned)

    async def livelock_clock(sender: Any, assigned: Any, **_: Any) -> None:
        # Faust's livelock check: "since start" is since this assignment
        if not restart_livelock_clock(app):
            log(_log, "Faust's livelock clock not found: its check may log false errors after a rebalance",
                level=logging.WARNING)

    app.on_partitions_assigned.connect(livelock_clock)
    app.on_partitions_revoked.connect(lifecycle.on_partitions_revoked)
    return shipper


def _install_score_agent(app: Any, stages: Any, lifecycle: Any, settings: Settings, shipper: Shipper,
                         fetch_batches: bool) -> None:
    """The ``score`` agent: ``transactions`` -> :class:`streams.scoring.ScoringStage` -> the Shipper, which
    acks the input once its outputs are delivered. Either each fetch of the agent's partitions arrives as
    one :class:`streams.fastpath.FetchedBatch` (``fetch_batches``: ~10 µs a message less than Faust's
    ``Message``/``Event``/queue/ack per message), or Faust's micro-batches of events."""
    topic = raw_topic(app, settings.topic_transactions)

    async def score_parts(messages: list, acks: list) -> None:
        """Score ``messages`` in parts of at most ``batch_max_bytes``; ``acks`` (a batch, or one event per
        message) are acked once the parts holding them are delivered."""
        whole = len(acks) == len(messages)
        for start, end in split_by_bytes(messages, settings.batch_max_bytes):
            part = messages[start:end] if end - start < len(messages) else messages
            done = acks[start:end] if whole else (acks if end == len(messages) else ())
            await shipper.submit(stages.scoring.process(part), done)

    if fetch_batches:
        from streams.fastpath import fetch_batches as batches_of
        from streams.fastpath import while_stream_runs

        batches = batches_of(app, settings.topic_transactions)

        async def score_batches() -> None:
            batch = None
            try:
                async for batch in batches:
                    await lifecycle.ready(batch.partitions)
                    await score_parts(batch.messages, [batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                shipper.fail(exc)   # no ack after this one: a restarted worker reads it again
                if batch is not None:
                    batch.abandon()   # Faust's shutdown must not wait for it
                raise

        @app.agent(topic, name="score")
        async def score(stream: Any) -> None:
            # The stream stays idle (the consumer hands this topic's records to ``batches`` instead), but it
            # is how Faust stops an actor: it throws StopAsyncIteration into the stream, so reading it ends
            # the agent. Without it a crashed worker waited forever for its actor to stop, never exiting 1.
            await while_stream_runs(stream, score_batches())
        return

    @app.agent(topic, name="score")
    async def score_events(stream: Any) -> None:
        # noack_take: Faust's take_events acks a micro-batch when the loop body returns, and also when the
        # body raises (its generator's finally); here the Shipper acks each event once its outputs are
        # delivered, and an error crashes the worker instead of acking what was not published.
        try:
            async for events in stream.noack_take(settings.batch_size, within=settings.batch_wait_s):
                messages = [e.message for e in events]
                await lifecycle.ready({m.partition for m in messages})
                await score_parts(messages, events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            shipper.fail(exc)   # no ack after this one (counted by crash): a restarted worker reads it again
            raise


def _install_timers(app: Any, stages: Any, lifecycle: Any, settings: Settings, shipper: Shipper,
                    stats_topic: Any, model_watcher: Any) -> None:
    position = ConsumerPosition(app, settings.topic_transactions)

    @app.timer(0.5)
    async def close_idle_windows() -> None:
        now = time.time()
        await shipper.submit(stages.windows.tick(now, position.caught_up, position.assigned(), position.has_backlog))
        if not lifecycle.aggregator_restoring:
            await publish_records(stats_topic, stages.aggregator.tick(now))

    if settings.stall_timeout_s > 0:
        watchdog = StallWatchdog(settings.stall_timeout_s)

        @app.timer(5.0)
        async def watch_input() -> None:
            # while the lifecycle re-reads windows the agent waits on purpose: not a stall
            parts = [] if lifecycle.restoring else position.assigned()
            if watchdog.update(time.monotonic(), {p: position.read(p) for p in parts},
                               {p: position.highwater(p) for p in parts}):
                stages.metrics.consumer_errors.inc()
                log(_log, "input stalled: records are waiting and none was read; exiting for the supervisor to "
                    "restart the worker", level=logging.ERROR, stall_timeout_s=settings.stall_timeout_s)
                await app.crash(InputStalled(f"no input read for {settings.stall_timeout_s} s with records waiting"))

    if model_watcher is not None:
        @app.timer(2.0)
        async def reload_model() -> None:
            # runs between two micro-batches (one event loop): no batch sees two models
            new = model_watcher.poll()
            if new is not None:
                await shipper.submit_partials(stages.model.reload(new))
            if settings.shadow != "off":
                changed, challenger = model_watcher.poll_challenger()
                if changed:
                    stages.model.set_shadow(challenger)


class ConsumerPosition:
    """What the window timer asks of the consumer about ``topic``'s partitions."""

    def __init__(self, app: Any, topic: str) -> None:
        self.app = app
        self.topic = topic

    def _tp(self, partition: int) -> Any:
        from faust.types import TP

        return TP(self.topic, partition)

    def caught_up(self, partition: int, last_offset: int) -> bool:
        """Read to the high watermark the last fetch reported (this broker's ListOffsets "latest" can be
        wrong, fetch responses are right); unknown counts as caught up."""
        hw = self.app.consumer.highwater(self._tp(partition))
        return hw is None or last_offset + 1 >= hw

    def has_backlog(self, partition: int) -> bool:
        """For a partition this worker holds but has read nothing from since it started: is anything
        waiting? Unknown high watermark (no fetch yet) counts as yes."""
        tp = self._tp(partition)
        hw = self.app.consumer.highwater(tp)
        if hw is None:
            return True
        position = read_position(self.app, tp)
        return position < hw if position is not None else hw > 0

    def read(self, partition: int) -> int | None:
        return read_position(self.app, self._tp(partition))

    def highwater(self, partition: int) -> int | None:
        return self.app.consumer.highwater(self._tp(partition))

    def assigned(self) -> list[int]:
        return [tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic]
