"""River's detectors in production (#16): the worker's own stages in process (scoring -> windows -> the
aggregator, the labels as the label join publishes them: LabelPartial records on drift.partials), then the
incident policy on every published window.

* 1M calm events, each labelled: no detection by ADWIN, Page-Hinkley or KSWIN, no concept_drift breach.
* concept_shift:signature=none (2% of genuine events labelled fraud, no feature signature): the detectors flag it and concept_drift breaches.

The Faust worker cannot score 1M events within the slow test's 3 minutes on this machine, so the stages
run in process, fed 5,000 messages at a time (the path the worker runs on each fetch); the labels of a
batch are joined right after it (the label join's own tests cover its topics and restarts).
"""
from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from detectors.records import LabelCounts, LabelPartial, decode_stats, encode_partial
from incident.policy import Policy
from simulator import encode_events, generate
from simulator.scenarios import parse_scenario
from simulator.partition import partitions_for
from streams.records import Msg
from streams.stages import WorkerStages
from tests.test_streams import _settings

PARTITIONS = 4
WINDOW = 10_000


def _stream(stages: WorkerStages, n: int, seed: int, scenarios=(), chunk: int = 100_000, batch: int = 5_000):
    """Score ``n`` simulated events, join each one's label, publish windows; yields drift.stats dicts."""
    offsets = [0] * PARTITIONS
    for start in range(0, n, chunk):
        cols = generate(min(chunk, n - start), seed=seed, start_index=start, scenarios=scenarios)
        payloads = encode_events(cols, with_label=False, scenarios=scenarios, seed=seed, start_index=start)
        fraud = dict(zip(cols["transaction_id"].tolist(), cols["isFraud"].tolist()))
        parts = partitions_for(cols["nameOrig"], PARTITIONS).tolist()
        msgs = []
        for key, p, value in zip(cols["nameOrig"].tolist(), parts, payloads):
            msgs.append(Msg("transactions", p, offsets[p], value, key.encode()))
            offsets[p] += 1
        for lo in range(0, len(msgs), batch):
            out = stages.scoring.process(msgs[lo:lo + batch])
            counts = LabelCounts()
            for s in orjson.loads(b"[" + b",".join(v for _, v in out.scores) + b"]"):
                counts.add(fraud[s["transaction_id"]], s["fraud_probability"], s["fraud_label"])
            values = [v for _, v in out.partials] + [encode_partial(LabelPartial("labels", 0, counts, time.time()))]
            for _, v in stages.aggregator.aggregate(values):
                yield orjson.loads(v)
    for _, v in stages.aggregator.aggregate([v for _, v in stages.windows.tick(time.time() + 3600).partials]):
        yield orjson.loads(v)


def _breaches(policy: Policy, stats: dict) -> list:
    return [b for b in policy.evaluate(stats) if b.type == "concept_drift"]


@pytest.mark.slow
def test_a_million_calm_labelled_events_raise_no_concept_drift(paysim_model):
    from models.scorer import Scorer

    stages = WorkerStages.build(Scorer.load(paysim_model), _settings(window_size=WINDOW))
    policy = Policy.load()
    t0 = time.perf_counter()
    windows, breaches, detections = 0, [], {}
    for stats in _stream(stages, 1_000_000, seed=61):
        decode_stats(orjson.dumps(stats))                        # a valid drift.stats record
        windows += 1
        breaches += _breaches(policy, stats)
        for name in ("adwin", "page_hinkley", "kswin"):
            detections[name] = detections.get(name, 0) + stats["concept"]["detectors"][name]["detections"]
    last = stats["concept"]
    print(f"1M calm: {windows} windows in {time.perf_counter() - t0:.0f} s; detections {detections}; "
          f"labels {last['detectors']['labels']}; last labels recall {last['performance']['last_labels']['recall']}")
    assert windows >= 100 and last["detectors"]["labels"] == 1_000_000
    assert detections == {"adwin": 0, "page_hinkley": 0, "kswin": 0}
    assert not breaches, [b.summary for b in breaches]


@pytest.mark.slow
def test_a_concept_shift_is_detected_and_breaches(paysim_model):
    from models.scorer import Scorer

    stages = WorkerStages.build(Scorer.load(paysim_model), _settings(window_size=WINDOW))
    policy = Policy.load()
    shift = [parse_scenario("concept_shift:signature=none,share=0.02", start=100_000)]
    seen = []
    for stats in _stream(stages, 200_000, seed=62, scenarios=shift):
        c = stats["concept"]
        seen.append((stats["window"]["index"], c["detectors"]["drift_detected"],
                     [b.severity for b in _breaches(policy, stats)]))
    detected = [i for i, d, _ in seen if d]
    breached = [(i, s) for i, _, s in seen if s]
    print(f"concept_shift at window 10: detected at {detected}, breaches {breached}")
    # the shift starts at offset 25,000 of each partition (window 10); its first labels fold into window 9,
    # the window pending when they are joined
    assert detected and 9 <= min(detected) <= 12
    assert breached and min(i for i, _ in breached) >= 9 and {"P1"} <= {s for _, ss in breached for s in ss}
