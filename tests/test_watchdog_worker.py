"""The stall watchdog on a real worker: a worker that has read everything and waits for more is idle, not
stalled, and must keep running (in CI the demo's worker exited 1 two minutes after its input ended)."""
from __future__ import annotations

import time

from tests.conftest import fresh_settings
from tests.streamkit import Worker, simulate


def test_an_idle_caught_up_worker_is_not_stalled(broker_bootstrap, paysim_model, tmp_path):
    from streams.audit import audit_topics

    s = fresh_settings(broker_bootstrap)
    worker = Worker(s, paysim_model, tmp_path / "worker.log", role="scoring", stall_timeout_s=2).wait_ready(90)
    try:
        simulate(s, "--count", "2000", "--no-labels")
        deadline = time.monotonic() + 60
        rep = audit_topics(s, idle_timeout_s=1.0)
        while rep.scored < 2000 and time.monotonic() < deadline:
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
            time.sleep(1)
            rep = audit_topics(s, idle_timeout_s=1.0)
        assert rep.scored == 2000, rep.as_dict()
        time.sleep(8)                  # four stall timeouts with nothing left to read
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert "input stalled" not in worker.log_text()
    finally:
        worker.stop()
