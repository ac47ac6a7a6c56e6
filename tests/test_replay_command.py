"""``breeboost replay`` (issue 16 item 6): a user's labelled file streamed in file order, and freshness
measured against the stream's own clock so a backfill does not page stale_data.

The fast tests check the table roles (label out of the record, ids from the file or generated, labels
that are not 0/1 counted), the publisher on a fake producer (file order, labels keyed by transaction id,
delivery counting), and the clocks. The real-broker tests (slow: a worker start and two replays each)
replay last month's CSV and JSONL through a worker in ``freshness_clock = stream`` mode with the incident
agent: every row scored or dead-lettered with its reason (the audit), every label on its partition with
its transaction's routed score (what the label join needs; its join counts are the label join's tests),
freshness lag 0, no stale_data incident; and live traffic whose event times really are late (the simulator's
``stale_clock``) on a default (wall clock) worker still opens stale_data.
"""
from __future__ import annotations

import subprocess
import time
import urllib.request

import numpy as np
import orjson
import pytest

from breeboost.commands.replay import file_id_prefix, load_replay_table
from detectors.freshness import StreamClock, WallClock
from simulator import generate
from simulator.replay import Replayer, ReplayTable
from tests.conftest import fresh_settings
from tests.streamkit import BB, Worker, read_json, settings_env

MONTH_AGO = time.time() - 30 * 86400


# --- fast: the table, the publisher, the clocks -------------------------------------------------------------
def test_table_roles_ids_and_labels():
    cols = {"transaction_id": np.array(["a", None, "c"], dtype=object), "amount": np.array([1.0, 2.0, np.nan]),
            "isFraud": np.array([1, None, 7], dtype=object), "event_time": np.array([10.0, 11.0, 12.0])}
    t = ReplayTable(cols, label="isFraud", id_column="transaction_id", event_time="event_time", id_prefix="f")
    assert t.transaction_ids.tolist() == ["a", "f-1", "c"] and t.generated_ids == 1
    assert t.labels.tolist() == [1, -1, -1] and t.unlabelled == 2 and t.event_times == "file"
    recs = t.records(0, 3)
    assert recs[0] == {"transaction_id": "a", "amount": 1.0, "event_time": 10.0}
    assert recs[2] == {"transaction_id": "c", "event_time": 12.0}          # NaN amount left out: missing_field
    assert all("isFraud" not in r for r in recs)
    stamped = ReplayTable(cols, label="isFraud", id_column="transaction_id", event_time="event_time", id_prefix="f",
                          restamp=True)
    assert stamped.event_times == "publish" and {r["event_time"] for r in stamped.records(0, 3, now=99.0)} == {99.0}


def test_file_readers_and_deterministic_ids(tmp_path):
    from models.io import write_table

    cols = {k: v for k, v in generate(20, seed=3).items() if k != "transaction_id"}
    ids = {}
    for ext in ("csv", "jsonl", "parquet"):
        if ext == "parquet":
            pytest.importorskip("pyarrow")
        path = tmp_path / f"rows.{ext}"
        write_table(cols, path)
        t = load_replay_table(str(path))
        assert len(t) == 20 and t.label == "isFraud" and t.generated_ids == 20 and t.unlabelled == 0
        assert t.labels.tolist() == cols["isFraud"].tolist()
        assert load_replay_table(str(path)).transaction_ids.tolist() == t.transaction_ids.tolist()
        ids[ext] = t.transaction_ids[0]
    assert len(set(ids.values())) == len(ids)             # each file its own ids
    assert file_id_prefix(tmp_path / "rows.csv").startswith("rows-")


class _Future:
    def __init__(self) -> None:
        self.ok, self.err = [], []

    def add_callback(self, f, *a):
        f(*a, None)

    def add_errback(self, f, *a):
        pass


class _FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def partitions_for(self, topic):
        return {0, 1}

    def send(self, topic, key, value, partition):
        self.sent.append((topic, key, value))
        return _Future()

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        pass


def test_replayer_sends_in_file_order_and_counts():
    from breeboost.settings import Settings

    cols = generate(50, seed=5)
    cols["isFraud"] = cols["isFraud"].astype(object)
    cols["isFraud"][3] = None                                   # one row without a label
    t = ReplayTable(cols, label="isFraud", id_column="transaction_id", event_time="event_time", id_prefix="x")
    fake = _FakeProducer()
    summary = Replayer(Settings(), t, label_delay=0.0, producer=fake).run()
    tx = [orjson.loads(v) for topic, _, v in fake.sent if topic == "transactions"]
    labels = [(k, orjson.loads(v)) for topic, k, v in fake.sent if topic == "labels"]
    assert [r["transaction_id"] for r in tx] == cols["transaction_id"].tolist()
    assert [r["event_time"] for r in tx] == cols["event_time"].tolist() and all("isFraud" not in r for r in tx)
    assert [k.decode() for k, _ in labels] == [d["transaction_id"] for _, d in labels]
    assert len(labels) == 49 and cols["transaction_id"][3] not in {d["transaction_id"] for _, d in labels}
    assert (summary["sent"], summary["acked"], summary["labels_acked"], summary["unlabelled"], summary["failed"]) == \
        (50, 50, 49, 1, 0)
    assert summary["event_times"] == "file" and summary["rows"] == 50


def test_stream_clock_measures_lateness_not_age():
    t = MONTH_AGO + np.arange(1000, dtype=np.float64)          # last month, in order
    parts = np.arange(1000) % 4
    assert WallClock().lags(parts, t, time.time()).min() > 29 * 86400
    clock = StreamClock()
    assert clock.lags(parts, t, time.time()).max() == 0.0       # in order on every partition: never late
    late = clock.lags(np.array([0]), np.array([t[0]]), time.time())
    assert late.tolist() == [t[996] - t[0]]                     # far behind its partition's newest: late
    clock.forget([0])
    assert 0 not in clock.watermarks and 1 in clock.watermarks


# --- the real broker ---------------------------------------------------------------------------------------
SIZE = 1000


def _metric(port: int, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _replay(s, path, *args: str) -> dict:
    r = subprocess.run(BB + ["replay", "--data", str(path), "--label-delay", "0.5", *args], env=settings_env(s),
                       capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    return orjson.loads(r.stdout.decode().strip().splitlines()[-1])


def _settle(s, worker: Worker, events: int, timeout_s: float = 120.0):
    """Wait until the audit finds every one of ``events`` transactions scored or dead-lettered, drift.stats
    stopped growing and the incident agent processed every window; returns ``(audit, stats)``. (Windows
    closed by the idle timer between the two replays take no later events: those count as late partials,
    so drift.stats may hold fewer events than were scored.)"""
    from streams.audit import audit_topics

    deadline = time.monotonic() + timeout_s
    prev, stable = -1, 0
    while time.monotonic() < deadline:
        rep = audit_topics(s, expect=events, idle_timeout_s=0.5)
        stats = read_json(s, s.topic_drift_stats, idle_timeout_s=0.5)
        stable = stable + 1 if len(stats) == prev else 0
        prev = len(stats)
        if rep.produced >= events and not rep.missing and stable >= 2 and \
                _metric(worker.metrics_port, "breeboost_drift_stats_processed_total") >= len(stats):
            return rep, stats
        time.sleep(1.0)
    raise AssertionError(f"not settled: audit {rep.as_dict()}, {len(stats)} windows\n{worker.log_text()[-3000:]}")


def _unrouted(s) -> dict:
    """The labels on the topic, the scored ids routed to scores.by_id, the labels whose id was never routed
    and those routed to another partition than the label's (by id prefix)."""
    from breeboost.kafka_io import read_topic
    from streams.label_route import decode_routed

    routed = {}
    for r in read_topic(s, s.scores_by_id, 1.0):
        for tid in decode_routed(r.value).ids:
            routed[tid] = r.partition
    labels = {orjson.loads(r.value)["transaction_id"]: r.partition for r in read_topic(s, s.topic_labels, 1.0)}
    missing = [t for t in labels if t not in routed]
    moved = [t for t in labels if t in routed and routed[t] != labels[t]]
    prefix = lambda t: t.rsplit("-", 1)[0]
    return {"labels": len(labels), "routed": len(routed), "never_routed": len(missing),
            "other_partition": len(moved), "by_prefix": {p: sum(prefix(t) == p for t in missing + moved)
                                                         for p in {prefix(t) for t in missing + moved}}}


def _last_month_files(tmp_path):
    """A CSV with ids and two bad rows (a missing amount, a text amount) and one unlabelled row, and a JSONL
    without ids, both from last month (event times from the file)."""
    from models.io import write_table

    a = generate(3000, seed=11, start_time=MONTH_AGO)
    a["amount"] = a["amount"].astype(object)
    a["amount"][100], a["amount"][200] = None, "lots"
    a["isFraud"] = a["isFraud"].astype(object)
    a["isFraud"][300] = None
    csv_path = tmp_path / "last_month.csv"
    write_table(a, csv_path)
    b = {k: v for k, v in generate(2000, seed=12, start_index=3000, start_time=MONTH_AGO).items()
         if k != "transaction_id"}
    jsonl_path = tmp_path / "last_month.jsonl"
    write_table(b, jsonl_path)
    return csv_path, jsonl_path


@pytest.mark.slow
def test_backfill_replay_scored_joined_and_not_stale(broker_bootstrap, paysim_model, tmp_path):
    s = fresh_settings(broker_bootstrap, window_size=SIZE, window_idle_s=1.0)
    csv_path, jsonl_path = _last_month_files(tmp_path)
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="all",
                    extra_args=["--state-dir", str(tmp_path / "state")], window_size=SIZE, window_idle_s=1.0,
                    freshness_clock="stream").wait_ready(90)
    try:
        one = _replay(s, csv_path)
        two = _replay(s, jsonl_path, "--rate", "4000")
        assert (one["acked"], one["labels_acked"], one["unlabelled"], one["event_times"]) == (3000, 2999, 1, "file")
        assert (two["acked"], two["labels_acked"], two["generated_ids"]) == (2000, 2000, 2000)
        rep, stats = _settle(s, worker, 5000)
        assert rep.ok and rep.produced == 5000 and rep.scored == 4998, rep.as_dict()
        assert sum(rep.dlq_by_reason.values()) == 2, rep.dlq_by_reason          # the two bad rows, with reasons
        # the labels meet their scores: each scored row's score was routed to its label's partition of
        # scores.by_id (the join's own counts are the label join's tests; the two dead-lettered rows have none)
        route = _unrouted(s)
        assert (route["labels"], route["routed"], route["never_routed"], route["other_partition"]) == \
            (4999, 4998, 2, 0), route
        assert _metric(worker.metrics_port, "breeboost_labels_total", outcome="joined") > 0
        assert max(x["freshness"]["lag_p95_s"] for x in stats) == 0.0
        incidents = read_json(s, s.topic_incidents, idle_timeout_s=1.0)
        assert not [e for e in incidents if e["type"] == "stale_data"], incidents
    finally:
        worker.stop()


@pytest.mark.slow
def test_live_traffic_that_is_stale_still_pages(broker_bootstrap, paysim_model, tmp_path):
    """The default wall clock: the simulator's stale_clock (event times 2 h behind) opens stale_data P1."""
    from tests.streamkit import simulate

    s = fresh_settings(broker_bootstrap, window_size=SIZE, window_idle_s=1.0)
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="all",
                    extra_args=["--state-dir", str(tmp_path / "state")], window_size=SIZE,
                    window_idle_s=1.0).wait_ready(90)
    try:
        summary = simulate(s, "--count", "6000", "--seed", "3", "--no-labels", "--scenario", "stale_clock:lag=7200",
                           "--scenario-start", "1500", "--scenario-end", "4500")
        assert summary["failed"] == 0
        _, stats = _settle(s, worker, 6000)
        assert max(x["freshness"]["lag_p95_s"] for x in stats) > 3600
        incidents = read_json(s, s.topic_incidents, idle_timeout_s=1.0)
        fired = [e for e in incidents if e["type"] == "stale_data" and e["event"] == "fired"]
        assert [e["severity"] for e in fired] == ["P1"], incidents
    finally:
        worker.stop()
