"""The label join on the real broker: 1 and 2 scoring workers on 4 partitions, and a worker killed -9 and
restarted, join >= 99.9% of the labels; malformed labels are dead-lettered and counted (docs/labels.md)."""
from __future__ import annotations

import subprocess
import time
import urllib.request

import orjson
import pytest

from breeboost.kafka_io import make_producer, read_topic
from breeboost.settings import Settings
from detectors.records import LabelPartial, decode_partial
from tests.streamkit import BB, Worker, settings_env, simulate

pytestmark = pytest.mark.slow


def _outcomes(workers: list[Worker]) -> dict[str, float]:
    seen: dict[str, float] = {}
    for w in workers:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{w.metrics_port}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("breeboost_labels_total{"):
                outcome = line.split('outcome="')[1].split('"')[0]
                seen[outcome] = seen.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return seen


def _wait_joined(workers: list[Worker], n: int, timeout_s: float = 90.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = _outcomes(workers)
        if seen.get("joined", 0) >= n or time.monotonic() > deadline:
            return seen
        time.sleep(1.0)


def _label_partials(s: Settings) -> list[LabelPartial]:
    out = []
    for r in read_topic(s, s.topic_drift_partials, idle_timeout_s=2.0, timeout_s=60):
        rec = decode_partial(r.value)
        if isinstance(rec, LabelPartial):
            out.append(rec)
    return out


@pytest.fixture
def s(broker_bootstrap) -> Settings:
    from tests.conftest import fresh_settings

    return fresh_settings(broker_bootstrap, partitions=4, window_size=4000, window_idle_s=1.0)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_every_label_joins_at_any_worker_count(s, paysim_model, tmp_path, n_workers):
    n = 8_000
    workers = [Worker(s, paysim_model, tmp_path / f"w{i}.log", role="scoring") for i in range(n_workers)]
    try:
        for w in workers:
            w.wait_ready(90)
        summary = simulate(s, "--count", str(n), "--rate", "4000", "--label-delay", "1", "--seed", "7")
        assert summary["labels_acked"] == n
        bad = [b"{not json", orjson.dumps({"transaction_id": 5, "isFraud": 1}),
               orjson.dumps([{"transaction_id": "tx-7-1", "isFraud": 3}])]
        p = make_producer(s)
        for v in bad:
            p.send(s.topic_labels, key=b"k", value=v)
        p.send(s.topic_labels, key=b"tx-7-2", value=orjson.dumps({"transaction_id": "tx-7-2", "isFraud": 0}))
        p.flush()
        p.close()
        seen = _wait_joined(workers, n)
        deadline = time.monotonic() + 30
        while (seen.get("malformed", 0) < 3 or seen.get("duplicate", 0) < 1) and time.monotonic() < deadline:
            time.sleep(1.0)
            seen = _outcomes(workers)
        print(f"{n_workers} worker(s): label outcomes {seen}")
        assert seen.get("joined", 0) >= 0.999 * n and seen.get("joined", 0) <= n
        assert seen.get("malformed") == 3 and seen.get("duplicate") == 1
        dead = [orjson.loads(r.value) for r in read_topic(s, s.labels_dlq, idle_timeout_s=2.0, expect=3)]
        assert sorted(d["reason"] for d in dead) == ["label_invalid", "label_invalid", "label_invalid_json"]
        assert sum(p.counts.n for p in _label_partials(s)) == seen["joined"]   # every joined label shipped
    finally:
        for w in workers:
            w.stop()


def test_backfill_labels_join_when_event_time_runs_ahead_of_the_clock(s, paysim_model, tmp_path):
    # a replay of last month's file: 20,000 rows at 5k/s pack ~2.8 h of PaySim event time into 4 s, and their
    # labels (4 s late) come after every score, more than the 1 h horizon of stream time later. With a
    # stream-time horizon alone 15,792 of 20,000 joined (the rest waited to count unknown); now all do.
    from models.io import write_table
    from simulator import generate

    n = 20_000
    path = tmp_path / "last_month.csv"
    write_table(generate(n, seed=8, start_time=time.time() - 30 * 86400), path)
    w = Worker(s, paysim_model, tmp_path / "w.log", role="scoring", freshness_clock="stream")
    try:
        w.wait_ready(90)
        r = subprocess.run(BB + ["replay", "--data", str(path), "--rate", "5000", "--label-delay", "4"],
                           env=settings_env(s), capture_output=True, timeout=180)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        summary = orjson.loads(r.stdout.decode().strip().splitlines()[-1])
        assert (summary["labels_acked"], summary["event_times"]) == (n, "file")
        seen = _wait_joined([w], n)
        print(f"label outcomes {seen}")
        assert seen.get("joined", 0) == n and not seen.get("late_beyond_horizon") and not seen.get("expired")
    finally:
        w.stop()


def test_worker_killed_and_restarted_joins_every_label(s, paysim_model, tmp_path):
    n = 16_000
    first = Worker(s, paysim_model, tmp_path / "w1.log", role="scoring")
    second = Worker(s, paysim_model, tmp_path / "w2.log", role="scoring")
    third = None
    try:
        first.wait_ready(90)
        second.wait_ready(90)
        pub = subprocess.Popen(BB + ["simulate", "--count", str(n), "--rate", "2000", "--label-delay", "1",
                                     "--seed", "8"], env=settings_env(s), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        time.sleep(4.0)
        second.kill()                                    # mid-stream: scores routed, labels half joined
        third = Worker(s, paysim_model, tmp_path / "w3.log", role="scoring").wait_ready(90)
        out, err = pub.communicate(timeout=120)
        assert pub.returncode == 0, err.decode()[-2000:]
        deadline = time.monotonic() + 120
        joined = 0
        while time.monotonic() < deadline:
            joined = sum(p.counts.n for p in _label_partials(s))
            if joined >= 0.999 * n:
                break
            time.sleep(2.0)
        restored = third.log_text().count('"label join restored"')
        print(f"worker kill: labels joined {joined} of {n} (on drift.partials, at least once), "
              f"outcomes of the living workers {_outcomes([first, third])}, restores logged {restored}")
        assert joined >= 0.999 * n
        assert restored >= 1
    finally:
        for w in (first, second, third):
            if w is not None:
                w.stop()
