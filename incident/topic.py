"""The ``incidents`` topic: publish events keyed by fingerprint, read them back without a consumer group.

Reads go through the one topic reader, :func:`breeboost.kafka_io.read_topic` (by assignment from the
earliest offset; "only new events" is its ``since_ms`` filter on the record timestamp).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from breeboost.errors import BrokerError
from breeboost.kafka_io import make_producer, read_topic
from breeboost.settings import Settings
from incident.events import decode_event, encode_event, event_key, validate_event

__all__ = ["publish_events", "read_events", "TOPIC_WAIT_S"]

#: Seconds a reader waits for the topic to exist before it says it does not.
TOPIC_WAIT_S = 10.0


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


def read_events(settings: Settings, idle_timeout_s: float = 1.5, timeout_s: float = 60.0) -> list[dict]:
    """Every incident event on the topic now (foreign records skipped), read with
    :func:`breeboost.kafka_io.read_topic` until ``idle_timeout_s`` pass without a record."""
    out = []
    for r in read_topic(settings, settings.topic_incidents, idle_timeout_s=idle_timeout_s, timeout_s=timeout_s,
                        topic_wait_s=TOPIC_WAIT_S):
        e = decode_event(r.value)
        if e is not None:
            out.append(e)
    return out
