"""The one place that touches frameworks' private attributes (Faust, aiokafka, prometheus_client).

Each access below is something the public API does not offer and that we measured to matter; each has a
public fallback where one exists. :func:`check_versions` compares the installed versions with those these
accesses were written and tested against (the pins of ``setup.cfg``): the worker logs every mismatch at
start-up, so an upgrade that moves an attribute is seen before it silently takes a slow path.
"""
from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

import numpy as np

__all__ = ["TESTED", "aiokafka_producer", "check_versions", "histogram_add", "limit_fetch_wait",
           "read_position", "refresh_metadata"]

#: distribution -> (lowest, first untested) version these accesses were checked against
TESTED = {"faust-streaming": ("0.11", "0.16"), "aiokafka": ("0.10", "0.15"), "prometheus-client": ("0.20", "1")}


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def check_versions() -> list[str]:
    """One line per installed framework outside :data:`TESTED` (empty: all as tested).

    >>> check_versions()
    []
    """
    problems = []
    for dist, (low, high) in TESTED.items():
        try:
            v = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        if not _version_tuple(low) <= _version_tuple(v) < _version_tuple(high):
            problems.append(f"{dist} {v} is outside the tested range [{low}, {high}): private attributes used "
                            f"by streams.frameworks may have moved")
    return problems


def aiokafka_producer(app: Any) -> Any | None:
    """The aiokafka producer under Faust's, once Faust started it (``None`` before, or if it moved): whole
    record batches cost ~1 us a record there against ~40 us through ``topic.send()``."""
    return getattr(app.producer, "_producer", None)


def read_position(app: Any, tp: Any) -> int | None:
    """The offset Faust's consumer will read next from ``tp`` (the committed offset it seeked to), if known."""
    return getattr(app.consumer, "_read_offset", {}).get(tp)


async def refresh_metadata(consumer: Any) -> None:
    """Refresh an aiokafka consumer's cluster metadata (it has no public refresh)."""
    client = getattr(consumer, "_client", None)
    if client is not None:
        await client.force_metadata_update()


def histogram_add(histogram: Any, values: np.ndarray) -> bool:
    """Add ``values`` to an unlabelled prometheus_client histogram as one increment per bucket (numpy),
    instead of one locked ``observe`` per value (~3 us each). ``False`` when the internals are not there
    (the caller then observes each value)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or getattr(histogram, "_labelnames", ()):
        return False
    # bucket i holds bounds[i-1] < v <= bounds[i] (prometheus_client keeps per-bucket, not cumulative, counts)
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left"),
                         minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))
    return True


@functools.lru_cache(maxsize=None)
def limit_fetch_wait(ms: int) -> None:
    """Make Faust's aiokafka consumers use ``fetch_max_wait_ms=ms`` (Faust hard-codes 1500 ms and exposes no
    setting). Installs a consumer factory on Faust's aiokafka driver once (a later call changes ``ms``);
    applies to consumers created after the call."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_breeboost_fetch_wait", None) is not None:
        create._breeboost_fetch_wait = ms  # type: ignore[attr-defined]
        return

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        # read by AIOKafkaConsumer.start() when it builds its Fetcher
        consumer._fetch_max_wait_ms = _create_worker_consumer._breeboost_fetch_wait  # type: ignore[attr-defined]
        return consumer

    _create_worker_consumer._breeboost_fetch_wait = ms  # type: ignore[attr-defined]
    setattr(AIOKafkaConsumerThread, "_create_worker_consumer", _create_worker_consumer)
