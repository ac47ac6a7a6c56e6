"""Bad input, generated with hypothesis: every event is scored or dead-lettered with a known reason, nothing
crashes, and counters and topics reconcile. Property tests of the pure pipeline first (no broker), then one
generated batch through the real worker on the real broker, proved by ``streams.audit.audit_topics``."""
from __future__ import annotations

import math
import time
import urllib.request

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from models.validation import validate_records
from models.spec import load_spec
from simulator import encode_events, generate
from breeboost.rejections import REASONS
from streams.decode import decode_messages
from streams.records import Msg
from streams.stages import WorkerStages

MAX_BYTES = 4096
BASE = [orjson.loads(v) for v in encode_events(generate(64, seed=3), with_label=False, seed=3)]
FIELDS = sorted(BASE[0])
SPEC = load_spec()

_junk = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=3),
                  st.dictionaries(st.text(max_size=3), st.integers(-9, 9), max_size=2),
                  st.sampled_from([1e308, -1e308, 2 ** 63 - 1, -(2 ** 63), 0, -1.5, 1e-300, "NaN", "Infinity"]))


@st.composite
def transaction(draw) -> dict:
    """A valid transaction, maybe spoiled in one way (the ways of issue #9)."""
    tx = dict(draw(st.sampled_from(BASE)))
    tx["transaction_id"] = f"tx-h-{draw(st.integers(0, 10 ** 9))}"
    how = draw(st.sampled_from(["ok", "ok", "missing", "wrong", "negative", "huge", "unknown_type", "dup"]))
    if how == "missing":
        tx.pop(draw(st.sampled_from(FIELDS)))
    elif how == "wrong":
        tx[draw(st.sampled_from(FIELDS))] = draw(_junk)
    elif how == "negative":
        tx["amount"] = -draw(st.floats(0.01, 1e9))
    elif how == "huge":
        tx[draw(st.sampled_from(["amount", "oldbalanceOrg", "step"]))] = draw(st.sampled_from([1e300, 2 ** 63 - 1, 1e30]))
    elif how == "unknown_type":
        tx["type"] = draw(st.sampled_from(["BITCOIN", "", "payment", "CASH_IN "]))
    elif how == "dup":
        tx["transaction_id"] = "tx-h-duplicate"
    return tx


@st.composite
def payload(draw) -> bytes:
    """The bytes of one ``transactions`` message."""
    kind = draw(st.sampled_from(["tx", "tx", "tx", "bytes", "truncated", "nonfinite", "envelope", "oversized",
                                 "scalar", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "truncated":
        raw = orjson.dumps(draw(transaction()))
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if kind == "nonfinite":   # NaN/Infinity are not JSON; 1e400 overflows a double
        raw = orjson.dumps(draw(transaction()))
        return raw.replace(b'"amount":', b'"amount":' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity",
                                                                              b"1e400"])) + b",\"x\":", 1)
    if kind == "envelope":
        items = draw(st.lists(st.one_of(transaction(), _junk), min_size=0, max_size=4))
        return orjson.dumps(items)
    if kind == "oversized":
        return orjson.dumps(dict(draw(transaction()), pad="x" * MAX_BYTES))
    if kind == "scalar":
        return orjson.dumps(draw(_junk))
    if kind == "empty":
        return b""
    return orjson.dumps(draw(transaction()))


def events_of(raw: bytes) -> list:
    """The events a message holds, as the audit counts them: envelope items, or the message itself."""
    if len(raw) > MAX_BYTES:
        return [None]
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [None]
    return list(range(len(doc))) if isinstance(doc, list) and doc else [None]


# --- pure functions -----------------------------------------------------------------------------------
@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(payload(), max_size=20))
def test_decode_accounts_for_every_message(values):
    d = decode_messages(values, max_bytes=MAX_BYTES)
    got = [(o, i) for o, i in zip(d.origins, d.items)] + [(r.message, r.item) for r in d.rejects]
    want = [(m, i) for m, v in enumerate(values) for i in events_of(v)]
    assert sorted(got, key=repr) == sorted(want, key=repr)
    assert all(r.reason in REASONS and r.detail for r in d.rejects)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(st.one_of(transaction(), _junk), max_size=20))
def test_validation_accepts_only_clean_finite_records(records):
    v = validate_records(records, SPEC)
    rejected = {r.position for r in v.rejects}
    assert rejected.isdisjoint(v.accepted.tolist())
    assert rejected | set(v.accepted.tolist()) == set(range(len(records)))
    assert all(r.reason in REASONS for r in v.rejects)
    for name in SPEC.numeric_inputs if hasattr(SPEC, "numeric_inputs") else ("amount",):
        col = v.columns.get(name)
        if col is not None and len(col):
            assert all(math.isfinite(x) for x in col.tolist())
    if "amount" in v.columns and len(v.columns["amount"]):
        assert min(v.columns["amount"].tolist()) >= 0


@pytest.fixture(scope="module")
def processor_factory(paysim_model):
    from breeboost.settings import Settings
    from models.scorer import Scorer

    scorer = Scorer.load(paysim_model)
    return lambda: WorkerStages.build(scorer, Settings.from_env({}, partitions=2, max_message_bytes=MAX_BYTES))


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(payload(), min_size=1, max_size=30))
def test_pipeline_scores_or_dead_letters_every_event_once(processor_factory, values):
    proc = processor_factory()
    msgs = [Msg("transactions", i % 2, i // 2, v, b"k") for i, v in enumerate(values)]
    out = proc.scoring.process(msgs)
    seen: dict = {}
    for _, v in out.scores:
        doc = orjson.loads(v)
        for d in doc if isinstance(doc, list) else [doc]:
            key = (d["partition"], d["offset"], d["item"])
            assert key not in seen and 0.0 <= d["fraud_probability"] <= 1.0
            seen[key] = "scored"
    for _, v in out.dead_letters:
        d = orjson.loads(v)
        key = (d["partition"], d["offset"], d["item"])
        assert key not in seen and d["reason"] in REASONS and d["detail"]
        seen[key] = d["reason"]
    want = {(m.partition, m.offset, i) for m in msgs for i in events_of(m.value)}
    assert set(seen) == want
    assert sum(out.reasons.values()) == len(out.dead_letters)


def one_of_each() -> list[bytes]:
    """One hand-made payload per kind of bad input, so every reason shows up whatever hypothesis draws."""
    tx = dict(BASE[0], transaction_id="tx-each-0")
    raw = orjson.dumps(tx)
    return [bytes(range(256)), raw[: len(raw) // 2], raw.replace(b'"amount":', b'"amount":NaN,"x":'),
            raw.replace(b'"amount":', b'"amount":Infinity,"x":'), raw.replace(b'"amount":', b'"amount":1e400,"x":'),
            orjson.dumps(dict(tx, transaction_id="tx-each-1", pad="x" * MAX_BYTES)),
            orjson.dumps(dict(tx, transaction_id="tx-each-2", amount=-5.0)),
            orjson.dumps(dict(tx, transaction_id="tx-each-3", type="BITCOIN")),
            orjson.dumps(dict(tx, transaction_id="tx-each-4", amount="12.5")),
            orjson.dumps(dict(tx, transaction_id="tx-each-5", amount=None)),
            orjson.dumps({k: v for k, v in tx.items() if k != "amount"} | {"transaction_id": "tx-each-6"}),
            orjson.dumps(dict(tx, transaction_id="tx-each-7", amount=1e300)),
            orjson.dumps(dict(tx, transaction_id="tx-each-8", step=2 ** 63 - 1)),
            raw, raw.replace(b'"step":1', b'"step":2'),   # the same transaction_id at another offset
            b"[]", b"42", b'"text"', b"null", orjson.dumps([tx | {"transaction_id": "tx-each-9"}, 7, None])]


# --- the real worker on the real broker ----------------------------------------------------------------
def _scrape(port: int) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@settings(max_examples=1, derandomize=True, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(values=st.lists(payload(), min_size=200, max_size=200))
def test_worker_on_the_broker_reconciles_generated_bad_input(broker_bootstrap, paysim_model, tmp_path_factory, values):
    from breeboost.kafka_io import make_producer
    from streams.audit import audit_topics
    from tests.conftest import fresh_settings
    from tests.streamkit import Worker

    # fresh topics for each run: hypothesis runs the body again to report a failure
    s = fresh_settings(broker_bootstrap, max_message_bytes=MAX_BYTES)
    worker = Worker(s, paysim_model, tmp_path_factory.mktemp("badinput") / "worker.log", role="scoring",
                    max_message_bytes=MAX_BYTES).wait_ready(90)
    try:
        values = values + one_of_each()
        producer = make_producer(s)
        for i, v in enumerate(values):
            producer.send(s.topic_transactions, key=str(i % 7).encode(), value=v)
        producer.send(s.topic_transactions, key=b"n", value=None)      # a tombstone (null value)
        producer.flush()
        producer.close()
        want = sum(len(events_of(v)) for v in values) + 1
        deadline = time.monotonic() + 60
        rep = audit_topics(s, expect=len(values) + 1, idle_timeout_s=2.0)
        while (rep.missing or rep.produced < want) and time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
            time.sleep(1)
            rep = audit_topics(s, expect=len(values) + 1, idle_timeout_s=1.0)
        assert rep.ok and rep.produced == want == rep.scored + rep.dead_lettered, rep.as_dict()
        assert rep.unexpected == 0 and set(rep.dlq_by_reason) <= set(REASONS)
        assert {"invalid_json", "oversized", "negative_amount", "unknown_category", "wrong_type", "missing_field",
                "duplicate_id", "not_an_object", "empty_envelope"} <= set(rep.dlq_by_reason), rep.dlq_by_reason
        assert worker.proc.poll() is None                                 # no crash
        m = _scrape(worker.metrics_port)
        assert m[("breeboost_events_total", (("outcome", "scored"),))] == rep.scored
        assert m[("breeboost_events_total", (("outcome", "dead_lettered"),))] == rep.dead_lettered
        for reason, n in rep.dlq_by_reason.items():
            assert m[("breeboost_dead_letters_total", (("reason", reason),))] == n
    finally:
        worker.stop()
