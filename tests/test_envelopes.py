"""The amplification bound: no message gives more output records than its valid transactions plus a small
constant (streams/envelopes.py), whatever it holds; and the largest valid envelope still fits."""
from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from breeboost.settings import Settings
from models.scorer import Scorer
from simulator import encode_events, generate
from streams.envelopes import ENVELOPE_SLACK
from streams.records import Msg
from streams.stages import WorkerStages
from tests.test_badinput import transaction


@pytest.fixture(scope="module")
def stages_factory(paysim_model):
    scorer = Scorer.load(paysim_model)
    return lambda **kw: WorkerStages.build(scorer, Settings.from_env({}, partitions=1, **kw))


def _valid(n: int, seed: int = 3) -> list[dict]:
    return [orjson.loads(v) for v in encode_events(generate(n, seed=seed), with_label=False, seed=seed)]


def _dead(out) -> list[dict]:
    return [orjson.loads(v) for _, v in out.dead_letters]


def _scored(out) -> int:
    return sum(len(d) if isinstance(d, list) else 1 for d in (orjson.loads(v) for _, v in out.scores))


def test_the_two_hostile_messages_are_one_dead_letter_each(stages_factory):
    s = stages_factory()
    rows = _valid(3001)
    msgs = [Msg("transactions", 0, 0, orjson.dumps(rows[0])),
            Msg("transactions", 0, 1, b"[" + b"1," * 299_999 + b"1]"),
            Msg("transactions", 0, 2, b"[" + b"{}," * 149_999 + b"{}]"),
            Msg("transactions", 0, 3, orjson.dumps(rows[1:]))]
    out = s.scoring.process(msgs)
    assert _scored(out) == 3001
    dead = _dead(out)
    assert [(d["offset"], d["item"], d["reason"]) for d in dead] == [(1, None, "envelope_too_large"),
                                                                    (2, None, "envelope_too_large")]
    assert dead[0]["raw_b64"] and "300000 items" in dead[0]["detail"]
    assert out.reasons == {"envelope_too_large": 2}


def test_an_envelope_of_mostly_bad_items_is_one_dead_letter_and_a_few_bad_items_stay_item_by_item(stages_factory):
    s = stages_factory()
    rows = _valid(10)
    mostly_bad = orjson.dumps([1] * 50 + rows[:2])            # 50 rejected > 2 valid + slack
    few_bad = orjson.dumps(rows[2:8] + [{}] * 5 + [7])        # 6 rejected <= 6 valid + slack
    out = s.scoring.process([Msg("transactions", 0, 0, mostly_bad), Msg("transactions", 0, 1, few_bad)])
    dead = _dead(out)
    assert [(d["offset"], d["item"], d["reason"]) for d in dead if d["offset"] == 0] == [(0, None, "malformed_envelope")]
    assert "50 of 52 items rejected" in dead[-1]["detail"]
    assert sorted(d["item"] for d in dead if d["offset"] == 1) == [6, 7, 8, 9, 10, 11]
    assert _scored(out) == 6                                   # the malformed envelope's 2 valid ones go with it
    w = s.windows.open[0]
    assert w.sketch.events == 1 + 12                           # the whole message counts once in the window


def test_the_largest_valid_envelope_of_max_message_bytes_is_not_refused(stages_factory):
    """The default ``max_envelope_items`` is above what ``max_message_bytes`` can hold of the smallest valid
    transaction, so no valid envelope is refused by the item count."""
    d = Settings()
    smallest = {"step": 1, "type": "DEBIT", "amount": 0, "oldbalanceOrg": 0, "newbalanceOrig": 0,
                "oldbalanceDest": 0, "newbalanceDest": 0}
    s = stages_factory()
    assert _scored(s.scoring.process([Msg("transactions", 0, 0, orjson.dumps(smallest))])) == 1   # it is valid
    per_item = len(orjson.dumps(smallest)) + 1
    assert d.max_message_bytes // per_item <= d.max_envelope_items
    fits = [smallest] * (d.max_message_bytes // per_item)
    assert len(orjson.dumps(fits)) <= d.max_message_bytes
    out = stages_factory().scoring.process([Msg("transactions", 0, 0, orjson.dumps(fits))])
    assert _scored(out) == len(fits) and not out.dead_letters


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(transaction(), st.integers(), st.none(), st.text(max_size=3), st.just({})), max_size=60))
def test_no_message_gives_more_records_than_its_valid_transactions_plus_a_constant(stages_factory, items):
    s = stages_factory()
    out = s.scoring.process([Msg("transactions", 0, 0, orjson.dumps(items))])
    records = len(out.scores) + len(out.dead_letters)
    assert records <= _scored(out) + ENVELOPE_SLACK + 1
    dead = _dead(out)
    if any(d["item"] is None for d in dead):    # dead-lettered whole: nothing else of the message
        assert len(dead) == 1 and not out.scores
    else:                                        # every item scored or dead-lettered, once
        assert _scored(out) + len(dead) == len(items)
