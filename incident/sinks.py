"""Webhook sink: posts incident events as Alertmanager-v4 or Slack JSON, off the agent's thread.

``submit(event)`` only appends to a bounded in-memory queue and returns at once; a background thread
posts with a timeout, retries transient failures (connection errors, timeouts, 429 and 5xx) with
exponential backoff, and gives up after ``max_retries``. When the queue is full the oldest event is
dropped (and counted): a stuck receiver must never stall incident processing.

>>> ev = {"incident_id": "inc-000000000001", "fingerprint": "0123456789abcdef", "status": "firing",
...       "severity": "P2", "pagerduty_severity": "error", "type": "missing_data", "event": "fired",
...       "summary": "P2 missing data in 20% of events", "runbook": "incident/playbook.md#missing-data",
...       "started_at": "2025-01-01T00:00:00.000Z", "ended_at": None, "model_version": "m1",
...       "details": {"affected_features": ["amount"]}}
>>> am = alertmanager_payload(ev)
>>> am["version"], am["status"], am["alerts"][0]["labels"]["alertname"], am["alerts"][0]["endsAt"]
('4', 'firing', 'missing_data', '0001-01-01T00:00:00Z')
>>> slack_payload(ev)["text"]
':rotating_light: [FIRING P2] missing_data: P2 missing data in 20% of events (inc-000000000001)'
"""
from __future__ import annotations

import collections
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Mapping

import orjson

from breeboost.logs import log

__all__ = ["WebhookSink", "alertmanager_payload", "slack_payload", "FORMATS"]

_log = logging.getLogger("breeboost.incident.sinks")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end" for firing alerts


def alertmanager_payload(event: Mapping[str, Any], receiver: str = "breeboost",
                         external_url: str = "") -> dict:
    """One event as Alertmanager's webhook body (``version: "4"``, one alert)."""
    d = event.get("details", {}) or {}
    labels = {"alertname": event["type"], "severity": event["severity"],
              "pagerduty_severity": event.get("pagerduty_severity", ""), "fingerprint": event["fingerprint"],
              "incident_id": event["incident_id"], "model_version": event.get("model_version") or ""}
    annotations = {"summary": event.get("summary", ""), "runbook_url": event.get("runbook", ""),
                   "affected_features": ",".join(d.get("affected_features", [])), "event": event.get("event", "")}
    alert = {"status": event["status"], "labels": labels, "annotations": annotations,
             "startsAt": event.get("started_at") or _ZERO_TIME, "endsAt": event.get("ended_at") or _ZERO_TIME,
             "generatorURL": external_url, "fingerprint": event["fingerprint"]}
    return {"version": "4", "groupKey": f"{{}}:{{alertname=\"{event['type']}\"}}", "truncatedAlerts": 0,
            "status": event["status"], "receiver": receiver, "groupLabels": {"alertname": event["type"]},
            "commonLabels": labels, "commonAnnotations": annotations, "externalURL": external_url,
            "alerts": [alert]}


_SLACK_COLOURS = {"P1": "#d00000", "P2": "#ff8c00", "P3": "#f2c744", "P4": "#9e9e9e"}


def slack_payload(event: Mapping[str, Any]) -> dict:
    """One event as a Slack incoming-webhook body (``text`` plus an attachment with the fields)."""
    firing = event["status"] == "firing"
    icon = ":rotating_light:" if firing else ":white_check_mark:"
    text = (f"{icon} [{event['status'].upper()} {event['severity']}] {event['type']}: "
            f"{event.get('summary', '')} ({event['incident_id']})")
    d = event.get("details", {}) or {}
    fields = [{"title": "Severity", "value": f"{event['severity']} ({event.get('pagerduty_severity', '')})", "short": True},
              {"title": "Event", "value": str(event.get("event", "")), "short": True},
              {"title": "Features", "value": ", ".join(d.get("affected_features", [])) or "-", "short": False},
              {"title": "Runbook", "value": str(event.get("runbook", "")), "short": False}]
    colour = _SLACK_COLOURS.get(event["severity"], "#9e9e9e") if firing else "#2eb886"
    return {"text": text, "attachments": [{"color": colour, "fields": fields,
                                           "footer": f"fingerprint {event['fingerprint']}"}]}


FORMATS: dict[str, Callable[[Mapping[str, Any]], dict]] = {"alertmanager": alertmanager_payload,
                                                            "slack": slack_payload}


class _Permanent(Exception):
    """A failure that retrying cannot fix (4xx other than 408/429, oversized body)."""


class WebhookSink:
    """Post incident events to ``url`` from a background thread; never blocks the caller.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` endpoint.
    format : {"alertmanager", "slack"}
    timeout_s : float
        Per-request timeout (connect + read).
    max_retries : int
        Retries after the first attempt (0: one attempt only).
    backoff_s : float
        First retry delay; doubles each retry, capped at ``max_backoff_s``.
    max_body_bytes : int
        Largest body posted; bigger ones lose ``details.evidence`` first, then fail without retry.
    queue_size : int
        Events waiting at most; when full, the oldest is dropped and counted.
    registry : prometheus_client.CollectorRegistry, optional
        Where ``breeboost_webhook_deliveries_total{sink,outcome}`` is counted.
    name : str
        The ``sink`` label.
    events : tuple of str
        Which event kinds are posted (``fired``, ``updated``, ``resolved``, ``acknowledged``, ``closed``).
    """

    def __init__(self, url: str, format: str = "alertmanager", timeout_s: float = 5.0, max_retries: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, max_body_bytes: int = 256 * 1024,
                 queue_size: int = 1000, registry=None, name: str = "webhook",
                 events: tuple[str, ...] = ("fired", "updated", "resolved"), headers: Mapping[str, str] | None = None,
                 start: bool = True) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
        if format not in FORMATS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
        for pname, value, lo in (("timeout_s", timeout_s, 0.0), ("backoff_s", backoff_s, 0.0),
                                 ("max_backoff_s", max_backoff_s, 0.0)):
            if not isinstance(value, (int, float)) or value < lo or (pname == "timeout_s" and value == 0):
                raise ValueError(f"{pname}: expected a number > 0 (>= 0 for backoff), got {value!r}")
        for pname, value, lo in (("max_retries", max_retries, 0), ("max_body_bytes", max_body_bytes, 256),
                                 ("queue_size", queue_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{pname}: expected an integer >= {lo}, got {value!r}")
        self.url, self.format, self.timeout_s = url, format, float(timeout_s)
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, float(backoff_s), float(max_backoff_s)
        self.max_body_bytes, self.queue_size, self.name = max_body_bytes, queue_size, name
        self.events = tuple(events)
        self.headers = {"Content-Type": "application/json", "User-Agent": "breeboost-incident/0.1",
                        **dict(headers or {})}
        self._metrics = None
        if registry is not None:
            from incident.metrics import incident_metrics

            self._metrics = incident_metrics(registry)
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._busy = False
        self._counts = {"delivered": 0, "failed": 0, "retried": 0, "dropped": 0}
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    # -- public ------------------------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, int]:
        """Counts of delivered, failed (gave up), retried (extra attempts) and dropped (queue full)."""
        with self._cond:
            return dict(self._counts, queued=len(self._queue))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"webhook-{self.name}", daemon=True)
            self._thread.start()

    def submit(self, event: Mapping[str, Any]) -> bool:
        """Queue ``event`` for delivery; returns at once. ``False`` if its kind is not posted by this sink."""
        if event.get("event") not in self.events:
            return False
        with self._cond:
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self._count("dropped")
            self._queue.append(dict(event))
            self._cond.notify()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is empty and no post is in flight; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (waiting up to ``timeout_s`` for posts in flight); queued events are abandoned."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> "WebhookSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- delivery ----------------------------------------------------------------------------------
    def _count(self, outcome: str) -> None:
        self._counts[outcome] += 1
        if self._metrics is not None:
            self._metrics.webhook.labels(self.name, outcome).inc()

    def body(self, event: Mapping[str, Any]) -> bytes:
        """The bytes posted for ``event`` (evidence dropped first if over ``max_body_bytes``)."""
        raw = orjson.dumps(FORMATS[self.format](event))
        if len(raw) > self.max_body_bytes and isinstance(event.get("details"), Mapping):
            slim = dict(event, details={k: v for k, v in event["details"].items() if k != "evidence"})
            raw = orjson.dumps(FORMATS[self.format](slim))
        if len(raw) > self.max_body_bytes:
            raise _Permanent(f"body of {len(raw)} bytes exceeds max_body_bytes={self.max_body_bytes}")
        return raw

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read(64 * 1024)  # bounded: a receiver cannot make us buffer a huge reply
        except urllib.error.HTTPError as e:
            if e.code in (408, 429) or e.code >= 500:
                raise
            raise _Permanent(f"HTTP {e.code}") from None

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                event = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(event)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, event: Mapping[str, Any]) -> None:
        try:
            body = self.body(event)
        except _Permanent as e:
            self._fail(event, str(e))
            return
        attempt = 0
        while True:
            try:
                self._post(body)
                with self._cond:
                    self._count("delivered")
                return
            except _Permanent as e:
                self._fail(event, str(e))
                return
            except (OSError, urllib.error.URLError) as e:  # timeouts, refused, 5xx/429 (HTTPError)
                if attempt >= self.max_retries or self._stop.is_set():
                    self._fail(event, f"{type(e).__name__}: {e}")
                    return
                delay = min(self.max_backoff_s, self.backoff_s * (2 ** attempt))
                attempt += 1
                with self._cond:
                    self._count("retried")
                log(_log, "webhook_retry", level=logging.WARNING, sink=self.name, attempt=attempt,
                    delay_s=delay, incident_id=event.get("incident_id"), error=str(e))
                if self._stop.wait(delay):
                    self._fail(event, "sink closed during backoff")
                    return

    def _fail(self, event: Mapping[str, Any], why: str) -> None:
        with self._cond:
            self._count("failed")
        log(_log, "webhook_failed", level=logging.ERROR, sink=self.name, incident_id=event.get("incident_id"),
            error=why)
