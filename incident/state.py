"""The incident agent's state: one :class:`Tracker` per fingerprint, and the :class:`StateFile` they are
saved in (JSON, written atomically after each processed batch).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "incident-state.json")
>>> sf = StateFile(path)
>>> sf.load() is None
True
>>> sf.save({"version": 1, "last_index": {"default": 3}})
>>> sf.load()["last_index"]
{'default': 3}
>>> t = Tracker("missing_data", "ad83cb016b26c771", "m1", severity="P2", peak_severity="P2")
>>> Tracker.from_dict(t.to_dict()) == t, list(t.to_dict())[:4]
(True, ['type', 'fingerprint', 'model_version', 'status'])
"""
from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import orjson

from incident.errors import IncidentError
from incident.events import iso
from incident.rules.core import Breach, most_severe

__all__ = ["StateFile", "Tracker", "STATUSES"]

#: A tracker is ``pending`` (breaching, not published yet) or ``firing``; resolved ones are dropped.
STATUSES = ("pending", "firing")


@dataclass
class Tracker:
    """What the lifecycle knows of one incident (or of a breach waiting to fire), keyed by fingerprint.

    :meth:`to_dict` is the tracker's entry in the state file (``trackers``), field for field, in this
    order; :meth:`from_dict` reads it back. ``recent`` holds the last ``resolve_windows`` windows, newest
    last: ``[severity, features]`` for a breach, ``None`` for a clean window. ``first_window`` and
    ``last_window`` are ``{"index", "window_id", "first_event_time"|"last_event_time"}`` of the breached
    span; ``last`` is the latest breach (``summary``, ``value``, ``evidence``, ``inhibited``).
    """

    type: str
    fingerprint: str
    model_version: str | None
    status: str = "pending"
    incident_id: str | None = None
    seq: int = 0
    pending: int = 0
    clean: int = 0
    recent: list = field(default_factory=list)
    severity: str = "P4"
    features: list[str] = field(default_factory=list)
    peak_severity: str = "P4"
    covers_all: bool = False
    started_at: str = ""
    updated_at: str = ""
    stream: str = "default"
    first_window: dict = field(default_factory=dict)
    last_window: dict = field(default_factory=dict)
    partitions: list[int] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    acknowledged: bool = False
    closed: bool = False

    # -- construction and the state file --------------------------------------------------------------
    @classmethod
    def new(cls, breach: Breach, fp: str, model_version: str | None, stream: str, win: Mapping[str, Any],
            now: float) -> "Tracker":
        """A pending tracker for ``breach``, first seen in window ``win`` (see ``lifecycle._window_info``)."""
        return cls(breach.type, fp, model_version, severity=breach.severity, peak_severity=breach.severity,
                   covers_all=breach.covers_all, started_at=iso(now), updated_at=iso(now), stream=stream,
                   first_window={"index": win["index"], "window_id": win["window_id"],
                                 "first_event_time": win["first_event_time"]},
                   counts={"windows_breached": 0, "windows_clean": 0, "events": 0, "dead_lettered": 0})

    @classmethod
    def from_event(cls, e: Mapping[str, Any], pending_windows: int, stream: str) -> "Tracker":
        """A firing tracker rebuilt from its incident's latest agent event (topic restore): pending and
        clean counts are not on the topic; it counts as having fired and needs a full clean streak."""
        d = e["details"]
        w = d["window"]
        return cls(e["type"], e["fingerprint"], e.get("model_version"), status="firing",
                   incident_id=e["incident_id"], seq=int(e["seq"]), pending=pending_windows, clean=0,
                   recent=[[e["severity"], list(d["affected_features"])]], severity=e["severity"],
                   features=list(d["affected_features"]), peak_severity=d.get("peak_severity", e["severity"]),
                   covers_all=bool(d.get("covers_all_features", False)), started_at=e["started_at"],
                   updated_at=e["updated_at"], stream=stream,
                   first_window={"index": w.get("first_index"), "window_id": w.get("first_window_id"),
                                 "first_event_time": w.get("first_event_time")},
                   last_window={"index": w.get("last_index"), "window_id": w.get("last_window_id"),
                                "last_event_time": w.get("last_event_time")},
                   partitions=list(w.get("partitions", [])),
                   counts=dict(d.get("counts", {"windows_breached": 0})),
                   last={"summary": e["summary"], "value": d.get("value"), "evidence": d.get("evidence", {})},
                   notes=list(e.get("notes", [])), acknowledged=bool(e.get("acknowledged")),
                   closed=bool(e.get("closed")))

    def to_dict(self) -> dict[str, Any]:
        """The state file's entry (a deep copy: JSON-able, independent of the tracker)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Tracker":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**copy.deepcopy({k: v for k, v in doc.items() if k in known}))

    # -- what the lifecycle changes ---------------------------------------------------------------------
    def push_recent(self, entry: list | None, keep: int) -> None:
        self.recent.append(entry)
        del self.recent[:-keep]

    def record_breach(self, b: Breach, win: Mapping[str, Any], inhibited: list[dict], keep: int) -> tuple[str, list[str]]:
        """Count one breached window; returns the severity and features over the last ``keep`` windows (worst,
        union), so they do not flap. Windows can arrive slightly out of order: the span is min..max."""
        self.push_recent([b.severity, list(b.features)], keep)
        self.clean = 0
        self.last = {"summary": b.summary, "value": b.value, "evidence": b.evidence, "inhibited": inhibited}
        first, last = self.first_window.get("index"), self.last_window.get("index")
        if win["index"] is not None and first is not None and win["index"] < first:
            self.first_window = {"index": win["index"], "window_id": win["window_id"],
                                 "first_event_time": win["first_event_time"]}
        if win["index"] is None or last is None or win["index"] > last:
            self.last_window = {"index": win["index"], "window_id": win["window_id"],
                                "last_event_time": win["last_event_time"]}
        self.partitions = sorted(set(self.partitions) | set(win["partitions"]))
        self.counts["windows_breached"] += 1
        self.counts["events"] += win["events"]
        self.counts["dead_lettered"] += win["dead_lettered"]
        live = [r for r in self.recent if r is not None]
        severity = most_severe(r[0] for r in live)
        self.peak_severity = most_severe([self.peak_severity, severity])
        return severity, sorted({f for r in live for f in r[1]})

    def record_clean(self, keep: int) -> None:
        self.clean += 1
        self.counts["windows_clean"] = self.counts.get("windows_clean", 0) + 1
        self.push_recent(None, keep)

    def merge_notes(self, event: Mapping[str, Any]) -> None:
        """Take the notes and the ack/close flags of a CLI event about this incident."""
        seen = {(n.get("at"), n.get("action"), n.get("text")) for n in self.notes}
        for n in event.get("notes", []):
            if (n.get("at"), n.get("action"), n.get("text")) not in seen:
                self.notes.append(dict(n))
        self.acknowledged = self.acknowledged or bool(event.get("acknowledged"))
        self.closed = self.closed or bool(event.get("closed"))

    def as_source(self) -> Breach:
        """The incident as an inhibition source (a firing incident mutes what it explains)."""
        return Breach(self.type, self.severity, tuple(self.features), None, "", {}, self.covers_all)


class StateFile:
    """Load/save :meth:`IncidentManager.state_dict` at ``path``.

    ``save`` writes a temporary file in the same directory, fsyncs it and renames it over the old one,
    so a crash leaves either the old or the new state, never half of one.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        if not str(path):
            raise ValueError("path: expected a file path, got ''")
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is no file yet (rebuild from the topic then)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise IncidentError(f"incident state file {str(self.path)!r} is not valid JSON ({e}); "
                                "delete it to rebuild the state from the incidents topic") from None
        if not isinstance(doc, dict):
            raise IncidentError(f"incident state file {str(self.path)!r} does not hold a JSON object")
        return doc

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(state))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
