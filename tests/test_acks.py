"""At-least-once of the score agent on the real broker: an input offset is committed only once its outputs
are delivered.

The worker runs in a subprocess (``python -m tests.test_acks MODE MODEL_DIR``): the real
:func:`breeboost.worker.build_worker` and :class:`streams.scoring.ScoringStage` with one fault injected and
offsets committed every 0.1 s (so a wrong ack would be committed before the fault ends the worker):

- ``slow-publish``: every hand-over to the producer first sleeps 0.25 s (a slow broker); the test kills
  the worker with SIGKILL mid-stream.
- ``raise-once``: the first micro-batch holding offset >= 600 raises in ``process()``.
- ``publish-fails-once``: the first hand-over after offset 600 raises aiokafka's ``KafkaTimeoutError``.

A normal worker then takes over, and the audit must find every input event scored or dead-lettered.
With Faust's ``take_events`` (before ``Shipper``), ``raise-once`` and ``publish-fails-once`` lost the
micro-batch: the generator's ``finally`` acked it, the agent was restarted and the next commit passed it.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breeboost.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _faulty_worker(mode: str, model_dir: str) -> None:
    from prometheus_client import CollectorRegistry

    import streams.delivery as delivery
    from breeboost.logs import configure_from_settings
    from breeboost.worker import build_worker
    from models.scorer import Scorer
    from streams.metrics import WorkerMetrics
    from streams.scoring import ScoringStage
    from streams.stages import WorkerStages

    settings = Settings.from_env()
    configure_from_settings(settings)
    fault = {"armed": True, "past": False}

    class Faulty(ScoringStage):
        def process(self, messages, now=None, replay=False):  # type: ignore[override]
            if max(m.offset for m in messages) >= 600:
                fault["past"] = True
                if mode == "raise-once" and fault["armed"]:
                    fault["armed"] = False
                    raise RuntimeError("injected: process() failed once")
            return super().process(messages, now, replay)

    publish = delivery.Publisher.publish

    async def faulty_publish(self, topic, records, partitions):  # type: ignore[no-untyped-def]
        if mode == "slow-publish" and records:
            await asyncio.sleep(0.25)
        if mode == "publish-fails-once" and fault["past"] and fault["armed"] and records:
            from aiokafka.errors import KafkaTimeoutError

            fault["armed"] = False
            raise KafkaTimeoutError("injected: the partition's previous batch did not drain")
        return await publish(self, topic, records, partitions)

    delivery.Publisher.publish = faulty_publish   # the fault, in this test's own process only
    stages = WorkerStages.build(Scorer.load(model_dir), settings, WorkerMetrics(CollectorRegistry()))
    stages.scoring = Faulty(stages.model, settings, stages.windows, stages.recent, stages.metrics)
    app = build_worker(settings, "scoring", stages=stages,
                       faust_options={"broker_commit_interval": 0.1, "broker_commit_every": 1}).app
    import faust

    worker = faust.Worker(app, loglevel="WARNING", override_logging=False, redirect_stdouts=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def _start_faulty(s: Settings, mode: str, model_dir: str, log_path: Path) -> tuple[subprocess.Popen, object]:
    from breeboost.broker import die_with_parent
    from tests.streamkit import settings_env

    fh = open(log_path, "ab")
    env = settings_env(s)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_acks", mode, model_dir], stdout=fh,
                            stderr=subprocess.STDOUT, env=env, cwd=str(ROOT), preexec_fn=die_with_parent)
    return proc, fh


def _wait_log(path: Path, text: str, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)


def _committed(s: Settings) -> int:
    """The group's committed offset of partition 0 of the input (-1: none)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=s.bootstrap, group_id=f"{s.group_id}-scoring", enable_auto_commit=False)
    try:
        off = c.committed(TopicPartition(s.topic_transactions, 0))
        return -1 if off is None else off
    finally:
        c.close()


def _run(broker_bootstrap: str, paysim_model: str, tmp_path: Path, mode: str) -> dict:
    from streams.audit import audit_topics
    from tests.conftest import fresh_settings
    from tests.streamkit import Worker, simulate
    from tests.test_reliability import wait_audit

    n = 3000
    s = fresh_settings(broker_bootstrap, partitions=1, batch_size=100, batch_wait_s=0.02)
    summary = simulate(s, "--count", str(n), "--seed", "71", "--no-labels", "--scenario", "malformed:fraction=0.02")
    assert summary["acked"] == n
    log_path = tmp_path / "faulty.log"
    proc, fh = _start_faulty(s, mode, paysim_model, log_path)
    try:
        _wait_log(log_path, '"partitions assigned"', proc)
        if mode == "slow-publish":
            deadline = time.monotonic() + 60
            while _committed(s) < 600:          # commits under way, most of the input still to publish
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.1)
            proc.kill()
        try:
            proc.wait(45)                       # the fault ends the worker (exit 1), or SIGKILL did
        except subprocess.TimeoutExpired:       # still running after the fault: stop it, audit what it did
            proc.kill()
            proc.wait()
        committed = _committed(s)
        first = audit_topics(s, expect=n, idle_timeout_s=1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        fh.close()
    second = Worker(s, paysim_model, tmp_path / "second.log", role="scoring").wait_ready(90)
    try:
        rep = wait_audit(s, n, timeout_s=90, workers=(second,))
    finally:
        second.stop()
    out = {"exit": proc.returncode, "committed_at_end": committed, "handled_by_first": n - len(first.missing),
           "first_unhandled_offset": min((m[1] for m in first.missing), default=n), "audit": rep.as_dict()}
    print(mode, out)
    assert rep.ok and rep.produced == n, out     # every input scored or dead-lettered, by one worker or the other
    return out


def test_split_by_bytes_bounds_each_part_and_keeps_order():
    from streams.delivery import split_by_bytes
    from streams.records import Msg

    msgs = [Msg("t", 0, i, b"x" * n) for i, n in enumerate([300, 300, 300, 900, 2000, 10, 0])]
    ranges = split_by_bytes(msgs, 1000)
    assert ranges == [(0, 3), (3, 4), (4, 5), (5, 7)]     # a message above the bound is a part of its own
    assert [i for a, b in ranges for i in range(a, b)] == list(range(len(msgs)))
    assert split_by_bytes(msgs, 10 ** 9) == [(0, len(msgs))]


@pytest.mark.slow
def test_kill_9_while_publishing_slowly_loses_nothing(broker_bootstrap, paysim_model, tmp_path):
    out = _run(broker_bootstrap, paysim_model, tmp_path, "slow-publish")
    assert out["exit"] == -9
    # nothing committed that the first worker did not deliver
    assert 600 <= out["committed_at_end"] <= out["first_unhandled_offset"], out


@pytest.mark.slow
def test_failing_process_crashes_the_worker_without_acking(broker_bootstrap, paysim_model, tmp_path):
    out = _run(broker_bootstrap, paysim_model, tmp_path, "raise-once")
    assert out["exit"] == 1 and out["committed_at_end"] <= out["first_unhandled_offset"], out


@pytest.mark.slow
def test_failing_hand_over_crashes_the_worker_without_acking(broker_bootstrap, paysim_model, tmp_path):
    out = _run(broker_bootstrap, paysim_model, tmp_path, "publish-fails-once")
    assert out["exit"] == 1 and out["committed_at_end"] <= out["first_unhandled_offset"], out


if __name__ == "__main__":
    _faulty_worker(sys.argv[1], sys.argv[2])
