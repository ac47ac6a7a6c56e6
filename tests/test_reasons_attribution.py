"""Attribution per window (#17): a seeded, bounded sample of each window's events explained with exact
TreeSHAP, summed in the partials, merged exactly, published as drift.stats ``attribution`` against the
training slice's figures stored in the model's profile; what it tells the incident rules and RCA.
"""
from __future__ import annotations

import shutil

import jsonschema
import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from bench.reasons_bench import incidents, scenario_windows
from breeboost.settings import Settings
from detectors.records import AttributionSums, decode_partial, decode_stats, load_stats_schema
from incident import rca
from models.artifact import load_artifact, save_artifact
from models.explain import Explainer, reference_attribution
from models.features import compute_features
from models.scorer import Scorer
from simulator import encode_events, generate
from streams.metrics import WorkerMetrics
from streams.records import Msg
from streams.stages import WorkerStages

NOW = 1_767_300_000.0


@pytest.fixture(scope="module")
def scorer(paysim_model):
    return Scorer.load(paysim_model)


@pytest.fixture(scope="module")
def payloads():
    return encode_events(generate(8000, seed=23), with_label=False, seed=23)


def run(scorer, payloads, batch: int, partitions: int = 2, **kw) -> tuple[WorkerStages, list[bytes]]:
    settings = Settings.from_env({}, **{"partitions": partitions, "window_size": 4000, **kw})
    st = WorkerStages.build(scorer, settings, WorkerMetrics(CollectorRegistry()))
    msgs = [Msg("transactions", i % partitions, i // partitions, v, timestamp=NOW) for i, v in enumerate(payloads)]
    partials = [v for lo in range(0, len(msgs), batch) for _, v in st.scoring.process(msgs[lo:lo + batch], now=NOW).partials]
    partials += [v for _, v in st.windows.tick(NOW + 3600).partials]
    return st, partials


def _sums(partials: list[bytes]) -> list:
    return [(p.window_index, p.partition, p.attribution) for p in map(decode_partial, partials) if hasattr(p, "sketch")]


def test_the_sample_is_bounded_and_does_not_depend_on_the_batches(scorer, payloads):
    st, a = run(scorer, payloads, batch=100)
    _, b = run(scorer, payloads, batch=777)
    sums = _sums(a)
    assert sums == _sums(b) and len(sums) == 4                       # 2 windows x 2 partitions
    assert all(s.events == 48 for _, _, s in sums)                   # ceil(96 / 2) per partition window
    stats = [orjson.loads(v) for _, v in st.aggregator.aggregate(a, now=NOW)]
    swapped = sorted((v for v in b if hasattr(decode_partial(v), "sketch")),   # the other partition first
                     key=lambda v: (decode_partial(v).window_index, -decode_partial(v).partition))
    swapped += [v for v in b if not hasattr(decode_partial(v), "sketch")]       # then the heartbeats
    again = [orjson.loads(v) for _, v in run(scorer, payloads, batch=777)[0].aggregator.aggregate(swapped, now=NOW)]
    by_index = {s["window"]["index"]: s["attribution"] for s in stats}
    assert by_index == {s["window"]["index"]: s["attribution"] for s in again} and len(by_index) == 2  # exact
    validator = jsonschema.Draft202012Validator(load_stats_schema())
    for s in stats:
        decode_stats(orjson.dumps(s))
        validator.validate(s)
        assert s["attribution"]["events"] == 96 and s["attribution"]["reference_events"] == 4000
        assert set(s["attribution"]["features"]) == set(scorer.spec.numeric_features) | set(scorer.spec.categorical)


def test_the_window_sums_are_the_explainer_on_the_sampled_rows(scorer, payloads):
    """The partial's sums are exactly the contributions of its sampled rows, grouped per input feature."""
    st, _ = run(scorer, payloads[:1500], batch=500, partitions=1, window_size=100_000)
    sketch = st.windows.open[0].sketch
    explainer = Explainer.of(scorer)
    rows = sketch.sample.rows
    grouped = explainer.grouped(explainer.contributions(rows))
    sums = sketch.attribution()
    assert sums.events == 96 == len(rows)
    back = AttributionSums.of(explainer.inputs, len(rows), grouped.sum(0), np.abs(grouped).sum(0),
                              (grouped ** 2).sum(0), explainer.base_value)
    assert sums == back
    matrix = compute_features(generate(1500, seed=23), scorer.spec).matrix()
    assert {r.tobytes() for r in rows} <= {r.tobytes() for r in matrix}


def test_no_sample_means_no_attribution_anywhere(scorer, payloads):
    st, partials = run(scorer, payloads, batch=500, attribution_sample=0)
    assert all(p.attribution is None for p in map(decode_partial, partials) if hasattr(p, "sketch"))
    assert b'"attribution"' not in b"".join(partials)
    stats = [orjson.loads(v) for _, v in st.aggregator.aggregate(partials, now=NOW)]
    assert stats and all("attribution" not in s for s in stats)


def test_an_old_model_without_the_reference_still_serves(scorer, payloads, paysim_model, tmp_path):
    art = load_artifact(paysim_model)
    assert art.profile["attribution"]["rows"] == 4000               # new models store the reference
    explainer = Explainer(Scorer.load(paysim_model).booster, scorer.spec, 1)
    train = compute_features(generate(200_000, seed=101), scorer.spec)   # not the slice, just determinism
    assert reference_attribution(explainer, train.matrix()[:3000]) == reference_attribution(explainer, train.matrix()[:3000])
    old = tmp_path / "old"
    shutil.copytree(paysim_model, old)
    profile = {k: v for k, v in art.profile.items() if k != "attribution"}
    meta = {k: v for k, v in art.metadata.items() if k not in ("format", "format_version", "model_file", "files")}
    save_artifact(old, art.booster_bytes, meta, profile, art.report)
    old_scorer = Scorer.load(old)
    st, partials = run(old_scorer, payloads, batch=500)
    [s, *_] = [orjson.loads(v) for _, v in st.aggregator.aggregate(partials, now=NOW)]
    a = s["attribution"]
    assert a["events"] == 96 and a["score_change"] is None and a["ranking"] == [] and a["reference_events"] is None
    assert all(f["change"] is None for f in a["features"].values())


@pytest.fixture(scope="module")
def amount_scale(paysim_model):
    return scenario_windows(paysim_model, "amount_scale:factor=3", count=30_000, window=5_000, start=10_000,
                            end=20_000)


def test_amount_scale_attribution_names_amount_and_the_balance_errors(amount_scale):
    inside = [s["attribution"] for s in amount_scale if 2 <= s["window"]["index"] <= 3]
    outside = [s["attribution"] for s in amount_scale if s["window"]["index"] in (0, 5)]
    for a in inside:
        assert {"amount", "errorBalanceOrig", "errorBalanceDest"} <= set(a["moved"]), a["moved"]
        assert {"amount", "errorBalanceOrig", "errorBalanceDest"} <= set(a["ranking"][:4])
    for a in outside:
        assert not {"amount", "errorBalanceOrig", "errorBalanceDest"} & set(a["moved"])
        assert abs(a["score_change"]) < 0.2


def test_feature_drift_incident_and_rca_name_what_moved_the_score(amount_scale):
    events = incidents(amount_scale)
    fired = [e for e in events if e["event"] == "fired"]
    assert [(e["type"], e["severity"]) for e in fired] == [("feature_drift", "P1")]
    f = fired[0]
    assert "log-odds" in f["summary"] and "of it from" in f["summary"]
    feats = f["details"]["evidence"]["features"]
    assert feats["amount"]["impact"] == "moved" and "change" in feats["amount"]["contribution"]
    s = rca.summary(events, amount_scale)
    [row] = s["incidents"]
    assert row["model_impact"].startswith("score up") and "Model impact" in row["likely_cause"]
    movers = {r["feature"] for r in s["score_movers"]}
    assert {"amount", "errorBalanceOrig", "errorBalanceDest"} <= movers
    text = rca.render_summary(s)
    assert "What moved the score" in text and "model impact: score up" in text
