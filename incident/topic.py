"""The ``incidents`` topic: publish events keyed by fingerprint, read them back without a consumer group.

Reads go by assignment from the earliest offset because this broker's "latest" offsets can be wrong
(docs/broker.md); "only new events" is a filter on the record timestamp instead of a seek to the end.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Mapping

from breeboost.errors import BrokerError
from breeboost.kafka_io import client_config, make_producer
from breeboost.settings import Settings
from incident.errors import IncidentError
from incident.events import decode_event, encode_event, event_key, validate_event

__all__ = ["publish_events", "tail_records", "read_events", "read_payloads"]


def publish_events(settings: Settings, events: Iterable[Mapping[str, Any]], producer=None,
                   validate: bool = True, timeout_s: float = 30.0) -> int:
    """Send ``events`` to ``settings.topic_incidents`` keyed by fingerprint and wait for the acks."""
    events = list(events)
    if not events:
        return 0
    own = producer is None
    if own:
        try:
            producer = make_producer(settings, linger_ms=0)
        except Exception as e:  # kafka-python raises NoBrokersAvailable & co.
            raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {e}") from None
    try:
        futures = []
        for e in events:
            if validate:
                validate_event(e)
            futures.append(producer.send(settings.topic_incidents, key=event_key(e), value=encode_event(e)))
        producer.flush(timeout=timeout_s)
        for f in futures:
            f.get(timeout=timeout_s)
        return len(events)
    finally:
        if own:
            producer.close(timeout=5)


def tail_records(settings: Settings, topic: str, timeout_s: float | None = None, max_records: int | None = None,
                 since_ms: int | None = None, idle_timeout_s: float | None = None,
                 poll_ms: int = 200) -> Iterator[Any]:
    """Yield records of ``topic`` from the earliest offset, by assignment (no group, no commits).

    Stops after ``timeout_s`` in total, after ``max_records`` yielded, or after ``idle_timeout_s``
    without a record (each ``None``: no such limit). ``since_ms`` skips records with an older timestamp.
    """
    from kafka import KafkaConsumer, TopicPartition

    try:
        c = KafkaConsumer(**client_config(settings, enable_auto_commit=False, group_id=None))
    except Exception as e:
        raise BrokerError(f"cannot reach Kafka at {settings.bootstrap}: {e}") from None
    try:
        start = time.monotonic()
        deadline = None if timeout_s is None else start + timeout_s
        parts = c.partitions_for_topic(topic)
        while parts is None:
            if time.monotonic() - start > 10 or (deadline is not None and time.monotonic() > deadline):
                raise IncidentError(f"topic {topic!r} does not exist on {settings.bootstrap}")
            time.sleep(0.2)
            parts = c.partitions_for_topic(topic)
        c.assign([TopicPartition(topic, p) for p in sorted(parts)])
        c.seek_to_beginning()
        seen, last = 0, time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            batch = c.poll(timeout_ms=poll_ms)
            now = time.monotonic()
            if not batch:
                if idle_timeout_s is not None and now - last > idle_timeout_s:
                    return
                continue
            last = now
            for tp in sorted(batch, key=lambda t: t.partition):
                for r in batch[tp]:
                    if since_ms is not None and r.timestamp is not None and r.timestamp < since_ms:
                        continue
                    yield r
                    seen += 1
                    if max_records is not None and seen >= max_records:
                        return
    finally:
        c.close()


def read_events(settings: Settings, idle_timeout_s: float = 1.5, timeout_s: float = 60.0) -> list[dict]:
    """Every incident event on the topic now (foreign records skipped)."""
    out = []
    for r in tail_records(settings, settings.topic_incidents, timeout_s=timeout_s, idle_timeout_s=idle_timeout_s):
        e = decode_event(r.value)
        if e is not None:
            out.append(e)
    return out


def read_payloads(settings: Settings, topic: str, idle_timeout_s: float = 1.5, timeout_s: float = 120.0) -> list[dict]:
    """Every JSON-object record of ``topic`` (e.g. ``drift.stats``), in partition then offset order."""
    import orjson

    out = []
    for r in tail_records(settings, topic, timeout_s=timeout_s, idle_timeout_s=idle_timeout_s):
        try:
            doc = orjson.loads(r.value)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out
