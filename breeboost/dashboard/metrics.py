"""The workers' Prometheus endpoints, scraped into a short history: throughput, latency, dead letters.

:class:`MetricsScraper` reads ``/metrics`` of each worker (summed over workers) into a :class:`MetricsSample`;
:class:`MetricsHistory` keeps the last samples and turns consecutive ones into rates and latency quantiles
(the way Prometheus' ``rate`` and ``histogram_quantile`` do, over the interval between two scrapes).

>>> text = '''breeboost_events_total{outcome="scored"} 90.0
... breeboost_events_total{outcome="dead_lettered"} 10.0
... breeboost_dead_letters_total{reason="not_json"} 10.0
... breeboost_predicted_fraud_total 3.0
... breeboost_event_latency_seconds_bucket{le="0.1"} 50.0
... breeboost_event_latency_seconds_bucket{le="1.0"} 100.0
... breeboost_event_latency_seconds_bucket{le="+Inf"} 100.0
... '''
>>> a = parse_sample(text, t=0.0)
>>> a.scored, a.dead_lettered, a.dlq_by_reason, a.latency_buckets[0]
(90.0, 10.0, {'not_json': 10.0}, (0.1, 50.0))
>>> h = MetricsHistory()
>>> h.add(MetricsSample(t=0.0))
>>> h.add(a.replace(t=2.0))
>>> p = h.points()[-1]
>>> p.events_per_s, p.dead_letters_per_s, p.latency_p50_s
(50.0, 5.0, 0.1)
"""
from __future__ import annotations

import dataclasses
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

__all__ = ["MetricsSample", "MetricsPoint", "MetricsHistory", "MetricsScraper", "parse_sample", "histogram_quantile"]


@dataclass(frozen=True)
class MetricsSample:
    """Counter totals at time ``t`` (summed over the scraped workers); ``errors``: endpoints that failed."""

    t: float
    scored: float = 0.0
    dead_lettered: float = 0.0
    predicted_fraud: float = 0.0
    dlq_by_reason: dict[str, float] = field(default_factory=dict)
    latency_buckets: tuple[tuple[float, float], ...] = ()   # (upper bound, cumulative count), +Inf last
    errors: tuple[str, ...] = ()

    def replace(self, **changes) -> "MetricsSample":
        return dataclasses.replace(self, **changes)


class MetricsPoint(NamedTuple):
    """What happened between two samples, stamped at the later one."""

    t: float
    events_per_s: float
    scored_per_s: float
    dead_letters_per_s: float
    flagged_per_s: float
    dlq_per_s_by_reason: dict[str, float]
    latency_p50_s: float | None
    latency_p95_s: float | None


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear inside the bucket holding the ``q``-th observation.

    >>> histogram_quantile(0.5, [(0.1, 0.0), (1.0, 10.0), (float("inf"), 10.0)])
    0.55
    >>> histogram_quantile(0.99, [(1.0, 0.0), (float("inf"), 4.0)]), histogram_quantile(0.5, [])
    (1.0, None)
    """
    b = sorted(buckets)
    if not b or b[-1][1] <= 0:
        return None
    rank = q * b[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in b:
        if count >= rank:
            if upper == float("inf"):
                return lower   # the largest finite bound, as Prometheus answers
            if count == below:
                return upper
            return round(lower + (upper - lower) * (rank - below) / (count - below), 9)
        lower, below = upper, count
    return lower


def parse_sample(text: str, t: float, errors: tuple[str, ...] = ()) -> MetricsSample:
    """The counters this dashboard shows, from one Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    scored = dead = fraud = 0.0
    by_reason: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "breeboost_events_total":
                if s.labels.get("outcome") == "scored":
                    scored += s.value
                elif s.labels.get("outcome") == "dead_lettered":
                    dead += s.value
            elif s.name == "breeboost_dead_letters_total":
                reason = s.labels.get("reason", "?")
                by_reason[reason] = by_reason.get(reason, 0.0) + s.value
            elif s.name == "breeboost_predicted_fraud_total":
                fraud += s.value
            elif s.name == "breeboost_event_latency_seconds_bucket":
                le = float(s.labels.get("le", "+Inf"))
                buckets[le] = buckets.get(le, 0.0) + s.value
    return MetricsSample(t, scored, dead, fraud, by_reason, tuple(sorted(buckets.items())), errors)


def _merge(samples: list[MetricsSample], t: float) -> MetricsSample:
    by_reason: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for s in samples:
        for k, v in s.dlq_by_reason.items():
            by_reason[k] = by_reason.get(k, 0.0) + v
        for le, v in s.latency_buckets:
            buckets[le] = buckets.get(le, 0.0) + v
    return MetricsSample(t, sum(s.scored for s in samples), sum(s.dead_lettered for s in samples),
                         sum(s.predicted_fraud for s in samples), by_reason, tuple(sorted(buckets.items())),
                         tuple(e for s in samples for e in s.errors))


class MetricsHistory:
    """The last ``size`` samples, and the rates between them (a counter that went down: a restart, so the
    later total counts from zero)."""

    def __init__(self, size: int = 900) -> None:
        if size < 2:
            raise ValueError(f"size: expected an integer >= 2, got {size!r}")
        self.size = size
        self._samples: deque[MetricsSample] = deque(maxlen=size)

    def add(self, sample: MetricsSample) -> None:
        self._samples.append(sample)

    @property
    def latest(self) -> MetricsSample | None:
        return self._samples[-1] if self._samples else None

    def points(self) -> list[MetricsPoint]:
        s = list(self._samples)
        return [_point(a, b) for a, b in zip(s, s[1:]) if b.t > a.t]


def _delta(new: float, old: float) -> float:
    return new - old if new >= old else new


def _point(a: MetricsSample, b: MetricsSample) -> MetricsPoint:
    dt = b.t - a.t
    scored, dead = _delta(b.scored, a.scored), _delta(b.dead_lettered, a.dead_lettered)
    reasons = {k: _delta(v, a.dlq_by_reason.get(k, 0.0)) / dt for k, v in b.dlq_by_reason.items()}
    old = dict(a.latency_buckets)
    buckets = [(le, _delta(v, old.get(le, 0.0))) for le, v in b.latency_buckets]
    return MetricsPoint(b.t, (scored + dead) / dt, scored / dt, dead / dt,
                        _delta(b.predicted_fraud, a.predicted_fraud) / dt, reasons,
                        histogram_quantile(0.5, buckets), histogram_quantile(0.95, buckets))


class MetricsScraper:
    """Scrapes ``urls`` (each a worker's ``/metrics``) at most once per ``min_interval_s`` into a
    :class:`MetricsHistory`, however many pages refresh; one scrape is a GET per worker."""

    def __init__(self, urls: Iterable[str], min_interval_s: float = 1.0, timeout_s: float = 2.0,
                 history: MetricsHistory | None = None) -> None:
        self.urls = [u for u in urls if u]
        if min_interval_s <= 0:
            raise ValueError(f"min_interval_s: expected seconds > 0, got {min_interval_s!r}")
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.history = history or MetricsHistory()
        self._lock = threading.Lock()
        self._last = 0.0
        self._good: dict[str, MetricsSample] = {}   # url -> its last good sample (stands in when it fails)
        self.errors: list[str] = []                  # the endpoints that failed at the last scrape
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, every_s: float = 2.0) -> "MetricsScraper":
        """Scrape every ``every_s`` seconds in a daemon thread, so the history covers the time before
        anyone opened a page (one GET per worker each time, nothing else)."""
        if self.urls and self._thread is None:
            def loop() -> None:
                while not self._stop.wait(every_s):
                    self.scrape()

            self.scrape()
            self._thread = threading.Thread(target=loop, name="metrics-scraper", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def scrape(self, now: float | None = None) -> MetricsHistory:
        """Add one sample unless the last one is younger than ``min_interval_s``; the history."""
        now = time.time() if now is None else now
        with self._lock:
            if not self.urls or now - self._last < self.min_interval_s:
                return self.history
            self._last = now
            samples, errors = [], []
            for url in self.urls:
                try:
                    with urllib.request.urlopen(url, timeout=self.timeout_s) as r:
                        self._good[url] = parse_sample(r.read().decode("utf-8", "replace"), now)
                    samples.append(self._good[url])
                except (OSError, ValueError) as e:
                    errors.append(f"{url}: {e}")
                    if url in self._good:   # its last totals stand in: no rate from it, no false restart
                        samples.append(self._good[url].replace(t=now))
            self.errors = errors
            if samples:   # nothing until an endpoint has answered once
                self.history.add(_merge(samples, now).replace(errors=tuple(errors)))
        return self.history
