"""`breeboost demo` end to end, as a new user runs it (smaller counts)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import orjson
import pytest


def _broker_pids(demo_output: str) -> set[str]:
    """Processes still serving the broker the demo started (its port is in the demo's first lines)."""
    m = re.search(r"embedded broker on (127\.0\.0\.1:\d+)", demo_output)
    assert m, demo_output[:2000]
    r = subprocess.run(["pgrep", "-f", f"tcp://{m.group(1)}"], capture_output=True, text=True)
    return set(r.stdout.split())


@pytest.mark.slow
def test_demo_fires_and_resolves_and_leaves_nothing_behind(tmp_path, paysim_model):
    env = dict(os.environ, BREEBOOST_WINDOW_SIZE="5000", BREEBOOST_MODEL_DIR=paysim_model,
               BREEBOOST_WINDOW_IDLE_S="2")
    r = subprocess.run([sys.executable, "-m", "breeboost.cli", "demo", "--count", "60000", "--rate", "6000",
                        "--dashboard-port", "0", "--out", str(tmp_path / "run")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout
    assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
    assert "incident FIRING" in out and "incident RESOLVED" in out
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert summary["audit_ok"] and summary["produced"] == 60000 and summary["missing"] == 0
    assert summary["windows"] >= 12
    assert "dashboard" not in out   # --dashboard-port 0: none
    assert any(k.startswith("firing") and "feature_drift" in k for k in summary["incident_events"])
    # every incident fired also resolved (a concept_drift P1 that never resolved was seen when the labels fell
    # behind the scores; with labels in step, amount_scale can rightly lower recall and fire one that resolves)
    events = summary["incident_events"]
    assert sum(n for k, n in events.items() if k.startswith("firing")) == sum(
        n for k, n in events.items() if k.startswith("resolved")), events
    for name in ("worker.log", "incident.log", "broker.log"):
        assert (tmp_path / "run" / name).exists()
    lines = (tmp_path / "run" / "worker.log").read_text().splitlines()
    assert all(l.startswith("{") for l in lines if l.strip())   # JSON lines only, no terminal control bytes
    time.sleep(1)
    assert not _broker_pids(out)


@pytest.mark.slow
def test_demo_closed_loop_retrains_promotes_and_resolves(tmp_path, paysim_model):
    """``breeboost demo --scenario concept_shift``: the concept_drift incident, the retrain it waits for, the
    guard, the automatic promotion and the resolution on the terminal; a new champion in the registry."""
    from pathlib import Path

    before = sorted(p.name for p in Path(paysim_model).iterdir())
    env = dict(os.environ, BREEBOOST_MODEL_DIR=paysim_model)
    r = subprocess.run([sys.executable, "-m", "breeboost.cli", "demo", "--scenario", "concept_shift",
                        "--dashboard-port", "0", "--out", str(tmp_path / "run")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout
    assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert summary["audit_ok"] and summary["missing"] == 0
    champion = summary["champion"]
    assert champion["before"] and champion["after"] and champion["before"] != champion["after"], out[-3000:]
    actions = " | ".join(summary["actions"])
    for step in ("retrain: waiting for", "retrain: started", "retrain: done", "passes offline",
                 "promote-if-better: started", "in shadow", "promote-if-better: done"):
        assert step in actions, actions
    # the loop worked on a copy in the run's folder: the model directory it was given is as it was
    assert sorted(p.name for p in Path(paysim_model).iterdir()) == before
    assert (tmp_path / "run" / "models" / "registry.json").is_file()
    assert "incident FIRING" in out and "concept_drift" in out and "action   " in out
    events = summary["incident_events"]
    assert any("concept_drift" in k and k.startswith("resolved") for k in events), events
    assert sum(n for k, n in events.items() if k.startswith("firing")) == sum(
        n for k, n in events.items() if k.startswith("resolved")), events
    time.sleep(1)
    assert not _broker_pids(out)


@pytest.mark.slow
def test_demo_ctrl_c_stops_every_child(tmp_path, paysim_model):
    env = dict(os.environ, BREEBOOST_MODEL_DIR=paysim_model)
    p = subprocess.Popen([sys.executable, "-m", "breeboost.cli", "demo", "--out", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    seen = ""
    for line in p.stdout:
        seen += line
        if "[4/5]" in line or time.monotonic() > deadline:
            break
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 4, seen   # broker, worker, incident agent, dashboard (and the simulator)
    assert "dashboard: http://127.0.0.1:" in seen
    p.send_signal(2)
    assert p.wait(60) in (0, 1, 130)
    time.sleep(1)
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not _broker_pids(seen)


@pytest.mark.slow
def test_demo_keep_serves_the_dashboard_until_ctrl_c(tmp_path, paysim_model):
    """--keep: after the summary everything stays up (the dashboard answers) until SIGINT, which stops every
    process within seconds, even when the demo was started with SIGINT ignored (a script's background job)."""
    import signal
    import urllib.request

    from breeboost.broker import free_port

    env = dict(os.environ, BREEBOOST_WINDOW_SIZE="5000", BREEBOOST_MODEL_DIR=paysim_model, BREEBOOST_WINDOW_IDLE_S="2")
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "breeboost.cli", "demo", "--count", "20000", "--rate", "5000",
                          "--settle", "30", "--keep", "--dashboard-port", str(port), "--out", str(tmp_path / "run")],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    seen = ""
    for line in p.stdout:
        seen += line
        if "keep running" in line:
            break
    assert "Summary" in seen and f"dashboard: http://127.0.0.1:{port}/" in seen, seen
    time.sleep(3)
    assert p.poll() is None   # still running after the summary
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
        assert r.read() == b"ok"
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 4
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    p.wait(30)
    assert time.monotonic() - t0 < 8
    time.sleep(0.5)
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert not _broker_pids(seen)
