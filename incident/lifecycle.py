"""The incident lifecycle: pending -> firing -> (updated) -> resolved, de-duplicated by fingerprint.

One :class:`IncidentManager` turns a stream of ``drift.stats`` payloads into incident events. It is plain
Python (no Kafka): the incident agent calls :meth:`IncidentManager.process` per payload, publishes the
returned events keyed by fingerprint, then saves :meth:`IncidentManager.state_dict` (see
:class:`incident.state.StateFile`).

Rules (``[lifecycle]`` in the policy):

- a breach must hold ``pending_windows`` consecutive windows before it fires (Prometheus ``for``);
- a firing incident emits ``updated`` when its severity changes or a new feature joins it; severity and
  the affected set are the worst/union over the last ``resolve_windows`` windows, so they do not flap;
- it resolves after ``resolve_windows`` consecutive clean windows (``keep_firing_for``);
- each ``window.index`` of a stream is evaluated once: a window seen before (redelivery, replay) is
  ignored, so replaying stats never opens a second incident. ``drift.stats`` is keyed by window id, so
  windows reach the agent over several partitions, slightly out of order: a window that arrives after a
  later one is still evaluated, in arrival order, if it is at most ``late_windows`` below the newest.

>>> from incident.policy import Policy
>>> m = IncidentManager(Policy.load())
>>> calm = {"missing_ratio": 0.0, "model_version": "m1"}
>>> bad = {"missing_ratio": 0.2, "model_version": "m1"}
>>> out = []
>>> for i, s in enumerate([calm, bad, bad, bad, bad, calm, calm, calm, calm]):
...     for e in m.process({**s, "window": {"index": i}}, now=1000.0 + i):
...         out.append((i, e["event"], e["status"], e["type"], e["severity"]))
>>> out
[(2, 'fired', 'firing', 'missing_data', 'P2'), (7, 'resolved', 'resolved', 'missing_data', 'P2')]
>>> m.process({**bad, "window": {"index": 3}}, now=2000.0)   # redelivered window: ignored
[]
>>> late = IncidentManager(Policy.load())
>>> [len(late.process({**calm, "window": {"index": i}})) for i in (0, 2, 1, 2, 1)], late.processed, late.ignored
([0, 0, 0, 0, 0], 3, 2)
"""
from __future__ import annotations

import collections
import copy
import statistics
import time
from typing import Any, Iterable, Mapping

from incident.events import event_order, fingerprint, incident_id_for, iso
from incident.policy import Breach, Policy, get_path, number
from incident.state import Tracker

__all__ = ["IncidentManager", "STATE_VERSION", "LEGACY_STREAM"]

STATE_VERSION = 1
_RECENT_IDS = 1024  # window ids remembered for payloads without an index
#: The stream name of payloads without a ``stream`` field, and what state files and events said before the
#: worker wrote the field (read as the manager's ``default_stream``).
LEGACY_STREAM = "default"


def _index(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _window_info(stats: Mapping[str, Any]) -> dict:
    w = stats.get("window") if isinstance(stats.get("window"), Mapping) else {}
    parts = w.get("partitions")
    return {
        "index": _index(w.get("index")),
        "window_id": stats.get("window_id") if isinstance(stats.get("window_id"), str) else None,
        "first_event_time": number(w.get("first_event_time")),
        "last_event_time": number(w.get("last_event_time")),
        "partitions": sorted({int(p) for p in parts if _index(p) is not None}) if isinstance(parts, list) else [],
        "events": _index(w.get("events")) or 0,
        "dead_lettered": _index(w.get("dead_lettered")) or 0,
    }


class IncidentManager:
    """Turns window statistics into incident events, with pending, hysteresis, de-dup and inhibition.

    Parameters
    ----------
    policy : Policy
        Thresholds, lifecycle counts and inhibition rules.
    state : dict, optional
        A :meth:`state_dict` saved earlier (same as :meth:`from_state`).
    default_stream : str
        The stream of payloads without a ``stream`` field (the worker writes its input topic there; the
        agent passes the same topic, so old and new payloads of one stream share their window indexes).
        State files and events from before the field say ``"default"``, which is read as this name.
    """

    def __init__(self, policy: Policy, state: Mapping[str, Any] | None = None,
                 default_stream: str = LEGACY_STREAM) -> None:
        if not isinstance(policy, Policy):
            raise ValueError(f"policy: expected an incident.policy.Policy, got {type(policy).__name__}")
        if not isinstance(default_stream, str) or not default_stream:
            raise ValueError(f"default_stream: expected a non-empty stream name, got {default_stream!r}")
        self.policy = policy
        self.default_stream = default_stream
        self._reset()
        if state is not None:
            self._load(state)

    def _reset(self) -> None:
        self._trackers: dict[str, Tracker] = {}
        self._last_index: dict[str, int] = {}     # newest window index per stream
        self._floor: dict[str, int] = {}          # at or below: ignored (too late, or processed)
        self._seen: dict[str, set[int]] = {}      # processed indexes in (floor, last]
        self._recent_ids: collections.deque[str] = collections.deque(maxlen=_RECENT_IDS)
        self._baselines: dict[str, list[float]] = {}
        self.processed = 0
        self.ignored = 0

    def _stream(self, value: Any, legacy: bool = False) -> str:
        """The stream a payload (or, with ``legacy``, a saved state or event) belongs to."""
        if not isinstance(value, str) or not value or (legacy and value == LEGACY_STREAM):
            return self.default_stream
        return value

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue after a restart, JSON-able (pending counters included)."""
        return {"version": STATE_VERSION, "last_index": dict(self._last_index), "floor_index": dict(self._floor),
                "seen_index": {k: sorted(v) for k, v in self._seen.items()},
                "recent_ids": list(self._recent_ids),
                "trackers": {fp: t.to_dict() for fp, t in self._trackers.items()},
                "baselines": copy.deepcopy(self._baselines),
                "processed": self.processed, "ignored": self.ignored}

    @classmethod
    def from_state(cls, policy: Policy, state: Mapping[str, Any], default_stream: str = LEGACY_STREAM
                   ) -> "IncidentManager":
        return cls(policy, state, default_stream)

    def _load(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state: expected version {STATE_VERSION}, got {state.get('version')!r}")

        def per_stream(key: str) -> dict[str, Any]:
            return {self._stream(k, legacy=True): v for k, v in state.get(key, {}).items()}
        self._trackers = {str(fp): Tracker.from_dict(t) for fp, t in state.get("trackers", {}).items()}
        for t in self._trackers.values():
            t.stream = self._stream(t.stream, legacy=True)
        self._last_index = {k: int(v) for k, v in per_stream("last_index").items()}
        # a state without the seen set (older files) treats everything up to the last index as processed
        self._floor = {**self._last_index, **{k: int(v) for k, v in per_stream("floor_index").items()}}
        self._seen = {k: {int(i) for i in v} for k, v in per_stream("seen_index").items()}
        self._recent_ids.extend(state.get("recent_ids", []))
        self._baselines = {str(k): [float(x) for x in v] for k, v in state.get("baselines", {}).items()}
        self.processed = int(state.get("processed", 0))
        self.ignored = int(state.get("ignored", 0))

    @classmethod
    def restore(cls, policy: Policy, events: Iterable[Mapping[str, Any]], default_stream: str = LEGACY_STREAM
                ) -> "IncidentManager":
        """Rebuild from the incidents topic: firing incidents come back from their latest event.

        What the topic cannot hold is lost: pending counters (a breach that had not fired yet starts
        pending again) and clean-window counts (a firing incident needs ``resolve_windows`` clean
        windows again). The last processed window index per stream is the highest one any event was
        emitted at. Prefer the state file; use this when it is missing.
        """
        m = cls(policy, default_stream=default_stream)
        latest: dict[str, dict] = {}
        notes: dict[str, list] = {}
        for e in events:
            if e.get("source") == "cli":
                notes.setdefault(e["incident_id"], []).append(e)
                continue
            w = e.get("details", {}).get("window", {})
            idx = _index(w.get("evaluated_index"))
            stream = m._stream(w.get("stream"), legacy=True)
            if idx is not None and idx > m._last_index.get(stream, -1):
                m._last_index[stream] = m._floor[stream] = idx
            fp = e.get("fingerprint")
            if fp and (fp not in latest or event_order(e) >= event_order(latest[fp])):
                latest[fp] = dict(e)
        for fp, e in latest.items():
            if e.get("status") != "firing":
                continue
            stream = m._stream(e["details"]["window"].get("stream"), legacy=True)
            t = m._trackers[fp] = Tracker.from_event(e, policy.pending_windows, stream)
            for ne in notes.get(t.incident_id, []):
                t.merge_notes(ne)
        return m

    # -- queries -----------------------------------------------------------------------------------
    def open_incidents(self) -> list[dict]:
        """Firing incidents, as their state-file entries (copies: changing them changes nothing)."""
        return [t.to_dict() for t in self._trackers.values() if t.status == "firing"]

    def pending(self) -> list[dict]:
        """Breaches waiting to fire, as their state-file entries (copies)."""
        return [t.to_dict() for t in self._trackers.values() if t.status == "pending"]

    def open_counts(self) -> dict[str, int]:
        """Firing incidents per severity, every severity present (for the ``incidents_open`` gauge)."""
        counts = {s: 0 for s in ("P1", "P2", "P3", "P4")}
        for t in self._trackers.values():
            if t.status == "firing":
                counts[t.severity] += 1
        return counts

    # -- external changes --------------------------------------------------------------------------
    def observe(self, event: Mapping[str, Any]) -> bool:
        """Merge an ack/close published by ``breeboost incidents`` into the matching firing incident.

        Later agent events then carry the notes and flags. Returns whether an incident matched.
        """
        for t in self._trackers.values():
            if t.incident_id == event.get("incident_id"):
                t.merge_notes(event)
                return True
        return False

    # -- processing --------------------------------------------------------------------------------
    def process(self, stats: Mapping[str, Any], now: float | None = None) -> list[dict]:
        """Evaluate one window; return the events to publish (possibly none), in order."""
        now = time.time() if now is None else float(now)
        if not isinstance(stats, Mapping):
            raise ValueError(f"stats: expected a drift.stats mapping, got {type(stats).__name__}")
        win = _window_info(stats)
        stream = self._stream(stats.get("stream"))
        if not self._first_time(stream, win):
            self.ignored += 1
            return []
        self.processed += 1
        mv = stats.get("model_version") if isinstance(stats.get("model_version"), str) else None
        stats = self._with_learned_references(stats)
        breaches = self.policy.evaluate(stats)
        self._learn(stats, breaches)
        sources = [t.as_source() for t in self._trackers.values() if t.status == "firing"]
        kept, muted = self.policy.inhibit(breaches, sources)
        events: list[dict] = []
        seen: set[str] = set()
        for b in kept:
            key = b.features if self.policy.group_by(b.type) == "feature" else ()
            fp = fingerprint(b.type, key, mv)
            seen.add(fp)
            t = self._trackers.get(fp)
            if t is None:
                t = self._trackers[fp] = Tracker.new(b, fp, mv, stream, win, now)
            ev = self._on_breach(t, b, win, now, [m for m in muted if m["type"] == b.type])
            if ev is not None:
                events.append(ev)
        events += self._on_clean(seen, win, now)
        return events

    def _on_clean(self, breached: set[str], win: dict, now: float) -> list[dict]:
        """Trackers without a breach in this window: pending ones reset, firing ones count a clean window."""
        events = []
        for fp, t in list(self._trackers.items()):
            if fp in breached:
                continue
            if t.status == "pending":
                del self._trackers[fp]  # the breach did not hold: pending resets, nothing was published
                continue
            t.record_clean(self.policy.resolve_windows)
            if t.clean >= self.policy.resolve_windows:
                events.append(self._event(t, "resolved", now, win, ended=True))
                del self._trackers[fp]
        return events

    def _first_time(self, stream: str, win: dict) -> bool:
        """Whether this window is new: by index (see :meth:`_first_index`), else by window id."""
        if win["index"] is not None:
            return self._first_index(stream, win["index"])
        if win["window_id"] is not None:
            if win["window_id"] in self._recent_ids:
                return False
            self._recent_ids.append(win["window_id"])
        return True

    def _first_index(self, stream: str, index: int) -> bool:
        """Record ``index`` as processed; False if it was before or is more than ``late_windows`` old."""
        seen = self._seen.setdefault(stream, set())
        if index <= self._floor.get(stream, -1) or index in seen:
            return False
        seen.add(index)
        if index > self._last_index.get(stream, -1):
            self._last_index[stream] = index
            floor = max(self._floor.get(stream, -1), index - self.policy.late_windows)
            self._floor[stream] = floor
            self._seen[stream] = {i for i in seen if i > floor}
        return True

    # -- learned references (statistics whose normal level the payload does not carry) ----------------
    def _learned(self) -> list[tuple[str, Any]]:
        return [(name, rule.learning) for name, rule in self.policy.rules.items() if rule.learning is not None]

    def _with_learned_references(self, stats: Mapping[str, Any]) -> Mapping[str, Any]:
        """Inject ``reference.<statistic>`` (median of recent clean windows) where the payload has none."""
        out = stats
        for name, learning in self._learned():
            if any(number(get_path(stats, p)) is not None for p in learning.paths):
                continue
            values = self._baselines.get(name, [])
            if len(values) < learning.min_windows:
                continue
            if out is stats:
                out = dict(stats)
                out["reference"] = dict(stats["reference"]) if isinstance(stats.get("reference"), Mapping) else {}
            out["reference"][learning.key] = float(statistics.median(values))
        return out

    def _learn(self, stats: Mapping[str, Any], breaches: list[Breach]) -> None:
        breached = {b.type for b in breaches}
        for name, learning in self._learned():
            # Windows where this rule did not breach teach its normal level (the median keeps an odd window
            # from moving it). Other types' breaches do not matter: a one-window feature drift at the start
            # of a stream must not delay the reference until the next incident has passed.
            if name in breached:
                continue
            value = number(get_path(stats, learning.statistic))
            if value is None:
                continue
            values = self._baselines.setdefault(name, [])
            values.append(value)
            del values[:-learning.windows]

    def _on_breach(self, t: Tracker, b: Breach, win: dict, now: float, inhibited: list[dict]) -> dict | None:
        severity, features = t.record_breach(b, win, inhibited, self.policy.resolve_windows)
        if t.status == "pending":
            t.pending += 1
            t.severity, t.features = severity, features
            if t.pending < self.policy.pending_windows:
                return None
            t.status = "firing"
            t.incident_id = incident_id_for(t.fingerprint, t.stream, t.first_window["index"],
                                            t.first_window["window_id"], t.started_at)
            return self._event(t, "fired", now, win)
        changed = severity != t.severity or bool(set(features) - set(t.features))
        t.severity, t.features = severity, features
        return self._event(t, "updated", now, win) if changed else None

    def _event(self, t: Tracker, kind: str, now: float, win: dict, ended: bool = False) -> dict:
        t.seq += 1
        t.updated_at = iso(now)
        fw, lw = t.first_window, t.last_window
        details = {
            "affected_features": list(t.features),
            "covers_all_features": t.covers_all,
            "value": t.last.get("value"),
            "evidence": t.last.get("evidence", {}),
            "window": {"stream": t.stream, "first_index": fw.get("index"), "last_index": lw.get("index"),
                       "evaluated_index": win["index"], "first_window_id": fw.get("window_id"),
                       "last_window_id": lw.get("window_id"), "first_event_time": fw.get("first_event_time"),
                       "last_event_time": lw.get("last_event_time"), "partitions": list(t.partitions)},
            "counts": dict(t.counts),
            "peak_severity": t.peak_severity,
        }
        if t.last.get("inhibited"):
            details["inhibited"] = t.last["inhibited"]
        summary = t.last.get("summary") or f"{t.severity} {t.type}"
        if ended:
            summary = f"resolved after {t.clean} clean windows: {summary}"
        return {
            "schema_version": 1, "event_id": f"{t.incident_id}:{t.seq}", "event": kind, "seq": t.seq,
            "incident_id": t.incident_id, "fingerprint": t.fingerprint,
            "status": "resolved" if ended else "firing", "severity": t.severity,
            "pagerduty_severity": self.policy.pagerduty_severity(t.severity), "type": t.type, "summary": summary,
            "details": details, "model_version": t.model_version, "started_at": t.started_at,
            "updated_at": t.updated_at, "ended_at": iso(now) if ended else None,
            "runbook": self.policy.runbook(t.type), "acknowledged": t.acknowledged, "closed": t.closed,
            "notes": [dict(n) for n in t.notes], "source": "agent",
        }
