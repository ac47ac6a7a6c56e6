"""Faust application settings derived from :class:`Settings`, valid for the embedded broker and Apache Kafka."""
from __future__ import annotations

import functools
import os
import ssl
import tempfile
from time import monotonic
from typing import Any

from breeboost.kafka_io import compression_type
from breeboost.settings import Settings
from streams.frameworks import limit_fetch_wait

__all__ = ["FETCH_MAX_WAIT_MS", "faust_app_kwargs", "faust_credentials", "limit_fetch_wait", "quiet_monitor_class",
           "restart_livelock_clock"]


def faust_credentials(settings: Settings) -> Any:
    """SASL/SSL credentials for Faust from the same settings that kafka-python uses."""
    import faust

    proto = settings.security_protocol
    context = None
    if proto in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if proto.startswith("SASL"):
        user, pw = settings.sasl_username, settings.sasl_password.reveal()
        # PLAIN and SCRAM-SHA-256/512 alike: aiokafka takes the mechanism name with the credentials.
        return faust.SASLCredentials(username=user, password=pw, ssl_context=context,
                                     mechanism=settings.sasl_mechanism)
    if proto == "SSL":
        return faust.SSLCredentials(context)
    return None


@functools.lru_cache(maxsize=None)   # one class: Faust compares sensor types
def quiet_monitor_class() -> type:
    """Faust's ``Monitor`` without its per-event bookkeeping.

    Faust calls every sensor on each message in, stream event in/out, message out and send; the default
    ``Monitor`` keeps timings, counters and deques there (~10 µs an event, 8-10 % of the framework's
    per-message cost measured in ``python -m bench``). Those statistics only feed Faust's web views,
    which the worker does not run (its metrics are the project's Prometheus series). Offsets, commits
    and assignment tracking, which Faust reads back from the monitor, are kept.
    """
    from faust.sensors import Monitor

    class QuietMonitor(Monitor):
        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            pass

        def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
            # the one figure Faust itself reads: its livelock check logs "Stream has not started
            # processing TP" for a partition with records waiting and no inbound time
            self.stream_inbound_time[tp] = monotonic()
            return None

        def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
            pass

        def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
            pass

        def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
            return None

        def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
            pass

        def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
            pass

    return QuietMonitor


def restart_livelock_clock(app: Any) -> bool:
    """Measure Faust's livelock check "since start" from the latest assignment (call on each one).

    The check (``AIOKafkaConsumerThread.verify_event_path``, every 2.5 commit intervals) logs an ERROR
    for a partition that "has not sent fetch request since start" or whose stream "has not started
    processing" when the consumer thread started more than ``stream_processing_timeout`` (300 s) ago. A
    partition assigned by a later rebalance is new to aiokafka (no fetch timestamp) and to the stream until
    its first fetch and batch, so every rebalance after the first 5 minutes logged such lines for healthy
    partitions while they were paused for recovery (the 30-minute soak: 92 lines at its 30 scale events;
    faust-streaming#629). From an assignment on, "since start" is since that assignment: a partition that
    then fetches nothing for the timeout is still reported. Returns whether the clock was found."""
    thread = getattr(getattr(app, "consumer", None), "_thread", None)
    if thread is None or not isinstance(getattr(thread, "time_started", None), float):
        return False
    thread.time_started = monotonic()
    return True


#: Longest time a fetch waits at the broker for data: the default of ``settings.fetch_max_wait_ms``.
#: Faust hard-codes 1500 ms; the embedded broker (Tansu) answers an empty fetch only when this expires,
#: even after new data arrived, so at low rates every event waited ~750 ms on average (measured by
#: ``python -m bench``: p50 780 ms at 5k ev/s). 20 ms (p50 60 ms) was too short for Tansu on S3 storage
#: restarted after kill -9: the worker's fetches came back empty while kafka-python read the records
#: (issue 20, docs/reliability.md).
FETCH_MAX_WAIT_MS = Settings.__dataclass_fields__["fetch_max_wait_ms"].default


def faust_app_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``.

    - ``at_least_once``: Faust's exactly-once needs an idempotent aiokafka producer that Tansu refuses,
      and downstream effects (scores, windows, incidents) are made idempotent instead.
    - short session/heartbeat timeouts: Tansu holds group joins for half the session timeout.
    - ``topic_disable_leader``: no extra leader topic to create; topics are pre-created by
      ``breeboost broker`` / docker-compose with ``settings.partitions`` partitions.
    - no web server: metrics are served by prometheus_client on ``metrics_host:metrics_port``.
    - ``Monitor``: a monitor without per-event statistics (:func:`quiet_monitor_class`).
    - consumers fetch with ``fetch_max_wait_ms=settings.fetch_max_wait_ms`` (:func:`limit_fetch_wait`).
    """
    limit_fetch_wait(settings.fetch_max_wait_ms)
    return dict(
        broker=[f"kafka://{hp.strip()}" for hp in settings.bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        # Faust's default is 90 s: after a broker restart, a fetch it never answered (seen with Tansu) held the
        # partitions that long before the client sent it again.
        broker_request_timeout=settings.request_timeout_s,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        # Faust makes a data folder per app even with memory tables: keep it out of the working directory
        # (directly in the temp dir: Faust creates its datadir with mkdir, without parents)
        datadir=os.path.join(tempfile.gettempdir(), "breeboost-faust-{conf.name}-data"),
        store="memory://",
        table_cleanup_interval=3600.0,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # Faust's default (1200 s) is also when aiokafka gives up on a batch: a produce request the broker
        # never answers (seen once after a broker restart) stalled the worker for 20 minutes, acking nothing.
        # aiokafka's own default, 40 s: the delivery fails and the worker exits 1 unacked (docs/reliability.md).
        producer_request_timeout=settings.delivery_timeout_s,
        producer_linger=0.005,
        producer_compression_type=compression_type(settings),
        producer_max_request_size=16 * 1024 * 1024,
        producer_max_batch_size=1024 * 1024,   # scores go out in record batches of up to 1 MB
        consumer_max_fetch_size=4 * 1024 * 1024,
        # messages buffered per partition: bounded by count, so envelopes (hundreds of kB each) need a low one
        stream_buffer_maxsize=2048,
        Monitor=quiet_monitor_class(),
    )
