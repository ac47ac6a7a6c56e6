"""``breeboost report`` from the topics (issue #8): drift.stats windows and incident events read back from the
real broker, one self-contained HTML page with the incidents on the window axis, and the JSON."""
from __future__ import annotations

import random
import re
import subprocess

import numpy as np
import orjson
import pytest

from incident.events import encode_event, event_key
from incident.lifecycle import IncidentManager
from incident.policy import Policy
from tests.conftest import fresh_settings
from tests.streamkit import BB, settings_env

W = 5000


def _report(s, tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict | None, str | None]:
    out_json, out_html = tmp_path / "stats.json", tmp_path / "report.html"
    r = subprocess.run(BB + ["report", "--json", str(out_json), "--out", str(out_html), "--read-timeout", "1.0", *extra],
                       env=settings_env(s), capture_output=True, timeout=120)
    if r.returncode != 0:
        return r, None, None
    return r, orjson.loads(out_json.read_bytes()), out_html.read_text(encoding="utf-8")


def _assert_offline(page: str) -> None:
    """Nothing to fetch: no scripts, stylesheets, images, fonts or any http(s) reference."""
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", page), re.search(r".{60}https?://.{60}", page)
    for tag in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src="):
        assert tag not in page, tag


def _assert_incident_drawn(page: str, doc: dict, itype: str, feature: str) -> dict:
    [span] = [s for s in doc["spans"] if s["type"] == itype]
    assert span["status"] == "resolved" and span["end_index"] > span["last_index"] >= span["first_index"]
    indices = [w["window"]["index"] for w in doc["windows"]]
    assert indices == sorted(set(indices)) and indices[0] <= span["first_index"] and span["end_index"] <= indices[-1]
    assert span["incident_id"] in page and f'class="span {span["severity"]}"' in page
    assert f"<title>{feature}: PSI and KS D over windows</title>" in page      # the feature's series
    assert "reference vs current" in page                                        # worst-window histograms
    assert doc["summary"]["incidents"] == 1 and doc["summary"]["windows"] == len(doc["windows"])
    return span


@pytest.fixture(scope="module")
def amount_history():
    """drift.stats payloads of 45,000 simulated events (amount x3 in events 15,000..30,000) and the incident
    events the shipped policy makes of them, computed as the stream does (no model: scores drawn)."""
    from detectors.profile import build_profile
    from breeboost.report import report_windows
    from models.features import compute_features
    from models.spec import load_spec
    from simulator import generate, parse_scenario

    spec = load_spec()
    rng = np.random.default_rng(0)
    ref = compute_features(generate(60_000, seed=1), spec)
    profile = build_profile(ref.numeric, ref.categorical, rng.beta(1, 30, 60_000), threshold=0.5)
    cols = generate(45_000, seed=2, scenarios=[parse_scenario("amount_scale:factor=3", start=15_000, end=30_000)])
    f = compute_features(cols, spec)
    stats = report_windows(profile, f.numeric, f.categorical, rng.beta(1, 30, 45_000), W, model_version="m1")
    m = IncidentManager(Policy.load())
    events = [e for s in stats for e in m.process(s, now=1_700_000_000.0 + s["window"]["index"])]
    assert [e["event"] for e in events] == ["fired", "resolved"]
    return stats, events


def test_report_reads_stats_and_incidents_from_the_topics(broker_bootstrap, amount_history, tmp_path):
    from breeboost.kafka_io import make_producer

    stats, events = amount_history
    s = fresh_settings(broker_bootstrap)
    producer = make_producer(s)
    try:
        shuffled = list(stats) + [stats[2]]            # out of order over partitions, one window redelivered
        random.Random(3).shuffle(shuffled)
        for x in shuffled:
            producer.send(s.topic_drift_stats, key=x["window_id"].encode(), value=orjson.dumps(x))
        producer.send(s.topic_drift_stats, key=b"junk", value=b"not json")
        for e in events:
            producer.send(s.topic_incidents, key=event_key(e), value=encode_event(e))
        producer.flush(30)
    finally:
        producer.close(5)
    r, doc, page = _report(s, tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert [w["window"]["index"] for w in doc["windows"]] == list(range(len(stats)))
    assert len(doc["incidents"]) == 2
    span = _assert_incident_drawn(page, doc, "feature_drift", "amount")
    assert span["first_index"] == events[0]["details"]["window"]["first_index"]
    assert span["end_index"] == events[1]["details"]["window"]["evaluated_index"]
    assert "amount" in span["features"] and span["severity"] == "P1"
    _assert_offline(page)
    assert b"1 incident(s)" in r.stdout


def test_report_without_windows_says_what_is_missing(broker_bootstrap, tmp_path):
    s = fresh_settings(broker_bootstrap)
    r, _, _ = _report(s, tmp_path)
    assert r.returncode == 1 and b"no drift.stats windows" in r.stderr


@pytest.mark.slow
def test_report_from_a_live_worker(broker_bootstrap, paysim_model, tmp_path):
    from tests.test_incident_e2e import SIZE, _one_incident, _run

    s = fresh_settings(broker_bootstrap, window_size=SIZE, window_idle_s=1.0)
    worker = None
    try:
        worker, stats, events = _run(s, paysim_model, tmp_path, "amount_scale:factor=3")
        fired = _one_incident(events, "feature_drift", {"P1"}, {"amount"})
    finally:
        if worker is not None:
            worker.stop()
    r, doc, page = _report(s, tmp_path)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    span = _assert_incident_drawn(page, doc, "feature_drift", "amount")
    assert span["incident_id"] == fired["incident_id"]
    assert len(doc["windows"]) == len({x["window"]["index"] for x in stats})
    _assert_offline(page)
