"""The label join's objects called directly: the route on the scoring path, the join and its horizon, every
outcome, the restore, and the aggregator's fold of label partials (streams.label_*; docs/labels.md)."""
from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from breeboost.settings import Settings
from detectors.records import LabelPartial, decode_partial, encode_partial
from streams.label_join import OUTCOMES, LabelJoiner, parse_labels
from streams.label_pending import PendingScores
from streams.label_route import ScoreRoute, decode_routed, label_partitions
from streams.metrics import WorkerMetrics
from streams.records import Msg


def _joiner(**kw) -> LabelJoiner:
    return LabelJoiner(Settings.from_env({}, **kw), WorkerMetrics(CollectorRegistry()))


def _routed(route: ScoreRoute, topic: str = "scores.by_id", ts: float | None = None) -> list[Msg]:
    return [Msg(topic, p, i, v, key=k, **({} if ts is None else {"timestamp": ts}))
            for i, (p, k, v) in enumerate(route.take())]


def _label(tid: str, y: int, partitions: int = 4, offset: int = 0, ts: float = 1000.0, **extra) -> Msg:
    p = int(label_partitions([tid], partitions)[0])
    return Msg("labels", p, offset, orjson.dumps({"transaction_id": tid, "isFraud": y, **extra}), key=tid.encode(),
               timestamp=ts)


def _count(j: LabelJoiner, outcome: str) -> float:
    return j.metrics.labels_joined.labels(outcome)._value.get()


def test_label_partitions_are_kafkas_default_partitioner():
    from aiokafka.partitioner import murmur2

    ids = [f"tx-{s}-{i}" for s in range(3) for i in range(0, 5000, 7)] + ["a", "", "x" * 300]
    for batch in (ids, ids[:1], ids[-3:], ["été", "a"]):
        assert label_partitions(batch, 4).tolist() == [(murmur2(t.encode()) & 0x7FFFFFFF) % 4 for t in batch]


def test_scores_routed_from_any_worker_join_every_label():
    n, rng = 4000, np.random.default_rng(1)
    ids = [f"tx-9-{i}" for i in range(n)]
    prob = rng.random(n)
    pred = (prob > 0.7).astype(np.int64)
    y = rng.random(n) < 0.3
    join = _joiner()
    msgs = []
    # two "workers" scored halves of the stream in batches of 250; one record per batch and labels partition
    for w in range(2):
        route = ScoreRoute(4).activate()
        for start in range(w * n // 2, (w + 1) * n // 2, 250):
            route.add(ids[start:start + 250], prob[start:start + 250], pred[start:start + 250], [w], 10.0,
                      np.full(250, 5.0))
        assert route.records == 0 and len(recs := _routed(route)) == 4 * (n // 2 // 250)
        msgs += recs
    labels = [_label(t, int(v), offset=i) for i, (t, v) in enumerate(zip(ids, y))]
    out = join.join(msgs[:8] + labels + msgs[8:])          # some labels come before their scores
    assert out.outcomes == {"joined": n} and not out.dead_letters
    counts = [p.counts for p in join.take_partials()]
    assert sum(c.n for c in counts) == n
    assert sum(c.tp for c in counts) == int((pred.astype(bool) & y).sum())
    assert sum(c.fn for c in counts) == int((~pred.astype(bool) & y).sum())
    assert abs(sum(c.brier for c in counts) - float(((prob - y) ** 2).sum())) < 1e-6
    assert join.take_partials() == [] and join.pending() == (n, 0)


def test_routed_record_carries_exact_probabilities_and_flags():
    route = ScoreRoute(1).activate()
    route.add(["a", "b", "c"], np.array([0.125, 0.0, 0.0]), np.array([1, 0, 1]), [2], 3.0)
    (p, key, value), = route.take()
    rec = decode_routed(value)
    assert (p, key, rec.partitions, rec.event_time_min, rec.scored_at) == (0, b"a", [2], 3.0, 3.0)
    s = PendingScores(10.0, 10)
    s.add(rec.ids, rec.values(), rec.event_time_min, rec.event_time_max, 3.0)
    assert [s.take(t) for t in "abc"] == [(0.125, 1), (0.0, 0), (0.0, 1)]


def test_every_outcome_is_counted_once():
    j = _joiner(label_horizon_s=500.0, label_horizon_count=6, label_wait_s=30.0)
    route = ScoreRoute(1).activate()
    msgs = []
    for k in range(10):            # s0..s9, one a record, 100 s apart (event and publish time): time rolls
        route.add([f"s{k}"], np.array([0.2]), np.array([0]), [0], 0.0, np.array([100.0 * k]))
        msgs += _routed(route, ts=100.0 * k)
    for k in range(5):             # then 10 at once: the count rolls, dropping s5..s9 within the horizon
        route.add([f"d{2 * k}", f"d{2 * k + 1}"], np.array([0.2, 0.9]), np.array([0, 1]), [0], 0.0,
                  np.array([1000.0, 1000.0]))
        msgs += _routed(route, ts=1000.0)
    j.join(msgs)
    labels = [
        _label("d9", 1, 1, 0), _label("d9", 1, 1, 1),             # joined, then a duplicate
        _label("s0", 0, 1, 2, event_time=0.0),                     # older than the horizon (clock 1000)
        _label("s7", 0, 1, 3, event_time=700.0),                   # within it, dropped by count: expired
        _label("nope", 1, 1, 4, ts=1000.0), _label("nope", 1, 1, 5, ts=1000.0),   # waits; a duplicate meanwhile
        Msg("labels", 0, 6, b"{not json"), Msg("labels", 0, 7, b'{"transaction_id": "d8"}'),
        Msg("labels", 0, 8, b'[{"transaction_id": "d8", "isFraud": 0}, 3]'),     # one good item, one bad
    ]
    out = j.join(labels)
    assert out.outcomes == {"joined": 2, "duplicate": 2, "late_beyond_horizon": 1, "expired": 1, "malformed": 3}
    dead = [orjson.loads(v) for _, v in out.dead_letters]
    assert [(d["reason"], d["offset"], d["item"]) for d in dead] == [
        ("label_invalid_json", 6, None), ("label_invalid", 7, None), ("label_invalid", 8, 1)]
    assert out.dead_letter_partitions == [0, 0, 0] and dead[0]["topic"] == "labels"
    assert j.expire(now=1010.0) == {} and j.expire(now=1031.0) == {"unknown": 1}
    assert {o: _count(j, o) for o in OUTCOMES} == {"joined": 2, "unknown": 1, "expired": 1, "duplicate": 2,
                                                   "malformed": 3, "late_beyond_horizon": 1}
    assert j.metrics.dead_letters.labels("label_invalid")._value.get() == 2


def test_the_horizon_keeps_at_least_count_and_time_and_bounds_memory():
    s = PendingScores(horizon_s=50.0, count=100)
    for i in range(0, 1000, 10):          # 10 ids a second of stream time
        s.add([f"t{j}" for j in range(i, i + 10)], [0.5] * 10, i / 10, i / 10, at=i / 10)
        assert len(s) <= 200 + 10
        assert all(s.take(f"t{j}") is not None for j in range(max(0, i - 90), i + 10, 7))
    # time: at 20 ids a second the count rolls first; at 1 id every 10 s time does
    t = PendingScores(horizon_s=50.0, count=10 ** 6)
    for k in range(40):
        t.add([f"u{k}"], [0.1], 10.0 * k, 10.0 * k, at=10.0 * k)
    assert len(t) <= 12 and t.take("u39") is not None and t.take("u30") is not None
    assert t.classify(10.0 * 39 - 60) == "late_beyond_horizon" and t.classify(10.0 * 39 - 40) is None


def test_event_time_running_ahead_of_the_clock_keeps_scores_for_their_labels():
    # the simulator's PaySim steps put ~14 h of event time into 100,000 transactions (20 s at 5k/s), and a
    # backfill packs days into minutes: with a stream-time horizon alone, labels 1 s late found their
    # scores gone (6,407 of 100,000 joined). Now a score waits the horizon on the publish clock as well.
    j = _joiner(label_horizon_s=3600.0)
    route = ScoreRoute(1).activate()
    msgs, n = [], 0
    for k in range(200):                               # 200 records of 50: 20 s of publish time, 55 h of events
        ids = [f"f{n + i}" for i in range(50)]
        n += 50
        route.add(ids, np.full(50, 0.3), np.zeros(50, dtype=np.int64), [0], 0.0, np.full(50, 1000.0 * k))
        msgs += _routed(route, ts=1_000.0 + 0.1 * k)
    j.join(msgs)
    labels = [_label(f"f{i}", 0, 1, i, ts=1_021.0, event_time=1000.0 * (i // 50)) for i in range(n)]
    out = j.join(labels)
    assert out.outcomes == {"joined": n}
    # and the publish clock alone does not keep them either: an hour later, in both clocks, they go
    route.add(["late"], np.full(1, 0.3), np.zeros(1, dtype=np.int64), [0], 0.0, np.full(1, 1e6))
    j.join(_routed(route, ts=1_000.0 + 3700.0))
    route.add(["later"], np.full(1, 0.3), np.zeros(1, dtype=np.int64), [0], 0.0, np.full(1, 2e6))
    j.join(_routed(route, ts=1_000.0 + 7400.0))
    out = j.join([_label("f0", 0, 1, n + 1, ts=8_500.0, event_time=0.0)])
    assert out.outcomes == {"late_beyond_horizon": 1}


def test_labels_are_counted_for_the_model_that_scored_them():
    # a switch mid-stream: a and b scored by v1, c by v2; b also scored by v2 (a shadow score of the same
    # transaction). Each label is one outcome; its counts go to every model that scored it, one label
    # partial per model version.
    j = _joiner()
    route = ScoreRoute(1).activate()
    route.add(["a", "b"], np.array([0.9, 0.2]), np.array([1, 0]), [0], 1.0, model_version="v1")
    route.add(["b", "c"], np.array([0.8, 0.7]), np.array([1, 1]), [0], 2.0, model_version="v2")
    j.join(_routed(route))
    out = j.join([_label("a", 1, 1, 0), _label("b", 1, 1, 1), _label("c", 0, 1, 2), _label("b", 1, 1, 3)])
    assert out.outcomes == {"joined": 3, "duplicate": 1}
    partials = j.take_partials(now=5.0)
    parts = {p.model_version: p.counts for p in partials}
    assert {v: (c.n, c.tp, c.fn, c.fp) for v, c in parts.items()} == {"v1": (2, 1, 1, 0), "v2": (2, 1, 0, 1)}
    # b was scored by both, but not in shadow (two routed records, no challenger named): no pair
    assert all(type(p).__name__ == "LabelPartial" for p in partials)
    assert j.take_partials(now=6.0) == []


def test_shadow_scores_travel_with_the_champions_and_pair_even_for_early_labels():
    from detectors.records import LabelPartial, PairedLabels

    # the challenger's scores ride in the champion's routed record: a label that came first meets both
    j = _joiner()
    route = ScoreRoute(1).activate()
    early = j.join([_label("e1", 1, 1, 0), _label("e2", 0, 1, 1)])
    assert early.outcomes == {}
    route.add(["e1", "e2", "e3"], np.array([0.3, 0.1, 0.6]), np.array([0, 0, 1]), [0], 1.0, model_version="champ",
              shadow=("chall", np.array([0.9, 0.05, 0.2]), np.array([1, 0, 0])))
    rec = decode_routed(route._ready[0][2])
    assert rec.shadow_version == "chall" and rec.shadow_values() == [-0.9, 0.05, 0.2]
    assert j.join(_routed(route)).outcomes == {"joined": 2}
    assert j.join([_label("e3", 1, 1, 2)]).outcomes == {"joined": 1}
    partials = j.take_partials(now=5.0)
    (pair,) = [p for p in partials if isinstance(p, PairedLabels)]       # both halves in one record
    assert (pair.champion_version, pair.challenger_version) == ("champ", "chall")
    assert [(c.n, c.tp, c.fn, c.fp, c.tn) for c in (pair.champion, pair.challenger)] == [(3, 1, 1, 0, 1)] * 2
    assert pair.champion.positive_bins != pair.challenger.positive_bins
    assert {p.model_version: p.counts.n for p in partials if isinstance(p, LabelPartial)} == {"champ": 3, "chall": 3}
    # after a promotion (chall now scores alone as champion), a late label of a row scored by both still pairs
    # with the roles it was scored in: champ the champion, chall its challenger
    route.add(["e4"], np.array([0.2]), np.array([0]), [0], 2.0, model_version="champ",
              shadow=("chall", np.array([0.7]), np.array([1])))
    route.add(["e5"], np.array([0.7]), np.array([1]), [0], 3.0, model_version="chall")
    j.join(_routed(route) + [_label("e4", 1, 1, 3), _label("e5", 1, 1, 4)])
    (pair,) = [p for p in j.take_partials(now=6.0) if isinstance(p, PairedLabels)]
    assert (pair.champion_version, pair.challenger_version, pair.champion.n) == ("champ", "chall", 1)


def test_the_worker_routes_under_the_model_that_scored_each_batch(paysim_model, tmp_path):
    from models.scorer import Scorer
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate
    from streams.stages import WorkerStages
    from tests.test_streams import _messages, _settings

    first = Scorer.load(paysim_model)
    stages = WorkerStages.build(first, _settings())
    stages.route.activate()
    msgs = _messages(2000, seed=3)
    stages.scoring.process(msgs[:1000])
    new_dir = tmp_path / "new"
    train_model(generate(20_000, seed=4), load_spec(), TrainConfig(seed=4, n_estimators=10)).save(new_dir)
    second = Scorer.load(new_dir)
    stages.model.reload(second)
    stages.scoring.process(msgs[1000:])
    versions = [decode_routed(v).model_version for _, _, v in stages.route.take()]
    assert versions and set(versions) == {first.version, second.version} and first.version != second.version
    assert versions.index(second.version) > len(versions) - 1 - versions[::-1].index(first.version)


def test_a_redelivered_record_does_not_reopen_a_joined_id():
    j = _joiner()
    route = ScoreRoute(4).activate()
    route.add(["r1"], np.array([0.5]), np.array([0]), [0], 1.0)
    rec = _routed(route)
    assert j.join(rec + [_label("r1", 1)]).outcomes == {"joined": 1}
    assert j.join(rec + [_label("r1", 1)]).outcomes == {"duplicate": 1}


def test_restore_rebuilds_state_without_counting_again():
    route = ScoreRoute(1).activate()
    route.add(["a", "b", "c"], np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]), [0], 1.0)
    scores = _routed(route)
    before_commit = [_label("a", 1, 1, 0), _label("z", 0, 1, 1, ts=10.0)]   # a joined, z waits for its score
    j = _joiner()
    rep = j.restore(0, scores, before_commit)
    assert rep == {"partition": 0, "scores_read": 1, "labels_read": 2, "scores_pending": 3, "labels_waiting": 1}
    assert j.take_partials() == [] and _count(j, "joined") == 0
    route.add(["z"], np.array([0.7]), np.array([1]), [0], 2.0)
    after = [_label("a", 1, 1, 2), _label("b", 0, 1, 3)] + _routed(route)
    assert j.join(after).outcomes == {"duplicate": 1, "joined": 2}   # z joins when its score comes
    j.drop([0])
    assert j.pending() == (0, 0)


def test_a_restore_read_is_applied_without_waiting_for_a_record_of_its_partition():
    import asyncio

    from streams.label_restore import LabelRestore

    route = ScoreRoute(1).activate()
    route.add(["a", "b"], np.array([0.1, 0.2]), np.array([0, 0]), [0], 1.0)
    j = _joiner()
    restore = LabelRestore(j, Settings.from_env({}), "g")

    async def run():
        read = asyncio.get_running_loop().create_future()
        read.set_result({0: (_routed(route), [])})
        restore.pending[0] = read
        restore.apply_done()          # the label timer's call: no micro-batch of partition 0 came
        return dict(restore.pending), restore.reports

    pending, reports = asyncio.run(run())
    assert pending == {} and [r["scores_pending"] for r in reports] == [2]
    assert j.join([_label("a", 1, 1, 0)]).outcomes == {"joined": 1}


def test_an_inactive_route_costs_nothing_and_keeps_nothing():
    route = ScoreRoute(4)
    route.add(["a"], np.array([0.5]), np.array([0]), [0], 1.0)
    assert route.take() == [] and route.transactions == 0


def test_parse_labels_accepts_envelopes_and_booleans():
    assert parse_labels(b'[{"transaction_id": "a", "isFraud": false}, {"transaction_id": "b", "isFraud": 1}]') == [
        ("a", 0, None), ("b", 1, None)]
    bad = parse_labels(b'{"transaction_id": "a", "isFraud": 1, "event_time": "yesterday"}')[0]
    assert bad.reason == "label_invalid" and "event_time" in str(bad)


def test_label_partials_travel_on_drift_partials():
    from detectors.records import LabelCounts

    c = LabelCounts()
    c.add(1, 0.9, 1)
    p = LabelPartial("labels", 3, c, 7.0)
    assert decode_partial(encode_partial(p)) == p


@pytest.fixture(scope="module")
def stages(paysim_model):
    from models.scorer import Scorer
    from streams.stages import WorkerStages

    return WorkerStages.build(Scorer.load(paysim_model), Settings.from_env({}, partitions=1, window_size=500,
                                                                          attribution_sample=0))


def test_the_aggregator_folds_label_partials_into_the_next_window(stages):
    from simulator import generate
    from simulator.encode import encode_events

    values = encode_events(generate(1200, seed=4), with_label=False, seed=4)
    out = stages.scoring.process([Msg("transactions", 0, i, v) for i, v in enumerate(values)], now=1e9)
    partials = [v for _, v in out.partials]
    assert partials, "a window closed"
    route = ScoreRoute(1).activate()
    join = LabelJoiner(stages.settings if hasattr(stages, "settings") else Settings.from_env({}), stages.metrics)
    ids = [orjson.loads(v)["transaction_id"] for v in values[:300]]
    route.add(ids, np.full(300, 0.8), np.ones(300, np.int64), [0], 1e9)
    join.join(_routed(route) + [_label(t, 1, 1) for t in ids])
    labels = [encode_partial(p) for p in join.take_partials()]
    stats = [orjson.loads(v) for _, v in stages.aggregator.aggregate(labels + partials, now=1e9)]
    assert stats[0]["concept"]["labelled"] == 300
    assert all(s["concept"]["labelled"] == 0 for s in stats[1:])
