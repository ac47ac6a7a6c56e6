"""The soak benchmark's short mode (``python -m bench.soak --short``): workers join and leave while traffic
with labels and a scenario flows; nothing is lost (audit), the result is one JSON line with the curves.
The 30-minute soak itself is a bench run, not CI (docs/benchmarks.md, "Soak")."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.soak import SHORT, SoakPlan, _p99


def test_plan_schedules_scenarios_between_calm_traffic():
    plan = SoakPlan()
    marks = plan.scenarios()
    assert len(marks) == 5 and marks[0] == ("amount_scale:factor=3", 1_500_000, 1_800_000)
    assert all(end - start == 300_000 for _, start, end in marks)
    assert SHORT.scenarios() == [("amount_scale:factor=3", 8000, 12000), ("missing_fields:fraction=0.2", 16000, 20000)]
    with pytest.raises(ValueError, match="scenario_s"):
        SoakPlan(scenario_s=400.0)


def test_p99_of_the_interval_from_cumulative_buckets():
    before = {"w1": {0.01: 10.0, 0.1: 10.0, float("inf"): 10.0}}
    after = {"w1": {0.01: 20.0, 0.1: 109.0, float("inf"): 110.0}, "w2": {0.01: 0.0, 0.1: 0.0, float("inf"): 0.0}}
    assert _p99(before, after) == 0.1 and _p99(after, after) is None


@pytest.mark.slow
def test_short_soak_loses_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.soak", "--short", "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=240)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (result, r.stderr[-2000:])
    assert result["lost"] == 0 and result["audit"]["ok"] and result["failed"] == 0
    assert result["audit"]["produced"] == result["produced"] > 10_000
    assert [e["event"] for e in result["scale_events"]] == ["join", "leave", "join", "kill -9"]
    assert result["lag"]["drained_after_s"] is not None
    assert result["curve"] and all(v is not None for v in result["curve"][-1]["rss_mb"].values())
