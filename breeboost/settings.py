"""One typed settings object, read from ``BREEBOOST_*`` environment variables and overridable by CLI flags.

Every field declares its env variable, its flag and its help text here, so ``--help``, the README's
configuration table and validation all come from one place.

>>> s = Settings.from_env({"BREEBOOST_PARTITIONS": "2"})
>>> s.partitions, s.topic_transactions
(2, 'transactions')
>>> Settings.from_env({"BREEBOOST_PARTITIONS": "zero"})
Traceback (most recent call last):
...
breeboost.errors.SettingsError: BREEBOOST_PARTITIONS: expected an integer, got 'zero'
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from breeboost.errors import SettingsError

ENV_PREFIX = "BREEBOOST_"


class Secret:
    """A string that never prints: ``str()``/``repr()`` give ``'**********'``; ``.reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "**********" if self._value else ""


def _opt(default: Any, help: str, group: str, choices: tuple | None = None, minimum: float | None = None):
    return field(default=default, metadata={"help": help, "group": group, "choices": choices, "min": minimum})


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True)
class Settings:
    # --- Kafka connection -------------------------------------------------------------------------
    bootstrap: str = _opt("127.0.0.1:9092", "Kafka bootstrap servers, comma-separated HOST:PORT", "kafka")
    security_protocol: str = _opt("PLAINTEXT", "Kafka security protocol", "kafka", SECURITY_PROTOCOLS)
    sasl_mechanism: str = _opt("PLAIN", "SASL mechanism (with SASL_* protocols)", "kafka", SASL_MECHANISMS)
    sasl_username: str = _opt("", "SASL username", "kafka")
    sasl_password: Secret = _opt(Secret(""), "SASL password (never logged)", "kafka")
    ssl_cafile: str = _opt("", "CA certificate file (PEM) for SSL/SASL_SSL", "kafka")
    session_timeout_s: float = _opt(6.0, "consumer group session timeout in seconds", "kafka", minimum=1)
    heartbeat_interval_s: float = _opt(1.0, "consumer group heartbeat interval in seconds", "kafka", minimum=0.1)
    compression: str = _opt("none", "codec of the record batches BreeBoost publishes (scores, dead letters, windows, incidents, simulator); every consumer of those topics needs it. zstd: ~5x less broker CPU", "kafka", COMPRESSION_CODECS)
    # --- topics -----------------------------------------------------------------------------------
    topic_transactions: str = _opt("transactions", "input topic of transactions", "topics")
    topic_scores: str = _opt("scores", "output topic of scores", "topics")
    topic_dlq: str = _opt("transactions.dlq", "dead-letter topic for events that cannot be scored", "topics")
    topic_labels: str = _opt("labels", "topic of delayed fraud labels", "topics")
    topic_drift_partials: str = _opt("drift.partials", "per-partition window sketches", "topics")
    topic_drift_stats: str = _opt("drift.stats", "merged per-window drift statistics", "topics")
    topic_incidents: str = _opt("incidents", "incident events", "topics")
    partitions: int = _opt(4, "partitions of every project topic (created by `breeboost broker`)", "topics", minimum=1)
    # --- processes --------------------------------------------------------------------------------
    metrics_host: str = _opt("127.0.0.1", "address the Prometheus metrics server binds", "process")
    metrics_port: int = _opt(9464, "port of the Prometheus metrics server (0: pick a free one)", "process", minimum=0)
    log_level: str = _opt("INFO", "log level", "process", ("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = _opt("json", "log format: one JSON object per line, or text for humans", "process", ("json", "text"))
    # --- model and streams ------------------------------------------------------------------------
    model_dir: str = _opt("model", "model artifact directory", "model")
    nthread: int = _opt(1, "XGBoost threads used for scoring", "model", minimum=1)
    window_size: int = _opt(10000, "drift window size in events (summed over partitions)", "streams", minimum=1)
    window_seconds: float = _opt(0.0, "also close a window after this many seconds of event time (0: off)", "streams", minimum=0)
    window_idle_s: float = _opt(5.0, "close an open window after this many wall-clock seconds with no events", "streams", minimum=0.1)
    batch_size: int = _opt(1000, "scoring micro-batch size (events)", "streams", minimum=1)
    batch_max_bytes: int = _opt(1_000_000, "largest scoring micro-batch in message bytes: a bigger take is scored in parts (bounds memory with batch envelopes)", "streams", minimum=1)
    batch_wait_s: float = _opt(0.05, "longest wait to fill a scoring micro-batch, seconds", "streams", minimum=0)
    max_message_bytes: int = _opt(1_000_000, "largest transactions message accepted; bigger ones are dead-lettered", "streams", minimum=1)
    group_id: str = _opt("breeboost", "consumer group / Faust app id prefix", "streams")

    def __post_init__(self) -> None:
        # settings that are only wrong together, named by their variables
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise SettingsError(f"{env_var('security_protocol')}={self.security_protocol} needs "
                                f"{env_var('sasl_username')} and {env_var('sasl_password')}")
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise SettingsError(f"{env_var('heartbeat_interval_s')} must be below {env_var('session_timeout_s')}")

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read ``BREEBOOST_<FIELD>`` variables, then apply ``overrides`` (CLI flags; ``None`` = unset)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = env_var(f.name)
            if var in environ:
                values[f.name] = _coerce(f, environ[var], var)
        for name, raw in overrides.items():
            if raw is None:
                continue
            f = _FIELDS.get(name)
            if f is None:
                raise SettingsError(f"unknown setting {name!r}")
            values[name] = _coerce(f, raw, "--" + name.replace("_", "-"))
        return cls(**values)

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    def topics(self) -> list[str]:
        """Every topic the project uses."""
        return [getattr(self, f.name) for f in fields(self) if f.name.startswith("topic_")]

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        return [v.reveal() for v in (self.sasl_password,) if v]

    def as_safe_dict(self) -> dict[str, Any]:
        return {f.name: (str(getattr(self, f.name)) if f.type in ("Secret", Secret) else getattr(self, f.name))
                for f in fields(self)}


_FIELDS = {f.name: f for f in fields(Settings)}


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def setting_fields(groups: tuple[str, ...] | None = None) -> list[dataclasses.Field]:
    return [f for f in fields(Settings) if groups is None or f.metadata["group"] in groups]


def _coerce(f: dataclasses.Field, raw: Any, source: str) -> Any:
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    if typ == "Secret":
        value: Any = raw if isinstance(raw, Secret) else Secret(str(raw))
    elif typ == "int":
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{source}: expected an integer, got {raw!r}") from None
    elif typ == "float":
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{source}: expected a number, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise SettingsError(f"{source}: expected a finite number, got {raw!r}")
    else:
        value = str(raw).strip()
    choices = f.metadata.get("choices")
    if choices:
        value = value.upper() if choices[0].isupper() else value.lower()
        if value not in choices:
            raise SettingsError(f"{source}: {raw!r} is not one of {', '.join(choices)}")
    minimum = f.metadata.get("min")
    if minimum is not None and value < minimum:
        raise SettingsError(f"{source}: must be >= {minimum}, got {raw!r}")
    if f.name == "bootstrap":
        for hp in value.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise SettingsError(f"{source}: expected HOST:PORT[,HOST:PORT...], got {raw!r}")
    if f.name.startswith("topic_") and (not value or len(value) > 249 or
                                        any(not (c.isalnum() or c in "._-") for c in value)):
        raise SettingsError(f"{source}: {value!r} is not a valid Kafka topic name")
    if f.name == "ssl_cafile" and value and not os.path.isfile(value):
        raise SettingsError(f"{source}: CA file {value!r} does not exist")
    return value
