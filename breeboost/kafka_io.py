"""Kafka client helpers shared by every process: one place that turns :class:`Settings` into client configs.

Security settings (protocol, SASL mechanism/user/password, CA file) go to kafka-python here and to
Faust in :func:`faust_broker_settings`, so both clients always agree.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Iterator

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


def read_topic(settings: Settings, topic: str, idle_timeout_s: float = 3.0, max_records: int | None = None,
               timeout_s: float = 120.0, expect: int | None = None) -> Iterator[Any]:
    """Yield every record of ``topic`` from the earliest offset, without a consumer group.

    Stops after ``idle_timeout_s`` without a new record once ``expect`` records (if given) were seen,
    at ``max_records``, or at ``timeout_s``. Reads by assignment because this broker's "latest" offsets
    can be wrong (see docs/broker.md), so end offsets are never trusted.
    """
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(**client_config(settings, enable_auto_commit=False, group_id=None,
                                      consumer_timeout_ms=int(idle_timeout_s * 1000)))
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while parts is None:
            parts = c.partitions_for_topic(topic)
            if parts is None:
                if time.monotonic() > deadline:
                    raise BrokerError(f"topic {topic!r} does not exist")
                time.sleep(0.2)
        c.assign([TopicPartition(topic, p) for p in sorted(parts)])
        c.seek_to_beginning()
        seen = 0
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = c.poll(timeout_ms=200)
            if batch:
                last = time.monotonic()
                for records in batch.values():
                    for r in records:
                        yield r
                        seen += 1
                        if max_records is not None and seen >= max_records:
                            return
            elif time.monotonic() - last > idle_timeout_s and (expect is None or seen >= expect):
                return
    finally:
        c.close()


def unique_suffix() -> str:
    return uuid.uuid4().hex[:8]
