"""The window open at a worker crash gets its events back on partition assignment (streams/lifecycle.py).

Unit tests run the replay against the real broker: transactions produced to one partition, a committed
offset mid-window for the worker's group, a fresh processor (the restarted worker) replays, and its window
must equal, count for count, the window of a processor that saw every event. The slow test kills a real
worker -9 mid-window and checks ``drift.stats`` (docs/reliability.md has what it measured).
"""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from breeboost.kafka_io import make_producer
from models.scorer import Scorer
from simulator import encode_events, generate
from streams.metrics import WorkerMetrics
from streams.records import Msg
from streams.stages import WorkerStages
from breeboost.kafka_io import aiokafka_config
from streams.lifecycle import RebalanceLifecycle
from streams.reread import ReplayPlan, plan_replay, read_range
from tests.conftest import fresh_settings

N = 2600            # offsets 0..2599 of partition 0, and one duplicate id at 2600
SIZE = 1000         # messages per partition window: window_size 2000 over 2 partitions
COMMITTED = 2350    # the dead worker committed up to here: window 2 = [2000, 3000) is open at the crash
NOW = 1.8e9         # one processing time for every processor, so the sketches' lag histograms compare too


@pytest.fixture(scope="module")
def scorer(paysim_model):
    return Scorer.load(paysim_model)


@pytest.fixture(scope="module")
def topic_with_data(broker_bootstrap):
    """Settings whose ``transactions`` partition 0 holds N generated transactions (2 % malformed, some
    with missing fields) and, at offset N, a copy of the transaction at offset 2100 (a duplicate id)."""
    s = fresh_settings(broker_bootstrap, partitions=2, window_size=2 * SIZE, window_idle_s=1.0)
    cols = generate(N, seed=7)
    values = encode_events(cols, with_label=False, seed=7,
                           scenarios=["malformed:fraction=0.02", "missing_fields:fraction=0.03"])
    values.append(values[2100])
    p = make_producer(s)
    for i, v in enumerate(values):
        p.send(s.topic_transactions, value=v, key=b"k%d" % i, partition=0)
    p.flush()
    p.close()
    return s


def _read_all(s) -> list[Msg]:
    from aiokafka import AIOKafkaConsumer

    async def go():
        c = AIOKafkaConsumer(enable_auto_commit=False, **aiokafka_config(s))
        await c.start()
        try:
            return (await read_range(c, s.topic_transactions, [ReplayPlan(0, 0, N + 1)], 30.0))[0]
        finally:
            await c.stop()
    return asyncio.run(go())


def _commit(s, group_id: str, offset: int) -> None:
    """What the dead worker's Faust consumer did: commit ``offset`` for partition 0 of its group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go():
        c = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, **aiokafka_config(s))
        await c.start()
        try:
            tp = TopicPartition(s.topic_transactions, 0)
            c.assign([tp])
            await c.commit({tp: offset})
        finally:
            await c.stop()
    asyncio.run(go())


def _process(proc: WorkerStages, msgs: list[Msg], batch: int = 200):
    outs = [proc.scoring.process(msgs[i:i + batch], now=NOW) for i in range(0, len(msgs), batch)]
    return outs


def _tps(topic: str, *partitions: int) -> list:
    from aiokafka import TopicPartition

    return [TopicPartition(topic, p) for p in partitions]


def _restore(stages: WorkerStages, s, group: str, partitions, **kw) -> list[dict]:
    """Assign ``partitions`` of transactions to a lifecycle and await its restore (what the agents await)."""
    lifecycle = RebalanceLifecycle(stages, s, group, **kw)

    async def go():
        lifecycle.on_assigned(_tps(s.topic_transactions, *partitions))
        return await lifecycle.restore()
    return asyncio.run(go())


def _window(sketch) -> tuple[dict, object]:
    """What a window holds: every count of its sketch, and the contribution sums of its attribution sample
    (the sketch's ``to_dict`` carries the sample itself under ``attribution``, explained when shipped)."""
    counts = {k: v for k, v in sketch.to_dict().items() if k != "attribution"}
    return counts, sketch.attribution()


def _sample(registry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_plan_replay_only_mid_window():
    assert plan_replay(None, SIZE, 0) is None            # nothing committed: starts at the beginning
    assert plan_replay(0, SIZE, 0) is None
    assert plan_replay(2000, SIZE, 0) is None            # at a boundary: the window starts fresh
    assert plan_replay(2350, SIZE, 1).__dict__ == {"partition": 1, "start": 2000, "end": 2350}
    assert plan_replay(2350, SIZE, 1, open_index=2) is None   # this worker has that window already
    assert plan_replay(2350, SIZE, 1, open_index=1).start == 2000


def test_replayed_window_equals_the_window_of_an_uninterrupted_worker(topic_with_data, scorer):
    s = topic_with_data
    msgs = _read_all(s)
    assert [m.offset for m in msgs] == list(range(N + 1))

    whole = WorkerStages.build(scorer, s)              # never crashed
    _process(whole, msgs)
    dead = WorkerStages.build(scorer, s)               # scored and published [0, COMMITTED), then kill -9
    _process(dead, msgs[:COMMITTED])

    group = f"{s.group_id}-scoring"
    _commit(s, group, COMMITTED)
    registry = __import__("prometheus_client").CollectorRegistry()
    metrics = WorkerMetrics(registry)
    restarted = WorkerStages.build(scorer, s, metrics=metrics)
    reports = _restore(restarted, s, group, [0, 1], now=NOW)
    # partition 1 has no commit (and no data): nothing to replay there
    replayed = COMMITTED - 2000
    assert reports == [{"partition": 0, "from": 2000, "to": COMMITTED, "messages": replayed, "events": replayed}]
    # nothing counted as scored or dead-lettered again: the dead worker counted those
    assert _sample(registry, "breeboost_events_total", outcome="scored") == 0
    assert _sample(registry, "breeboost_events_total", outcome="dead_lettered") == 0
    assert _sample(registry, "breeboost_window_replayed_events_total") == replayed

    outs = _process(restarted, msgs[COMMITTED:])    # what Faust delivers after the commit
    w, ref = restarted.windows.open[0], whole.windows.open[0]
    assert (w.index, w.first_offset, w.last_offset) == (ref.index, ref.first_offset, ref.last_offset) == (2, 2000, N)
    assert w.sketch.events == ref.sketch.events == N + 1 - 2000
    assert _window(w.sketch) == _window(ref.sketch)   # every count (features, scores, lags, rejects), the sample
    # the replayed ids are in the de-duplication map: offset N repeats the id of offset 2100
    dup = [orjson.loads(v) for o in outs for _, v in o.dead_letters]
    assert [(d["offset"], d["reason"]) for d in dup if d["reason"] == "duplicate_id"] == [(N, "duplicate_id")]
    assert _sample(registry, "breeboost_events_total", outcome="scored") + \
        _sample(registry, "breeboost_events_total", outcome="dead_lettered") == N + 1 - COMMITTED


def test_new_events_wait_for_the_replay_of_their_partition(topic_with_data, scorer):
    """Faust resumes new partitions without waiting for the assignment signal: the score agent awaits
    ``ready`` for a micro-batch's partitions, so a window gets its replayed events before any new one. The
    assignment itself only starts the read (the event loop is never blocked)."""
    s = topic_with_data
    msgs = _read_all(s)
    whole = WorkerStages.build(scorer, s)
    _process(whole, msgs)
    group = f"{s.group_id}-guard"
    _commit(s, group, COMMITTED)
    restarted = WorkerStages.build(scorer, s)
    lifecycle = RebalanceLifecycle(restarted, s, group, now=NOW)

    async def agent():
        t0 = time.monotonic()
        await lifecycle.on_partitions_assigned(None, _tps(s.topic_transactions, 0, 1))
        started = time.monotonic() - t0
        assert lifecycle.pending and not lifecycle.reports          # under way, not fed yet
        await lifecycle.ready({m.partition for m in msgs[COMMITTED:COMMITTED + 10]})
        return started, _process(restarted, msgs[COMMITTED:])
    started, _ = asyncio.run(agent())
    assert started < 0.1                                              # the receiver returned at once
    assert not lifecycle.pending and [r["events"] for r in lifecycle.reports] == [COMMITTED - 2000]
    assert _window(restarted.windows.open[0].sketch) == _window(whole.windows.open[0].sketch)


def test_revoked_partitions_lose_their_open_window_and_pending_read(topic_with_data, scorer):
    s = topic_with_data
    stages = WorkerStages.build(scorer, s)
    _process(stages, _read_all(s)[:500])
    lifecycle = RebalanceLifecycle(stages, s, "nobody-revoked")
    assert 0 in stages.windows.open
    asyncio.run(lifecycle.on_partitions_revoked(None, _tps(s.topic_transactions, 0)))
    assert stages.windows.open == {} and 0 not in lifecycle.assigned


def test_aggregator_gets_back_the_partials_of_windows_it_had_not_published(broker_bootstrap, scorer):
    """Partition 1 ran ahead: its partials of windows 2 and 3 were consumed (committed) while both windows
    waited for partition 0, then the worker died. Windows 0 and 1 are in drift.stats already."""
    s = fresh_settings(broker_bootstrap, partitions=2, window_size=2 * SIZE)

    def partial(p, k, complete=True):
        return {"kind": "partial", "topic": s.topic_transactions, "window_index": k, "partition": p,
                "complete": complete, "first_offset": k * SIZE, "last_offset": (k + 1) * SIZE - 1,
                "window_messages": SIZE, "model_version": "v", "sent_at": 0.0, "sketch": {}}

    def beat(p, k):
        return {"kind": "progress", "topic": s.topic_transactions, "partition": p, "window_index": k,
                "last_offset": k * SIZE + 5, "idle": False, "sent_at": 0.0}

    records = [partial(0, 0), partial(1, 0), beat(0, 1), partial(0, 1), partial(1, 1), partial(1, 2), beat(0, 2),
               partial(1, 3), beat(1, 4), beat(0, 2)]
    p = make_producer(s)
    for r in records:
        p.send(s.topic_drift_partials, value=orjson.dumps(r), partition=0)
    for k in (0, 1):
        p.send(s.topic_drift_stats, key=s.topic_transactions.encode(), value=orjson.dumps({"window": {"index": k}}))
    p.flush()
    p.close()
    group = f"{s.group_id}-scoring"
    _commit_topic(s, group, s.topic_drift_partials, len(records))

    proc = WorkerStages.build(scorer, s)
    lifecycle = RebalanceLifecycle(proc, s, group, timeout_s=10.0)

    async def assigned():
        lifecycle.on_assigned(_tps(s.topic_drift_partials, 0, 1))
        assert lifecycle.aggregator_restoring             # the timer leaves the aggregator alone meanwhile
        await lifecycle.aggregator_ready()
    asyncio.run(assigned())
    assert not lifecycle.aggregator_restoring
    [report] = lifecycle.aggregator_reports
    agg = proc.aggregator.gate
    assert report == {"published_upto": 1, "messages": len(records), "partials": 2, "windows_pending": [2, 3]}
    assert {k: sorted(v.partials) for k, v in agg.pending.items()} == {2: [1], 3: [1]}
    assert agg.progress == {0: 2, 1: 4} and agg.late == 0
    assert agg.ready(time.time()) == []            # window 2 still waits for partition 0 (alive)
    from detectors.records import decode_partial
    assert agg.add(decode_partial(orjson.dumps(partial(0, 1))), time.time()) == [] and agg.late == 1   # not twice


def _commit_topic(s, group_id: str, topic: str, offset: int) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def go():
        c = AIOKafkaConsumer(group_id=group_id, enable_auto_commit=False, **aiokafka_config(s))
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            await c.commit({tp: offset})
        finally:
            await c.stop()
    asyncio.run(go())


def test_without_replay_the_window_is_short(topic_with_data, scorer):
    """The gap the replay closes (and proof the comparison above can fail)."""
    s = topic_with_data
    msgs = _read_all(s)
    whole, restarted = WorkerStages.build(scorer, s), WorkerStages.build(scorer, s)
    _process(whole, msgs)
    _process(restarted, msgs[COMMITTED:])
    assert whole.windows.open[0].sketch.events - restarted.windows.open[0].sketch.events == COMMITTED - 2000


def test_replay_reads_at_most_the_window_and_skips_an_open_window(topic_with_data, scorer):
    s = topic_with_data
    group = f"{s.group_id}-bound"
    _commit(s, group, 1999)                        # the last offset of window 1: 999 messages to re-read
    proc = WorkerStages.build(scorer, s)
    rep = _restore(proc, s, group, [0], now=NOW)
    assert [(r["from"], r["to"], r["messages"]) for r in rep] == [(1000, 1999, 999)]
    w = proc.windows.open[0]
    assert (w.index, w.first_offset, w.last_offset) == (1, 1000, 1998)
    # assigned again (a later rebalance) with the window open: nothing is read twice
    assert _restore(proc, s, group, [0], now=NOW) == []
    assert proc.windows.open[0].sketch.events == 999


def test_replay_failure_is_a_warning_not_a_crash(topic_with_data, scorer, caplog):
    from breeboost.broker import free_port

    s = topic_with_data.replace(bootstrap=f"127.0.0.1:{free_port()}")   # nothing listens there
    registry = __import__("prometheus_client").CollectorRegistry()
    proc = WorkerStages.build(scorer, s, metrics=WorkerMetrics(registry))
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="breeboost.replay"):
        assert _restore(proc, s, "nobody", [0], timeout_s=2.0) == []
    assert time.monotonic() - t0 < 15
    assert "window replay failed" in caplog.text
    assert proc.windows.open == {}
    assert _sample(registry, "breeboost_consumer_errors_total") == 1   # what the alert and the panel read


# --- end to end: a real worker killed -9 mid-window ---------------------------------------------------------
def _logged(path, event: str) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if f'"{event}"' in line:
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                pass
    return out


def _deliveries(s) -> dict[tuple[int, int, object], int]:
    """How many times each event ``(partition, offset, item)`` was scored or dead-lettered."""
    from tests.streamkit import read_json

    seen: dict[tuple[int, int, object], int] = {}
    for topic in (s.topic_scores, s.topic_dlq):
        for d in read_json(s, topic, idle_timeout_s=0.5):
            for x in d if isinstance(d, list) else [d]:
                k = (x["partition"], x["offset"], x.get("item"))
                seen[k] = seen.get(k, 0) + 1
    return seen


def _processed(worker) -> float:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("breeboost_events_total{"))


@pytest.mark.slow
@pytest.mark.parametrize("partitions", [2, 4])
def test_worker_kill_mid_window_windows_exact(broker_bootstrap, paysim_model, tmp_path, partitions):
    from streams.windows import window_messages
    from tests.streamkit import Worker
    from tests.test_reliability import (_publish_in_background, expected_window_events, max_scored_offsets,
                                        wait_audit, wait_windows)

    n, window_size = 20000, 4000
    s = fresh_settings(broker_bootstrap, partitions=partitions, window_size=window_size, window_idle_s=1.0)
    extra = dict(window_size=window_size, window_idle_s=1.0)
    size = window_messages(window_size, s.partitions)
    first = Worker(s, paysim_model, tmp_path / "w1.log", role="scoring", **extra).wait_ready(90)
    second = None
    try:
        pub = _publish_in_background(s, "--count", str(n), "--seed", "43", "--no-labels", "--rate", "2000",
                                     "--scenario", "malformed:fraction=0.02")
        deadline = time.monotonic() + 30
        while _processed(first) < 6000 and time.monotonic() < deadline:   # the worker's own count: fast to read
            time.sleep(0.1)
        first.kill()                                      # mid-stream: the publisher goes on for ~7 s
        reached = max_scored_offsets(s)
        second = Worker(s, paysim_model, tmp_path / "w2.log", role="scoring", **extra).wait_ready(90)
        _, err = pub.communicate(timeout=120)
        assert pub.returncode == 0, err.decode()[-2000:]
        rep = wait_audit(s, n, timeout_s=120, workers=(second,))
        assert rep.ok and rep.produced == n, rep.as_dict()
        expected = expected_window_events(s, size)
        stats = wait_windows(s, max(expected))
        replays = _logged(tmp_path / "w2.log", "window replayed")
        restored = _logged(tmp_path / "w2.log", "aggregator restored")
        got: dict[int, list[tuple[int, bool]]] = {}
        for x in stats:
            got.setdefault(x["window"]["index"], []).append((x["window"]["events"], x["window"]["complete"]))
        deliveries = _deliveries(s)
        twice_in_replayed = sum(c > 1 for (p, off, _), c in deliveries.items()
                                for r in replays if r["partition"] == p and r["from"] <= off < r["to"])
        print(f"kill mid-window ({partitions} partitions): scored up to {reached} at the kill; replays "
              f"{[(r['partition'], r['from'], r['to'], r['events']) for r in replays]}; aggregator restored "
              f"{[(r['published_upto'], r['windows_pending']) for r in restored]}; windows expected "
              f"{expected}, published (events, complete) {got}; duplicate deliveries "
              f"{sum(c - 1 for c in deliveries.values())} ({twice_in_replayed} in replayed ranges)")
        # the worker died mid-window on each partition it had read: the restarted one replayed those
        assert replays and all(r["events"] == r["to"] - r["from"] for r in replays), replays
        assert twice_in_replayed == 0                    # the replay publishes nothing
        assert set(got) == set(expected), (got, expected)
        assert all(ev == expected[k] for k, v in got.items() for ev, _ in v), (got, expected)
    finally:
        first.stop()
        if second is not None:
            second.stop()
