"""Issue #7 end to end on the real broker: simulator -> worker (scoring, windows, aggregator, incident agent)
-> ``incidents``.

Each scenario runs between calm traffic (events 15,000..35,000 of 60,000, 5,000-event windows: windows 3..6
are the scenario, 7..11 calm again): exactly one firing incident (one fingerprint) of the expected type and
severity, exactly one resolved event for it, nothing else at P3 or worse; calm traffic alone opens nothing.
Replaying the same drift.stats records opens nothing new; webhooks are delivered through retries to a local
HTTP server; RCA names the feature the scenario changed first.

One representative scenario (missing fields, with the webhook and replay checks) runs by default; the others
are ``slow`` (about 40 s each: a worker start, 60,000 events, the last window closed by the idle timer).
The top of the file holds the pure checks of the lifecycle/policy rules this end-to-end run needed.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from incident.events import validate_event
from incident.lifecycle import IncidentManager
from incident.policy import Breach, Policy
from tests.conftest import fresh_settings
from tests.streamkit import BB, Worker, read_json, settings_env, simulate

SIZE, COUNT, START, END = 5000, 60_000, 15_000, 35_000
LAST_WINDOW = COUNT // SIZE - 1
SEVERE = ("P1", "P2", "P3")


# --- the rules the real broker showed were needed (pure, fast) ---------------------------------------------
def _stats(i: int, **kw) -> dict:
    doc = {"window_id": f"w{i:06d}", "window": {"index": i, "events": 5000, "scored": 5000}, "model_version": "m1",
           "missing_ratio": 0.0, "balance_error_ratio": 0.48,
           "score": {"psi": 0.0, "predicted_fraud_rate": 0.0012, "reference_fraud_rate": 0.0012, "count": 5000}}
    for k, v in kw.items():
        doc[k] = {**doc[k], **v} if isinstance(v, dict) and isinstance(doc.get(k), dict) else v
    return doc


def test_windows_out_of_order_are_evaluated_once():
    """drift.stats is keyed by window id: windows reach the agent over 4 partitions, out of order."""
    bad = {"missing_ratio": 0.2}
    order = [0, 1, 2, 4, 3, 5, 7, 6, 8, 10, 9, 11, 12]
    m = IncidentManager(Policy.load())
    out = [e for i in order for e in m.process(_stats(i, **(bad if 3 <= i <= 6 else {})), now=1000.0 + i)]
    assert [(e["event"], e["details"]["window"]["first_index"]) for e in out] == [("fired", 3), ("resolved", 3)]
    assert m.processed == len(order)
    replay = [e for i in order for e in m.process(_stats(i, **(bad if 3 <= i <= 6 else {})), now=2000.0)]
    assert replay == [] and m.ignored == len(order)
    # too late (more than late_windows below the newest) is ignored too
    m.process(_stats(40))
    assert m.process(_stats(40 - m.policy.late_windows - 1, **bad)) == [] and m.ignored == len(order) + 1


def test_late_window_bookkeeping_survives_the_state_file():
    m = IncidentManager(Policy.load())
    for i in (0, 2):
        m.process(_stats(i))
    m2 = IncidentManager.from_state(Policy.load(), json.loads(json.dumps(m.state_dict())))
    assert len(m2.process(_stats(1))) == 0 and m2.processed == 3      # the late window 1 still counts once
    assert m2.process(_stats(2)) == [] and m2.ignored == 1


def test_predicted_fraud_rate_rise_is_score_drift_and_noise_is_not():
    p = Policy.load()
    burst = _stats(1, score={"predicted_fraud_rate": 0.028})            # fraud_burst x20: score PSI stays ~0
    [b] = [b for b in p.evaluate(burst) if b.type == "score_drift"]
    assert b.severity == "P1" and b.evidence["ratio"] > 20 and "predicted fraud rate" in b.summary
    for rate, n in ((0.0024, 5000), (0.02, 100), (0.0, 5000)):          # 2x by chance, tiny window, a drop
        assert not [b for b in p.evaluate(_stats(1, score={"predicted_fraud_rate": rate, "count": n}))
                    if b.type == "score_drift"]


def test_p1_score_drift_mutes_p3_feature_drift_but_p2_feature_drift_mutes_score_drift():
    p = Policy.load()
    score = Breach("score_drift", "P1", (), 20.0, "")
    small = p._feature_drift_breach({"orig_emptied": {"psi": 0.11, "severity": "P3"}}, p.bands("feature_drift"))
    kept, _ = p.inhibit([small, score])
    assert [b.type for b in kept] == ["score_drift"]
    big = p._feature_drift_breach({"amount": {"psi": 0.3, "severity": "P2"}}, p.bands("feature_drift"))
    kept, _ = p.inhibit([big, score])
    assert [b.type for b in kept] == ["feature_drift"]


def test_balance_reference_is_learned_despite_other_breaches_at_the_start():
    """A one-window drift at the start of a stream must not keep the balance rule unevaluated."""
    m = IncidentManager(Policy.load())
    first = {"features": {"errorBalanceDest": {"psi": 0.22, "drifted": True}}}
    out = [e for i in range(12) for e in m.process(
        _stats(i, **(first if i == 0 else {}), **({"balance_error_ratio": 0.535} if 3 <= i <= 6 else {})),
        now=1000.0 + i)]
    assert [(e["event"], e["type"], e["severity"]) for e in out] == [
        ("fired", "corrupted_balances", "P1"), ("resolved", "corrupted_balances", "P1")]


# --- on the real broker ---------------------------------------------------------------------------------------
def _metric(port: int, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


class _Receiver:
    """A local webhook receiver that answers 503 to the first ``fail`` posts, then 200."""

    def __init__(self, fail: int = 2) -> None:
        self.fail, self.posts, self.accepted = fail, 0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts += 1
                ok = outer.posts > outer.fail
                if ok:
                    outer.accepted.append(json.loads(body))
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _settle(s, worker: Worker, timeout_s: float = 150.0) -> list[dict]:
    """Wait until the last window is on drift.stats, no new window came for two polls, and the incident agent
    has processed every one of them. Returns the stats."""
    deadline = time.monotonic() + timeout_s
    prev, stable = -1, 0
    stats: list[dict] = []
    while time.monotonic() < deadline:
        stats = read_json(s, s.topic_drift_stats, idle_timeout_s=0.5)
        top = max((x["window"]["index"] for x in stats), default=-1)
        processed = _metric(worker.metrics_port, "breeboost_drift_stats_processed_total")
        stable = stable + 1 if len(stats) == prev else 0
        prev = len(stats)
        if top >= LAST_WINDOW and stable >= 2 and processed >= len(stats):
            return stats
        time.sleep(1.5)
    raise AssertionError(f"windows did not settle: {len(stats)} stats, top index "
                         f"{max((x['window']['index'] for x in stats), default=None)}\n{worker.log_text()[-3000:]}")


def _run(s, model: str, tmp_path, scenario: str | None, webhook: str | None = None):
    extra = ["--state-dir", str(tmp_path / "state")] + (["--webhook", webhook] if webhook else [])
    worker = Worker(s, model, tmp_path / "worker.log", role="all", extra_args=extra,
                    window_size=SIZE, window_idle_s=1.0).wait_ready(90)
    args = ["--count", str(COUNT), "--seed", "7", "--label-delay", "1.0"]
    if scenario:
        args += ["--scenario", scenario, "--scenario-start", str(START), "--scenario-end", str(END)]
    if scenario and scenario.startswith("concept_shift"):
        # a window's labels are those joined while the stream is at it, and labels travel one per message
        # through Faust's per-event path next to the scoring agent: at the simulator's full speed (10k/s) they
        # fell ~10 s behind (8 windows of 1,250 events' time) and the incident opened at the last window.
        # At 1,500/s a window spans 3.3 s and the same lag is a window or two, as with a real label delay.
        args += ["--rate", "1500"]
    summary = simulate(s, *args)
    assert summary["failed"] == 0
    stats = _settle(s, worker)
    events = read_json(s, s.topic_incidents, idle_timeout_s=1.0)
    for e in events:
        validate_event(e)
    return worker, stats, events


def _windows_note(stats: list[dict]) -> None:
    """Windows published without some partitions' events (a streams matter, not the incident contract):
    printed, so a run shows them, but not asserted here."""
    short = [(x["window"]["index"], x["window"]["events"], x["window"].get("partitions_missing"))
             for x in stats if x["window"].get("partitions_missing")]
    total = sum(x["window"]["events"] for x in stats)
    if total != COUNT:
        print(f"drift.stats hold {total} of {COUNT} events; windows missing partitions: {short}")


def _one_incident(events: list[dict], itype: str, severities: set[str], features: set[str] = frozenset()) -> dict:
    severe = {e["fingerprint"] for e in events if e["severity"] in SEVERE}
    fired = [e for e in events if e["event"] == "fired"]
    resolved = [e for e in events if e["event"] == "resolved"]
    summary = [(e["event"], e["type"], e["severity"], e["details"]["window"]["first_index"],
                e["details"]["window"]["evaluated_index"]) for e in events]
    assert len(fired) == 1 and len(severe) == 1, summary
    f = fired[0]
    assert f["type"] == itype and f["severity"] in severities, summary
    assert {e["details"]["peak_severity"] for e in events} <= severities, summary
    assert features <= set(f["details"]["affected_features"]) | {
        x for e in events for x in e["details"]["affected_features"]}, summary
    assert len(resolved) == 1 and resolved[0]["fingerprint"] == f["fingerprint"], summary
    assert resolved[0]["incident_id"] == f["incident_id"] and resolved[0]["status"] == "resolved"
    # fired inside the scenario, resolved after it stopped (window k holds ~ events [k*SIZE, (k+1)*SIZE); the
    # agent evaluates windows in arrival order, which can differ a little from index order)
    assert START // SIZE - 1 <= f["details"]["window"]["first_index"] <= END // SIZE, summary
    assert resolved[0]["details"]["window"]["evaluated_index"] >= END // SIZE, summary
    w, rw = f["details"]["window"], resolved[0]["details"]["window"]
    print(f"\nE2E {itype} {f['severity']} (peak {resolved[0]['details']['peak_severity']}): first breached window "
          f"{w['first_index']}, fired at {w['evaluated_index']}, last breached {rw['last_index']}, resolved at "
          f"{rw['evaluated_index']}; events {[e['event'] for e in events]}")
    return f


def _replay_opens_nothing(s, worker: Worker, before: list[dict]) -> None:
    from breeboost.kafka_io import make_producer, read_topic

    records = [(r.key, r.value) for r in read_topic(s, s.topic_drift_stats, idle_timeout_s=0.5)]
    done = _metric(worker.metrics_port, "breeboost_drift_stats_processed_total")
    producer = make_producer(s)
    try:
        for key, value in records:
            producer.send(s.topic_drift_stats, key=key, value=value)
        producer.flush(30)
    finally:
        producer.close(5)
    deadline = time.monotonic() + 60
    while _metric(worker.metrics_port, "breeboost_drift_stats_processed_total") < done + len(records):
        assert time.monotonic() < deadline, "the incident agent did not read the replayed stats"
        time.sleep(0.5)
    after = read_json(s, s.topic_incidents, idle_timeout_s=1.0)
    assert [e["event_id"] for e in after] == [e["event_id"] for e in before]


def test_missing_fields_end_to_end_with_webhook_retries_and_replay(broker_bootstrap, paysim_model, tmp_path):
    s = fresh_settings(broker_bootstrap, window_size=SIZE, window_idle_s=1.0)
    receiver = _Receiver(fail=2)
    worker = None
    try:
        worker, stats, events = _run(s, paysim_model, tmp_path, "missing_fields:fraction=0.2", webhook=receiver.url)
        f = _one_incident(events, "missing_data", {"P1", "P2"}, {"amount"})
        _windows_note(stats)
        # webhook: the first two posts failed (503) and were retried; fired and resolved both delivered
        deadline = time.monotonic() + 30
        while len(receiver.accepted) < len(events) and time.monotonic() < deadline:
            time.sleep(0.2)
        got = [(a["status"], a["alerts"][0]["labels"]["incident_id"]) for a in receiver.accepted]
        assert got == [(e["status"], e["incident_id"]) for e in events], got
        assert got[0] == ("firing", f["incident_id"]) and got[-1][0] == "resolved"
        assert _metric(worker.metrics_port, "breeboost_webhook_deliveries_total", outcome="retried") >= 2
        assert _metric(worker.metrics_port, "breeboost_webhook_deliveries_total", outcome="delivered") == len(events)
        _replay_opens_nothing(s, worker, events)
    finally:
        if worker is not None:
            worker.stop()
        receiver.close()


SCENARIOS = [
    ("amount_scale:factor=3", "feature_drift", {"P1"}, {"amount"}),
    ("type_mix:TRANSFER=0.4", "feature_drift", {"P1", "P2"}, {"type"}),
    ("schema_break:field=amount,mode=string", "schema_mismatch", {"P1"}, set()),
    ("stale_clock:lag=7200", "stale_data", {"P1"}, set()),
    ("fraud_burst:factor=20", "score_drift", {"P1"}, set()),
    ("balance_corruption:fraction=0.3", "corrupted_balances", {"P1"}, set()),
    # labels only: the default signature (every genuine PAYMENT of 5,000-7,000 labelled fraud, features
    # unchanged), so recall falls (#16, #18)
    ("concept_shift", "concept_drift", {"P1", "P2"}, set()),
    # 20% malformed sits on the P1/P2 boundary (dlq_ratio 0.19-0.21); no oversized (1 MB) payloads, to keep
    # the broker traffic small (oversized ones are covered in tests/test_streams.py)
    ("malformed:fraction=0.2,kinds=binary|truncated", "dead_letter_spike", {"P1", "P2"}, set()),
]


@pytest.mark.slow
@pytest.mark.parametrize("scenario,itype,severities,features", SCENARIOS, ids=[s[0].split(":")[0] for s in SCENARIOS])
def test_scenario_end_to_end(broker_bootstrap, paysim_model, tmp_path, scenario, itype, severities, features):
    s = fresh_settings(broker_bootstrap, window_size=SIZE, window_idle_s=1.0)
    worker = None
    try:
        worker, stats, events = _run(s, paysim_model, tmp_path, scenario)
        f = _one_incident(events, itype, severities, features)
        if scenario.startswith("amount_scale"):
            _rca_names_amount_first(s, f)
    finally:
        if worker is not None:
            worker.stop()


def _rca_names_amount_first(s, fired: dict) -> None:
    import subprocess

    r = subprocess.run(BB + ["rca", "--mode", "summary", "--json", "--read-timeout", "1.0"],
                       env=settings_env(s), capture_output=True, timeout=120, cwd=str(_empty_dir()))
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    doc = orjson.loads(r.stdout)
    [row] = [x for x in doc["incidents"] if x["incident_id"] == fired["incident_id"]]
    assert row["first_changed_feature"] == "amount", row
    assert "amount changed first" in row["likely_cause"], row["likely_cause"]


def _empty_dir():
    import tempfile

    # rca reads ./incident_log.jsonl when present: run it where there is none, so it reads the topic
    return tempfile.mkdtemp(prefix="bb-rca-")


@pytest.mark.slow
def test_calm_traffic_opens_no_incident(broker_bootstrap, paysim_model, tmp_path):
    s = fresh_settings(broker_bootstrap, window_size=SIZE, window_idle_s=1.0)
    worker = None
    try:
        worker, stats, events = _run(s, paysim_model, tmp_path, None)
        assert [e for e in events if e["severity"] in SEVERE] == []
        _windows_note(stats)
    finally:
        if worker is not None:
            worker.stop()
