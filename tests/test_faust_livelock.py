"""Faust's own livelock check on a real worker: no "Stream has not started processing TP" error.

Faust's consumer checks every assigned partition (every 2.5 commit intervals): records waiting and no
stream inbound time for ``stream_processing_timeout`` -> an ERROR log line. The fetch-batch path hands
records over without Faust's Stream, and the quiet monitor did not record inbound times either, so a
worker with a backlog logged it for every partition (1,144 lines in a 12-minute soak, #20). The worker
here runs with a 3 s timeout (``python -m tests.test_faust_livelock MODEL_DIR``) over a pre-filled backlog
of transactions and labels.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _worker(model_dir: str) -> None:
    import faust
    from prometheus_client import CollectorRegistry

    from breeboost.logs import configure_from_settings
    from breeboost.settings import Settings
    from breeboost.worker import build_worker
    from models.scorer import Scorer
    from streams.metrics import WorkerMetrics
    from streams.stages import WorkerStages

    settings = Settings.from_env()
    configure_from_settings(settings)
    stages = WorkerStages.build(Scorer.load(model_dir), settings, WorkerMetrics(CollectorRegistry()))
    app = build_worker(settings, "scoring", stages=stages, faust_options={"stream_processing_timeout": 3.0,
                                                           "broker_commit_interval": 0.4}).app
    worker = faust.Worker(app, loglevel="WARNING", override_logging=False, redirect_stdouts=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def test_a_worker_with_a_backlog_passes_fausts_livelock_check(broker_bootstrap, paysim_model, tmp_path):
    from breeboost.broker import die_with_parent
    from streams.audit import audit_topics
    from tests.conftest import fresh_settings
    from tests.streamkit import settings_env, simulate

    s = fresh_settings(broker_bootstrap)
    n = 40000
    assert simulate(s, "--count", str(n), "--seed", "5", "--label-delay", "0")["acked"] == n   # the backlog
    log_path = tmp_path / "worker.log"
    env = settings_env(s, model_dir=paysim_model)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "tests.test_faust_livelock", paysim_model], stdout=fh,
                                stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 120
        rep = audit_topics(s, idle_timeout_s=1.0)
        while rep.scored + rep.dead_lettered < n and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            time.sleep(1)
            rep = audit_topics(s, idle_timeout_s=1.0)
        assert rep.scored + rep.dead_lettered == n, rep.as_dict()
        time.sleep(3)                           # a few more checks once caught up
        text = log_path.read_text(errors="replace")
        assert '"partitions assigned"' in text
        bad = [line for line in text.splitlines() if '"level":"error"' in line]   # the soak's goal: none
        assert not bad, "\n".join(bad[:5])
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    _worker(sys.argv[1])
