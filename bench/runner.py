"""One consumer process of the bench: ``python -m bench.runner MODE --messages N [...]``, settings from env.

Modes:

- ``raw``: a bare aiokafka ``getmany`` loop over the topic (the client's ceiling).
- ``noop``: a Faust app with the project's settings whose agent only counts events (the framework floor).
- ``pipeline``: the real worker: :func:`streams.app.create_app` with a real
  :class:`streams.pipeline.StreamProcessor` (decode, validate, score, drift windows, publish).

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


def _pipeline(settings: Settings, target: int, model_dir: str, overrides: dict[str, Any], sample_every: float) -> None:
    from prometheus_client import CollectorRegistry

    from models.scorer import Scorer
    from streams.app import create_app
    from streams.metrics import WorkerMetrics
    from streams.pipeline import StreamProcessor

    clock = Clock(target)
    holder: dict[str, Any] = {}
    next_sample = [0.0]
    spent = [0.0, 0]   # seconds inside StreamProcessor.process after the first batch, and calls

    class Counted(StreamProcessor):
        """The real processor; counts every transaction it scores or dead-letters."""

        def process(self, messages, now=None):  # type: ignore[override]
            t0 = time.perf_counter()
            out = super().process(messages, now)
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
        await holder["app"].score_shipper.wait_idle()   # every output delivered (and its input acked)
        await holder["app"].producer.flush()
        clock.t_last, clock.cpu_last = time.perf_counter(), time.process_time()
        _emit(clock.result(mode="pipeline", rss_kb=_rss_kb(), samples=clock.samples,
                           process_seconds=round(spent[0], 4), batches=spent[1]))

    scorer = Scorer.load(model_dir, nthread=settings.nthread)
    processor = Counted(scorer, settings, metrics=WorkerMetrics(CollectorRegistry()), model_dir=model_dir)
    app = create_app(settings, "scoring", scoring=processor, faust_options=faust_options(overrides))
    holder["app"] = app

    @app.on_rebalance_complete.connect
    async def _ready(sender: Any, **_: Any) -> None:
        """Tell the parent which input partitions this worker holds (it starts producing after that)."""
        n = sum(1 for tp in app.consumer.assignment() if tp.topic == settings.topic_transactions)
        sys.stdout.write(json.dumps({"ready": n}) + "\n")
        sys.stdout.flush()
    _run_faust(app)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.runner")
    p.add_argument("mode", choices=("raw", "noop", "pipeline"))
    p.add_argument("--events", type=int, required=True, help="stop after this many events (transactions)")
    p.add_argument("--model", default=None)
    p.add_argument("--style", choices=("take", "each"), default="take")
    p.add_argument("--faust", default="{}", help="JSON of faust.App settings overriding the project's")
    p.add_argument("--sample-every", type=float, default=0.0, help="RSS sample period, seconds (pipeline)")
    a = p.parse_args(argv)
    settings = Settings.from_env()
    if a.mode == "raw":
        _emit(asyncio.run(_raw(settings, a.events)))
    elif a.mode == "noop":
        _noop(settings, a.events, json.loads(a.faust), a.style)
    else:
        _pipeline(settings, a.events, a.model, json.loads(a.faust), a.sample_every)


if __name__ == "__main__":
    main()
