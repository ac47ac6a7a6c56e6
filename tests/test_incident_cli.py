"""`breeboost incidents` against the real broker: publish, tail, log idempotently, ack and close."""
from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from breeboost.cli import main
from incident.events import validate_event
from incident.lifecycle import IncidentManager
from incident.log import IncidentLog
from incident.policy import Policy
from incident.topic import publish_events, read_events
from tests.test_incident_lifecycle import make_stats

BB = [sys.executable, "-m", "breeboost.cli"]


def episode(kind: dict, first: int = 0, n: int = 14) -> list[dict]:
    m = IncidentManager(Policy.load())
    out = []
    for i in range(first, first + n):
        out += m.process(make_stats(i, **(kind if first + 2 <= i < first + 6 else {})), now=time.time())
    return out


def flags(s) -> list[str]:
    return ["--bootstrap", s.bootstrap, "--topic-incidents", s.topic_incidents]


def json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_tail_from_beginning_json_and_idempotent_log(kafka_settings, capsys, tmp_path):
    events = episode(dict(missing_ratio=0.2))
    assert publish_events(kafka_settings, events) == 2
    log = tmp_path / "incident_log.jsonl"
    args = ["incidents", *flags(kafka_settings), "--from-beginning", "--json", "--log", str(log), "--max", "2",
            "--timeout", "30"]
    assert main(args) == 0
    got = json_lines(capsys.readouterr().out)
    assert [(e["status"], e["type"], e["severity"]) for e in got] == [("firing", "missing_data", "P2"),
                                                                   ("resolved", "missing_data", "P2")]
    for e in got:
        validate_event(e)
    assert main(args) == 0  # replay: the log gains nothing
    capsys.readouterr()
    assert [e["event_id"] for e in IncidentLog(log).read()] == [e["event_id"] for e in events]


def test_tail_table_stops_at_timeout(kafka_settings, capsys):
    publish_events(kafka_settings, episode(dict(lag_p95_s=7200.0)))
    t0 = time.monotonic()
    assert main(["incidents", *flags(kafka_settings), "--from-beginning", "--timeout", "3"]) == 0
    assert 2.5 < time.monotonic() - t0 < 15
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("UPDATED") and "stale_data" in out[1] and "P1" in out[1] and "resolved" in out[2]


def test_tail_without_from_beginning_shows_only_new_events(kafka_settings):
    publish_events(kafka_settings, episode(dict(missing_ratio=0.2)))  # old: must not show
    p = subprocess.Popen([*BB, "incidents", *flags(kafka_settings), "--json", "--max", "1", "--timeout", "40"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        new = episode(dict(score_psi=0.5), first=100)[0]
        publish_events(kafka_settings, [new])
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert [e["event_id"] for e in json_lines(out)] == [new["event_id"]]


def test_ack_and_close_publish_the_change(kafka_settings, capsys):
    events = episode(dict(psi={"amount": 0.5}))
    publish_events(kafka_settings, events[:1])
    iid = events[0]["incident_id"]
    assert main(["incidents", "ack", iid, "--note", "looking at the producer", "--author", "alice",
                 *flags(kafka_settings)]) == 0
    assert main(["incidents", "close", iid, "--note", "root cause: amounts in cents", "--json",
                 *flags(kafka_settings)]) == 0
    closed = json_lines(capsys.readouterr().out)[-1]
    assert closed["event"] == "closed" and closed["closed"] and closed["acknowledged"]
    on_topic = read_events(kafka_settings)
    assert [e["event"] for e in on_topic] == ["fired", "acknowledged", "closed"]
    for e in on_topic:
        validate_event(e)
        assert e["fingerprint"] == events[0]["fingerprint"] and e["status"] == "firing"
    assert [(n["action"], n["text"]) for n in on_topic[-1]["notes"]] == [
        ("ack", "looking at the producer"), ("close", "root cause: amounts in cents")]
    assert on_topic[1]["notes"][0]["author"] == "alice"
    # the agent, restored from the topic, carries the notes on to its resolve event
    m = IncidentManager.restore(Policy.load(), on_topic)
    assert m.open_incidents()[0]["closed"]


def test_ack_close_errors(kafka_settings, capsys):
    publish_events(kafka_settings, episode(dict(psi={"amount": 0.5}))[:1])
    assert main(["incidents", "ack", "inc-000000000000", "--note", "x", *flags(kafka_settings)]) == 1
    assert "no incident 'inc-000000000000'" in capsys.readouterr().err
    assert main(["incidents", "close", "inc-000000000000", *flags(kafka_settings)]) == 1
    assert "close needs --note" in capsys.readouterr().err
    assert main(["incidents", "ack", *flags(kafka_settings)]) == 1
    assert main(["incidents", "--max", "0", *flags(kafka_settings)]) == 1


def test_help_lists_the_options():
    out = subprocess.run([*BB, "incidents", "--help"], capture_output=True, text=True, check=True).stdout
    for opt in ("--from-beginning", "--json", "--log", "--max", "--timeout", "--note", "ack", "close"):
        assert opt in out
