"""Simulator: PaySim statistics on a million events, determinism, and what each scenario changes."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import orjson
import pytest

from breeboost.cli import main
from simulator import (DEFAULT_START_TIME, ScenarioError, SimulatorError, encode_events, generate,
                       parse_scenario, write_file)
from simulator.generator import CHUNK, TransactionGenerator
from simulator.scenarios import JSON_FIELDS

N_STATS = 1_000_000
SEED = 1


def within(value: float, target: float, rel: float = 0.10) -> bool:
    return abs(value - target) <= rel * abs(target)


@pytest.fixture(scope="module")
def million():
    return generate(N_STATS, seed=SEED)


# --- PaySim statistics -------------------------------------------------------------------------------
def test_columns_and_types(million):
    c = million
    assert tuple(c) == JSON_FIELDS
    assert all(len(v) == N_STATS for v in c.values())
    assert c["transaction_id"][0] == f"tx-{SEED}-0" and c["transaction_id"][-1] == f"tx-{SEED}-{N_STATS - 1}"
    assert len(np.unique(c["transaction_id"])) == N_STATS
    for k in ("amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"):
        v = c[k]
        assert v.dtype == np.float64 and (v >= 0).all() and np.allclose(v, np.round(v, 2), rtol=0, atol=1e-6), k
    assert (c["amount"] > 0).all()
    assert set(np.unique(c["isFraud"])) <= {0, 1} and set(np.unique(c["isFlaggedFraud"])) <= {0, 1}


@pytest.mark.parametrize("ttype,share", [("CASH_OUT", 0.352), ("PAYMENT", 0.338), ("CASH_IN", 0.220),
                                         ("TRANSFER", 0.084), ("DEBIT", 0.0065)])
def test_type_shares(million, ttype, share):
    assert within(float((million["type"] == ttype).mean()), share)


def test_fraud_rates_and_where_fraud_happens(million):
    c = million
    fraud = c["isFraud"] == 1
    assert within(float(fraud.mean()), 0.00129)
    assert set(np.unique(c["type"][fraud])) == {"TRANSFER", "CASH_OUT"}
    assert within(float(fraud[c["type"] == "TRANSFER"].mean()), 0.0077)
    assert within(float(fraud[c["type"] == "CASH_OUT"].mean()), 0.0018)
    flagged = c["isFlaggedFraud"] == 1
    assert (fraud[flagged]).all() and (c["type"][flagged] == "TRANSFER").all()
    assert (c["amount"][fraud] <= 10_000_000).all()


def test_takeover_pattern(million):
    """Each fraudulent TRANSFER empties (a 10M piece of) the victim's account; the mule then cashes it out."""
    c = million
    t = np.flatnonzero((c["isFraud"] == 1) & (c["type"] == "TRANSFER") & (c["isFlaggedFraud"] == 0))
    assert t.size > 500
    nxt = t + 1
    assert (c["type"][nxt] == "CASH_OUT").all() and (c["isFraud"][nxt] == 1).all()
    assert (c["nameOrig"][nxt] == c["nameDest"][t]).all()
    assert (c["amount"][nxt] == c["amount"][t]).all()
    assert (c["oldbalanceOrg"][nxt] == c["amount"][t]).all() and (c["newbalanceOrig"][nxt] == 0).all()
    emptied = c["amount"][t] < 10_000_000
    assert (c["amount"][t][emptied] == c["oldbalanceOrg"][t][emptied]).all()
    assert (c["newbalanceOrig"][t][emptied] == 0).all()
    capped = ~emptied
    assert capped.any()
    assert np.allclose(c["newbalanceOrig"][t][capped], c["oldbalanceOrg"][t][capped] - 10_000_000, atol=0.011)


def test_amount_quartiles(million):
    q1, med, q3 = np.percentile(million["amount"], [25, 50, 75])
    assert within(q1, 13_390) and within(med, 74_872) and within(q3, 208_722)
    assert million["amount"].max() > 5_000_000  # long right tail


def test_merchants(million):
    c = million
    merchant = np.char.startswith(c["nameDest"], "M")
    assert (merchant == (c["type"] == "PAYMENT")).all()
    assert (c["oldbalanceDest"][merchant] == 0).all() and (c["newbalanceDest"][merchant] == 0).all()
    assert not np.char.startswith(c["nameOrig"], "M").any()


def test_paysim_balance_quirks(million):
    c = million
    fraud = c["isFraud"] == 1
    tc = (c["type"] == "TRANSFER") | (c["type"] == "CASH_OUT")
    dest00 = (c["oldbalanceDest"] == 0) & (c["newbalanceDest"] == 0) & (c["amount"] > 0)
    orig00 = (c["oldbalanceOrg"] == 0) & (c["newbalanceOrig"] == 0) & (c["amount"] > 0)
    assert within(float(dest00[fraud].mean()), 0.4955)
    assert float(dest00[tc & ~fraud].mean()) < 0.002
    assert within(float(orig00[tc & ~fraud].mean()), 0.4737)
    assert float(orig00[fraud].mean()) < 0.01
    # Cash-in credits the origin, other types debit it (or empty it, PaySim's clamp at zero).
    ci = c["type"] == "CASH_IN"
    assert np.allclose(c["newbalanceOrig"][ci], c["oldbalanceOrg"][ci] + c["amount"][ci], atol=0.011)


def test_destination_accounts_are_bookkept(million):
    """A customer destination's balance before an event is its balance after the previous one (same step),
    except once per account and chunk: where its cyclic history starts (see TransactionGenerator._bookkeep)."""
    c = {k: v[:CHUNK] for k, v in million.items()}
    mule = (c["isFraud"] == 1) & (c["type"] == "TRANSFER")
    cust = np.flatnonzero(np.char.startswith(c["nameDest"], "C") & ~mule)
    quirk = (c["oldbalanceDest"] == 0) & (c["newbalanceDest"] == 0)  # PaySim's unrecorded destinations
    order = cust[np.lexsort((cust, c["nameDest"][cust]))]
    same = (c["nameDest"][order][1:] == c["nameDest"][order][:-1]) & ~quirk[order][1:] & ~quirk[order][:-1]
    assert same.sum() > 10_000  # accounts recur
    a, b = order[:-1][same], order[1:][same]
    flow = np.where(c["type"][a] == "CASH_IN", -c["amount"][a], c["amount"][a])
    moved = c["oldbalanceDest"][b] - c["oldbalanceDest"][a]
    ok = np.isclose(moved, flow, rtol=0, atol=0.02)
    accounts = len(np.unique(c["nameDest"][b]))
    assert ok.mean() > 0.7
    assert (~ok).sum() <= accounts  # at most the one reset per account
    # the reset puts an account back to its opening balance: never a step no flow explains elsewhere
    resets_per_account = np.bincount(np.unique(c["nameDest"][b][~ok], return_inverse=True)[1])
    assert resets_per_account.max() == 1


def test_steps_and_event_time(million):
    c = million
    assert c["step"].min() == 1 and c["step"].max() > 100 and (np.diff(c["step"]) >= 0).all()
    offset = c["event_time"] - DEFAULT_START_TIME - (c["step"] - 1) * 3600.0
    assert (offset >= 0).all() and (offset < 3600).all()
    assert (np.diff(c["event_time"]) >= 0).all()
    night = np.bincount(c["step"] % 24, minlength=24)
    assert night[4] * 10 < night[19]  # PaySim's daily rhythm: quiet at 4am, busy at 7pm


def test_start_time_and_wrapping():
    g = TransactionGenerator(seed=0, start_time=0.0, events_per_step=10)
    cycle = g.clock.events_per_cycle
    b = g.batch(cycle - 1, 2)
    assert b["step"].tolist() == [744, 1]
    assert b["event_time"][1] == pytest.approx(744 * 3600.0)


# --- determinism -------------------------------------------------------------------------------------
def test_same_seed_same_bytes_and_chunks_match_whole():
    whole = generate(150_000, seed=9)
    again = generate(150_000, seed=9)
    assert encode_events(whole) == encode_events(again)
    cuts = [0, 1, 65_535, 65_537, 100_000, 150_000]
    parts = [generate(b - a, seed=9, start_index=a) for a, b in zip(cuts, cuts[1:])]
    for k in whole:
        assert (np.concatenate([p[k] for p in parts]) == whole[k]).all(), k
    other = generate(1000, seed=10)
    assert not (other["amount"] == whole["amount"][:1000]).all()


def test_encoding_with_scenarios_is_chunk_independent():
    sc = [parse_scenario("missing_fields:fraction=0.3", 100), parse_scenario("malformed:fraction=0.1,kinds=binary|truncated", 50)]
    cols = generate(3000, seed=2)
    whole = encode_events(cols, scenarios=sc, seed=2)
    pieces = []
    for a, b in [(0, 77), (77, 2000), (2000, 3000)]:
        part = {k: v[a:b] for k, v in cols.items()}
        pieces += encode_events(part, scenarios=sc, seed=2, start_index=a)
    assert pieces == whole


def test_encode_without_label_and_numbers():
    cols = generate(100, seed=3)
    rows = [orjson.loads(p) for p in encode_events(cols, with_label=False)]
    assert all("isFraud" not in r for r in rows)
    assert rows[5]["amount"] == float(cols["amount"][5]) and rows[5]["step"] == int(cols["step"][5])
    assert list(rows[0]) == [k for k in JSON_FIELDS if k != "isFraud"]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="seed"):
        generate(10, seed=-1)
    with pytest.raises(ValueError, match="count"):
        generate(-1, seed=0)
    with pytest.raises(ValueError, match="events_per_step"):
        TransactionGenerator(0, events_per_step=0)


# --- scenarios ---------------------------------------------------------------------------------------
N_SC = 200_000
START, END = 50_000, 150_000


@pytest.fixture(scope="module")
def base():
    return generate(N_SC, seed=4)


def run(spec: str, start: int = START, end: int | None = END) -> dict[str, np.ndarray]:
    return generate(N_SC, seed=4, scenarios=[parse_scenario(spec, start, end)])


def changed(a, b, cols=None):
    return {k for k in (cols or a) if not np.array_equal(a[k], b[k])}


NON_DEST = [k for k in JSON_FIELDS if k not in ("oldbalanceDest", "newbalanceDest")]


def test_amount_scale(base):
    s = run("amount_scale:factor=3")
    assert changed(base, s) == {"amount"}
    w = slice(START, END)
    assert np.allclose(s["amount"][w], np.round(base["amount"][w] * 3, 2))
    assert np.array_equal(s["amount"][:START], base["amount"][:START])
    assert np.array_equal(s["amount"][END:], base["amount"][END:])
    both = run("amount_scale:factor=2,balances=1")
    assert changed(base, both) == {"amount", "oldbalanceOrg", "newbalanceOrig", "oldbalanceDest", "newbalanceDest"}


def test_type_mix(base):
    s = run("type_mix:TRANSFER=0.5,PAYMENT=0")
    w = slice(START, END)
    share = float((s["type"][w] == "TRANSFER").mean())
    assert within(share, 0.5 / (1 - 0.0838 - 0.3381 + 0.5), 0.05)
    assert (s["type"][w] == "PAYMENT").mean() == 0
    outside = np.r_[0:START, END:N_SC]
    for k in NON_DEST:
        assert np.array_equal(s[k][outside], base[k][outside]), k
    same_type = np.flatnonzero(s["type"] == base["type"])
    for k in ("amount", "nameOrig", "oldbalanceOrg", "newbalanceOrig", "isFraud"):
        assert np.array_equal(s[k][same_type], base[k][same_type]), k
    assert np.array_equal(s["isFraud"], base["isFraud"])  # take-overs are not part of the mix


def test_fraud_burst(base):
    s = run("fraud_burst:factor=10")
    w = slice(START, END)
    assert within(float(s["isFraud"][w].mean()), 10 * float(base["isFraud"][w].mean()), 0.15)
    assert (s["isFraud"][base["isFraud"] == 1] == 1).all()  # every baseline take-over stays
    outside = np.r_[0:START, END:N_SC]
    for k in NON_DEST:
        assert np.array_equal(s[k][outside], base[k][outside]), k
    untouched = np.flatnonzero(s["isFraud"] == base["isFraud"])
    for k in ("type", "amount", "nameOrig", "oldbalanceOrg", "newbalanceOrig"):
        assert np.array_equal(s[k][untouched], base[k][untouched]), k


def test_stale_clock(base):
    s = run("stale_clock:lag=7200")
    assert changed(base, s) == {"event_time"}
    assert np.allclose(base["event_time"][START:END] - s["event_time"][START:END], 7200)
    assert np.array_equal(s["event_time"][END:], base["event_time"][END:])
    g = TransactionGenerator(4, [parse_scenario("stale_clock:lag=7200", START, END)])
    assert g.clock_lag(np.array([START - 1, START, END])).tolist() == [0.0, 7200.0, 0.0]


def test_balance_corruption(base):
    s = run("balance_corruption:fraction=0.3")
    assert changed(base, s) <= {"newbalanceOrig", "newbalanceDest"}
    diff = (s["newbalanceOrig"] != base["newbalanceOrig"]) | (s["newbalanceDest"] != base["newbalanceDest"])
    assert not diff[:START].any() and not diff[END:].any()
    assert within(float(diff[START:END].mean()), 0.3, 0.05)
    err = s["newbalanceOrig"] + s["amount"] - s["oldbalanceOrg"]
    out = (s["type"] != "CASH_IN") & diff
    assert (err[out] > s["amount"][out]).all()  # money appears instead of leaving
    merchant = np.char.startswith(s["nameDest"], "M")
    assert (s["newbalanceDest"][merchant] == 0).all()


def encoded(spec: str | None, start: int = 1000, end: int | None = 9000, n: int = 10_000, **kw):
    cols = generate(n, seed=6)
    sc = [parse_scenario(spec, start, end)] if spec else []
    return encode_events(cols, scenarios=sc, seed=6, **kw)


def test_missing_fields():
    base, s = encoded(None), encoded("missing_fields:fraction=0.2,fields=amount|oldbalanceOrg")
    diff = [i for i in range(len(base)) if base[i] != s[i]]
    assert min(diff) >= 1000 and max(diff) < 9000
    assert within(len(diff) / 8000, 0.2)
    kinds = {"missing": 0, "null": 0}
    for i in diff:
        a, b = orjson.loads(base[i]), orjson.loads(s[i])
        gone = [k for k in a if b.get(k) != a[k]]
        assert len(gone) == 1 and gone[0] in ("amount", "oldbalanceOrg") and b["transaction_id"] == a["transaction_id"]
        kinds["missing" if gone[0] not in b else "null"] += 1
    assert kinds["missing"] > 0.3 * len(diff) and kinds["null"] > 0.3 * len(diff)


def test_schema_break_rename_and_string():
    base, s = encoded(None), encoded("schema_break:field=amount,mode=rename")
    for i in (0, 999, 9000):
        assert s[i] == base[i]
    for i in (1000, 5000, 8999):
        a, b = orjson.loads(base[i]), orjson.loads(s[i])
        assert "amount" not in b and b["amount_v2"] == a["amount"]
        assert {k: v for k, v in b.items() if k != "amount_v2"} == {k: v for k, v in a.items() if k != "amount"}
    st = encoded("schema_break:field=oldbalanceOrg,mode=string")
    a, b = orjson.loads(base[2000]), orjson.loads(st[2000])
    assert b["oldbalanceOrg"] == str(a["oldbalanceOrg"]) and isinstance(b["oldbalanceOrg"], str)
    with pytest.raises(ScenarioError, match="numeric"):
        parse_scenario("schema_break:field=type,mode=string")


def test_malformed():
    base, s = encoded(None), encoded("malformed:fraction=0.06")
    bad = {"binary": 0, "truncated": 0, "oversized": 0}
    for i, (a, b) in enumerate(zip(base, s)):
        if a == b:
            continue
        assert 1000 <= i < 9000
        if b[:1] == b"\xff":
            bad["binary"] += 1
            with pytest.raises(UnicodeDecodeError):
                b.decode()
        elif len(b) > 1_000_000:
            bad["oversized"] += 1
            obj = orjson.loads(b)
            assert obj.pop("padding") and obj == orjson.loads(a)
        else:
            bad["truncated"] += 1
            assert a.startswith(b) and len(b) < len(a)
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(b)
    assert within(sum(bad.values()) / 8000, 0.06, 0.15)
    assert all(v > 50 for v in bad.values()), bad


def test_scenarios_combine():
    cols = generate(20_000, seed=7, scenarios=[parse_scenario("amount_scale:factor=2", 0, None, 0),
                                               parse_scenario("stale_clock:lag=60", 10_000, None, 1)])
    base = generate(20_000, seed=7)
    assert np.allclose(cols["amount"], np.round(base["amount"] * 2, 2))
    assert np.allclose(base["event_time"][10_000:] - cols["event_time"][10_000:], 60)
    sc = [parse_scenario("missing_fields:fraction=0.5", 0, None, 0), parse_scenario("schema_break:field=step", 0, None, 1)]
    out = [orjson.loads(p) for p in encode_events(cols, scenarios=sc, seed=7)]
    assert all("step" not in o for o in out) and any(o.get("amount", 0) is None for o in out)


@pytest.mark.parametrize("spec,fragment", [
    ("amount_scale:factor=-1", "factor"), ("amount_scale:factr=2", "unknown parameter"),
    ("type_mix:WIRE=0.5", "unknown type"), ("missing_fields:fraction=2", "fraction"),
    ("missing_fields:fields=foo", "fields"), ("schema_break:mode=drop", "mode"),
    ("stale_clock:lag=0", "lag"), ("fraud_burst:factor=0.5", "factor"), ("malformed:kinds=xml", "kinds"),
    ("balance_corruption:fraction", "key=value"), ("nonsense", "unknown scenario"),
])
def test_scenario_errors_name_the_parameter(spec, fragment):
    with pytest.raises(ScenarioError, match=fragment):
        parse_scenario(spec)


def test_scenario_window_validation():
    with pytest.raises(ScenarioError, match="end"):
        parse_scenario("fraud_burst", 10, 5)


# --- files and CLI -----------------------------------------------------------------------------------
def test_write_jsonl_and_csv(tmp_path):
    js, cs = str(tmp_path / "t.jsonl"), str(tmp_path / "t.csv")
    summary = write_file(js, 70_000, seed=8)
    assert summary["events"] == 70_000 and summary["frauds"] > 0
    lines = open(js, "rb").read().splitlines()
    assert len(lines) == 70_000 and orjson.loads(lines[-1])["transaction_id"] == "tx-8-69999"
    assert "isFraud" in orjson.loads(lines[0])
    write_file(cs, 1000, seed=8)
    import csv
    rows = list(csv.DictReader(open(cs)))
    assert len(rows) == 1000 and list(rows[0]) == list(JSON_FIELDS)
    assert float(rows[10]["amount"]) == orjson.loads(lines[10])["amount"]
    with pytest.raises(SimulatorError, match="jsonl"):
        write_file(cs, 10, seed=8, scenarios=["malformed:fraction=0.5"])
    with pytest.raises(SimulatorError, match=".jsonl or .csv"):
        write_file(str(tmp_path / "t.parquet"), 10, seed=8)


def test_malformed_lines_stay_one_per_event(tmp_path):
    js = str(tmp_path / "m.jsonl")
    write_file(js, 5000, seed=1, scenarios=["malformed:fraction=0.2,kinds=binary|truncated"])
    assert len(open(js, "rb").read().split(b"\n")) == 5001


def test_cli_to_file(tmp_path, capsys):
    out = str(tmp_path / "cli.jsonl")
    rc = main(["simulate", "--count", "2000", "--seed", "3", "--out", out, "--scenario", "amount_scale:factor=5",
               "--scenario-start", "1000", "--scenario-end", "1500", "--start-time", "2025-06-01T00:00:00Z"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sent"] == 2000 and summary["failed"] == 0
    assert summary["scenarios"] == [{"name": "amount_scale", "start": 1000, "end": 1500, "factor": 5.0, "balances": False}]
    rows = [orjson.loads(x) for x in open(out, "rb")]
    ref = generate(2000, seed=3)
    assert rows[1200]["amount"] == round(ref["amount"][1200] * 5, 2) and rows[1500]["amount"] == ref["amount"][1500]
    assert rows[0]["event_time"] == 1748736000.0


def test_cli_errors(tmp_path, capsys):
    assert main(["simulate", "--count", "10", "--out", str(tmp_path / "x.csv"), "--scenario", "malformed"]) == 1
    assert main(["simulate", "--count", "10", "--scenario-start", "5"]) == 1
    assert main(["simulate", "--count", "10", "--scenario", "bogus"]) == 1
    assert main(["simulate", "--count", "10", "--rate", "0"]) == 1
    assert "error" in capsys.readouterr().err


def test_concept_shift_relabels_only_genuine_events_and_a_signature_restricts_them(base):
    plain = run("concept_shift:signature=none,share=0.05")
    assert changed(base, plain) == {"isFraud"}
    flipped = np.flatnonzero(plain["isFraud"] != base["isFraud"])
    assert flipped.size and ((flipped >= START) & (flipped < END)).all() and (base["isFraud"][flipped] == 0).all()
    sig = run("concept_shift:share=1,type=PAYMENT,min_amount=5000,max_amount=7000")
    assert changed(base, sig) == {"isFraud"}
    w = slice(START, END)
    band = (base["type"][w] == "PAYMENT") & (base["amount"][w] >= 5000) & (base["amount"][w] < 7000)
    assert band.sum() > 0 and (sig["isFraud"][w][band] == 1).all()            # share=1: every one of the band
    assert np.array_equal(sig["isFraud"][w][~band], base["isFraud"][w][~band])  # and nothing outside it
    assert np.array_equal(run("concept_shift")["isFraud"], sig["isFraud"])    # the default is that band
    only_type = run("concept_shift:type=DEBIT")                                # a signature given: just that
    debit = base["type"][w] == "DEBIT"
    assert debit.sum() > 0 and (only_type["isFraud"][w][debit] == 1).all()
    assert np.array_equal(only_type["isFraud"][w][~debit], base["isFraud"][w][~debit])
    with pytest.raises(ScenarioError, match="max_amount"):
        parse_scenario("concept_shift:min_amount=10,max_amount=5")
    with pytest.raises(ScenarioError, match="signature=none takes no type"):
        parse_scenario("concept_shift:signature=none,type=PAYMENT")
    with pytest.raises(ScenarioError, match="signature can only be"):
        parse_scenario("concept_shift:signature=amount")
