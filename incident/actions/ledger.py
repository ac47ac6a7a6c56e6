"""Each action at most once, across restarts: a ledger of action records in an atomic state file.

An action's id is deterministic (:func:`action_id`: the incident, the action and what triggered it), so a
replayed incident event or a restarted agent finds the record and does not run the action again. A record
is written ``started`` before the action runs and ``done``/``failed`` after (write-then-rename of one JSON
file, fsynced): an action that was started but never finished (the process was killed) is reported as
``interrupted`` and not re-run by itself; a person decides (``retry``).

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "actions.json")
>>> ledger = ActionLedger(path)
>>> aid = action_id("inc-1", "retrain", "w000012")
>>> ledger.run_once(aid, "retrain", lambda: {"version": "abc"}, by="auto").status
'done'
>>> calls = []
>>> ActionLedger(path).run_once(aid, "retrain", lambda: calls.append(1), by="auto").result, calls
({'version': 'abc'}, [])
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import msgspec

__all__ = ["ActionLedger", "ActionRecord", "action_id", "STATUSES"]

STATUSES = ("started", "done", "failed", "interrupted")


def action_id(incident_id: str, action: str, trigger: str) -> str:
    """``act-`` + 16 hex characters of ``sha256(incident, action, trigger)``."""
    return "act-" + hashlib.sha256(f"{incident_id}\x00{action}\x00{trigger}".encode()).hexdigest()[:16]


class ActionRecord(msgspec.Struct, frozen=True):
    """One action: what, by whom (``auto`` or a person), its status, result or error, times."""

    id: str
    action: str
    by: str
    status: str
    started_at: float
    finished_at: float | None = None
    result: Any = None
    error: str | None = None


class _File(msgspec.Struct):
    format: str = "breeboost.actions"
    records: dict[str, ActionRecord] = msgspec.field(default_factory=dict)


class ActionLedger:
    """The records in ``path`` (created on first write); one writer at a time (the incident agent)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._records = self._load()

    def _load(self) -> dict[str, ActionRecord]:
        try:
            data = msgspec.json.decode(self.path.read_bytes(), type=_File).records
        except FileNotFoundError:
            return {}
        # started before a crash: never finished, never re-run by itself
        return {k: msgspec.structs.replace(r, status="interrupted") if r.status == "started" else r
                for k, r in data.items()}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgspec.json.encode(_File(records=self._records)))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def get(self, aid: str) -> ActionRecord | None:
        return self._records.get(aid)

    def records(self) -> list[ActionRecord]:
        return sorted(self._records.values(), key=lambda r: r.started_at)

    def start(self, aid: str, action: str, by: str) -> bool:
        """Record ``aid`` as started (before the action runs); ``False`` if it has a record already."""
        if aid in self._records:
            return False
        self._records[aid] = ActionRecord(aid, action, by, "started", time.time())
        self._save()
        return True

    def finish(self, aid: str, status: str, result: Any = None, error: str | None = None) -> ActionRecord:
        """Record the end of a started action (``done`` or ``failed``)."""
        if status not in ("done", "failed"):
            raise ValueError(f"status must be 'done' or 'failed', got {status!r}")
        rec = msgspec.structs.replace(self._records[aid], status=status, finished_at=time.time(), result=result,
                                      error=error)
        self._records[aid] = rec
        self._save()
        return rec

    def run_once(self, aid: str, action: str, run: Callable[[], Any], by: str) -> ActionRecord:
        """Run ``run`` unless ``aid`` has a record (then return it); record its result or its error."""
        known = self._records.get(aid)
        if known is not None:
            return known
        started = ActionRecord(aid, action, by, "started", time.time())
        self._records[aid] = started
        self._save()
        try:
            result = run()
        except Exception as e:   # the action failed: recorded, the caller carries on
            rec = msgspec.structs.replace(started, status="failed", finished_at=time.time(), error=str(e))
        else:
            rec = msgspec.structs.replace(started, status="done", finished_at=time.time(), result=result)
        self._records[aid] = rec
        self._save()
        return rec
