"""Foundation: settings validation, JSON logs, the embedded broker, the Kafka client helpers, the CLI."""
from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from breeboost.broker import EmbeddedBroker, free_port
from breeboost.cli import COMMANDS, build_parser, main
from breeboost.errors import BrokerError, SettingsError
from breeboost.kafka_io import make_consumer, make_producer, read_topic
from breeboost.logs import configure_logging, log
from breeboost.settings import Secret, Settings, env_var

BB = [sys.executable, "-m", "breeboost.cli"]


# --- settings ---------------------------------------------------------------------------------------
def test_settings_defaults_and_env():
    s = Settings.from_env({"BREEBOOST_BOOTSTRAP": "k1:9092,k2:9093", "BREEBOOST_WINDOW_SIZE": "500",
                           "BREEBOOST_SECURITY_PROTOCOL": "sasl_ssl", "BREEBOOST_SASL_PASSWORD": "pw",
                           "BREEBOOST_SASL_USERNAME": "svc"})
    assert s.bootstrap == "k1:9092,k2:9093"
    assert s.window_size == 500
    assert s.security_protocol == "SASL_SSL"
    assert s.sasl_password.reveal() == "pw" and "pw" not in repr(s) and "pw" not in str(s.as_safe_dict())
    assert s.topics() == ["transactions", "scores", "transactions.dlq", "labels", "drift.partials",
                          "drift.stats", "incidents"]


def test_cli_flags_override_env():
    s = Settings.from_env({"BREEBOOST_PARTITIONS": "2"}, partitions="8", bootstrap=None)
    assert s.partitions == 8


@pytest.mark.parametrize("var,value,fragment", [
    ("BREEBOOST_PARTITIONS", "many", "expected an integer"),
    ("BREEBOOST_PARTITIONS", "0", "must be >= 1"),
    ("BREEBOOST_BATCH_WAIT_S", "nan", "finite"),
    ("BREEBOOST_BOOTSTRAP", "localhost", "HOST:PORT"),
    ("BREEBOOST_BOOTSTRAP", "h:99999", "HOST:PORT"),
    ("BREEBOOST_SECURITY_PROTOCOL", "TLS", "not one of"),
    ("BREEBOOST_LOG_FORMAT", "xml", "not one of"),
    ("BREEBOOST_TOPIC_SCORES", "bad topic!", "valid Kafka topic"),
    ("BREEBOOST_SSL_CAFILE", "/nonexistent/ca.pem", "does not exist"),
])
def test_invalid_settings_name_the_variable(var, value, fragment):
    with pytest.raises(SettingsError) as e:
        Settings.from_env({var: value})
    assert var in str(e.value) and fragment in str(e.value)


def test_invalid_setting_fails_cli_startup_with_variable_name():
    env = dict(os.environ, BREEBOOST_PARTITIONS="-3")
    r = subprocess.run(BB + ["broker", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "BREEBOOST_PARTITIONS" in r.stderr


def test_secret_never_prints():
    s = Secret("hunter2")
    assert "hunter2" not in f"{s} {s!r} {[s]}"
    assert s.reveal() == "hunter2"


# --- logs -------------------------------------------------------------------------------------------
def test_json_log_lines_and_redaction():
    buf = io.StringIO()
    configure_logging("DEBUG", "json", stream=buf, secrets=["s3cr3t-pw"])
    logger = logging.getLogger("breeboost.test")
    log(logger, "hello", partition=3, value=1.5)
    logger.warning("connecting with password s3cr3t-pw failed")
    try:
        raise ValueError("auth failed for s3cr3t-pw")
    except ValueError:
        logger.exception("boom")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    docs = [orjson.loads(l) for l in lines]
    assert docs[0]["event"] == "hello" and docs[0]["partition"] == 3 and docs[0]["level"] == "info"
    assert docs[0]["logger"] == "breeboost.test" and docs[0]["ts"].endswith("Z") and "T" in docs[0]["ts"]
    assert all("s3cr3t-pw" not in l for l in lines)
    assert "**********" in docs[1]["event"] and "exc" in docs[2]


def test_text_log_format():
    buf = io.StringIO()
    configure_logging("INFO", "text", stream=buf)
    log(logging.getLogger("breeboost.test"), "hello", k=1)
    assert "hello k=1" in buf.getvalue() and not buf.getvalue().startswith("{")


# --- CLI --------------------------------------------------------------------------------------------
def test_help_lists_every_subcommand():
    r = subprocess.run(BB + ["--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for name in ["broker", "simulate", "train", "score", "evaluate", "worker", "incidents", "rca", "report", "demo"]:
        assert name in r.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_help_names_env_variables(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    if COMMANDS[name][1]:
        assert "env BREEBOOST_" in out


# --- embedded broker --------------------------------------------------------------------------------
def test_embedded_broker_creates_topics_and_round_trips():
    settings = Settings.from_env({}, partitions=3)
    with EmbeddedBroker(port=0, settings=settings) as broker:
        s = broker.settings
        from kafka import KafkaConsumer
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
        assert set(s.topics()) <= c.topics()
        assert c.partitions_for_topic("transactions") == {0, 1, 2}
        c.close()
        p = make_producer(s)
        for i in range(500):
            p.send("transactions", key=b"k%d" % (i % 7), value=b"v%d" % i)
        p.flush()
        p.close()
        got = {r.value for r in read_topic(s, "transactions", idle_timeout_s=1.0, expect=500)}
        assert got == {b"v%d" % i for i in range(500)}
        pid = broker.process.pid
    assert not _alive(pid)


def test_broker_port_taken_is_a_clear_error():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(port=port).start()


def test_broker_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("BREEBOOST_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="BREEBOOST_TANSU_BIN"):
        EmbeddedBroker(port=0).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_broker_cli_serves_and_stops_on_signal_without_orphans(sig):
    port = free_port()
    proc = subprocess.Popen(BB + ["broker", "--port", str(port), "--partitions", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("BREEBOOST_BOOTSTRAP="):
                break
        assert lines[-1].strip() == f"BREEBOOST_BOOTSTRAP=127.0.0.1:{port}", lines
        json_lines = [orjson.loads(l) for l in lines[:-1] if l.startswith("{")]
        assert any(d["event"] == "broker ready" for d in json_lines)
        tansu = [int(p) for p in subprocess.run(["pgrep", "-f", f"tcp://127.0.0.1:{port}"],
                                                capture_output=True, text=True).stdout.split()]
        assert tansu
        # a client of our own helpers sees the topics and can produce/consume through a group
        s = Settings.from_env({}, bootstrap=f"127.0.0.1:{port}")
        p = make_producer(s)
        p.send("labels", b"x").get(timeout=10)
        p.close()
        c = make_consumer(s, "labels", group_id="g-" + uuid.uuid4().hex[:6])
        got = []
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < 30:
            for recs in c.poll(timeout_ms=500).values():
                got += [r.value for r in recs]
        c.close()
        assert got == [b"x"]
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        time.sleep(0.2)
        assert not any(_alive(pid) for pid in tansu)
    finally:
        proc.kill()


def test_settings_that_are_only_wrong_together_name_their_variables():
    with pytest.raises(SettingsError, match="BREEBOOST_SASL_USERNAME"):
        Settings.from_env({"BREEBOOST_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(SettingsError, match="BREEBOOST_HEARTBEAT_INTERVAL_S"):
        Settings.from_env({"BREEBOOST_HEARTBEAT_INTERVAL_S": "10"})
    ok = Settings.from_env({"BREEBOOST_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "BREEBOOST_SASL_USERNAME": "u",
                            "BREEBOOST_SASL_PASSWORD": "p"})
    assert ok.sasl_username == "u"


#: The import stack, lowest first: a unit may import only units of lower layers (and itself).
LAYERS = [
    {"breeboost.errors"},
    {"breeboost.settings", "breeboost.rejections"},
    {"breeboost.logs", "breeboost.kafka_io", "breeboost.windows_order"},
    {"breeboost.broker", "detectors", "simulator"},
    {"models"},
    {"streams"},
    {"incident"},
    {"breeboost.worker", "breeboost.report"},
    {"breeboost.commands", "breeboost.dashboard"},   # the composition root's top: these two may use each other
    {"breeboost.cli"},   # finds the commands by name (importlib), never by an import statement
]
DOMAIN = ("simulator", "models", "detectors", "streams", "incident")


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in DOMAIN:
        return parts[0]
    if parts[0] == "breeboost":
        return "breeboost" if len(parts) == 1 else f"breeboost.{parts[1]}"
    return None


def _imports(path):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_package_layers_are_a_strict_stack():
    """Every import of the project's own code goes down the stack of :data:`LAYERS`; models, detectors and
    the simulator import no Kafka client or framework (the simulator's producer is its one Kafka module),
    and detectors import no models."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    layer = {u: i for i, units in enumerate(LAYERS) for u in units}
    clients = {"faust", "kafka", "aiokafka", "confluent_kafka"}
    seen, bad = set(), []
    for pkg in (*DOMAIN, "breeboost"):
        for path in (root / pkg).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            me = _unit(".".join(path.relative_to(root).with_suffix("").parts))
            me = "breeboost.errors" if me == "breeboost.__init__" else me
            seen.add(me)
            for m in _imports(path):
                other = _unit(m)
                top = {"breeboost.commands", "breeboost.dashboard"}
                if other is not None and other != me and layer.get(other, 99) >= layer.get(me, -1) and \
                        not {me, other} <= top:
                    bad.append(f"{rel} imports {m} ({other} is not below {me})")
                if pkg in ("models", "detectors", "simulator") and rel != "simulator/producer.py" and \
                        (m.split(".")[0] in clients or m == "breeboost.kafka_io"):
                    bad.append(f"{rel} imports {m} (a Kafka client in a package that does no Kafka I/O)")
                if pkg == "detectors" and m.split(".")[0] == "models":
                    bad.append(f"{rel} imports {m} (detectors take plain arrays, never the model)")
    assert not bad, "\n".join(bad)
    assert seen <= set(layer), f"units missing from LAYERS: {sorted(seen - set(layer))}"