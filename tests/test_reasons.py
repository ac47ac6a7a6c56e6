"""Reason codes (#17): flagged score records carry the top features by exact TreeSHAP contribution, equal to
XGBoost's ``pred_contribs`` on the same rows; the offline commands give the same reasons; the encoder
splices them in without changing any other byte.
"""
from __future__ import annotations

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from breeboost.cli import main
from breeboost.errors import SettingsError
from breeboost.settings import Settings
from models.explain import Explainer, select_rows
from models.features import compute_features
from models.io import records_to_columns, write_table
from models.scorer import Scorer
from simulator import encode_events, generate
from streams.encode import encode_reasons, encode_scores
from streams.metrics import WorkerMetrics
from streams.records import Msg
from streams.stages import WorkerStages

N = 12_000
NOW = 1_767_300_000.0


@pytest.fixture(scope="module")
def scorer(paysim_model):
    return Scorer.load(paysim_model)


@pytest.fixture(scope="module")
def burst():
    """Transactions with many frauds (a fraud burst), as columns and as their JSON payloads."""
    cols = generate(N, seed=17, scenarios=["fraud_burst:factor=20"])
    return cols, encode_events(cols, with_label=False, seed=17)


def stages(scorer, **kw) -> WorkerStages:
    settings = Settings.from_env({}, **{"partitions": 2, "window_size": 4000, **kw})
    return WorkerStages.build(scorer, settings, WorkerMetrics(CollectorRegistry()))


def messages(payloads: list[bytes], envelope: int = 1, partitions: int = 2) -> list[Msg]:
    values = payloads if envelope == 1 else [b"[" + b",".join(payloads[i:i + envelope]) + b"]"
                                             for i in range(0, len(payloads), envelope)]
    return [Msg("transactions", i % partitions, i // partitions, v, timestamp=NOW - 1.0) for i, v in enumerate(values)]


def scored_docs(st: WorkerStages, msgs: list[Msg], batch: int = 500) -> list[dict]:
    out = []
    for lo in range(0, len(msgs), batch):
        for _, v in st.scoring.process(msgs[lo:lo + batch], now=NOW).scores:
            doc = orjson.loads(v)
            out += doc if isinstance(doc, list) else [doc]
    return out


@pytest.mark.parametrize("envelope", [1, 50])
def test_flagged_scores_carry_pred_contribs_of_their_rows(scorer, burst, envelope):
    import xgboost as xgb

    cols, payloads = burst
    docs = scored_docs(stages(scorer), messages(payloads, envelope))
    assert len(docs) == N
    flagged = [d for d in docs if d["fraud_label"] == 1]
    assert len(flagged) > 50 and all("reasons" in d and "base_value" in d for d in flagged)
    assert not any("reasons" in d for d in docs if d["fraud_label"] == 0)
    # the same rows, explained straight by XGBoost
    row_of = {t: i for i, t in enumerate(cols["transaction_id"].tolist())}
    rows = np.array([row_of[d["transaction_id"]] for d in flagged])
    feats = compute_features({k: v[rows] for k, v in cols.items()}, scorer.spec)
    contribs = scorer.booster.predict(xgb.DMatrix(feats.matrix(), feature_names=list(scorer.feature_names)),
                                      pred_contribs=True)
    names = scorer.feature_names
    for d, c in zip(flagged, contribs):
        top = np.argsort(-c[:-1], kind="stable")[:3]
        assert [r["feature"] for r in d["reasons"]] == [names[j] for j in top]
        assert [r["contribution"] for r in d["reasons"]] == [round(float(c[j]), 6) for j in top]
        assert d["base_value"] == round(float(c[-1]), 6)
        # exact: the contributions and the bias add up to the score's log-odds
        assert 1.0 / (1.0 + np.exp(-float(c.sum()))) == pytest.approx(d["fraud_probability"], abs=1e-5)
    first = flagged[0]["reasons"][0]
    j = names.index(first["feature"])
    assert first["value"] == (float(feats.numeric[first["feature"]][0]) if j < len(scorer.spec.numeric_features)
                              else float(feats.matrix()[0, j]))


def test_reason_modes_and_k(scorer, burst):
    _, payloads = burst
    msgs = messages(payloads[:3000])
    assert not any("reasons" in d for d in scored_docs(stages(scorer, reasons="none"), msgs))
    every = scored_docs(stages(scorer, reasons="all", reasons_k=5), msgs)
    assert all(len(d["reasons"]) == 5 for d in every)
    cs = [[r["contribution"] for r in d["reasons"]] for d in every]
    assert all(c == sorted(c, reverse=True) for c in cs)
    review = scored_docs(stages(scorer, reasons="review", review_threshold=0.01), msgs)
    assert {d["transaction_id"] for d in review if "reasons" in d} == \
        {d["transaction_id"] for d in every if d["fraud_label"] == 1 or d["fraud_probability"] >= 0.01}
    with pytest.raises(SettingsError, match="BREEBOOST_REASONS"):
        Settings.from_env({"BREEBOOST_REASONS": "some"})
    with pytest.raises(SettingsError, match="BREEBOOST_REVIEW_THRESHOLD"):
        Settings.from_env({"BREEBOOST_REVIEW_THRESHOLD": "1.5"})


def _as_dumped(doc: dict, extra: dict | None) -> dict:
    out = {k: v for k, v in doc.items() if k != "scored_at"}
    return {**out, **(extra or {}), "scored_at": doc["scored_at"]}


def test_encoded_reasons_are_orjson_of_the_record_with_reasons_before_scored_at():
    rng = np.random.default_rng(0)
    n = 9
    tids = [f"t{i}" for i in range(n)]
    prob = rng.random(n).round(4).tolist()
    label = [int(p > 0.5) for p in prob]
    reasons = {j: ([{"feature": "amount", "value": 1.5 * j, "contribution": 2.25}], -3.5) for j in (0, 4, 5, 8)}
    extra = encode_reasons(list(reasons), [r for r, _ in reasons.values()], [b for _, b in reasons.values()])
    for origin, item in (([0, 1, 2, 3, 4, 5, 6, 7, 8], [None] * 9),               # one transaction a message
                         ([0, 0, 0, 1, 1, 2, 3, 3, 3], [0, 1, 2, 0, 1, None, 0, 1, 2])):  # envelopes and a single
        msgs = max(origin) + 1
        got = encode_scores(tids, prob, label, origin, item, [1.5] * msgs, [0] * msgs, list(range(msgs)), 0.5, "v",
                            7.0, None, extra)
        plain = encode_scores(tids, prob, label, origin, item, [1.5] * msgs, [0] * msgs, list(range(msgs)), 0.5, "v",
                              7.0)
        for g, p in zip(got, plain):
            pd = orjson.loads(p)
            pd = pd if isinstance(pd, list) else [pd]
            rows = [tids.index(d["transaction_id"]) for d in pd]
            want = [_as_dumped(d, {"reasons": reasons[j][0], "base_value": reasons[j][1]} if j in reasons else None)
                    for d, j in zip(pd, rows)]
            assert g == orjson.dumps(want if p.startswith(b"[") else want[0])


def test_offline_score_and_explain_give_the_stream_reasons(scorer, burst, paysim_model, tmp_path, capsys):
    cols, payloads = burst
    data = tmp_path / "tx.jsonl"
    write_table(records_to_columns([orjson.loads(p) for p in payloads]), data)
    out = tmp_path / "scored.jsonl"
    assert main(["score", "--model", paysim_model, "--data", str(data), "--out", str(out), "--explain"]) == 0
    offline = {r["transaction_id"]: r for r in map(orjson.loads, out.read_bytes().splitlines())}
    stream = {d["transaction_id"]: d for d in scored_docs(stages(scorer), messages(payloads))}
    flagged = [t for t, d in stream.items() if d["fraud_label"] == 1]
    assert flagged and all(offline[t]["reasons"] == stream[t]["reasons"] for t in flagged)
    assert all(offline[t]["reasons"] is None for t, d in stream.items() if d["fraud_label"] == 0)
    csv = tmp_path / "scored.csv"
    assert main(["score", "--model", paysim_model, "--data", str(data), "--out", str(csv), "--explain"]) == 0
    capsys.readouterr()
    tx = flagged[0]
    assert main(["explain", "--model", paysim_model, "--data", str(data), "--id", tx, "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["reasons"] == stream[tx]["reasons"] and doc["base_value"] == stream[tx]["base_value"]
    assert main(["explain", "--model", paysim_model, "--data", str(data), "--id", tx]) == 0
    text = capsys.readouterr().out
    assert stream[tx]["reasons"][0]["feature"] in text and "base value" in text
    assert main(["explain", "--model", paysim_model, "--data", str(data), "--id", "tx-none"]) == 1
    assert main(["score", "--model", paysim_model, "--data", str(data), "--out", str(out), "--explain",
                 "--reasons", "none"]) == 1


def test_select_rows_and_explainer_arguments(scorer):
    assert select_rows("flagged", np.array([0.9, 0.1]), np.array([1, 0])).tolist() == [0]
    with pytest.raises(ValueError, match="reasons"):
        select_rows("most", np.array([0.9]), np.array([1]))
    with pytest.raises(ValueError, match="k"):
        Explainer.of(scorer, k=0)
    empty = Explainer.of(scorer).reasons(scorer.score_columns(generate(5, seed=1)).features, np.array([], int))
    assert len(empty) == 0 and empty.as_lists() == []
