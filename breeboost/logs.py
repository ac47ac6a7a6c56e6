"""One JSON object per line (orjson) on stdout/stderr, or readable text with ``log_format='text'``.

Each line has ``ts`` (UTC ISO-8601), ``level``, ``logger``, ``event`` and the context fields passed with
:func:`log`. Configured secrets (the SASL password) are replaced by ``**********`` in every line, whatever
field or exception message they hide in.

>>> import io, logging
>>> buf = io.StringIO()
>>> configure_logging("INFO", "json", stream=buf, secrets=["hunter2"])
>>> log(logging.getLogger("demo"), "connected", user="alice", password="hunter2")
>>> line = orjson.loads(buf.getvalue())
>>> line["event"], line["logger"], line["user"], line["password"]
('connected', 'demo', 'alice', '**********')
"""
from __future__ import annotations

import datetime as _dt
import logging
import sys
from typing import IO, Any, Iterable

import orjson

REDACTED = "**********"
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with context ``fields`` (they become top-level keys of the JSON line)."""
    logger.log(level, event, extra={"fields": fields})


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            for k, v in fields.items():
                doc[k if k not in doc else "field_" + k] = v
        for k, v in record.__dict__.items():  # `extra=` given the stdlib way, e.g. by libraries
            if k not in _RESERVED and k != "fields" and not k.startswith("_") and k not in doc:
                doc[k] = v
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        return self.redact(line)


class TextFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.redact = _Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return self.redact(text)


def configure_logging(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None,
                      secrets: Iterable[str] = ()) -> None:
    """Route every logger (ours and the libraries') through one handler with the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("kafka", "aiokafka", "faust", "mode", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def configure_from_settings(settings: Any, stream: IO[str] | None = None) -> None:
    configure_logging(settings.log_level, settings.log_format, stream=stream, secrets=settings.secrets())
