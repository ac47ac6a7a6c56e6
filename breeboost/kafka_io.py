"""Kafka client helpers shared by every process: one place that turns :class:`Settings` into client configs.

Security settings (protocol, SASL mechanism/user/password, CA file) go to kafka-python here
(:func:`kafka_security_config`) and to aiokafka (:func:`aiokafka_config`); Faust gets the same settings
in :mod:`streams.faust_config`.

:func:`read_topic` (and :func:`read_topic_json`, its decoded form) is the one way a topic is read from the
start: the audit, ``breeboost report``, ``rca``, ``incidents``, the demo and the tests all go through it.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable, Iterator

from breeboost.errors import BrokerError
from breeboost.settings import Settings

_log = logging.getLogger("breeboost.kafka")


def kafka_security_config(settings: Settings) -> dict[str, Any]:
    """kafka-python keyword arguments for the configured security protocol."""
    cfg: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        cfg.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                   sasl_plain_password=settings.sasl_password.reveal())
    if settings.security_protocol in ("SSL", "SASL_SSL") and settings.ssl_cafile:
        cfg["ssl_cafile"] = settings.ssl_cafile
    return cfg


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    cfg = {"bootstrap_servers": settings.bootstrap.split(","), **kafka_security_config(settings)}
    cfg.update(extra)
    return cfg


def aiokafka_config(settings: Settings) -> dict[str, Any]:
    """The same connection settings for aiokafka clients, which take an SSL context instead of a CA file."""
    import ssl

    cfg = client_config(settings)
    cafile = cfg.pop("ssl_cafile", None)
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        cfg["ssl_context"] = ssl.create_default_context(cafile=cafile)
    return cfg


def compression_type(settings: Settings) -> str | None:
    """The producers' ``compression_type`` (kafka-python, aiokafka and Faust spell it alike)."""
    return None if settings.compression == "none" else settings.compression


def make_producer(settings: Settings, **extra: Any):
    """A kafka-python producer with ``acks=all`` and batching suited to bulk publishing."""
    from kafka import KafkaProducer

    opts = dict(acks="all", linger_ms=5, batch_size=256 * 1024, max_request_size=8 * 1024 * 1024,
                retries=5, request_timeout_ms=30000, compression_type=compression_type(settings))
    opts.update(extra)
    return KafkaProducer(**client_config(settings, **opts))


def make_consumer(settings: Settings, *topics: str, group_id: str | None = None, **extra: Any):
    """A kafka-python consumer with the group timeouts from settings (short ones suit Tansu, see docs)."""
    from kafka import KafkaConsumer

    opts = dict(group_id=group_id, auto_offset_reset="earliest",
                session_timeout_ms=int(settings.session_timeout_s * 1000),
                heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000))
    opts.update(extra)
    return KafkaConsumer(*topics, **client_config(settings, **opts))


def make_admin(settings: Settings):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**client_config(settings, request_timeout_ms=15000))


def ensure_topics(settings: Settings, topics: list[str] | None = None, partitions: int | None = None,
                  compacted: tuple[str, ...] = ()) -> list[str]:
    """Create ``topics`` (default: all of the project's) if missing. Returns the names it created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topics = settings.topics() if topics is None else topics
    n = partitions or settings.partitions
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, n, 1, topic_configs={"cleanup.policy": "compact"} if t in compacted else {})
               for t in topics if t not in existing]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in new]
    finally:
        admin.close()


def wait_for_topics(settings: Settings, topics: list[str], timeout_s: float = 15.0) -> None:
    """Block until the broker's metadata lists every topic (a new topic takes a moment to appear)."""
    from kafka import KafkaConsumer

    c = KafkaConsumer(**client_config(settings, enable_auto_commit=False))
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            missing = set(topics) - set(c.topics())
            if not missing:
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"topics not visible after {timeout_s:.0f}s: {sorted(missing)}")
            time.sleep(0.1)
    finally:
        c.close()


def read_topic(settings: Settings, topic: str, idle_timeout_s: float | None = 3.0, max_records: int | None = None,
               timeout_s: float | None = 120.0, expect: int | None = None, *, since_ms: int | None = None,
               topic_wait_s: float | None = None, stop: threading.Event | None = None,
               poll_ms: int = 200, starts: dict[int, int] | None = None, ends: dict[int, int] | None = None,
               seek_since: bool = False, until_ms: int | None = None,
               enough: Callable[[], bool] | None = None, to_highwater: bool = False) -> Iterator[Any]:
    """Yield the records of ``topic`` from the earliest offset, by assignment (no consumer group, no commits).

    The one way BreeBoost reads a topic from the start (audit, report, RCA, incident tail, demo, tests).
    Partitions are read together; within one poll the records come in partition, then offset order.

    Stops at ``max_records`` yielded; after ``idle_timeout_s`` without a new record once ``expect``
    records (if given) were yielded; after ``timeout_s`` in total; or once ``stop`` is set (each ``None``:
    no such limit). ``since_ms`` skips records with an older timestamp: "only new records" without
    seeking to the end, because this broker's "latest" offsets can be wrong (see docs/broker.md), so end
    offsets are never trusted. A missing topic is waited for up to ``topic_wait_s`` (``None``: up to
    ``timeout_s``), then :class:`BrokerError`; so is a broker that cannot be reached.

    Reading a part only (the retrain, #18): ``starts`` (partition -> first offset) reads only those
    partitions, each from its offset; ``ends`` (partition -> last offset, inclusive) stops a partition once
    it got there, and the read once every partition of ``ends`` did (these offsets come from records seen,
    the drift windows', never from ListOffsets "latest"). ``seek_since``: with ``since_ms``, each partition
    starts at the offset of its first record at or after ``since_ms`` (ListOffsets by timestamp; where the
    broker answers nothing usable, from the earliest offset: the timestamp filter still applies).
    ``until_ms``: a partition is done at its first record newer than ``until_ms`` (not yielded), and the read
    once every partition is. ``enough()``, asked after each poll: True ends the read. ``to_highwater``: a
    partition is done once read up to the first high watermark a fetch response gave for it (what the topic
    held when the read began, not what is published while it runs; never ListOffsets "latest").
    """
    from kafka import KafkaConsumer, TopicPartition

    try:
        c = KafkaConsumer(**client_config(settings, enable_auto_commit=False, group_id=None))
    except Exception as e:  # kafka-python raises NoBrokersAvailable & co.
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {e}") from None
    try:
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        parts = _partitions(c, topic, settings, start, deadline, topic_wait_s, stop)
        tps = [TopicPartition(topic, p) for p in parts if starts is None or p in starts]
        if not tps:
            return
        _position(c, tps, starts, since_ms if seek_since else None)
        open_parts = {tp.partition for tp in tps}
        marks: dict[int, int] = {}    # partition -> the first high watermark seen (to_highwater)
        seen, last = 0, time.monotonic()
        while (deadline is None or time.monotonic() < deadline) and not (stop is not None and stop.is_set()):
            batch = c.poll(timeout_ms=poll_ms)
            now = time.monotonic()
            if to_highwater and not batch:
                _close_at_highwater(c, tps, marks, open_parts)
                if not open_parts:
                    return
            if not batch:
                if idle_timeout_s is not None and now - last > idle_timeout_s and (expect is None or seen >= expect):
                    return
                continue
            last = now
            for tp in sorted(batch, key=lambda t: t.partition):
                if tp.partition not in open_parts:
                    continue
                taken, done = _in_range(batch[tp], None if ends is None else ends.get(tp.partition), until_ms,
                                        since_ms)
                for r in taken:
                    yield r
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return
                if done:
                    open_parts.discard(tp.partition)
                    c.pause(tp)
            if to_highwater:
                _close_at_highwater(c, tps, marks, open_parts)
            if (ends is not None or until_ms is not None or to_highwater) and not open_parts:
                return
            if enough is not None and enough():
                return
    finally:
        c.close()


def _position(consumer: Any, tps: list[Any], starts: dict[int, int] | None, seek_ms: int | None) -> None:
    """Assign ``tps`` and seek: to ``starts`` (partition -> offset), else to the first record at or after
    ``seek_ms``, else to the beginning."""
    consumer.assign(tps)
    consumer.seek_to_beginning()
    if starts is not None:
        for tp in tps:
            consumer.seek(tp, max(0, int(starts[tp.partition])))
    elif seek_ms is not None:
        _seek_to_time(consumer, tps, seek_ms)


def _in_range(records: list[Any], end: int | None, until_ms: int | None, since_ms: int | None) -> tuple[list, bool]:
    """The records of one partition's poll that are in the range asked for, and whether the partition is
    done (past ``end``, an inclusive offset, or newer than ``until_ms``); older than ``since_ms`` skipped."""
    taken = []
    for r in records:
        if (end is not None and r.offset > end) or \
                (until_ms is not None and r.timestamp is not None and r.timestamp > until_ms):
            return taken, True   # past the range or the time asked for
        if since_ms is not None and r.timestamp is not None and r.timestamp < since_ms:
            continue
        taken.append(r)
        if end is not None and r.offset >= end:
            return taken, True
    return taken, False


def _close_at_highwater(consumer: Any, tps: list[Any], marks: dict[int, int], open_parts: set[int]) -> None:
    for tp in tps:
        if tp.partition not in open_parts:
            continue
        if tp.partition not in marks:
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            marks[tp.partition] = hw
        if consumer.position(tp) >= marks[tp.partition]:
            open_parts.discard(tp.partition)
            consumer.pause(tp)


def _seek_to_time(consumer: Any, tps: list[Any], since_ms: int) -> None:
    """Each partition to its first record at or after ``since_ms``; where the broker gives no usable
    answer (an error, or none: no such record yet), the partition stays at its earliest offset."""
    try:
        found = consumer.offsets_for_times({tp: int(since_ms) for tp in tps})
    except Exception as e:   # a broker without ListOffsets by time: read from the start, filtered
        _log.info("offsets_for_times failed (%s): reading %s from the earliest offset", e, tps)
        return
    for tp, ot in (found or {}).items():
        if ot is not None and getattr(ot, "offset", -1) is not None and ot.offset >= 0:
            consumer.seek(tp, ot.offset)


def _partitions(consumer: Any, topic: str, settings: Settings, start: float, deadline: float | None,
                wait_s: float | None, stop: threading.Event | None) -> list[int]:
    """The topic's partition numbers, once the broker's metadata lists the topic."""
    limit = deadline if wait_s is None else min(start + wait_s, deadline or float("inf"))
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts is not None:
            return sorted(parts)
        if (limit is not None and time.monotonic() > limit) or (stop is not None and stop.is_set()):
            raise BrokerError(f"topic {topic!r} does not exist on {settings.bootstrap}")
        time.sleep(0.2)


def read_topic_json(settings: Settings, topic: str, **options: Any) -> Iterator[dict]:
    """The JSON-object records of ``topic`` (see :func:`read_topic` for ``options``), decoded; records
    that are not JSON objects (another producer's) are skipped, as every reader of these topics does."""
    import orjson

    for r in read_topic(settings, topic, **options):
        try:
            doc = orjson.loads(r.value)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(doc, dict):
            yield doc


def unique_suffix() -> str:
    return uuid.uuid4().hex[:8]
