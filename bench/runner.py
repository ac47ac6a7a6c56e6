"""One consumer process of the bench: ``python -m bench.runner MODE --messages N [...]``, settings from env.

Modes:

- ``raw``: a bare aiokafka ``getmany`` loop over the topic (the client's ceiling).
- ``confluent``: a bare confluent-kafka (librdkafka) ``consume(10000)`` loop over the topic.
- ``noop``: a Faust app with the project's settings whose agent only counts events (the framework floor).
- ``pipeline``: the real worker, wired as :func:`breeboost.worker.build_worker` wires the scoring role, with
  real :class:`streams.stages.WorkerStages` (decode, validate, score, drift windows, publish), the score
  agent on the fetch batches (:mod:`streams.fastpath`).
  ``--path events`` installs the score agent on Faust's per-event path instead of the fetch batches
  (:mod:`streams.fastpath`), for the before/after comparison.
- ``labels``: the real scoring worker (``build_worker``, ``BREEBOOST_INPUT_PATH`` batches or events) over
  pre-filled ``transactions`` and ``labels``: labels joined per second (``breeboost_labels_total{outcome=
  "joined"}``) and transactions scored per second in the same run (:func:`bench.labels_bench.end_to_end`).

Each prints one JSON line: the events counted after the first batch and the seconds from the end of the
first batch to the last (so group-join time and start-up are excluded), and their ratio. The pipeline
run also waits until every output is delivered, so its last score is on the broker when the clock stops.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from breeboost.settings import Settings

__all__ = ["main"]


class Clock:
    """Counts events and keeps the time after the first batch and after the last one."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first_count = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.cpu_first = self.cpu_last = 0.0   # process CPU seconds: robust when other jobs share the cores
        self.samples: list[tuple[float, int, int]] = []   # (t, events, rss_kb) for the memory run

    def add(self, n: int) -> bool:
        self.count += n
        now = time.perf_counter()
        cpu = time.process_time()
        if self.t_first is None:
            self.t_first, self.first_count, self.cpu_first = now, self.count, cpu
        self.t_last, self.cpu_last = now, cpu
        return self.count >= self.target

    def result(self, **extra: Any) -> dict[str, Any]:
        events = self.count - self.first_count
        seconds = (self.t_last or 0.0) - (self.t_first or 0.0)
        cpu = self.cpu_last - self.cpu_first
        now_wall, now_perf = time.time(), time.perf_counter()   # wall clock: comparable across processes
        extra.setdefault("t_first_wall", None if self.t_first is None else now_wall - (now_perf - self.t_first))
        extra.setdefault("t_last_wall", None if self.t_last is None else now_wall - (now_perf - self.t_last))
        return {"events": events, "seconds": round(seconds, 4), "cpu_seconds": round(cpu, 4),
                "rate": round(events / seconds, 1) if seconds > 0 else None,
                "cpu_rate": round(events / cpu, 1) if cpu > 0 else None, "total": self.count, **extra}


def _emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)   # the parent only wants the number; Faust's shutdown takes seconds


async def _raw(settings: Settings, target: int) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                         max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024)
    await c.start()
    tps = [TopicPartition(settings.topic_transactions, p) for p in range(settings.partitions)]
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    clock = Clock(target)
    try:
        while True:
            batch = await c.getmany(timeout_ms=1000, max_records=10_000)
            n = sum(len(v) for v in batch.values())
            if n and clock.add(n):
                return clock.result(mode="raw")
    finally:
        await c.stop()


def _confluent(settings: Settings, target: int) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"{settings.group_id}-confluent",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(settings.topic_transactions, p, 0) for p in range(settings.partitions)])
    clock = Clock(target)
    try:
        while True:
            msgs = c.consume(num_messages=10_000, timeout=1.0)
            if msgs and clock.add(len(msgs)):
                return clock.result(mode="confluent")
    finally:
        c.close()


def faust_options(spec: dict[str, Any]) -> dict[str, Any]:
    """``faust.App`` overrides from JSON; ``{"Monitor": "faust"}`` restores Faust's default Monitor."""
    out = dict(spec)
    if out.get("Monitor") == "faust":
        from faust.sensors import Monitor

        out["Monitor"] = Monitor
    return out


def _faust_app(settings: Settings, name: str, overrides: dict[str, Any]) -> Any:
    import faust

    from streams.faust_config import faust_app_kwargs

    kw = faust_app_kwargs(settings)
    kw.update(faust_options(overrides))
    return faust.App(f"{settings.group_id}-{name}", **kw)


def _noop(settings: Settings, target: int, overrides: dict[str, Any], style: str) -> None:
    import faust

    app = _faust_app(settings, "noop", overrides)
    topic = app.topic(settings.topic_transactions, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=None)
    clock = Clock(target)

    if style == "take":
        @app.agent(topic, name="noop")
        async def noop(stream: Any) -> None:
            async for events in stream.take_events(settings.batch_size, within=settings.batch_wait_s):
                if clock.add(len(events)):
                    _emit(clock.result(mode="noop", style=style))
    else:
        @app.agent(topic, name="noop")
        async def noop_each(stream: Any) -> None:
            async for _event in stream.events():
                if clock.add(1):
                    _emit(clock.result(mode="noop", style=style))

    _run_faust(app)


def _run_faust(app: Any) -> None:
    import faust

    worker = faust.Worker(app, loglevel="WARNING", override_logging=False, redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()


def _pipeline(settings: Settings, target: int, model_dir: str, overrides: dict[str, Any], sample_every: float,
              path: str = "batches") -> None:
    from prometheus_client import CollectorRegistry

    from breeboost.worker import Worker, create_app
    from models.scorer import Scorer
    from streams.agents import install_scoring_agents
    from streams.lifecycle import RebalanceLifecycle
    from streams.metrics import WorkerMetrics
    from streams.scoring import ScoringStage
    from streams.stages import WorkerStages

    clock = Clock(target)
    holder: dict[str, Any] = {}
    next_sample = [0.0]
    spent = [0.0, 0]   # seconds inside ScoringStage.process after the first batch, and calls

    class Counted(ScoringStage):
        """The real scoring stage; counts every transaction it scores or dead-letters."""

        def process(self, messages, now=None, replay=False):  # type: ignore[override]
            t0 = time.perf_counter()
            out = super().process(messages, now, replay)
            if clock.t_first is not None:
                spent[0] += time.perf_counter() - t0
                spent[1] += 1
            n = int(self.metrics.events.labels("scored")._value.get()
                    + self.metrics.events.labels("dead_lettered")._value.get()) - clock.count
            t = time.perf_counter()
            if sample_every and t >= next_sample[0]:
                next_sample[0] = t + sample_every
                clock.samples.append((round(t, 3), clock.count + n, _rss_kb()))
            if clock.add(n) and "done" not in holder:
                holder["done"] = asyncio.ensure_future(_finish())
            return out

    async def _finish() -> None:
        await asyncio.sleep(0)         # let the agent submit this batch's outcome
        await holder["worker"].shipper.wait_idle()   # every output delivered (and its input acked)
        await holder["worker"].app.producer.flush()
        clock.t_last, clock.cpu_last = time.perf_counter(), time.process_time()
        _emit(clock.result(mode="pipeline", rss_kb=_rss_kb(), samples=clock.samples,
                           process_seconds=round(spent[0], 4), batches=spent[1]))

    scorer = Scorer.load(model_dir, nthread=settings.nthread)
    stages = WorkerStages.build(scorer, settings, WorkerMetrics(CollectorRegistry()))
    stages.scoring = Counted(stages.model, settings, stages.windows, stages.recent, stages.metrics)
    # build_worker's scoring role, with the score agent on the fetch batches (streams.fastpath) or on
    # Faust's per-event path
    app = create_app(settings, "scoring", faust_options(overrides))
    lifecycle = RebalanceLifecycle(stages, settings, app.conf.id)
    worker = Worker(app, stages=stages, lifecycle=lifecycle,
                    shipper=install_scoring_agents(app, stages, lifecycle, settings, fetch_batches=path == "batches"))
    holder["worker"], app = worker, worker.app

    @app.on_rebalance_complete.connect
    async def _ready(sender: Any, **_: Any) -> None:
        """Tell the parent which input partitions this worker holds (it starts producing after that)."""
        n = sum(1 for tp in app.consumer.assignment() if tp.topic == settings.topic_transactions)
        sys.stdout.write(json.dumps({"ready": n}) + "\n")
        sys.stdout.flush()
    _run_faust(app)


def _labels(settings: Settings, target: int, model_dir: str, overrides: dict[str, Any], after: bool = False) -> None:
    """The real scoring worker (:func:`breeboost.worker.build_worker`, ``settings.input_path`` as given)
    over pre-filled ``transactions`` and ``labels`` (``target`` of each): the clock starts when the worker
    starts its first batch of either (its first ``process()`` or ``join()`` call: group join and start-up
    excluded) and stops when the ``target``-th label joined (``breeboost_labels_total{outcome="joined"}``,
    the counter its metrics endpoint serves); ``rate`` = labels joined / that span, and ``scoring`` the
    transactions scored over the same start to their last. Stops early 20 s after the last label outcome
    or score count changed (``complete`` false).

    ``after``: the labels come after the scores (the label side's own capacity): the worker prints
    ``{"scored": N}`` once it scored ``target`` transactions (the parent then pre-fills ``labels``) and the
    clock starts at its next ``join()`` call."""
    from prometheus_client import CollectorRegistry

    from breeboost.worker import build_worker
    from models.scorer import Scorer
    from streams.label_join import OUTCOMES
    from streams.metrics import WorkerMetrics
    from streams.stages import WorkerStages

    scorer = Scorer.load(model_dir, nthread=settings.nthread)
    metrics = WorkerMetrics(CollectorRegistry())
    stages = WorkerStages.build(scorer, settings, metrics)
    stamps: dict[str, float] = {}   # perf_counter / process_time of the first call of each stage
    calls = {"process": 0, "join": 0, "label_messages": 0, "routed_messages": 0}

    def first_call(name: str, fn: Any) -> Any:
        def wrapped(messages: Any, *a: Any, **kw: Any) -> Any:
            if name == "process" and "t_process0" not in stamps:
                stamps["t_process0"] = time.perf_counter()
            if "t0" not in stamps and (not after or (name == "join" and "scored" in stamps and any(
                    m.topic == settings.topic_labels for m in messages))):
                stamps["t0"], stamps["cpu0"] = time.perf_counter(), time.process_time()
            calls[name] += 1
            if name == "join":
                calls["label_messages"] += len(messages)
                calls["routed_messages"] += sum(1 for m in messages if m.topic != settings.topic_labels)
            return fn(messages, *a, **kw)
        return wrapped

    stages.scoring.process = first_call("process", stages.scoring.process)
    stages.label_join.join = first_call("join", stages.label_join.join)
    worker = build_worker(settings, "scoring", stages=stages, faust_options=faust_options(overrides))
    app = worker.app

    def value(counter: Any, label: str) -> int:
        return int(counter.labels(label)._value.get())

    @app.task
    async def watch() -> None:
        last_change, last_seen = time.monotonic(), None
        t_scored = None
        while True:
            await asyncio.sleep(0.005)
            n_scored = value(metrics.events, "scored") + value(metrics.events, "dead_lettered")
            if t_scored is None and n_scored >= target:
                t_scored = time.perf_counter()
                if after:
                    await worker.shipper.wait_idle()   # every score delivered, so every route record handed over
                    stamps["scored"] = t_scored
                    sys.stdout.write(json.dumps({"scored": n_scored}) + "\n")
                    sys.stdout.flush()
                    last_change = time.monotonic() + 60.0   # the parent is producing the labels
            outcomes = {o: value(metrics.labels_joined, o) for o in OUTCOMES}
            if (outcomes, n_scored) != last_seen:   # labels wait for their scores: scoring is progress too
                last_seen, last_change = (outcomes, n_scored), time.monotonic()
            complete = outcomes["joined"] >= target
            if complete or time.monotonic() - last_change > 20.0:
                t1, cpu1 = time.perf_counter(), time.process_time()
                t0 = stamps.get("t0", t1)
                span, cpu = t1 - t0, cpu1 - stamps.get("cpu0", cpu1)
                scored_s = (t_scored or t1) - (stamps.get("t_process0", t0) if after else t0)
                _emit({"mode": "labels", "input_path": settings.input_path, "complete": complete, "after": after,
                       "labels": outcomes["joined"], "seconds": round(span, 4), "cpu_seconds": round(cpu, 4),
                       "rate": round(outcomes["joined"] / span, 1) if span > 0 else None,
                       "cpu_rate": round(outcomes["joined"] / cpu, 1) if cpu > 0 else None,
                       "outcomes": outcomes, "calls": calls,
                       # (scores waiting for a label, labels waiting for a score) when the clock stopped
                       "pending": stages.label_join.pending(),
                       "events_by_outcome": {smp.labels["outcome"]: int(smp.value) for mf in metrics.events.collect()
                                             for smp in mf.samples if smp.name.endswith("_total")},
                       "dead_letters": {smp.labels["reason"]: int(smp.value) for mf in metrics.dead_letters.collect()
                                        for smp in mf.samples if smp.name.endswith("_total")},
                       "scoring": {"events": n_scored, "seconds": round(scored_s, 4),
                                   "rate": round(n_scored / scored_s, 1) if scored_s > 0 else None},
                       "rss_kb": _rss_kb(), "consumer_errors": int(metrics.consumer_errors._value.get())})

    _run_faust(app)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.runner")
    p.add_argument("mode", choices=("raw", "confluent", "noop", "pipeline", "labels"))
    p.add_argument("--events", type=int, required=True, help="stop after this many events (transactions)")
    p.add_argument("--model", default=None)
    p.add_argument("--style", choices=("take", "each"), default="take")
    p.add_argument("--faust", default="{}", help="JSON of faust.App settings overriding the project's")
    p.add_argument("--sample-every", type=float, default=0.0, help="RSS sample period, seconds (pipeline)")
    p.add_argument("--path", choices=("batches", "events"), default="batches",
                   help="pipeline: the score agent on fetch batches (default) or on Faust's per-event path")
    p.add_argument("--after", action="store_true", help="labels: the labels come after the scores (see _labels)")
    a = p.parse_args(argv)
    settings = Settings.from_env()
    if a.mode == "raw":
        _emit(asyncio.run(_raw(settings, a.events)))
    elif a.mode == "confluent":
        _emit(_confluent(settings, a.events))
    elif a.mode == "noop":
        _noop(settings, a.events, json.loads(a.faust), a.style)
    elif a.mode == "labels":
        _labels(settings, a.events, a.model, json.loads(a.faust), a.after)
    else:
        _pipeline(settings, a.events, a.model, json.loads(a.faust), a.sample_every, a.path)


if __name__ == "__main__":
    main()
