"""The dashboard's data access against the real broker and a real metrics endpoint: what it reads, how
much, and that its acknowledge/close is the CLI's."""
from __future__ import annotations

import time

import orjson
import pytest

from breeboost.dashboard.data import LiveSource
from breeboost.dashboard.feeds import TailReader, TopicFollower
from breeboost.dashboard.metrics import MetricsScraper
from breeboost.dashboard.simulation import SimulationRunner, SimulationSpec
from breeboost.kafka_io import make_producer
from incident.topic import publish_events, read_events


def _publish(settings, topic, values, partitions=None):
    p = make_producer(settings, linger_ms=5)
    try:
        for i, v in enumerate(values):
            p.send(topic, value=v, partition=None if partitions is None else i % partitions)
        p.flush(30)
    finally:
        p.close(5)


def _score(i: int, label: int = 0) -> bytes:
    return orjson.dumps({"transaction_id": f"tx-{i}", "fraud_probability": 0.9 if label else 0.01,
                         "fraud_label": label, "threshold": 0.5, "model_version": "m1", "latency_ms": 1.0,
                         "partition": 0, "offset": i, "item": None, "scored_at": 1000.0 + i})


def _until(cond, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_tail_reader_reads_at_most_its_budget_then_follows(kafka_settings):
    s = kafka_settings
    _publish(s, s.topic_scores, [_score(i) for i in range(2000)], partitions=s.partitions)
    t = TailReader(s, s.topic_scores, budget=100)
    first = t.poll()
    # the last ~budget of each partition (the broker's "latest" can lag by one batch: never fewer)
    assert 100 * s.partitions <= len(first) <= 2 * 100 * s.partitions
    # (a fresh reader starts at the tail: how many records before it a first poll counts as skipped depends on
    # the embedded broker's "latest", which can be wrong (docs/broker.md); 0 to 1,200 were seen, so the count
    # is not asserted here; test_tail_reader_skips_ahead_when_far_behind checks skipping itself)
    _publish(s, s.topic_scores, [_score(5000 + i, label=1) for i in range(10)], partitions=s.partitions)
    new = []
    assert _until(lambda: new.extend(t.poll()) or len(new) >= 10)   # later polls: only what is new
    assert len(new) == 10
    assert [d["transaction_id"] for d in t.find("tx-5003")] == ["tx-5003"]
    if "tx-1" not in {orjson.loads(v)["transaction_id"] if isinstance(v, bytes) else v["transaction_id"] for v in first}:   # where the tail starts is the broker's "latest"
        assert t.find("tx-1") == []   # an old one, never read (it is not in the tail): find searches what was read
    t.close_consumer()


def test_tail_reader_skips_ahead_when_far_behind(kafka_settings):
    s = kafka_settings
    t = TailReader(s, s.topic_scores, budget=50)
    assert t.poll() == []          # empty topic
    _publish(s, s.topic_scores, [_score(i) for i in range(1000)], partitions=s.partitions)
    got = []
    assert _until(lambda: got.extend(t.poll()) or len(got) >= 50 * s.partitions)
    assert len(got) <= 2 * 50 * s.partitions and t.skipped > 0
    t.close_consumer()


def test_topic_follower_keeps_the_whole_small_topic(kafka_settings):
    s = kafka_settings
    _publish(s, s.topic_drift_stats, [orjson.dumps({"window_id": f"w{i:06d}", "window": {"index": i}})
                                      for i in range(5)] + [b"not json"], partitions=1)
    f = TopicFollower(s, s.topic_drift_stats, keep=3).start()
    try:
        assert _until(lambda: len(f.records()) == 3)
        assert [r["window"]["index"] for r in f.records()] == [2, 3, 4]
        assert f.error is None
    finally:
        f.stop()


def test_metrics_scraper_turns_counters_into_rates():
    from prometheus_client import CollectorRegistry, start_http_server

    from streams.metrics import WorkerMetrics, observe_many

    reg = CollectorRegistry()
    m = WorkerMetrics(reg)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=reg)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        scraper = MetricsScraper([url, "http://127.0.0.1:1/metrics"])
        scraper.scrape(now=100.0)
        m.events.labels("scored").inc(400)
        m.events.labels("dead_lettered").inc(20)
        m.dead_letters.labels("not_json").inc(20)
        import numpy as np

        observe_many(m.event_latency, np.full(400, 0.02))
        assert scraper.scrape(now=100.5).points() == []   # younger than min_interval_s: not scraped
        p = scraper.scrape(now=102.0).points()[-1]
        assert (p.scored_per_s, p.dead_letters_per_s, p.dlq_per_s_by_reason) == (200.0, 10.0, {"not_json": 10.0})
        assert 0.01 < p.latency_p50_s <= 0.025
        assert any("127.0.0.1:1" in e for e in scraper.errors)   # the dead endpoint is named
    finally:
        server.shutdown()


def test_live_snapshot_and_annotate_is_what_the_cli_does(kafka_settings, tmp_path):
    s = kafka_settings
    from tests.test_dashboard import incident_events, window

    publish_events(s, incident_events()[:1])
    _publish(s, s.topic_drift_stats, [orjson.dumps(window(i)) for i in (1, 0)])
    _publish(s, s.topic_scores, [_score(1), b"[" + _score(2, 1) + b"," + _score(3) + b"]", _score(4, 1)])
    (tmp_path / "incident-state.json").write_bytes(orjson.dumps(
        {"version": 1, "trackers": {"x": {"type": "score_drift", "status": "pending", "started_at": "2026-01-01T00:00:00Z"},
                                    "y": {"type": "missing_data", "status": "firing"}}}))
    src = LiveSource(s, [], state_dir=str(tmp_path))
    try:
        assert _until(lambda: len(src.snapshot().windows) == 2 and src.snapshot().incident_events)
        snap = src.snapshot(scores=True)
        assert src.snapshot().flagged == snap.flagged   # kept: later snapshots without scores read no tail
        assert [w["window"]["index"] for w in snap.windows] == [0, 1]        # in window order
        assert [f["transaction_id"] for f in snap.flagged] == ["tx-4", "tx-2"]  # flagged only, newest first
        assert [t["type"] for t in snap.pending] == ["score_drift"]
        assert src.find_transaction("tx-3")["scores"][0]["fraud_label"] == 0   # an envelope's item
        assert src.find_transaction("tx-1", whole_topic=True)["scores"][0]["transaction_id"] == "tx-1"
        ev = src.annotate("inc-b32a2caf18db", "ack", "on it", "alice (dashboard)")
        assert ev["event"] == "acknowledged" and ev["notes"][-1]["author"] == "alice (dashboard)"
        on_topic = read_events(s)
        assert [e["event"] for e in on_topic] == ["fired", "acknowledged"]
        assert on_topic[-1]["notes"][-1] == ev["notes"][-1]
        from breeboost.errors import BreeBoostError

        with pytest.raises(BreeBoostError, match="close needs"):
            src.annotate("inc-b32a2caf18db", "close", "", "alice (dashboard)")
    finally:
        src.close()


def test_simulation_runner_runs_breeboost_simulate(kafka_settings, tmp_path):
    runner = SimulationRunner(kafka_settings, workdir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown scenario"):
        runner.start(SimulationSpec(scenario="nope", rate=100, count=10))
    runner.start(SimulationSpec(scenario="amount_scale:factor=3", rate=2000, count=300, scenario_start=100))
    with pytest.raises(ValueError, match="already running"):
        runner.start(SimulationSpec(rate=100, count=10))
    assert _until(lambda: not runner.runs()[0]["running"], timeout_s=60)
    run = runner.runs()[0]
    assert run["exit_code"] == 0 and run["acked"] == 300, (tmp_path / "simulate-1.out").read_text()[-2000:]
    assert runner.stop() is False
