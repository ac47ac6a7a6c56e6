"""Streams: the scoring pipeline and windows as plain functions, then the Faust worker on the real broker."""
from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from breeboost.settings import Settings
from models.scorer import Scorer
from simulator import encode_events, generate
from simulator.partition import partitions_for
from streams.audit import audit_topics
from streams.records import Msg
from streams.stages import WorkerStages
from tests.streamkit import Worker, read_json, simulate

PARTITIONS = 4


def _messages(n: int, seed: int, scenarios=(), partitions: int = PARTITIONS, topic: str = "transactions") -> list[Msg]:
    """Simulated transactions laid out as Kafka would: partition by key, offsets in order per partition."""
    cols = generate(n, seed=seed, scenarios=scenarios)
    payloads = encode_events(cols, with_label=False, scenarios=scenarios, seed=seed)
    keys = cols["nameOrig"]
    parts = partitions_for(keys, partitions)
    next_offset = [0] * partitions
    out = []
    for key, p, value in zip(keys.tolist(), parts.tolist(), payloads):
        out.append(Msg(topic, p, next_offset[p], value, key.encode()))
        next_offset[p] += 1
    return out


def _settings(**kw) -> Settings:
    base = dict(partitions=PARTITIONS, window_size=8000, window_idle_s=1.0)
    base.update(kw)
    return Settings.from_env({}, **base)


def _run(processor: WorkerStages, messages: list[Msg], batch: int = 500):
    scores, dlq, partials = [], [], []
    for i in range(0, len(messages), batch):
        o = processor.scoring.process(messages[i:i + batch])
        scores += o.scores
        dlq += o.dead_letters
        partials += o.partials
    o = processor.windows.tick(time.time() + 3600)   # traffic stopped: idle windows close
    partials += o.partials
    return scores, dlq, partials


def _aggregate(processor: WorkerStages, partials) -> list[dict]:
    stats = [orjson.loads(v) for _, v in processor.aggregator.aggregate([v for _, v in partials])]
    stats += [orjson.loads(v) for _, v in processor.aggregator.tick(time.time() + 3600)]
    return stats


@pytest.fixture(scope="module")
def scorer(paysim_model):
    return Scorer.load(paysim_model)


def test_every_event_is_scored_or_dead_lettered_exactly_once(scorer):
    msgs = _messages(12_000, seed=5, scenarios=["malformed:fraction=0.02", "missing_fields:fraction=0.05"])
    # hand-made bad input on top: an envelope with a bad item, a duplicate id, an oversized message
    good = orjson.loads(next(m.value for m in msgs if m.value.startswith(b"{") and b"amount" in m.value))
    extra = [orjson.dumps([dict(good, transaction_id="env-1"), 7, dict(good, transaction_id="env-2")]),
             orjson.dumps(dict(good, transaction_id=msgs[0].value and orjson.loads(msgs[1].value)["transaction_id"])),
             b'{"transaction_id": "big", "pad": "' + b"x" * 1_100_000 + b'"}', b"[]"]
    off = max(m.offset for m in msgs if m.partition == 0) + 1
    msgs += [Msg("transactions", 0, off + i, v, b"k") for i, v in enumerate(extra)]
    proc = WorkerStages.build(scorer, _settings())
    scores, dlq, _ = _run(proc, msgs)
    seen = {}
    for _, v in scores:
        for d in (orjson.loads(v) if v.startswith(b"[") else [orjson.loads(v)]):
            key = (d["partition"], d["offset"], d["item"])
            assert key not in seen
            seen[key] = "scored"
            assert 0.0 <= d["fraud_probability"] <= 1.0 and d["model_version"] == scorer.version
    reasons = {}
    for _, v in dlq:
        d = orjson.loads(v)
        key = (d["partition"], d["offset"], d["item"])
        assert key not in seen
        seen[key] = d["reason"]
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
        assert d["raw_b64"] is not None and d["topic"] == "transactions"
    expected = set()
    for m in msgs:
        try:
            doc = orjson.loads(m.value) if len(m.value) <= 1_000_000 else None
        except orjson.JSONDecodeError:
            doc = None
        items = range(len(doc)) if isinstance(doc, list) and doc else [None]
        expected |= {(m.partition, m.offset, i) for i in items}
    assert set(seen) == expected
    assert {"invalid_json", "missing_field", "oversized", "not_an_object", "duplicate_id", "empty_envelope"} <= set(reasons)
    assert seen[(0, off, 0)] == "scored" and seen[(0, off, 1)] == "not_an_object"


def test_windows_are_offset_aligned_and_merge_exactly(scorer):
    msgs = _messages(40_000, seed=9)
    proc = WorkerStages.build(scorer, _settings())
    _, _, partials = _run(proc, msgs)
    stats = _aggregate(proc, partials)
    per_partition = np.bincount([m.partition for m in msgs], minlength=PARTITIONS)
    size = 8000 // PARTITIONS
    assert [s["window"]["index"] for s in stats] == list(range(len(stats)))
    assert len(stats) == int(np.ceil(per_partition.max() / size))
    # each merged window holds exactly the events at offsets [k*size, (k+1)*size) of every partition
    for s in stats:
        k = s["window"]["index"]
        assert s["window"]["events"] == int(np.clip(per_partition - k * size, 0, size).sum())
    assert sum(s["window"]["events"] for s in stats) == len(msgs)


def test_two_workers_give_the_same_windows_as_one(scorer):
    msgs = _messages(30_000, seed=13, scenarios=["amount_scale:factor=2"])
    one = WorkerStages.build(scorer, _settings())
    _, _, partials_one = _run(one, msgs)
    # two workers: each holds two partitions; interleaving differs from the one-worker run
    a, b = WorkerStages.build(scorer, _settings()), WorkerStages.build(scorer, _settings())
    _, _, pa = _run(a, [m for m in msgs if m.partition in (0, 3)], batch=300)
    _, _, pb = _run(b, [m for m in msgs if m.partition in (1, 2)], batch=700)
    merged_one = _aggregate(one, partials_one)
    aggregator = WorkerStages.build(scorer, _settings())
    merged_two = _aggregate(aggregator, pb + pa)
    assert len(merged_one) == len(merged_two) > 2
    for x, y in zip(merged_one, merged_two):
        assert x["window"]["events"] == y["window"]["events"]
        assert x["features"] == y["features"]
        assert x["score"] == y["score"] and x["missing_ratio"] == y["missing_ratio"]


def test_drift_scenario_moves_the_changed_feature_only(scorer):
    calm = _aggregate(p := WorkerStages.build(scorer, _settings()), _run(p, _messages(24_000, seed=21))[2])
    drift = _aggregate(q := WorkerStages.build(scorer, _settings()),
                       _run(q, _messages(24_000, seed=22, scenarios=["amount_scale:factor=3"]))[2])
    full = [s for s in calm if s["window"]["events"] >= 7000]
    assert full and all(not s["drifted_features"] for s in full)
    assert all(s["features"]["amount"]["psi"] < 0.1 for s in full)
    dfull = [s for s in drift if s["window"]["events"] >= 7000]
    assert dfull and all("amount" in s["drifted_features"] for s in dfull)
    assert all(s["features"]["amount"]["psi"] > 0.25 for s in dfull)


def test_missing_fields_count_in_the_window(scorer):
    proc = WorkerStages.build(scorer, _settings())
    _, dlq, partials = _run(proc, _messages(16_000, seed=4, scenarios=["missing_fields:fraction=0.2"]))
    stats = _aggregate(proc, partials)
    full = [s for s in stats if s["window"]["events"] >= 7000]
    assert full and all(0.15 < s["missing_ratio"] < 0.25 for s in full)
    assert sum(s["window"]["dead_lettered"] for s in stats) == len(dlq)


def test_idle_partition_window_closes_by_timer(scorer):
    proc = WorkerStages.build(scorer, _settings(window_idle_s=0.5))
    msgs = _messages(1000, seed=3)
    t = time.time()
    out = proc.scoring.process(msgs, now=t)
    assert not out.partials                       # no window is full yet

    def sketches(partials):
        return [v for _, v in partials if b'"kind":"partial"' in v]

    early = proc.windows.tick(t + 0.1).partials
    assert not sketches(early)                    # not idle yet: only progress heartbeats
    assert len(early) == len({m.partition for m in msgs})
    assert not sketches(proc.windows.tick(t + 1.0, caught_up=lambda p, off: False).partials)  # backlog: not idle
    closed = sketches(proc.windows.tick(t + 1.0).partials)
    assert len(closed) == len({m.partition for m in msgs})
    stats = [orjson.loads(v) for _, v in proc.aggregator.aggregate(closed, now=t + 1.0)]
    stats += [orjson.loads(v) for _, v in proc.aggregator.tick(t + 1.0 + 2 * proc.aggregator.gate.grace_s)]
    assert len(stats) == 1 and stats[0]["window"]["events"] == 1000


# --- on the real broker -----------------------------------------------------------------------------
def test_worker_scores_every_event_and_serves_metrics(kafka_settings, paysim_model, tmp_path):
    from tests.prom import scrape_and_query

    s = kafka_settings.replace(window_size=4000, window_idle_s=1.0)
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="scoring",
                    window_size=4000, window_idle_s=1.0).wait_ready()
    try:
        summary = simulate(s, "--count", "12000", "--seed", "17", "--label-delay", "0.5",
                           "--scenario", "malformed:fraction=0.03", "--scenario", "missing_fields:fraction=0.05")
        assert summary["acked"] == 12000 and summary["failed"] == 0
        rep = audit_topics(s, expect=12000, idle_timeout_s=3.0)
        deadline = time.monotonic() + 60
        while (rep.missing or rep.produced < 12000) and time.monotonic() < deadline:
            time.sleep(2)
            rep = audit_topics(s, expect=12000, idle_timeout_s=2.0)
        assert rep.ok and rep.produced == 12000, rep.as_dict()
        assert rep.dead_lettered > 0 and set(rep.dlq_by_reason) >= {"invalid_json", "missing_field"}
        deadline = time.monotonic() + 60   # the last window closes by the idle timer
        while True:
            stats = read_json(s, s.topic_drift_stats, idle_timeout_s=1.0)
            if sum(x["window"]["events"] for x in stats) >= 12000 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sum(x["window"]["events"] for x in stats) == 12000
        assert len({x["window_id"] for x in stats}) == len(stats)
        r = scrape_and_query(f"127.0.0.1:{worker.metrics_port}", [
            'breeboost_events_total{outcome="scored"}', 'breeboost_events_total{outcome="dead_lettered"}',
            'breeboost_dead_letters_total{reason="invalid_json"}', "breeboost_scoring_batch_seconds_count",
            "breeboost_event_latency_seconds_bucket", "breeboost_batch_size_events_count",
            'breeboost_feature_psi{feature="amount"}', 'breeboost_feature_ks_statistic{feature="amount"}',
            "breeboost_score_psi", "breeboost_windows_closed_total", "breeboost_model_info",
            "breeboost_predicted_fraud_total"], timeout=60)
        scored = sum(float(x["value"][1]) for x in r['breeboost_events_total{outcome="scored"}'])
        assert scored == rep.scored
    finally:
        worker.stop()


@pytest.mark.slow
def test_two_worker_processes_equal_one_on_four_partitions(broker_bootstrap, paysim_model, tmp_path):
    from tests.conftest import fresh_settings

    runs = []
    for n_workers in (1, 2):
        s = fresh_settings(broker_bootstrap, partitions=4, window_size=6000, window_idle_s=1.5)
        workers = [Worker(s, paysim_model, tmp_path / f"w{n_workers}-{i}.log", role="scoring", window_size=6000,
                          window_idle_s=1.5) for i in range(n_workers)]
        try:
            for w in workers:
                w.wait_ready(90)
            if n_workers == 2:   # both members in the group before traffic starts
                time.sleep(8)
            simulate(s, "--count", "24000", "--seed", "77", "--no-labels", "--scenario", "amount_scale:factor=2",
                     "--scenario-start", "12000")
            deadline = time.monotonic() + 90
            stats = []
            while time.monotonic() < deadline:
                stats = read_json(s, s.topic_drift_stats, idle_timeout_s=1.5)
                if sum(x["window"]["events"] for x in stats) >= 24000:
                    break
                time.sleep(2)
            runs.append(sorted(stats, key=lambda x: x["window"]["index"]))
            assert audit_topics(s, expect=24000).ok
        finally:
            for w in workers:
                w.stop()
    one, two = runs
    assert [x["window"]["events"] for x in one] == [x["window"]["events"] for x in two]
    for x, y in zip(one, two):
        assert x["features"] == y["features"] and x["score"]["psi"] == y["score"]["psi"]


# --- the aggregator's rules, one by one ---------------------------------------------------------------
class _Gate:
    """The window gate, each closed window as the indices and partitions the aggregator would merge."""

    def __init__(self, partitions, grace):
        from streams.gate import WindowGate
        self.gate = WindowGate(partitions, grace)

    def _as(self, closed):
        return [{"window": {"index": w.index, "complete": w.complete, "partitions_missing": w.partitions_missing},
                 "parts": [p.partition for p in w.partials]} for w in closed]

    def add(self, partial, now):
        return self._as(self.gate.add(partial, now))

    def ready(self, now):
        return self._as(self.gate.ready(now))

    def __getattr__(self, name):
        return getattr(self.gate, name)


def _agg(partitions=2, grace=3.0):
    return _Gate(partitions, grace)


def _partial(p, k, last, complete=True):
    from detectors.records import DriftPartial
    return DriftPartial("transactions", k, p, complete, 0, last, 100, "v", 0.0, {})


def _beat(p, k, last, idle=False):
    from detectors.records import Progress
    return Progress("transactions", p, k, last, idle, 0.0)


def test_aggregator_waits_for_a_lagging_but_alive_partition():
    a = _agg()
    assert a.add(_partial(0, 0, 99), 0.0) == []
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):          # partition 1 lags but keeps sending heartbeats
        assert a.add(_beat(1, 0, 40), t) == []
    out = a.add(_partial(1, 0, 99), 6.0)
    assert [o["parts"] for o in out] == [[0, 1]] and out[0]["window"]["complete"]


def test_aggregator_publishes_without_a_silent_partition_after_grace():
    a = _agg()
    a.add(_partial(0, 0, 99), 0.0)
    assert a.ready(2.9) == []
    out = a.ready(3.1)
    assert out[0]["parts"] == [0] and out[0]["window"]["partitions_missing"] == [1]
    assert a.add(_partial(1, 0, 99), 4.0) == [] and a.late == 1   # late partial: counted, ignored


def test_aggregator_heartbeat_overtaking_a_partial_does_not_split_the_window():
    a = _agg()
    a.add(_partial(0, 0, 99), 0.0)
    a.add(_beat(1, 1, 120), 0.1)                  # partition 1 already in window 1; its window-0 partial is in flight
    assert a.ready(0.5) == []
    out = a.add(_partial(1, 0, 99), 0.6)
    assert out[0]["parts"] == [0, 1]


def test_aggregator_idle_partitions_close_the_last_window_and_publish_in_order():
    a = _agg()
    out = a.add(_partial(0, 1, 150, complete=False), 0.0)   # idle partial of window 1
    out += a.add(_partial(1, 0, 99), 0.0)
    out += a.add(_partial(0, 0, 99), 0.0)                     # window 0 is whole, window 1 waits
    assert [o["window"]["index"] for o in out] == [0]
    out += a.add(_beat(1, 0, 99, idle=True), 0.5)             # partition 1 idles below window 1
    assert [o["window"]["index"] for o in out] == [0]         # partition 0 may still add to window 1
    out += a.add(_beat(0, 1, 150, idle=True), 0.5)
    assert [o["window"]["index"] for o in out] == [0, 1]
    assert out[1]["parts"] == [0] and out[1]["window"]["complete"]


def test_aggregator_start_up_idle_beats_do_not_close_the_first_window_early():
    # CI caught this with one worker on 4 partitions: the beats sent before traffic said partitions 1-3
    # idle with nothing read; partition 0's first window was whole before their records were fetched, and
    # window 0 was published with partition 0 alone (1,500 of 6,000 events; the rest were late)
    a = _agg()
    assert a.add(_beat(1, -1, -1, idle=True), 0.0) == []       # before traffic: nothing read, no backlog
    assert a.add(_partial(0, 0, 99), 0.2) == []                # partition 0's window 0 is complete
    assert a.add(_beat(1, -1, -1, idle=True), 0.5) == []       # a stale "no backlog" still holds window 0
    out = a.add(_partial(1, 0, 99), 1.0)
    assert [o["parts"] for o in out] == [[0, 1]] and out[0]["window"]["complete"]


def test_aggregator_a_partition_without_traffic_holds_a_window_only_for_grace():
    a = _agg()
    a.add(_partial(0, 0, 99), 0.0)
    assert a.add(_beat(1, -1, -1, idle=True), 2.9) == []
    out = a.add(_beat(1, -1, -1, idle=True), 3.1)
    assert out[0]["parts"] == [0] and out[0]["window"]["partitions_missing"] == [1]


def test_model_reload_between_batches_loses_nothing(scorer, paysim_model, tmp_path):
    import shutil

    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from streams.reload import ModelWatcher

    live = tmp_path / "live"
    shutil.copytree(paysim_model, live)
    proc = WorkerStages.build(Scorer.load(live), _settings())
    watcher = ModelWatcher(live, proc.model.scorer.version)
    msgs = _messages(6000, seed=31)
    first = proc.scoring.process(msgs[:3000])
    assert watcher.poll() is None                              # nothing changed
    (live / "metadata.json").write_bytes(b"{half-written")    # a torn write is not loaded
    assert watcher.poll() is None
    new_dir = tmp_path / "new"
    train_model(generate(60_000, seed=5), load_spec(), TrainConfig(seed=5, n_estimators=30)).save(new_dir)
    for f in ("model.ubj", "profile.json", "report.json", "metadata.json"):   # metadata last, as train does
        shutil.copy(new_dir / f, live / f)
    new = watcher.poll()
    assert new is not None and new.version != scorer.version
    flushed = proc.model.reload(new)
    assert flushed and all(b'"complete":false' in v for _, v in flushed)
    second = proc.scoring.process(msgs[3000:])
    versions = [orjson.loads(v)["model_version"] for _, v in first.scores + second.scores]
    assert versions[:len(first.scores)] == [scorer.version] * len(first.scores)
    assert set(versions[len(first.scores):]) == {new.version}
    assert len(first.scores) + len(first.dead_letters) + len(second.scores) + len(second.dead_letters) == 6000
    # windows that span the reload are published for the new model, the old model's partials counted
    partials = first.partials + flushed + second.partials + proc.windows.tick(time.time() + 3600).partials
    stats = _aggregate(proc, partials)
    assert sum(s["window"]["events"] + 0 for s in stats if s["model_version"] == new.version) > 0
    assert all(s["model_version"] == new.version for s in stats)
    assert any(s["window"]["partials_of_other_models"] > 0 for s in stats)


def test_aggregator_waits_for_an_assigned_partition_with_a_backlog(scorer):
    """A worker that drains partition 0 before fetching partition 1 must not publish window 0 without it."""
    proc = WorkerStages.build(scorer, _settings(partitions=2, window_size=200, window_idle_s=1.0))
    msgs = [m for m in _messages(3000, seed=8, partitions=2)]
    t = time.time()
    out = proc.scoring.process([m for m in msgs if m.partition == 0], now=t)
    beats = proc.windows.tick(t + 0.1, caught_up=lambda p, off: True, assigned=[0, 1], has_backlog=lambda p: p == 1)
    stats = proc.aggregator.aggregate([v for _, v in out.partials + beats.partials], now=t + 0.1)
    for dt in range(1, 31):                              # long after grace: partition 1 is alive, not read yet
        beats = proc.windows.tick(t + dt, caught_up=lambda p, off: True, assigned=[0, 1], has_backlog=lambda p: p == 1)
        stats += proc.aggregator.aggregate([v for _, v in beats.partials], now=t + dt)
    assert stats == []
    out1 = proc.scoring.process([m for m in msgs if m.partition == 1], now=t + 31)
    stats = [orjson.loads(v) for _, v in proc.aggregator.aggregate([v for _, v in out1.partials], now=t + 31)]
    assert stats and all(s["window"]["complete"] and s["window"]["partitions_missing"] == [] for s in stats)
    assert stats[0]["window"]["events"] == 200


def test_worker_reads_compressed_input(kafka_settings, paysim_model, tmp_path):
    """Producers often compress (Kafka clients offer gzip, snappy, lz4, zstd): the worker reads every codec
    (aiokafka decompresses with cramjam) and scores every transaction, singles and envelopes alike; before
    cramjam was a dependency it crashed on the first snappy batch."""
    from breeboost.kafka_io import compression_type
    from streams.faust_config import faust_app_kwargs

    assert faust_app_kwargs(Settings.from_env({}, compression="zstd"))["producer_compression_type"] == "zstd"
    assert compression_type(Settings.from_env({})) is None
    import asyncio

    from aiokafka import AIOKafkaProducer

    s = kafka_settings
    codecs = ("gzip", "snappy", "lz4", "zstd")
    records = [orjson.loads(v) for v in encode_events(generate(800, seed=23), with_label=False, seed=23)]

    async def produce() -> None:
        for j, codec in enumerate(codecs):
            part = records[200 * j:200 * (j + 1)]
            producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap, compression_type=codec, linger_ms=20)
            await producer.start()
            try:
                for r in part[:100]:
                    await producer.send(s.topic_transactions, orjson.dumps(r), key=r["nameOrig"].encode())
                for i in range(100, 200, 25):
                    await producer.send(s.topic_transactions, orjson.dumps(part[i:i + 25]))
                await producer.flush()
            finally:
                await producer.stop()

    # and its own outputs compressed (BREEBOOST_COMPRESSION), read back below with kafka-python
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="scoring", compression="zstd").wait_ready()
    try:
        asyncio.run(produce())
        deadline = time.monotonic() + 60
        while True:
            docs = read_json(s, s.topic_scores, idle_timeout_s=1.0)
            scored = [d for doc in docs for d in (doc if isinstance(doc, list) else [doc])]
            if len(scored) >= len(records) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sorted(d["transaction_id"] for d in scored) == sorted(r["transaction_id"] for r in records)
        assert read_json(s, s.topic_dlq, idle_timeout_s=1.0) == []
        # the tools that read with kafka-python (the audit, tails) decompress the same topics
        rep = audit_topics(s, idle_timeout_s=2.0)
        assert rep.ok and rep.produced == rep.scored == len(records) and rep.dead_lettered == 0, rep.as_dict()
    finally:
        worker.stop()
