"""Webhook sink against real local HTTP servers: retries with backoff, timeouts, never blocking."""
from __future__ import annotations

import http.server
import threading
import time

import orjson
import pytest
from prometheus_client import CollectorRegistry

from incident.lifecycle import IncidentManager
from incident.policy import Policy
from incident.sinks import WebhookSink, alertmanager_payload, slack_payload
from tests.test_incident_lifecycle import make_stats


class Receiver:
    """A real HTTP server on 127.0.0.1: fails the first ``fail_first`` requests with ``fail_status``,
    sleeps ``delay_s`` before answering, and records every body and arrival time."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503, delay_s: float = 0.0) -> None:
        self.fail_first, self.fail_status, self.delay_s = fail_first, fail_status, delay_s
        self.bodies: list[dict] = []
        self.times: list[float] = []
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                outer.requests += 1
                outer.times.append(time.monotonic())
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                if outer.requests <= outer.fail_first:
                    self.send_response(outer.fail_status)
                    self.end_headers()
                    return
                outer.bodies.append(orjson.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


@pytest.fixture(scope="module")
def events() -> list[dict]:
    m = IncidentManager(Policy.load())
    out = []
    for i in range(14):
        out += m.process(make_stats(i, missing_ratio=0.2 if 2 <= i < 6 else 0.0), now=1_700_000_000.0 + i)
    assert [e["event"] for e in out] == ["fired", "resolved"]
    return out


def test_delivers_alertmanager_v4_json(receiver_factory, events):
    r = receiver_factory()
    reg = CollectorRegistry()
    with WebhookSink(r.url, registry=reg, name="am") as sink:
        for e in events:
            assert sink.submit(e)
        assert sink.flush(5)
    assert [b["status"] for b in r.bodies] == ["firing", "resolved"]
    a = r.bodies[0]
    assert a["version"] == "4" and a["alerts"][0]["labels"]["alertname"] == "missing_data"
    assert a["alerts"][0]["labels"]["severity"] == "P2" and a["alerts"][0]["fingerprint"] == events[0]["fingerprint"]
    assert r.bodies[1]["alerts"][0]["endsAt"] == events[1]["ended_at"]
    assert reg.get_sample_value("breeboost_webhook_deliveries_total", {"sink": "am", "outcome": "delivered"}) == 2


def test_slack_format(receiver_factory, events):
    r = receiver_factory()
    with WebhookSink(r.url, format="slack") as sink:
        sink.submit(events[0])
        assert sink.flush(5)
    assert r.bodies[0]["text"].startswith(":rotating_light: [FIRING P2] missing_data")
    assert r.bodies[0]["attachments"][0]["fields"][0]["value"] == "P2 (error)"
    assert slack_payload(events[1])["text"].startswith(":white_check_mark: [RESOLVED")


def test_retries_with_exponential_backoff_then_delivers(receiver_factory, events):
    r = receiver_factory(fail_first=3)
    reg = CollectorRegistry()
    with WebhookSink(r.url, max_retries=5, backoff_s=0.05, registry=reg, name="x") as sink:
        sink.submit(events[0])
        assert sink.flush(10)
        assert sink.stats["delivered"] == 1 and sink.stats["retried"] == 3 and sink.stats["failed"] == 0
    gaps = [b - a for a, b in zip(r.times, r.times[1:])]
    assert r.requests == 4 and len(r.bodies) == 1
    # delays 0.05, 0.1, 0.2: each gap at least its backoff, and growing
    for gap, expected in zip(gaps, (0.05, 0.1, 0.2)):
        assert gap >= expected * 0.9
    assert gaps[2] > gaps[0]
    assert reg.get_sample_value("breeboost_webhook_deliveries_total", {"sink": "x", "outcome": "retried"}) == 3


def test_gives_up_after_max_retries(receiver_factory, events):
    r = receiver_factory(fail_first=100)
    with WebhookSink(r.url, max_retries=2, backoff_s=0.01) as sink:
        sink.submit(events[0])
        assert sink.flush(5)
        assert sink.stats == {"delivered": 0, "failed": 1, "retried": 2, "dropped": 0, "queued": 0}
    assert r.requests == 3


def test_client_errors_are_not_retried(receiver_factory, events):
    r = receiver_factory(fail_first=100, fail_status=400)
    with WebhookSink(r.url, max_retries=5, backoff_s=0.01) as sink:
        sink.submit(events[0])
        assert sink.flush(5)
        assert sink.stats["failed"] == 1 and sink.stats["retried"] == 0
    assert r.requests == 1


def test_connection_refused_is_retried_and_counted(events):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with WebhookSink(f"http://127.0.0.1:{port}/", max_retries=2, backoff_s=0.01) as sink:
        sink.submit(events[0])
        assert sink.flush(5)
        assert sink.stats["failed"] == 1 and sink.stats["retried"] == 2


def test_slow_receiver_times_out_and_never_blocks_the_caller(receiver_factory, events):
    r = receiver_factory(delay_s=1.0)
    with WebhookSink(r.url, timeout_s=0.2, max_retries=1, backoff_s=0.01, queue_size=5) as sink:
        t0 = time.perf_counter()
        for _ in range(50):
            sink.submit(events[0])
        submit_s = time.perf_counter() - t0
        assert submit_s < 0.05  # 50 submits while the receiver hangs: no waiting on the network
        assert sink.stats["dropped"] >= 44  # bounded queue: the oldest went
        t1 = time.perf_counter()
        assert sink.flush(20)
        st = sink.stats
    assert st["failed"] + st["delivered"] + st["dropped"] == 50 and st["failed"] >= 1
    # each failed attempt is cut at the timeout (0.2 s), not the receiver's 1 s
    per_event = (time.perf_counter() - t1) / max(1, st["failed"])
    assert per_event < 0.9


def test_oversized_bodies_lose_evidence_then_fail(receiver_factory, events):
    r = receiver_factory()
    big = dict(events[0], details=dict(events[0]["details"], evidence={"blob": "x" * 5000}))
    with WebhookSink(r.url, max_body_bytes=3000) as sink:
        sink.submit(big)
        huge = dict(events[0], summary="y" * 5000)
        sink.submit(huge)
        assert sink.flush(5)
        assert sink.stats["delivered"] == 1 and sink.stats["failed"] == 1
    assert len(r.bodies) == 1


def test_only_configured_event_kinds_are_posted(events):
    sink = WebhookSink("http://127.0.0.1:9/", events=("fired",), start=False)
    assert sink.submit(events[0]) and not sink.submit(events[1])


@pytest.mark.parametrize("kw,name", [
    (dict(url="ftp://x"), "url"), (dict(format="teams"), "format"), (dict(timeout_s=0), "timeout_s"),
    (dict(max_retries=-1), "max_retries"), (dict(backoff_s=-1.0), "backoff_s"), (dict(queue_size=0), "queue_size"),
    (dict(max_body_bytes=10), "max_body_bytes"),
])
def test_constructor_validation_names_the_parameter(kw, name):
    args = dict(url="http://127.0.0.1:1/", start=False)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        WebhookSink(**args)


def test_alertmanager_payload_shape(events):
    a = alertmanager_payload(events[1])
    assert set(a) >= {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                      "commonAnnotations", "externalURL", "alerts"}
    assert set(a["alerts"][0]) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a["alerts"][0]["annotations"]["runbook_url"].endswith("#missing-data")
