"""The drift.stats contract between the detectors and the incident policy, on real payloads.

Real sketches (``WindowSketch`` of a ``build_profile`` reference on seeded data) are fed calm traffic and,
per incident type, the traffic that should cause it; real ``window_statistics`` turns each into the
payload the worker publishes, and the shipped policy evaluates it: every incident type fires from what
the detectors write, calm traffic fires none, and every field the policy reads is one the detectors (or,
for learned references, the incident manager) write. The payloads also match their typed record
(``detectors.records.DriftStats``) and the shipped JSON Schema. And the docs' tables that list reason codes
are the catalogue's (``breeboost.rejections``).
"""
from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import msgspec
import numpy as np
import orjson
import pytest

from breeboost.rejections import REASONS, SCHEMA_REASONS, reasons_table_markdown
from breeboost.settings import Settings, setting_fields
from detectors.calibration import DetectorConfig
from detectors.profile import build_profile
from detectors.records import (AttributionSums, DriftPartial, DriftStats, LabelCounts, Progress, RecordError,
                               decode_partial, decode_stats, encode_partial, encode_stats, load_stats_schema,
                               stats_schema)
from detectors.stats import window_statistics
from detectors.window import SCHEMA_REASONS as WINDOW_SCHEMA_REASONS
from detectors.window import WindowSketch
from incident.policy import Policy

ROOT = Path(__file__).resolve().parents[1]
N = 10_000                                    # events of a window
TYPES = ("CASH_IN", "CASH_OUT", "DEBIT", "PAYMENT", "TRANSFER")
SHARES = (0.22, 0.35, 0.01, 0.34, 0.08)
#: The model's own metrics on its test slice (metadata.json["metrics"]["test"]).
TEST_METRICS = {"rows": 50_000, "positives": 400, "auprc": 0.85, "roc_auc": 0.99, "precision": 0.9,
                "recall": 0.8, "f1": 0.85}
BALANCE_ERRORS = 0.05                         # calm share of events whose balances do not add up


def _numeric(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    old = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(9, 2, n))
    amount = rng.lognormal(5, 1, n)
    return {"amount": amount, "oldbalanceOrg": old, "newbalanceOrig": np.maximum(old - amount, 0.0)}


def _scores(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.01, rng.beta(20, 2, n), rng.beta(1, 30, n))


INPUTS = ("amount", "oldbalanceOrg", "newbalanceOrig", "type")   # the attribution's input features


def _contributions(rng: np.random.Generator, n: int, amount_shift: float = 0.0) -> np.ndarray:
    """Per-event contributions (log-odds) of the inputs, as the explained sample of a window would give."""
    c = rng.normal([-0.4, -1.0, -0.25, -0.6], [0.05, 1.2, 0.4, 0.9], size=(n, len(INPUTS)))
    c[:, 0] += amount_shift
    return c


@pytest.fixture(scope="module")
def profile() -> dict:
    rng = np.random.default_rng(0)
    n = 100_000
    prof = build_profile(_numeric(rng, n), {"type": rng.choice(TYPES, n, p=SHARES)}, _scores(rng, n), threshold=0.5)
    c = _contributions(rng, 4000)    # the training reference (models.explain.reference_attribution)
    prof["attribution"] = {"rows": 4000, "seed": 0, "slice": "training", "base_value": -6.0,
                           "features": {f: {"mean": float(c[:, j].mean()), "mean_abs": float(np.abs(c[:, j]).mean()),
                                            "std": float(c[:, j].std())} for j, f in enumerate(INPUTS)}}
    return prof


def _labels(tp: int, fp: int, fn: int, partitions: int = 2) -> list:
    """The label counts of a window's partials: ``N`` labelled events with these confusion counts (half as
    a mapping, half as the typed record, as the aggregator may hand either)."""
    total = {"n": N, "tp": tp, "fp": fp, "fn": fn, "tn": N - tp - fp - fn, "brier": 0.01 * N, "abs_error": 0.02 * N}
    parts = [{k: v / partitions if isinstance(v, float) else v // partitions for k, v in total.items()}
             for _ in range(partitions)]
    parts[0] = {k: v + (total[k] - sum(p[k] for p in parts)) for k, v in parts[0].items()}
    return [parts[0], *(LabelCounts(**p) for p in parts[1:])]


CALM_LABELS = dict(tp=80, fp=9, fn=20)       # precision 0.899, recall 0.8: the model's own figures


def _attribution(rng: np.random.Generator, amount_shift: float, partitions: int = 2, sample: int = 100) -> list:
    """Each partition's partial attribution sums (as the window stage ships them, through their codec)."""
    out = []
    for _ in range(partitions):
        c = _contributions(rng, sample, amount_shift)
        sums = AttributionSums.of(INPUTS, sample, c.sum(0), np.abs(c).sum(0), (c * c).sum(0), -6.0)
        out.append(msgspec.json.decode(msgspec.json.encode(sums), type=AttributionSums))
    return out


def window(profile: dict, seed: int, *, amount_factor: float = 1.0, missing: float = 0.0, lag_s: float = 2.0,
           balance_errors: float = BALANCE_ERRORS, scores: str = "calm", rejects: Mapping[str, int] | None = None,
           labels: Mapping[str, int] = CALM_LABELS, index: int = 0, amount_impact: float | None = None) -> dict[str, Any]:
    """The drift.stats payload of one window of ``N`` events (two partitions' partials, merged).
    ``amount_impact``: how much the amount's contribution moves (default: 0.3 per doubling of amounts)."""
    rng = np.random.default_rng(seed)
    rejects = dict(rejects or {})
    n = N - sum(rejects.values())
    num = _numeric(rng, n)
    num["amount"] = num["amount"] * amount_factor
    num["amount"][rng.random(n) < missing] = np.nan
    cat = {"type": rng.choice(TYPES, n, p=SHARES)}
    prob = _scores(rng, n) if scores == "calm" else rng.beta(1, 8, n)
    parts = [WindowSketch(profile), WindowSketch(profile)]
    halves = np.array_split(np.arange(n), 2)
    for p, (sk, idx) in enumerate(zip(parts, halves)):
        sk.update_batch({k: v[idx] for k, v in num.items()}, {k: v[idx] for k, v in cat.items()}, prob[idx],
                        rng.exponential(lag_s, idx.size), event_times=1.7e9 + idx.astype(float),
                        balance_mismatch=rng.random(idx.size) < balance_errors, partition=p)
    if rejects:
        parts[1].add_rejects(rejects, {"amount": rejects.get("missing_field", 0)}, partition=1)
    merged = WindowSketch.from_dict(profile, parts[0].to_dict()).merge(WindowSketch.from_dict(profile, parts[1].to_dict()))
    shift = 0.3 * np.log2(amount_factor) if amount_impact is None else amount_impact
    return window_statistics(merged, profile, DetectorConfig(), index=index, stream="transactions",
                             model_version="m1", closed_at=1.7e9, labels=_labels(**labels), reference=TEST_METRICS,
                             include_bins=index % 2 == 0, attribution=_attribution(rng, shift))


def learned(stats: dict, calm: dict) -> dict:
    """``stats`` as the incident manager evaluates it: with the references it learns from clean windows
    (``reference.<statistic>``, the median over recent windows without a breach; here: one calm window)."""
    out = dict(stats)
    out["reference"] = {s: calm[s] for s in _learned_statistics()}
    return out


def _policy_toml() -> dict:
    return tomllib.loads(resources.files("incident").joinpath("policy.toml").read_text("utf-8"))


def _learned_statistics() -> list[str]:
    return [t["statistic"] for t in _policy_toml()["types"].values() if t.get("learn_reference_windows")]


SCENARIOS = {
    "feature_drift": dict(amount_factor=3.0),
    "missing_data": dict(missing=0.2),
    "schema_mismatch": dict(rejects={"wrong_type": 300}),
    "corrupted_balances": dict(balance_errors=0.35),
    "stale_data": dict(lag_s=4000.0),
    "dead_letter_spike": dict(rejects={"oversized": 600}),
    "score_drift": dict(scores="shifted"),
    "concept_drift": dict(labels=dict(tp=20, fp=9, fn=80)),   # recall 0.8 -> 0.2 on 100 frauds
}


@pytest.fixture(scope="module")
def calm(profile) -> dict:
    return window(profile, seed=1)


def test_calm_windows_fire_nothing(profile, calm):
    policy = Policy.load()
    for seed in (1, 2, 3):
        stats = learned(window(profile, seed=seed, index=seed), calm)
        assert policy.evaluate(stats) == [], seed
    assert calm["concept"]["performance_drop"]["recall"] == pytest.approx(0.0)


@pytest.mark.parametrize("incident_type", sorted(SCENARIOS))
def test_every_incident_type_fires_from_window_statistics(profile, calm, incident_type):
    stats = learned(window(profile, seed=11, **SCENARIOS[incident_type]), calm)
    breaches = {b.type: b.severity for b in Policy.load().evaluate(stats)}
    assert incident_type in breaches, (incident_type, breaches)
    assert breaches[incident_type] in ("P1", "P2", "P3")


def test_the_scenarios_cover_every_incident_type():
    assert set(SCENARIOS) == set(Policy.load().types)


def test_impact_weighting_reads_the_attribution_the_detectors_write(profile, calm):
    """Amount drifts P1 either way; the breach stays P1 when its contribution moved, and is capped at P3
    (still reported) when the model's score did not move with it (#17)."""
    policy = Policy.load()
    moved = learned(window(profile, seed=11, amount_factor=3.0), calm)
    unmoved = learned(window(profile, seed=11, amount_factor=3.0, amount_impact=0.0), calm)
    [b] = [b for b in policy.evaluate(moved) if b.type == "feature_drift"]
    assert b.severity == "P1" and b.evidence["features"]["amount"]["impact"] == "moved"
    assert "of it from amount" in b.summary and moved["attribution"]["moved"][0] == "amount"
    [c] = [b for b in policy.evaluate(unmoved) if b.type == "feature_drift"]
    assert c.severity == "P3" and c.evidence["features"]["amount"]["drift_severity"] == "P1"
    assert "capped at P3" in c.summary
    off = Policy.load(overrides={"types": {"feature_drift": {"impact_weighted": False}}})
    assert [b.severity for b in off.evaluate(unmoved) if b.type == "feature_drift"] == ["P1"]


# --- fields the policy reads --------------------------------------------------------------------------
_PATH_KEYS = ("statistic", "count", "fraud_rate", "fraud_rate_reference", "fraud_rate_count")


def _policy_paths() -> set[str]:
    """Every drift.stats path the policy reads: the paths configured in policy.toml, and what each rule says
    it reads (``Policy.signals()``, dotted paths, ``*`` for any feature)."""
    paths: set[str] = set()
    for table in _policy_toml()["types"].values():
        paths |= {table[k] for k in _PATH_KEYS if isinstance(table.get(k), str)}
        paths |= set(table.get("reference", []))
    signals = getattr(Policy.load(), "signals", None)
    if callable(signals):
        paths |= {p for ps in signals().values() for p in ps}
    return paths


def _written(doc: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted path of ``doc`` (feature names also as ``*``)."""
    if not isinstance(doc, Mapping):
        return
    for k, v in doc.items():
        for name in ({k, "*"} if prefix.endswith("features.") else {k}):
            path = prefix + name
            yield path
            yield from _written(v, path + ".")


def test_every_field_the_policy_reads_is_written(profile, calm):
    payloads = [window(profile, seed=11, **kw) for kw in SCENARIOS.values()] + [calm]
    written = {p for s in payloads for p in _written(s)}
    injected = {f"reference.{s}" for s in _learned_statistics()}    # the incident manager's learned levels
    read = _policy_paths()
    assert {"missing_ratio", "freshness.lag_p95_s", "score.psi"} <= read   # the collection works
    unwritten = sorted(p for p in read if p not in written and p not in injected)
    assert not unwritten, f"the policy reads fields window_statistics never writes: {unwritten}"


# --- the typed record and its schema -------------------------------------------------------------------
def test_payloads_are_drift_stats_records_and_match_the_schema(profile, calm):
    schema = load_stats_schema()
    validator = jsonschema.Draft202012Validator(schema)
    for kw in [{}, *SCENARIOS.values()]:
        stats = window(profile, seed=5, **kw)
        stats["window"].update(offsets={"0": [0, 4999], "1": [0, 4999]}, partials_of_other_models=0,
                               partitions_missing=[], complete=True)   # what the aggregator adds
        data = encode_stats(stats)
        assert data == orjson.dumps(stats)                             # the published JSON is the dict's
        validator.validate(json.loads(data))
        assert msgspec.to_builtins(decode_stats(data)) == stats
    assert calm["stream"] == "transactions"
    assert set(calm["concept"]) == {"labelled", "precision", "recall", "brier", "error_rate", "tp", "fp", "fn",
                                    "tn", "reference", "performance_drop"}


def test_the_shipped_schema_is_the_generated_one():
    assert load_stats_schema() == stats_schema()


def test_encode_stats_refuses_what_the_contract_does_not_declare(calm):
    with pytest.raises(RecordError, match="undeclared"):
        encode_stats({**calm, "undeclared": 1})
    with pytest.raises(RecordError, match=r"\$\.missing_ratio"):
        encode_stats({**calm, "missing_ratio": "high"})
    bad = {**calm, "concept": {k: v for k, v in calm["concept"].items() if k != "tp"}}
    with pytest.raises(RecordError, match="tp"):
        encode_stats(bad)
    assert isinstance(decode_stats(encode_stats(calm)), DriftStats)


def test_partials_round_trip_with_a_real_sketch(profile):
    rng = np.random.default_rng(3)
    sk = WindowSketch(profile)
    sk.update_batch(_numeric(rng, 500), {"type": rng.choice(TYPES, 500)}, _scores(rng, 500), partition=2)
    partial = DriftPartial("transactions", 7, 2, True, 700, 799, 100, "m1", 1.7e9, sk.to_dict(),
                           LabelCounts(n=3, tp=1, fn=1, tn=1, brier=0.5, abs_error=1.0))
    back = decode_partial(encode_partial(partial))
    assert back == partial
    assert WindowSketch.from_dict(profile, back.sketch).to_dict() == sk.to_dict()
    assert orjson.loads(encode_partial(partial))["kind"] == "partial"
    beat = Progress("transactions", 2, 7, 799, False, 1.7e9)
    assert decode_partial(encode_partial(beat)) == beat
    newer = orjson.loads(encode_partial(beat)) | {"added_by_a_newer_worker": 1}
    assert decode_partial(orjson.dumps(newer)) == beat                 # lenient: rolling upgrades
    for junk in (b"", b"[]", b'{"kind": "progress"}', b"\xff"):
        with pytest.raises(RecordError):
            decode_partial(junk)


# --- detector settings --------------------------------------------------------------------------------
def test_detector_settings_are_the_detector_config():
    defaults = DetectorConfig()
    assert DetectorConfig.from_settings(Settings()) == defaults
    assert set(Settings().detector_options()) == {f.name for f in dataclasses.fields(DetectorConfig)}
    s = Settings.from_env({"BREEBOOST_DETECTOR_ALPHA": "0.01", "BREEBOOST_DETECTOR_MIN_LABELS": "500"})
    cfg = DetectorConfig.coerce(s)
    assert (cfg.alpha, cfg.min_labels) == (0.01, 500)
    assert {f.metadata["group"] for f in setting_fields() if f.name.startswith("detector_")} == {"streams"}
    assert "window_seconds" not in {f.name for f in setting_fields()}


def test_detector_settings_change_the_payload(profile):
    rng = np.random.default_rng(4)
    sk = WindowSketch(profile)
    sk.update_batch(_numeric(rng, 50), {"type": rng.choice(TYPES, 50)}, _scores(rng, 50))
    low = Settings.from_env({"BREEBOOST_DETECTOR_MIN_EVENTS": "10", "BREEBOOST_DETECTOR_PSI_FLOOR": "0.5"})
    out = window_statistics(sk, profile, low, labels=_labels(**CALM_LABELS), reference=TEST_METRICS)
    assert out["thresholds"]["min_events"] == 10 and out["thresholds"]["psi_floor"] == 0.5
    strict = window_statistics(sk, profile, Settings.from_env({"BREEBOOST_DETECTOR_MIN_POSITIVES": "200"}),
                               labels=_labels(**CALM_LABELS), reference=TEST_METRICS)
    assert strict["concept"]["performance_drop"] == {"precision": None, "recall": None}


@pytest.mark.parametrize("var,value", [("BREEBOOST_DETECTOR_ALPHA", "1"), ("BREEBOOST_DETECTOR_EPSILON", "0.5"),
                                       ("BREEBOOST_DETECTOR_MIN_EVENTS", "0"), ("BREEBOOST_DETECTOR_KS_FLOOR", "-1")])
def test_bad_detector_settings_name_their_variable(var, value):
    from breeboost.errors import SettingsError

    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


# --- one reason catalogue -----------------------------------------------------------------------------
def test_schema_reasons_are_the_catalogue():
    assert WINDOW_SCHEMA_REASONS is SCHEMA_REASONS


def test_docs_reason_table_is_the_catalogue():
    streams_md = (ROOT / "docs" / "streams.md").read_text()
    assert reasons_table_markdown() in streams_md, "docs/streams.md: paste breeboost.rejections.reasons_table_markdown()"
    metrics_md = (ROOT / "docs" / "metrics.md").read_text()
    row = next(line for line in metrics_md.splitlines() if line.startswith("| `breeboost_dead_letters_total`"))
    assert set(re.findall(r"`([a-z_]+)`", row.split("|")[3].split("(", 1)[1])) == set(REASONS)


def test_docs_broker_md_exists_where_cited():
    cited = [p for p in [*ROOT.glob("*/*.py"), *ROOT.glob("*/*/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
             if ".venv" not in p.parts and "docs/broker.md" in p.read_text(errors="replace")]
    assert cited and (ROOT / "docs" / "broker.md").is_file()


def test_docs_list_every_detector_setting():
    from breeboost.settings import env_var

    detectors_md = (ROOT / "docs" / "detectors.md").read_text()
    for f in setting_fields():
        if f.name.startswith("detector_"):
            assert f"| `{env_var(f.name)}` | `{f.name[len('detector_'):]}` | `{f.default}` |" in detectors_md, f.name
