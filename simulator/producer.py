"""Publish simulated transactions to Kafka at a steady rate, with delayed labels and counted deliveries.

Transactions go to ``settings.topic_transactions`` keyed by ``nameOrig`` without ``isFraud`` (one JSON
object per message, or with ``batch > 1`` a JSON array of up to ``batch`` objects keyed by the first
one's ``nameOrig``; payloads that are not JSON objects or are oversized always travel alone). Labels go
to ``settings.topic_labels`` keyed by ``transaction_id``, ``label_delay`` seconds later. ``event_time`` is
re-stamped to the wall clock at publish (minus the ``stale_clock`` lag where that scenario is active).

Every message gets a delivery callback: the summary counts acknowledged and failed events, and events
still unacknowledged when the producer closes count as failed.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Sequence

import numpy as np
import orjson

from breeboost.logs import log
from breeboost.settings import Settings
from simulator.encode import encode_events, is_standalone
from simulator.errors import SimulatorError
from simulator.generator import DEFAULT_START_TIME, TransactionGenerator
from simulator.partition import partitions_for
from simulator.paysim import EVENTS_PER_STEP
from simulator.scenarios import ScheduledScenario, schedule

__all__ = ["PublishOptions", "DeliveryCounter", "Publisher"]

_log = logging.getLogger("breeboost.simulator")


@dataclass
class PublishOptions:
    """What to publish and how fast (see ``breeboost simulate --help``)."""

    seed: int = 0
    count: int | None = None
    duration: float | None = None
    rate: float | None = None
    scenarios: Sequence[ScheduledScenario | str] = ()
    label_delay: float = 2.0
    labels: bool = True
    batch: int = 1
    start_index: int = 0
    events_per_step: int = EVENTS_PER_STEP
    timeout_s: float = 30.0
    wait_labels: bool = True

    def __post_init__(self) -> None:
        if self.count is None and self.duration is None:
            raise ValueError("give count or duration")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count!r}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration!r}")
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be > 0 events/s, got {self.rate!r}")
        if not self.label_delay >= 0:
            raise ValueError(f"label_delay must be >= 0 seconds, got {self.label_delay!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")


@dataclass
class DeliveryCounter:
    """Events acknowledged or failed, per kind; updated from the producer's I/O thread."""

    acked: dict[str, int] = field(default_factory=lambda: {"transactions": 0, "labels": 0})
    failed: dict[str, int] = field(default_factory=lambda: {"transactions": 0, "labels": 0})
    errors: collections.Counter = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ok(self, kind: str, n: int, _metadata: Any = None) -> None:
        with self._lock:
            self.acked[kind] += n

    def fail(self, kind: str, n: int, exc: BaseException) -> None:
        with self._lock:
            self.failed[kind] += n
            self.errors[type(exc).__name__] += n


class Publisher:
    """Runs one publishing session. ``producer``: a kafka-python producer (default: from settings).

    Use :meth:`run`; it returns the summary dict that ``breeboost simulate`` prints.
    """

    def __init__(self, settings: Settings, options: PublishOptions, producer: Any = None,
                 progress: IO[str] | None = None) -> None:
        self.settings = settings
        self.options = options
        self.scenarios = schedule(options.scenarios)
        self.generator = TransactionGenerator(options.seed, self.scenarios, DEFAULT_START_TIME,
                                              options.events_per_step)
        self._encoding = tuple(s for s in self.scenarios if s.scenario.encodes)
        self._producer = producer
        self._progress = progress
        self.counter = DeliveryCounter()
        self._pending: collections.deque = collections.deque()   # (due, [tid bytes], [isFraud])
        self.sent = {"transactions": 0, "labels": 0}
        self.messages = 0
        self.aborted: str | None = None
        self._topic_partitions: dict[str, np.ndarray] = {}

    # -- producer ---------------------------------------------------------------------------------
    def _make_producer(self):
        from kafka.errors import KafkaError

        from breeboost.kafka_io import make_producer

        ms = int(self.options.timeout_s * 1000)
        request_ms = max(1000, ms // 2)
        try:
            return make_producer(self.settings, request_timeout_ms=request_ms, delivery_timeout_ms=ms + 100,
                                 max_block_ms=ms, bootstrap_timeout_ms=ms)
        except KafkaError as e:
            raise SimulatorError(f"cannot connect to Kafka at {self.settings.bootstrap}: {e}") from None

    def _partitions(self, topic: str, keys: np.ndarray) -> list[int]:
        """Partitions of ``keys`` by Kafka's default partitioner, hashed for the whole slice at once."""
        parts = self._topic_partitions.get(topic)
        if parts is None:
            parts = self._topic_partitions[topic] = np.array(sorted(self._producer.partitions_for(topic)))
        return parts[partitions_for(keys, len(parts))].tolist()

    def _send(self, topic: str, kind: str, key: bytes, value: bytes, n: int, partition: int) -> bool:
        try:
            fut = self._producer.send(topic, key=key, value=value, partition=partition)
        except Exception as e:  # noqa: BLE001 - any synchronous failure is a failed delivery
            self._abort(topic, kind, n, e)
            return False
        fut.add_callback(self.counter.ok, kind, n)
        fut.add_errback(self.counter.fail, kind, n)
        self.sent[kind] += n
        self.messages += kind == "transactions"
        return True

    def _abort(self, topic: str, kind: str, n: int, exc: BaseException) -> None:
        """A send that fails synchronously (no metadata within the timeout): count it and stop publishing."""
        self.counter.fail(kind, n, exc)
        self.sent[kind] += n
        self.aborted = f"{type(exc).__name__}: {exc}"
        log(_log, "publish_aborted", level=logging.ERROR, topic=topic, error=self.aborted)

    # -- one slice of events ----------------------------------------------------------------------
    def _publish_slice(self, start: int, n: int) -> None:
        cols = dict(self.generator.batch(start, n))
        index = start + np.arange(n, dtype=np.int64)
        now = time.time()
        cols["event_time"] = np.round(now - self.generator.clock_lag(index), 3)
        payloads = encode_events(cols, with_label=False, scenarios=self._encoding,
                                 seed=self.options.seed, start_index=start)
        topic = self.settings.topic_transactions
        try:
            parts = self._partitions(topic, cols["nameOrig"])
        except Exception as e:  # noqa: BLE001 - no metadata: nothing of this slice can be delivered
            self._abort(topic, "transactions", n, e)
            return
        keys = [k.encode() for k in cols["nameOrig"].tolist()]
        if not self._send_transactions(keys, payloads, parts):
            return
        if self.options.labels:
            self._queue_labels(cols["transaction_id"], cols["isFraud"].tolist())

    def _send_transactions(self, keys: list[bytes], payloads: list[bytes], parts: list[int]) -> bool:
        """Send a slice's transactions in order (grouped into envelopes with ``batch > 1``); False: aborted.
        Shared with :class:`simulator.replay.Replayer`."""
        topic = self.settings.topic_transactions
        b = self.options.batch
        if b == 1:
            for key, value, part in zip(keys, payloads, parts):
                if not self._send(topic, "transactions", key, value, 1, part):
                    return False
        else:
            group: list[bytes] = []
            group_key, group_part = b"", 0
            for key, value, part in zip(keys, payloads, parts):
                if is_standalone(value):
                    if not self._send(topic, "transactions", key, value, 1, part):
                        return False
                    continue
                if not group:
                    group_key, group_part = key, part
                group.append(value)
                if len(group) == b:
                    if not self._send(topic, "transactions", group_key, b"[" + b",".join(group) + b"]", b,
                                      group_part):
                        return False
                    group = []
            if group and not self._send(topic, "transactions", group_key, b"[" + b",".join(group) + b"]",
                                        len(group), group_part):
                return False
        return True

    def _queue_labels(self, tids: np.ndarray, labels: list) -> None:
        """Labels of a sent slice (``tids``: a str array), published by :meth:`_send_due_labels`."""
        # due label_delay after the slice's last send (not its start): no label reaches the topic sooner
        # than label_delay after its transaction, however long encoding and sending the slice took
        self._pending.append((time.time() + self.options.label_delay, tids, labels))

    def _send_due_labels(self, force: bool = False) -> None:
        topic = self.settings.topic_labels
        while self._pending and (force or self._pending[0][0] <= time.time()):
            _, tids, labels = self._pending.popleft()
            at = round(time.time(), 3)
            try:
                parts = self._partitions(topic, tids)
            except Exception as e:  # noqa: BLE001
                self._abort(topic, "labels", len(tids), e)
                return
            for tid, y, part in zip(tids.tolist(), labels, parts):
                value = orjson.dumps({"transaction_id": tid, "isFraud": y, "labelled_at": at})
                if not self._send(topic, "labels", tid.encode(), value, 1, part):
                    return

    # -- the session ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        opt = self.options
        if self._producer is None:
            self._producer = self._make_producer()
        # Small slices keep the pace smooth (and event_time fresh); without a rate, bigger is faster.
        step = 1000 if opt.rate is None else int(min(1000, max(1, opt.rate / 200)))
        t0 = time.monotonic()
        last_progress = t0
        i = opt.start_index
        done = 0
        while not self.aborted:
            if opt.count is not None and done >= opt.count:
                break
            if opt.duration is not None and time.monotonic() - t0 >= opt.duration:
                break
            n = step if opt.count is None else min(step, opt.count - done)
            self._publish_slice(i, n)
            i += n
            done += n
            self._send_due_labels()
            if opt.rate is not None:
                lag = t0 + done / opt.rate - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            if self._progress is not None and time.monotonic() - last_progress > 0.5:
                last_progress = time.monotonic()
                self._print_progress(t0)
        send_seconds = time.monotonic() - t0
        if opt.wait_labels and self._pending and not self.aborted:
            time.sleep(max(0.0, self._pending[-1][0] - time.time()))
        if not self.aborted:
            self._send_due_labels(force=True)
        self._close()
        if self._progress is not None:
            self._print_progress(t0)
            self._progress.write("\n")
        return self._summary(send_seconds, time.monotonic() - t0)

    def _close(self) -> None:
        try:
            self._producer.flush(timeout=self.options.timeout_s)
        except Exception as e:  # noqa: BLE001 - a flush that times out leaves events unacknowledged
            log(_log, "flush_failed", level=logging.WARNING, error=f"{type(e).__name__}: {e}")
        try:
            self._producer.close(timeout=self.options.timeout_s)
        except Exception as e:  # noqa: BLE001
            log(_log, "close_failed", level=logging.WARNING, error=f"{type(e).__name__}: {e}")

    def _print_progress(self, t0: float) -> None:
        el = max(time.monotonic() - t0, 1e-9)
        c = self.counter
        self._progress.write(f"\rsent {self.sent['transactions']:,}  rate {self.sent['transactions'] / el:,.0f}/s  "
                             f"acked {c.acked['transactions']:,}  labels {self.sent['labels']:,}  "
                             f"failed {c.failed['transactions'] + c.failed['labels']:,}   ")
        self._progress.flush()

    def _summary(self, send_seconds: float, seconds: float) -> dict[str, Any]:
        c = self.counter
        sent_tx, sent_lb = self.sent["transactions"], self.sent["labels"]
        # Whatever was handed to the producer but neither acknowledged nor failed by now never will be.
        lost_tx = max(0, sent_tx - c.acked["transactions"] - c.failed["transactions"])
        lost_lb = max(0, sent_lb - c.acked["labels"] - c.failed["labels"])
        failed = c.failed["transactions"] + c.failed["labels"] + lost_tx + lost_lb
        summary = {
            "sent": sent_tx, "acked": c.acked["transactions"], "failed": failed,
            "failed_transactions": c.failed["transactions"] + lost_tx,
            "failed_labels": c.failed["labels"] + lost_lb,
            "labels_sent": sent_lb, "labels_acked": c.acked["labels"],
            "messages": self.messages,
            "seconds": round(seconds, 3), "send_seconds": round(send_seconds, 3),
            "rate": round(sent_tx / send_seconds, 1) if send_seconds > 0 else None,
            "target_rate": self.options.rate, "seed": self.options.seed,
            "first_index": self.options.start_index, "topic": self.settings.topic_transactions,
            "labels_topic": self.settings.topic_labels if self.options.labels else None,
            "scenarios": [s.describe() for s in self.scenarios],
            "errors": dict(c.errors), "aborted": self.aborted,
        }
        log(_log, "publish_done", **{k: v for k, v in summary.items() if k != "scenarios"})
        return summary
