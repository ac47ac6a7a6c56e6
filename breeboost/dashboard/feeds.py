"""What the dashboard reads from the topics, and how much: small topics whole, busy ones by their tail.

- :class:`TopicFollower`: a small topic (incidents, drift.stats) read whole and followed, in a background
  thread, through the one topic reader (:func:`breeboost.kafka_io.read_topic_json`); it keeps the last
  ``keep`` records.
- :class:`TailReader`: a busy topic (scores, dead letters) read only when a page asks, and never more than
  the last ``budget`` records of each partition: when it has fallen further behind it skips ahead. So the
  dashboard's reads are bounded by its refresh rate, not by the workers' throughput, and a closed
  dashboard reads nothing.

>>> t = TailReader.__new__(TailReader); t.budget = 100
>>> t._start_offset(begin=0, end=1000, position=None), t._start_offset(0, 1000, 950), t._start_offset(0, 50, None)
(900, None, 0)
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable

import orjson

from breeboost.errors import BrokerError
from breeboost.logs import log
from breeboost.settings import Settings

__all__ = ["TopicFollower", "TailReader"]

_log = logging.getLogger("breeboost.dashboard")


class TopicFollower:
    """Follows ``topic`` from its first record, in a daemon thread, keeping the last ``keep`` JSON objects.

    A broker that goes away is retried every ``retry_s``; the re-read starts over, so the kept records are
    replaced, never doubled. ``error`` is the last failure (``None`` while reading)."""

    def __init__(self, settings: Settings, topic: str, keep: int = 5000, retry_s: float = 2.0,
                 reader: Callable[..., Iterable[dict]] | None = None) -> None:
        if keep < 1:
            raise ValueError(f"keep: expected an integer >= 1, got {keep!r}")
        self.settings = settings
        self.topic = topic
        self.keep = keep
        self.retry_s = retry_s
        self.error: str | None = None
        self._reader = reader
        self._records: deque[dict] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "TopicFollower":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"follow-{self.topic}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop following and wait (at most ``timeout_s``) until the reader closed its consumer: a consumer left
        open keeps its client's network thread busy in the process."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def records(self) -> list[dict]:
        """The records read so far, oldest first (a copy)."""
        with self._lock:
            return list(self._records)

    def _run(self) -> None:
        from breeboost.kafka_io import read_topic_json

        reader = self._reader or read_topic_json
        while not self._stop.is_set():
            fresh = True
            try:
                for doc in reader(self.settings, self.topic, idle_timeout_s=None, timeout_s=None, stop=self._stop,
                                  poll_ms=500, topic_wait_s=None):
                    with self._lock:
                        if fresh:   # a (re-)read from the first record replaces what an earlier one kept
                            self._records.clear()
                            fresh = False
                        self._records.append(doc)
                    self.error = None
            except BrokerError as e:
                self.error = str(e)
                log(_log, "topic read failed", level=logging.WARNING, topic=self.topic, error=str(e))
            except Exception as e:  # kafka-python's own errors when the broker restarts
                self.error = f"{type(e).__name__}: {e}"
                log(_log, "topic read failed", level=logging.WARNING, topic=self.topic, error=self.error)
            self._stop.wait(self.retry_s)


class TailReader:
    """The latest records of ``topic``, read on demand (:meth:`poll`), at most ``budget`` per partition a poll.

    Keeps the raw values of the last ``keep`` records (for :meth:`find`) and hands each poll's new ones to
    the caller. Thread-safe: the pages of every browser session share one reader."""

    def __init__(self, settings: Settings, topic: str, budget: int = 2000, keep: int = 50_000,
                 max_poll_s: float = 1.0) -> None:
        if budget < 1:
            raise ValueError(f"budget: expected an integer >= 1, got {budget!r}")
        if keep < 1:
            raise ValueError(f"keep: expected an integer >= 1, got {keep!r}")
        self.settings = settings
        self.topic = topic
        self.budget = budget
        self.keep = keep
        self.max_poll_s = max_poll_s
        self.error: str | None = None
        self.skipped = 0   # records jumped over because the reader was more than ``budget`` behind
        self._raw: deque[bytes] = deque(maxlen=keep)
        self._consumer: Any = None
        self._parts: list[Any] = []
        self._positions: dict[Any, int | None] = {}
        self._lock = threading.Lock()

    def _start_offset(self, begin: int, end: int, position: int | None) -> int | None:
        """Where to seek before reading, or ``None`` to go on from ``position``."""
        target = max(begin, end - self.budget)
        if position is None or position < target:
            return target
        return None

    def _connect(self) -> bool:
        from kafka import TopicPartition

        from breeboost.kafka_io import make_consumer

        if self._consumer is None:
            self._consumer = make_consumer(self.settings, group_id=None, enable_auto_commit=False)
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            self.error = f"topic {self.topic!r} does not exist yet on {self.settings.bootstrap}"
            return False
        if len(parts) != len(self._parts):
            self._parts = [TopicPartition(self.topic, p) for p in sorted(parts)]
            self._consumer.assign(self._parts)
            self._positions = {tp: None for tp in self._parts}
        return True

    def _seek(self, ends: dict[Any, int | None] | None = None) -> None:
        """Skip ahead on every partition more than ``budget`` behind its end. ``ends``: each partition's
        high watermark from the last fetch response (``None``: not known yet; the broker's ListOffsets
        "latest" stands in, which can be one batch short, see docs/broker.md: then one batch more is read)."""
        c = self._consumer
        if ends is None or any(v is None for v in ends.values()):
            listed = c.end_offsets(self._parts)
            ends = {tp: listed[tp] if ends is None or ends.get(tp) is None else ends[tp] for tp in self._parts}
        begins = c.beginning_offsets(self._parts)
        for tp in self._parts:
            pos = self._positions.get(tp)
            to = self._start_offset(begins[tp], ends[tp], pos)
            if to is not None:
                self.skipped += max(0, to - pos) if pos is not None else 0
                self._positions[tp] = to
                c.seek(tp, to)

    def poll(self) -> list[bytes]:
        """The raw values that arrived since the last poll: at most about ``budget`` per partition (the
        newest), read within ``max_poll_s``."""
        with self._lock:
            try:
                if not self._connect():
                    return []
                self._seek()
                out: list[bytes] = []
                deadline = time.monotonic() + self.max_poll_s
                while time.monotonic() < deadline and len(out) < 2 * self.budget * len(self._parts):
                    batch = self._consumer.poll(timeout_ms=100, max_records=self.budget)
                    if not batch:
                        break
                    for tp, records in batch.items():
                        out.extend(r.value for r in records if r.value is not None)
                        self._positions[tp] = records[-1].offset + 1
                    self._seek({tp: self._consumer.highwater(tp) for tp in self._parts})
                self._raw.extend(out)
                self.error = None
                return out
            except Exception as e:  # kafka-python raises NoBrokersAvailable & co.; the page shows it
                self.error = f"cannot read {self.topic!r} at {self.settings.bootstrap}: {type(e).__name__}: {e}"
                self.close_consumer()
                return []

    def find(self, transaction_id: str) -> list[dict]:
        """The kept records (or envelope items) of ``transaction_id``, decoded; newest last."""
        needle = transaction_id
        key = needle.encode()
        with self._lock:
            hits = [raw for raw in self._raw if key in raw]
        out = []
        for raw in hits:
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            out.extend(d for d in (doc if isinstance(doc, list) else [doc])
                       if isinstance(d, dict) and d.get("transaction_id") == transaction_id)
        return out

    def close_consumer(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            finally:
                self._consumer, self._parts = None, []
