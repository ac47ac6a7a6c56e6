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
#: Which score records carry reason codes (models.explain): flagged ones, flagged or above the review
#: threshold, every one, none.
REASON_MODES = ("flagged", "review", "all", "none")
#: Settings.shadow: score with the registry's challenger beside the champion, or not.
SHADOW_MODES = ("challenger", "off")
#: What event-time lag is measured against (detectors.freshness.lag_clock; this base module does not import
#: the detectors).
FRESHNESS_CLOCKS = ("wall", "stream")
#: How the score agent receives its input (streams.agents): one object per fetch, or Faust's events.
INPUT_PATHS = ("batches", "events")


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
    delivery_timeout_s: float = _opt(40.0, "how long an output may wait for the broker's acknowledgement before the worker gives up (exits 1, unacked, to be restarted)", "kafka", minimum=1)
    request_timeout_s: float = _opt(30.0, "how long the worker's consumers wait for a broker's reply before retrying the request (a fetch the broker never answers is sent again)", "kafka", minimum=1)
    fetch_max_wait_ms: int = _opt(100, "longest time a fetch of the worker's consumers waits at the broker for data (Tansu answers an empty fetch only when it expires, so it adds latency: at 5k ev/s p99 70-75 ms at 100, 121-154 ms at 200; with S3 storage, below ~100 ms a restarted broker returned nothing to the worker's multi-topic fetches)", "kafka", minimum=1)
    stall_timeout_s: float = _opt(120.0, "a worker whose input has records waiting and whose read position has not moved for this long exits 1 for its supervisor to restart it (0: never)", "kafka", minimum=0)
    compression: str = _opt("none", "codec of the record batches BreeBoost publishes (scores, dead letters, windows, incidents, simulator); every consumer of those topics needs it. zstd: ~5x less broker CPU", "kafka", COMPRESSION_CODECS)
    # --- topics -----------------------------------------------------------------------------------
    topic_transactions: str = _opt("transactions", "input topic of transactions", "topics")
    topic_scores: str = _opt("scores", "output topic of scores", "topics")
    topic_dlq: str = _opt("transactions.dlq", "dead-letter topic for events that cannot be scored", "topics")
    topic_labels: str = _opt("labels", "topic of delayed fraud labels", "topics")
    topic_drift_partials: str = _opt("drift.partials", "per-partition window sketches", "topics")
    topic_drift_stats: str = _opt("drift.stats", "merged per-window drift statistics", "topics")
    topic_incidents: str = _opt("incidents", "incident events", "topics")
    models_topic: str = _opt("models", "model registry events: every champion/challenger switch (created on first use)", "topics")
    scores_by_id_topic: str = _opt("", "the label join's repartition topic (empty: the scores topic's name + .by_id): each scored micro-batch's (transaction_id, probability) pairs, one record per labels partition, partitioned as the labels topic partitions transaction_id; created by the worker; not in topics()", "topics")
    scores_shadow_topic: str = _opt("", "the challenger's shadow scores (empty: the scores topic's name + .shadow): one score message per transaction message, as on the scores topic, by the model registry's challenger while there is one (shadow); created by the worker; not in topics()", "topics")
    labels_dlq_topic: str = _opt("", "dead-letter topic for labels the join cannot read (empty: the labels topic's name + .dlq; reasons label_invalid_json, label_invalid); created by the worker; not in topics()", "topics")
    partitions: int = _opt(4, "partitions of every project topic (created by `breeboost broker`)", "topics", minimum=1)
    # --- processes --------------------------------------------------------------------------------
    metrics_host: str = _opt("127.0.0.1", "address the Prometheus metrics server binds", "process")
    metrics_port: int = _opt(9464, "port of the Prometheus metrics server (0: pick a free one)", "process", minimum=0)
    log_level: str = _opt("INFO", "log level", "process", ("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = _opt("json", "log format: one JSON object per line, or text for humans", "process", ("json", "text"))
    # --- model and streams ------------------------------------------------------------------------
    model_dir: str = _opt("model", "model artifact directory", "model")
    nthread: int = _opt(1, "XGBoost threads used for scoring", "model", minimum=1)
    reasons: str = _opt("flagged", "which scores carry reason codes (top features by exact TreeSHAP contribution): flagged (fraud_label 1), review (flagged or probability >= review_threshold), all, none", "model", REASON_MODES)
    shadow: str = _opt("challenger", "shadow scoring: challenger (the model registry's challenger, while there is one, scores every accepted transaction of the same batch too: scores.shadow, and both models' figures on the same labelled transactions in the window's shadow section) or off", "model", SHADOW_MODES)
    reasons_k: int = _opt(3, "reason codes per explained score (the top k features)", "model", minimum=1)
    review_threshold: float = _opt(0.1, "with reasons=review: scores at or above this probability carry reasons too; in (0, 1)", "model")
    window_size: int = _opt(10000, "drift window size in events (summed over partitions)", "streams", minimum=1)
    window_idle_s: float = _opt(5.0, "close an open window after this many wall-clock seconds with no events", "streams", minimum=0.1)
    batch_size: int = _opt(1000, "scoring micro-batch size (events)", "streams", minimum=1)
    batch_max_bytes: int = _opt(1_000_000, "largest scoring micro-batch in message bytes: a bigger take is scored in parts (bounds memory with batch envelopes)", "streams", minimum=1)
    input_path: str = _opt("batches", "how the score and label agents receive their input: batches (each fetch of their partitions as one batch, streams/fastpath.py; ~8x the events path on one transaction per message) or events (Faust's per-event micro-batches of batch_size / batch_wait_s; also taken when the installed Faust lacks what batches need)", "streams", INPUT_PATHS)
    batch_wait_s: float = _opt(0.05, "longest wait to fill a scoring micro-batch, seconds", "streams", minimum=0)
    max_message_bytes: int = _opt(1_000_000, "largest transactions message accepted; bigger ones are dead-lettered", "streams", minimum=1)
    max_envelope_items: int = _opt(10_000, "most transactions a batch envelope may hold; a larger one is dead-lettered once, whole (envelope_too_large). The default admits every valid envelope of max_message_bytes (the smallest valid transaction is ~110 bytes)", "streams", minimum=1)
    attribution_sample: int = _opt(96, "events per drift window whose exact feature contributions make the window's attribution (a seeded sample, split over partitions; ~80-150 us an event, once a window); 0: no attribution", "streams", minimum=0)
    group_id: str = _opt("breeboost", "consumer group / Faust app id prefix", "streams")
    label_horizon_s: float = _opt(3600.0, "label join: a score waits at least this long for its label on both clocks, stream time (its partition's event times) and publish time, at most twice as long (label_horizon_count bounds it first)", "streams", minimum=1)
    label_horizon_count: int = _opt(250_000, "label join: the scores each labels partition keeps waiting for their labels, at least (at most twice as many; ~130 bytes each, docs/labels.md)", "streams", minimum=1)
    label_wait_s: float = _opt(600.0, "label join: how long a label that came before its score waits for it before it counts as unknown (label arrival time; a scoring worker that lags behind the labels needs it)", "streams", minimum=0)
    freshness_clock: str = _opt("wall", "what event-time lag (freshness, stale_data) is measured against: wall (processing time; live traffic) or stream (each partition's largest event time so far; for `breeboost replay` of old data, so a backfill does not page stale_data)", "streams", FRESHNESS_CLOCKS)
    # --- drift detectors (detectors.calibration.DetectorConfig: detector_<name> is its field <name>) ---------
    detector_alpha: float = _opt(0.001, "family-wise false-alarm rate of a window's drift tests (Bonferroni over every PSI and KS test); in (0, 1)", "streams")
    detector_psi_floor: float = _opt(0.1, "smallest PSI that counts as drift, whatever the window size", "streams", minimum=0)
    detector_ks_floor: float = _opt(0.1, "smallest KS D that counts as drift, whatever the window size", "streams", minimum=0)
    detector_epsilon: float = _opt(1e-4, "floor of bin proportions in PSI (a bin the reference never saw); in (0, 0.01)", "streams")
    detector_min_events: int = _opt(100, "windows with fewer scored events are reported but never drift", "streams", minimum=1)
    detector_min_labels: int = _opt(100, "concept section: no performance drop from fewer labelled events in a window", "streams", minimum=1)
    detector_min_positives: int = _opt(20, "concept section: no recall (precision) drop from fewer actual (predicted) frauds among a window's labels", "streams", minimum=1)

    def __post_init__(self) -> None:
        # settings that are only wrong together, named by their variables
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise SettingsError(f"{env_var('security_protocol')}={self.security_protocol} needs "
                                f"{env_var('sasl_username')} and {env_var('sasl_password')}")
        if self.request_timeout_s < self.session_timeout_s:
            raise SettingsError(f"{env_var('request_timeout_s')} must be at least {env_var('session_timeout_s')}")
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise SettingsError(f"{env_var('heartbeat_interval_s')} must be below {env_var('session_timeout_s')}")
        for name, low, high in (("detector_alpha", 0.0, 1.0), ("detector_epsilon", 0.0, 0.01),
                                ("review_threshold", 0.0, 1.0)):
            if not low < getattr(self, name) < high:
                raise SettingsError(f"{env_var(name)}: must be in ({low:g}, {high:g}), got {getattr(self, name)!r}")

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

    @property
    def scores_shadow(self) -> str:
        """The challenger's shadow scores: ``scores_shadow_topic``, or ``<topic_scores>.shadow``."""
        return self.scores_shadow_topic or f"{self.topic_scores}.shadow"

    @property
    def scores_by_id(self) -> str:
        """The label join's repartition topic: ``scores_by_id_topic``, or ``<topic_scores>.by_id``."""
        return self.scores_by_id_topic or f"{self.topic_scores}.by_id"

    @property
    def labels_dlq(self) -> str:
        """The labels' dead-letter topic: ``labels_dlq_topic``, or ``<topic_labels>.dlq``."""
        return self.labels_dlq_topic or f"{self.topic_labels}.dlq"

    def topics(self) -> list[str]:
        """Every topic the project uses."""
        return [getattr(self, f.name) for f in fields(self) if f.name.startswith("topic_")]

    def detector_options(self) -> dict[str, Any]:
        """The ``detector_*`` settings without their prefix: the keyword arguments of
        ``detectors.calibration.DetectorConfig`` (built by ``DetectorConfig.from_settings``; this base module
        does not import the detectors)."""
        return {f.name[len("detector_"):]: getattr(self, f.name) for f in fields(self) if f.name.startswith("detector_")}

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
    optional = f.default == ""     # an empty topic name: derived from another (Settings.scores_by_id)
    if (f.name.startswith("topic_") or f.name.endswith("_topic")) and (value or not optional) and (
            not value or len(value) > 249 or any(not (c.isalnum() or c in "._-") for c in value)):
        raise SettingsError(f"{source}: {value!r} is not a valid Kafka topic name")
    if f.name == "ssl_cafile" and value and not os.path.isfile(value):
        raise SettingsError(f"{source}: CA file {value!r} does not exist")
    return value
