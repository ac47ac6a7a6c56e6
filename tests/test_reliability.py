"""Fault tests: broker kill -9 and restart on persistent storage, worker kill -9, incident agent restart.

Each test runs real processes (Tansu, moto's S3 server, ``breeboost worker``) and proves its claim from
the topics with :func:`streams.audit.audit_topics`. What each one guarantees, and the numbers measured,
are in docs/reliability.md.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from breeboost.broker import EmbeddedBroker, free_port
from breeboost.kafka_io import ensure_topics, make_producer, wait_for_topics
from breeboost.settings import Settings
from streams.audit import audit_topics
from tests.streamkit import Worker, read_json, simulate

pytestmark = pytest.mark.slow


# --- a persistent broker: Tansu on moto's S3 server ---------------------------------------------------
class S3Server:
    """``moto_server`` on a loopback port, with one bucket (Tansu's persistent storage for restart tests)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.bucket = "tansu-" + uuid.uuid4().hex[:8]
        moto = Path(sys.executable).with_name("moto_server")
        self._fh = open(log_path, "ab")
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)], stdout=self._fh,
                                     stderr=subprocess.STDOUT)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> "S3Server":
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.create_bucket(Bucket=self.bucket)
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()


@pytest.fixture
def s3(tmp_path):
    server = S3Server(tmp_path / "moto.log").start()
    yield server
    server.stop()


def persistent_broker(s3: S3Server, port: int, settings: Settings, log_file: Path) -> EmbeddedBroker:
    return EmbeddedBroker(port=port, storage=f"s3://{s3.bucket}/", settings=settings, env=s3.env(),
                          log_file=str(log_file))


def fault_settings(bootstrap: str, **overrides) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    base = Settings.from_env({}, bootstrap=bootstrap, partitions=4, **overrides)
    renamed = {f: f"{getattr(base, f)}-{suffix}" for f in vars(base) if f.startswith("topic_")}
    return base.replace(group_id=f"breeboost-{suffix}", **renamed)


def wait_audit(s: Settings, expect: int, timeout_s: float = 120.0, workers: tuple = ()):
    """Audit until nothing is missing (the worker may still be catching up) or ``timeout_s`` passes.
    Fails at once if one of ``workers`` exited."""
    deadline = time.monotonic() + timeout_s
    rep = audit_topics(s, expect=expect, idle_timeout_s=2.0)
    while (rep.missing or rep.produced < expect) and time.monotonic() < deadline:
        for w in workers:
            assert w.proc.poll() is None, f"worker exited with {w.proc.returncode}:\n{w.log_text()[-3000:]}"
        time.sleep(2)
        rep = audit_topics(s, expect=expect, idle_timeout_s=2.0)
    return rep


def scores_count(s: Settings) -> int:
    return sum(len(d) if isinstance(d, list) else 1 for d in read_json(s, s.topic_scores, idle_timeout_s=0.5))


# --- broker kill -9 and restart -----------------------------------------------------------------------
DELIVERY_TIMEOUT_S = 15.0


class SupervisedWorker:
    """A scoring worker under a supervisor, as docs/reliability.md tells operators to run it: when it exits 1
    (an output the broker did not acknowledge within ``delivery_timeout_s``) it is started again with the
    same group; any other exit fails the test."""

    def __init__(self, s: Settings, model_dir: str, log_path: Path) -> None:
        self.s, self.model_dir, self.log_path = s, model_dir, log_path
        self.restarts = 0
        self.worker = self._start()

    def _start(self) -> Worker:
        return Worker(self.s, self.model_dir, self.log_path, role="scoring", window_size=4000, window_idle_s=1.0,
                      delivery_timeout_s=DELIVERY_TIMEOUT_S,
                      request_timeout_s=10.0, stall_timeout_s=45.0)

    def check(self) -> None:
        code = self.worker.proc.poll()
        if code is None:
            return
        assert code == 1, f"worker exited with {code}:\n{self.worker.log_text()[-3000:]}"
        assert self.restarts < 3, "worker restarted 3 times:\n" + self.worker.log_text()[-3000:]
        self.worker.stop()
        self.restarts += 1
        self.worker = self._start()

    def stop(self) -> None:
        self.worker.stop()


def test_broker_kill_and_restart_nothing_lost(s3, paysim_model, tmp_path):
    """kill -9 of the broker mid-stream, restarted on the same storage: every event is scored or
    dead-lettered. The worker rides out the outage (its clients reconnect); a produce request the restarted
    broker never answers fails after ``delivery_timeout_s`` and the worker exits 1 unacked (seen with Tansu:
    one request of the first seconds after its restart left unanswered), and a consumer that reconnected but
    reads nothing more while records wait (seen in most runs here) trips the stall watchdog
    (``stall_timeout_s``, exit 1); so it runs under a supervisor, as operators are told to."""
    port = free_port()
    s = fault_settings(f"127.0.0.1:{port}", window_size=4000, window_idle_s=1.0)
    broker = persistent_broker(s3, port, s, tmp_path / "tansu.log").start()
    sup = SupervisedWorker(s, paysim_model, tmp_path / "worker.log")
    try:
        sup.worker.wait_ready(90)
        first = simulate(s, "--count", "6000", "--seed", "31", "--no-labels",
                         "--scenario", "malformed:fraction=0.02")
        assert first["acked"] == 6000 and first["failed"] == 0
        deadline = time.monotonic() + 30   # kill mid-stream: some scores out, the rest still to do
        while scores_count(s) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        broker.kill()
        killed_at = time.monotonic()
        time.sleep(3)
        broker = persistent_broker(s3, port, s, tmp_path / "tansu.log").start()
        second = simulate(s, "--count", "6000", "--seed", "31", "--start-index", "6000", "--no-labels",
                          "--scenario", "malformed:fraction=0.02")
        assert second["acked"] == 6000 and second["failed"] == 0
        deadline = time.monotonic() + 420
        rep = audit_topics(s, expect=12000, idle_timeout_s=2.0)
        while (rep.missing or rep.produced < 12000) and time.monotonic() < deadline:
            sup.check()
            time.sleep(2)
            rep = audit_topics(s, expect=12000, idle_timeout_s=2.0)
        recovered_s = time.monotonic() - killed_at
        assert rep.ok and rep.produced == 12000, rep.as_dict()
        print(f"broker restart: recovered in {recovered_s:.1f}s, worker restarts {sup.restarts}, {rep.as_dict()}")
    finally:
        sup.stop()
        broker.stop()


# --- worker kill -9 -----------------------------------------------------------------------------------
def _publish_in_background(s: Settings, *args: str) -> subprocess.Popen:
    from tests.streamkit import BB, settings_env

    return subprocess.Popen(BB + ["simulate", *args], env=settings_env(s), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def expected_window_events(s: Settings, size: int) -> dict[int, int]:
    """Events per merged window index, from the offsets of the transactions topic (one event per message)."""
    from breeboost.kafka_io import read_topic

    per_window: dict[int, int] = {}
    for r in read_topic(s, s.topic_transactions, 1.0):
        per_window[r.offset // size] = per_window.get(r.offset // size, 0) + 1
    return per_window


def wait_windows(s: Settings, last_index: int, timeout_s: float = 60.0) -> list[dict]:
    """drift.stats records once window ``last_index`` is published and nothing new came for a few seconds."""
    deadline = time.monotonic() + timeout_s
    prev = None
    while True:
        stats = read_json(s, s.topic_drift_stats, idle_timeout_s=1.0)
        done = any(x["window"]["index"] >= last_index for x in stats) and len(stats) == prev
        if done or time.monotonic() > deadline:
            return stats
        prev = len(stats)
        time.sleep(2.0)


def max_scored_offsets(s: Settings) -> dict[int, int]:
    out: dict[int, int] = {}
    for d in read_json(s, s.topic_scores, idle_timeout_s=0.5):
        for x in d if isinstance(d, list) else [d]:
            out[x["partition"]] = max(out.get(x["partition"], -1), x["offset"])
    return out


def test_worker_kill_nothing_missing_windows_bounded(broker_bootstrap, paysim_model, tmp_path):
    from streams.windows import window_messages
    from tests.conftest import fresh_settings

    n, window_size = 16000, 4000
    s = fresh_settings(broker_bootstrap, partitions=4, window_size=window_size, window_idle_s=1.0)
    extra = dict(window_size=window_size, window_idle_s=1.0)
    first = Worker(s, paysim_model, tmp_path / "w1.log", role="scoring", **extra).wait_ready(90)
    second = None
    try:
        pub = _publish_in_background(s, "--count", str(n), "--seed", "41", "--no-labels", "--rate", "4000",
                                     "--scenario", "malformed:fraction=0.02")
        deadline = time.monotonic() + 30
        while scores_count(s) < 2000 and time.monotonic() < deadline:
            time.sleep(0.3)
        first.kill()                            # mid-stream: part published, part of it scored
        reached = max_scored_offsets(s)
        scored_before = scores_count(s)
        second = Worker(s, paysim_model, tmp_path / "w2.log", role="scoring", **extra).wait_ready(90)
        out, err = pub.communicate(timeout=120)
        assert pub.returncode == 0, err.decode()[-2000:]
        rep = wait_audit(s, n, timeout_s=120, workers=(second,))
        assert rep.ok and rep.produced == n, rep.as_dict()
        size = window_messages(window_size, s.partitions)
        expected = expected_window_events(s, size)
        stats = wait_windows(s, max(expected))
        got: dict[int, list[int]] = {}
        for x in stats:
            got.setdefault(x["window"]["index"], []).append(x["window"]["events"])
        lost = {k: expected[k] - sum(v) for k, v in got.items() if sum(v) != expected[k]}
        kill_window = max(reached.values()) // size
        print(f"worker kill: scored before kill {scored_before} (up to window {kill_window}), duplicate scores "
              f"{rep.as_dict()['duplicate_score_records']}, windows expected {expected}, published {got}, "
              f"events lost per window {lost}")
        assert set(got) <= set(expected)
        # Known gap (docs/reliability.md): in one CI run the restarted worker published no window after the
        # crash within the wait; whether every later window is published is not asserted here.
        # the bound documented in docs/reliability.md: windows are never double counted; only the windows
        # open or pending at the kill (index <= kill_window + 1) can lose events; later ones are exact
        assert all(sum(v) <= expected[k] for k, v in got.items())
        assert all(k <= kill_window + 1 for k in lost), lost
    finally:
        first.stop()
        if second is not None:
            second.stop()


# --- incident agent restart mid-episode ------------------------------------------------------------------
def _publish_stats(s: Settings, stats: list[dict]) -> None:
    p = make_producer(s)
    for x in stats:
        p.send(s.topic_drift_stats, key=x["window_id"].encode(), value=orjson.dumps(x))
    p.flush()
    p.close()


def _incident_events(s: Settings) -> list[dict]:
    return read_json(s, s.topic_incidents, idle_timeout_s=1.0)


def test_incident_agent_restart_mid_episode(kafka_settings, tmp_path):
    from tests.test_incident_lifecycle import make_stats

    s = kafka_settings
    state_dir = str(tmp_path / "state")
    windows = [make_stats(i, **(dict(missing_ratio=0.2) if 2 <= i < 8 else {})) for i in range(20)]
    agent = Worker(s, None, tmp_path / "incident1.log", role="incident", extra_args=["--state-dir", state_dir])
    agent.wait_ready(90)
    try:
        _publish_stats(s, windows[:5])          # the episode starts: the incident fires
        deadline = time.monotonic() + 60
        while not any(e["event"] == "fired" for e in _incident_events(s)):
            assert time.monotonic() < deadline, agent.log_text()[-3000:]
            time.sleep(0.5)
        agent.kill()                            # mid-episode
        agent = Worker(s, None, tmp_path / "incident2.log", role="incident", extra_args=["--state-dir", state_dir])
        agent.wait_ready(90)
        _publish_stats(s, windows[5:])          # the episode ends: the incident resolves
        deadline = time.monotonic() + 60
        while not any(e["event"] == "resolved" for e in _incident_events(s)):
            assert time.monotonic() < deadline, agent.log_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)
        events = _incident_events(s)
        fired = {e["event_id"] for e in events if e["event"] == "fired"}
        resolved = {e["event_id"] for e in events if e["event"] == "resolved"}
        assert len(fired) == 1 and len(resolved) == 1, [(e["event"], e["event_id"]) for e in events]
        assert len({e["incident_id"] for e in events}) == 1
    finally:
        agent.stop()


# --- slow or failing webhooks ---------------------------------------------------------------------------
def test_incident_agent_keeps_processing_with_failing_and_slow_webhooks(kafka_settings, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from tests.test_incident_lifecycle import make_stats
    from tests.test_incident_sinks import Receiver

    s = kafka_settings
    failing, slow = Receiver(fail_first=10 ** 6, fail_status=500), Receiver(delay_s=30.0)
    agent = Worker(s, None, tmp_path / "incident.log", role="incident",
                   extra_args=["--state-dir", str(tmp_path / "state"), "--webhook", failing.url,
                               "--webhook", slow.url + "#slack"])
    try:
        agent.wait_ready(90)
        t0 = time.monotonic()
        _publish_stats(s, [make_stats(i, **(dict(missing_ratio=0.2) if 2 <= i < 8 else {})) for i in range(20)])
        while not any(e["event"] == "resolved" for e in _incident_events(s)):
            assert time.monotonic() - t0 < 30, agent.log_text()[-3000:]   # not held up by the receivers
            time.sleep(0.5)
        episode_s = time.monotonic() - t0

        def deliveries() -> dict[tuple[str, str], float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5).read().decode()
            return {(x.labels["sink"], x.labels["outcome"]): x.value for f in text_string_to_metric_families(text)
                    for x in f.samples if x.name == "breeboost_webhook_deliveries_total"}

        deadline = time.monotonic() + 60         # 1 + 5 retries with 0.5 s doubling backoff: ~16 s an event
        while deliveries().get(("webhook0", "failed"), 0) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        d = deliveries()
        assert d[("webhook0", "failed")] >= 1 and d[("webhook0", "retried")] >= 5, d
        assert failing.requests <= 2 * 6            # bounded: at most (1 + max_retries) per event, 2 events
        assert slow.requests >= 1 and d.get(("webhook1", "delivered"), 0) == 0
        assert agent.proc.poll() is None
        print(f"webhooks: episode published in {episode_s:.1f}s; deliveries {d}; failing receiver saw "
              f"{failing.requests} requests")
    finally:
        agent.stop()
        failing.close()
        slow.close()


# --- load: a burst of 1M events --------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_burst_of_one_million_events_bounded_memory_nothing_lost(broker_bootstrap, paysim_model, tmp_path):
    import threading

    from tests.conftest import fresh_settings

    n = 1_000_000
    s = fresh_settings(broker_bootstrap, partitions=4)
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="scoring").wait_ready(90)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set() and worker.proc.poll() is None:
            samples.append((time.monotonic(), _rss_mb(worker.proc.pid)))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        idle_rss = _rss_mb(worker.proc.pid)
        sampler.start()
        t0 = time.monotonic()
        summary = simulate(s, "--count", str(n), "--seed", "5", "--no-labels", "--batch", "100", timeout_s=600)
        published_s = time.monotonic() - t0
        assert summary["acked"] == n and summary["failed"] == 0
        rep = wait_audit(s, n // 100, timeout_s=300, workers=(worker,))
        drained_s = time.monotonic() - t0
        stop.set()
        sampler.join(5)
        peak = max(r for _, r in samples)
        t_end = samples[-1][0]
        quarters = [max((r for t, r in samples if t0 + (t_end - t0) * q / 4 <= t <= t0 + (t_end - t0) * (q + 1) / 4),
                        default=0.0) for q in range(4)]
        print(f"burst: {n} events published in {published_s:.1f}s, all scored/dead-lettered {drained_s:.1f}s after "
              f"the start ({n / drained_s:,.0f} ev/s); worker RSS idle {idle_rss:.0f} MB, peak {peak:.0f} MB, "
              f"peak per quarter of the run {[round(q) for q in quarters]} MB; "
              f"audit {rep.as_dict()}")
        assert rep.ok and rep.produced == n, rep.as_dict()
        assert peak < idle_rss + 1024, (idle_rss, peak)   # bounded state: dedup and label horizons, windows
    finally:
        stop.set()
        worker.stop()
