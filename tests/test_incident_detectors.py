"""The shipped policy on real `detectors.window_statistics` payloads of simulator traffic (no Kafka).

Each scenario (simulator/scenarios.py) runs from event 50,000 to 100,000 of 150,000, in 10,000-event
windows: exactly one firing incident of the expected type and severity, then one resolved event; calm
traffic gives none; RCA names the feature the scenario changed first.
"""
from __future__ import annotations

import numpy as np
import pytest

generator = pytest.importorskip("simulator.generator")
scenarios = pytest.importorskip("simulator.scenarios")
spec_mod = pytest.importorskip("models.spec")
features_mod = pytest.importorskip("models.features")
profile_mod = pytest.importorskip("detectors.profile")
window_mod = pytest.importorskip("detectors.window")
stats_mod = pytest.importorskip("detectors.stats")
from streams.windowing import balance_mismatch  # noqa: E402

from incident import rca  # noqa: E402
from incident.events import validate_event  # noqa: E402
from incident.lifecycle import IncidentManager  # noqa: E402
from incident.policy import Policy  # noqa: E402

W = 10_000


@pytest.fixture(scope="module")
def profile():
    spec = spec_mod.load_spec()
    f = features_mod.compute_features(generator.generate(100_000, seed=1), spec)
    rng = np.random.default_rng(0)
    return spec, profile_mod.build_profile(f.numeric, f.categorical, rng.beta(1, 30, 100_000), threshold=0.5)


def window_stats(profile, scenario: str | None, missing_fraction: float = 0.0, n: int = 150_000) -> list[dict]:
    spec, prof = profile
    sched = [scenarios.parse_scenario(scenario, start=50_000, end=100_000)] if scenario else []
    cols = generator.generate(n, seed=51, scenarios=sched)
    f = features_mod.compute_features(cols, spec)
    mismatch = balance_mismatch(f)
    rng = np.random.default_rng(5)
    out = []
    for w in range(n // W):
        sl = slice(w * W, (w + 1) * W)
        sk = window_mod.WindowSketch(prof)
        lost = int(W * missing_fraction) if 5 <= w < 10 else 0  # events dead-lettered for a missing field
        keep = slice(w * W + lost, (w + 1) * W)
        sk.update_batch({k: v[keep] for k, v in f.numeric.items()}, {k: v[keep] for k, v in f.categorical.items()},
                        rng.beta(1, 30, W - lost), np.full(W - lost, 2.0), balance_mismatch=mismatch[keep],
                        partition=w % 4)
        if lost:
            sk.add_rejects({"missing_field": lost}, {"amount": lost})
        out.append(stats_mod.window_statistics(sk, prof, index=w, model_version="m1", include_bins=False))
    return out


def incidents(stats: list[dict]) -> list[dict]:
    m = IncidentManager(Policy.load())
    out = []
    for s in stats:
        evs = m.process(s, now=1_700_000_000.0 + s["window"]["index"])
        for e in evs:
            validate_event(e)
        out += evs
    return out


def test_calm_traffic_opens_nothing(profile):
    assert incidents(window_stats(profile, None)) == []


@pytest.mark.parametrize("scenario,missing,itype,severity,first", [
    ("amount_scale", 0.0, "feature_drift", "P1", "amount"),
    ("type_mix:CASH_IN=0.6", 0.0, "feature_drift", "P2", "type"),
    ("balance_corruption:fraction=0.3", 0.0, "corrupted_balances", "P1", None),
    (None, 0.2, "missing_data", "P2", None),
])
def test_scenario_gives_one_incident_then_one_resolve(profile, scenario, missing, itype, severity, first):
    stats = window_stats(profile, scenario, missing)
    events = incidents(stats)
    assert [(e["status"], e["type"], e["severity"]) for e in events] == [("firing", itype, severity),
                                                                      ("resolved", itype, severity)]
    assert events[0]["details"]["window"]["first_index"] == 5
    if first:
        (row,) = rca.summary(events, stats)["incidents"]
        assert row["first_changed_feature"] == first
