"""``incident_log.jsonl``: one incident event per line, appended idempotently.

Replaying the topic appends nothing twice: the key is the event's ``event_id`` (``incident_id:seq`` for
agent events, with an ack/close suffix for the CLI's), loaded from the file when it is opened.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "incident_log.jsonl")
>>> log = IncidentLog(path)
>>> ev = {"event_id": "inc-1:1", "incident_id": "inc-1", "status": "firing"}
>>> log.append([ev, ev]), log.append([ev]), len(IncidentLog(path).read())
(1, 0, 1)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson

__all__ = ["IncidentLog", "read_jsonl"]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Every JSON object of a JSON-lines file (blank and non-object lines skipped)."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line after a crash: skip, the next replay rewrites it
            if isinstance(doc, dict):
                out.append(doc)
    return out


def _key(event: Mapping[str, Any]) -> str:
    eid = event.get("event_id")
    return str(eid) if eid else f"{event.get('incident_id')}:{event.get('seq')}:{event.get('updated_at')}"


class IncidentLog:
    """Append-only JSONL log of incident events, idempotent by event id."""

    def __init__(self, path: str | os.PathLike) -> None:
        if not str(path):
            raise ValueError("path: expected a file path, got ''")
        self.path = Path(path)
        self._seen: set[str] = set()
        if self.path.exists():
            self._seen = {_key(e) for e in read_jsonl(self.path)}

    def __contains__(self, event: Mapping[str, Any]) -> bool:
        return _key(event) in self._seen

    def append(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Append the events not yet in the log; returns how many were written."""
        lines = []
        for e in events:
            k = _key(e)
            if k in self._seen:
                continue
            self._seen.add(k)
            lines.append(orjson.dumps(e) + b"\n")
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
        return len(lines)

    def read(self) -> list[dict]:
        return read_jsonl(self.path) if self.path.exists() else []
