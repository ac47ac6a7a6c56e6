"""Incident events: the JSON Schema, validation, topic encoding, fingerprints and ack/close changes.

>>> fp = fingerprint("missing_data", (), "m1")
>>> fp, len(fp)
('ad83cb016b26c771', 16)
>>> fingerprint("feature_drift", ("hour", "amount"), "m1") == fingerprint("feature_drift", ("amount", "hour"), "m1")
True
>>> iso(0)
'1970-01-01T00:00:00.000Z'
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
from importlib import resources
from typing import Any, Iterable, Mapping

import orjson

from incident.errors import EventSchemaError

__all__ = ["SCHEMA_RESOURCE", "load_schema", "validate_event", "fingerprint", "incident_id_for", "iso",
           "encode_event", "decode_event", "event_key", "note_event", "latest_by_incident", "event_order"]

SCHEMA_RESOURCE = "schema/incident-event.schema.json"


def fingerprint(incident_type: str, features: Iterable[str], model_version: str | None) -> str:
    """sha256(type | sorted features | model version)[:16]: the de-duplication key and topic key."""
    raw = "|".join([incident_type, ",".join(sorted(features)), model_version or ""])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def incident_id_for(fp: str, stream: str, first_index: int | None, first_window_id: str | None, started_at: str) -> str:
    """A deterministic id: the same episode replayed from the same windows gets the same id.

    >>> incident_id_for("ad83cb016b26c771", "default", 4, "w000004", "x")
    'inc-1433fe193ced'
    """
    anchor = f"{first_index}|{first_window_id}" if first_index is not None or first_window_id else started_at
    return "inc-" + hashlib.sha256(f"{fp}|{stream}|{anchor}".encode()).hexdigest()[:12]


def iso(ts: float) -> str:
    """UTC ISO-8601 with milliseconds and a ``Z``."""
    return (_dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    """The event JSON Schema (draft 2020-12) shipped in ``incident/schema/``."""
    return json.loads(resources.files("incident").joinpath(SCHEMA_RESOURCE).read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    cls = jsonschema.validators.validator_for(load_schema())
    cls.check_schema(load_schema())
    return cls(load_schema(), format_checker=cls.FORMAT_CHECKER)


def validate_event(event: Mapping[str, Any]) -> None:
    """Raise :class:`EventSchemaError` (naming the field) if ``event`` breaks the schema."""
    errors = sorted(_validator().iter_errors(event), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(event)"
        raise EventSchemaError(f"incident event invalid at {where}: {e.message}")


def encode_event(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event)


def decode_event(raw: bytes | str) -> dict | None:
    """The event, or ``None`` when ``raw`` is not a JSON object with an ``incident_id`` (foreign records)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and "incident_id" in doc else None


def event_key(event: Mapping[str, Any]) -> bytes:
    """The topic key: the fingerprint, so one incident's events stay in order on one partition."""
    return str(event["fingerprint"]).encode()


def event_order(event: Mapping[str, Any]) -> tuple:
    """Sort key of one incident's events: agent sequence, then time (ack/close share the seq they annotate)."""
    return (event.get("seq", 0), event.get("updated_at", ""), event.get("source") == "cli")


def latest_by_incident(events: Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    """incident_id -> its latest event, with notes, ``acknowledged`` and ``closed`` merged over all events."""
    out: dict[str, dict] = {}
    notes: dict[str, dict[tuple, dict]] = {}
    for e in events:
        iid = e.get("incident_id")
        if not iid:
            continue
        for n in e.get("notes", []):
            notes.setdefault(iid, {})[(n.get("at"), n.get("action"), n.get("text"))] = n
        cur = out.get(iid)
        if cur is None or event_order(e) >= event_order(cur):
            merged = dict(e)
            if cur is not None:
                merged["acknowledged"] = bool(e.get("acknowledged") or cur.get("acknowledged"))
                merged["closed"] = bool(e.get("closed") or cur.get("closed"))
            out[iid] = merged
        else:
            cur["acknowledged"] = bool(e.get("acknowledged") or cur.get("acknowledged"))
            cur["closed"] = bool(e.get("closed") or cur.get("closed"))
    for iid, n in notes.items():
        out[iid]["notes"] = sorted(n.values(), key=lambda x: x.get("at", ""))
    return out


def note_event(current: Mapping[str, Any], action: str, text: str, now: float,
               author: str | None = None) -> dict:
    """The event that ``breeboost incidents ack|close`` publishes: ``current`` plus the note.

    ``action`` is ``ack`` (sets ``acknowledged``) or ``close`` (sets ``closed``: the responder's sign-off;
    the status stays whatever the agent last said, firing or resolved, because only clean windows
    resolve an incident).
    """
    if action not in ("ack", "close"):
        raise ValueError(f"action: expected 'ack' or 'close', got {action!r}")
    at = iso(now)
    note = {"at": at, "action": action, "author": author, "text": text}
    ev = dict(current)
    ev["notes"] = list(current.get("notes", [])) + [note]
    ev["event"] = "acknowledged" if action == "ack" else "closed"
    ev["acknowledged"] = True if action == "ack" else bool(current.get("acknowledged"))
    ev["closed"] = True if action == "close" else bool(current.get("closed"))
    ev["updated_at"] = at
    ev["source"] = "cli"
    digest = hashlib.sha256(f"{at}|{action}|{text}".encode()).hexdigest()[:8]
    ev["event_id"] = f"{current['incident_id']}:{current['seq']}:{action}-{digest}"
    return ev
