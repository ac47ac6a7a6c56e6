"""A third-party client end to end: confluent-kafka (librdkafka) produces the input the worker scores and
reads every output topic a user reads (scores, dead letters, drift.stats, incidents), with the two hostile
messages of the amplification bound among the input."""
from __future__ import annotations

import json
import time
import uuid

import orjson
import pytest

from simulator import encode_events, generate
from tests.conftest import fresh_settings
from tests.streamkit import Worker

ck = pytest.importorskip("confluent_kafka")


def _read(s, topics: list[str], done, timeout_s: float = 120.0) -> dict[str, list]:
    c = ck.Consumer({"bootstrap.servers": s.bootstrap, "group.id": "ck-" + uuid.uuid4().hex[:8],
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([ck.TopicPartition(t, p, ck.OFFSET_BEGINNING) for t in topics for p in range(s.partitions)])
    got: dict[str, list] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(got):
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got[m.topic()].append(json.loads(m.value()))
    finally:
        c.close()
    return got


def test_confluent_kafka_produces_and_reads_every_output(broker_bootstrap, paysim_model, tmp_path):
    s = fresh_settings(broker_bootstrap, partitions=2, window_size=1000, window_idle_s=1.0)
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="all",
                    extra_args=["--state-dir", str(tmp_path / "state")],
                    window_size=1000, window_idle_s=1.0).wait_ready(90)
    try:
        rows = [orjson.loads(v) for v in encode_events(generate(3001, seed=4), with_label=False, seed=4)]
        malformed = encode_events(generate(6000, seed=5), with_label=False, seed=5,
                                  scenarios=["malformed:fraction=0.3"])
        p = ck.Producer({"bootstrap.servers": s.bootstrap, "message.max.bytes": 2_000_000})
        p.produce(s.topic_transactions, key=b"a", value=orjson.dumps(rows[0]), partition=0)
        p.produce(s.topic_transactions, key=b"b", value=b"[" + b"1," * 299_999 + b"1]", partition=0)
        p.produce(s.topic_transactions, key=b"c", value=b"[" + b"{}," * 149_999 + b"{}]", partition=1)
        p.produce(s.topic_transactions, key=b"d", value=orjson.dumps(rows[1:]), partition=1)
        for i, v in enumerate(malformed):
            p.produce(s.topic_transactions, key=b"k%d" % i, value=v, partition=i % 2)
            if i % 1000 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        del p
        events = 3001 + len(malformed)    # besides the two hostile messages: each scored or dead-lettered once

        def done(got):
            scores = sum(len(d) if isinstance(d, list) else 1 for d in got[s.topic_scores])
            return scores + len(got[s.topic_dlq]) >= events + 2 and got[s.topic_incidents]

        got = _read(s, [s.topic_scores, s.topic_dlq, s.topic_drift_stats, s.topic_incidents], done)
    finally:
        worker.stop()
    scores = sum(len(d) if isinstance(d, list) else 1 for d in got[s.topic_scores])
    dead = got[s.topic_dlq]
    hostile = [d for d in dead if d["offset"] in (1, 0) and d["item"] is None and d["reason"] == "envelope_too_large"]
    keys = {(d["partition"], d["offset"], d["item"]) for d in dead}
    assert len(hostile) == 2 and len(keys) == len(dead)          # each hostile message: one dead letter; no twice
    assert scores + len(dead) - 2 == events and scores >= 3001 + 0.6 * len(malformed), (scores, len(dead))
    assert got[s.topic_drift_stats] and all(w["stream"] == s.topic_transactions for w in got[s.topic_drift_stats])
    # the audit accounts for the hostile messages' 450,000 items by their two whole-message dead letters
    from streams.audit import audit_topics

    rep = audit_topics(s, idle_timeout_s=1.0)
    assert rep.ok and rep.unexpected == 0, rep.as_dict()
    assert rep.produced == 1 + 300_000 + 150_000 + 3000 + len(malformed) and rep.scored == scores
    incidents = got[s.topic_incidents]
    assert {e["type"] for e in incidents} & {"dead_letter_spike", "schema_mismatch"}, incidents

