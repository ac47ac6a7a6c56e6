"""The map of recent transactions that de-duplication and the label join share (streams.recent)."""
from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from breeboost.settings import Settings
from models.scorer import Scorer
from streams.metrics import WorkerMetrics
from streams.recent import RecentTransactions
from streams.records import Msg
from streams.stages import WorkerStages


def test_the_last_horizon_ids_are_always_known_and_older_ones_fade():
    r = RecentTransactions(horizon=100)
    ids = [f"t{i}" for i in range(1000)]
    for start in range(0, 1000, 37):   # batches that do not line up with the horizon
        chunk = ids[start:start + 37]
        seqs = r.add_batch(chunk, [start % 4], [start], [0] * len(chunk))
        r.set_scores(seqs, np.linspace(0.0, 1.0, len(chunk)), np.arange(len(chunk)) % 2)
        known = ids[max(0, start + len(chunk) - 100):start + len(chunk)]
        assert all(r.find(t)[1] is not None for t in known)                # at least the last `horizon`
        assert all(r.score(t) is not None for t in known)
        assert len(r) <= 2 * (100 + 37)                                   # and at most about twice as many
    assert r.find("t0") == (-1, None) and r.score("t0") is None


def test_a_reused_ring_slot_never_answers_for_another_id():
    r = RecentTransactions(horizon=2)   # 4 slots
    r.add_batch(["a"], [1], [10], [0])
    r.set_scores(np.array([0]), np.array([0.75]), np.array([1]))
    # ids kept by the map while their slot went to later ones: unknown, not someone else's score
    r._ids._old["a"] = 0
    for i in range(4):
        r.add(f"x{i}", 0, 20 + i, None)
    assert r.find("a") == (-1, None) and r.score("a") is None
    assert r.find("x3") == (4, (0, 23, None))


def test_ids_without_a_score_are_not_joined():
    r = RecentTransactions(horizon=10)
    seqs = r.add_batch(["ok", "rejected"], [0], [5], [0, 0])
    r.set_scores(seqs[:1], np.array([0.2]), np.array([0]))
    assert r.score("ok") == (0.2, 0, 0) and r.score("rejected") is None
    r.set_scores(np.array([-1]), np.array([0.9]), np.array([1]))   # a record without an id: skipped
    assert r.score("rejected") is None


@pytest.fixture(scope="module")
def processor(paysim_model):
    def make(**kw):
        return WorkerStages.build(Scorer.load(paysim_model), Settings.from_env({}, partitions=1),
                               metrics=WorkerMetrics(CollectorRegistry()), **kw)
    return make


def _tx(i: int) -> dict:
    return {"transaction_id": f"tx-{i}", "step": 1, "type": "PAYMENT", "amount": 10.0 + i, "oldbalanceOrg": 1000.0,
            "newbalanceOrig": 990.0 - i, "oldbalanceDest": 0.0, "newbalanceDest": 10.0, "event_time": 1.0}


def test_duplicates_within_the_horizon_are_dead_lettered_and_labels_join(processor):
    proc = processor(horizon=50)
    for b in range(2):   # 2 x 80 new ids, in two batches: the first 80 leave the map with the second swap
        out = proc.scoring.process([Msg("transactions", 0, 40 * b + i, orjson.dumps([_tx(80 * b + 2 * i), _tx(80 * b + 2 * i + 1)]))
                            for i in range(40)])
        assert len(out.dead_letters) == 0
    again = [Msg("transactions", 0, 100, orjson.dumps([_tx(159), _tx(0)]))]   # 159: recent; 0: beyond the horizon
    out = proc.scoring.process(again)
    dead = [orjson.loads(v) for _, v in out.dead_letters]
    assert [(d["transaction_id"], d["reason"], d["item"]) for d in dead] == [("tx-159", "duplicate_id", 0)]
    assert orjson.loads(base64.b64decode(dead[0]["raw_b64"])) == _tx(159)    # the original record
    assert [d["transaction_id"] for d in orjson.loads(out.scores[0][1])] == ["tx-0"]
    proc.labels.join([Msg("labels", 0, 0, orjson.dumps({"transaction_id": "tx-159", "isFraud": 1})),
                      Msg("labels", 0, 1, orjson.dumps({"transaction_id": "tx-0", "isFraud": 0})),
                      Msg("labels", 0, 2, orjson.dumps({"transaction_id": "tx-1", "isFraud": 0}))])
    # tx-159 joins its first score, tx-0 its new one; tx-1 is beyond the horizon
    assert proc.labels.pending[0].n == 2
    assert proc.metrics.labels_joined.labels("unknown")._value.get() == 1
