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
from incident.policy import Breach, Policy, get_path, most_severe, number

__all__ = ["IncidentManager", "STATE_VERSION"]

STATE_VERSION = 1
_RECENT_IDS = 1024  # window ids remembered for payloads without an index


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
    """

    def __init__(self, policy: Policy, state: Mapping[str, Any] | None = None) -> None:
        if not isinstance(policy, Policy):
            raise ValueError(f"policy: expected an incident.policy.Policy, got {type(policy).__name__}")
        self.policy = policy
        self._reset()
        if state is not None:
            self._load(state)

    def _reset(self) -> None:
        self._trackers: dict[str, dict] = {}
        self._last_index: dict[str, int] = {}     # newest window index per stream
        self._floor: dict[str, int] = {}          # at or below: ignored (too late, or processed)
        self._seen: dict[str, set[int]] = {}      # processed indexes in (floor, last]
        self._recent_ids: collections.deque[str] = collections.deque(maxlen=_RECENT_IDS)
        self._baselines: dict[str, list[float]] = {}
        self.processed = 0
        self.ignored = 0

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue after a restart, JSON-able (pending counters included)."""
        return {"version": STATE_VERSION, "last_index": dict(self._last_index), "floor_index": dict(self._floor),
                "seen_index": {k: sorted(v) for k, v in self._seen.items()},
                "recent_ids": list(self._recent_ids), "trackers": copy.deepcopy(self._trackers),
                "baselines": copy.deepcopy(self._baselines),
                "processed": self.processed, "ignored": self.ignored}

    @classmethod
    def from_state(cls, policy: Policy, state: Mapping[str, Any]) -> "IncidentManager":
        return cls(policy, state)

    def _load(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state: expected version {STATE_VERSION}, got {state.get('version')!r}")
        self._trackers = copy.deepcopy(dict(state.get("trackers", {})))
        self._last_index = {str(k): int(v) for k, v in state.get("last_index", {}).items()}
        # a state without the seen set (older files) treats everything up to the last index as processed
        self._floor = {**self._last_index, **{str(k): int(v) for k, v in state.get("floor_index", {}).items()}}
        self._seen = {str(k): {int(i) for i in v} for k, v in state.get("seen_index", {}).items()}
        self._recent_ids.extend(state.get("recent_ids", []))
        self._baselines = {str(k): [float(x) for x in v] for k, v in state.get("baselines", {}).items()}
        self.processed = int(state.get("processed", 0))
        self.ignored = int(state.get("ignored", 0))

    @classmethod
    def restore(cls, policy: Policy, events: Iterable[Mapping[str, Any]]) -> "IncidentManager":
        """Rebuild from the incidents topic: firing incidents come back from their latest event.

        What the topic cannot hold is lost: pending counters (a breach that had not fired yet starts
        pending again) and clean-window counts (a firing incident needs ``resolve_windows`` clean
        windows again). The last processed window index per stream is the highest one any event was
        emitted at. Prefer the state file; use this when it is missing.
        """
        m = cls(policy)
        latest: dict[str, dict] = {}
        notes: dict[str, list] = {}
        for e in events:
            if e.get("source") == "cli":
                notes.setdefault(e["incident_id"], []).append(e)
            else:
                w = e.get("details", {}).get("window", {})
                idx = _index(w.get("evaluated_index"))
                stream = str(w.get("stream", "default"))
                if idx is not None and idx > m._last_index.get(stream, -1):
                    m._last_index[stream] = m._floor[stream] = idx
            fp = e.get("fingerprint")
            if fp and e.get("source") != "cli" and (fp not in latest or event_order(e) >= event_order(latest[fp])):
                latest[fp] = dict(e)
        for fp, e in latest.items():
            if e.get("status") != "firing":
                continue
            d = e["details"]
            w = d["window"]
            t = {
                "type": e["type"], "fingerprint": fp, "model_version": e.get("model_version"),
                "status": "firing", "incident_id": e["incident_id"], "seq": int(e["seq"]),
                "pending": policy.pending_windows, "clean": 0,
                "recent": [[e["severity"], list(d["affected_features"])]],
                "severity": e["severity"], "features": list(d["affected_features"]),
                "peak_severity": d.get("peak_severity", e["severity"]),
                "covers_all": bool(d.get("covers_all_features", False)),
                "started_at": e["started_at"], "updated_at": e["updated_at"],
                "stream": w.get("stream", "default"),
                "first_window": {"index": w.get("first_index"), "window_id": w.get("first_window_id"),
                                 "first_event_time": w.get("first_event_time")},
                "last_window": {"index": w.get("last_index"), "window_id": w.get("last_window_id"),
                                "last_event_time": w.get("last_event_time")},
                "partitions": list(w.get("partitions", [])),
                "counts": dict(d.get("counts", {"windows_breached": 0})),
                "last": {"summary": e["summary"], "value": d.get("value"), "evidence": d.get("evidence", {})},
                "notes": list(e.get("notes", [])), "acknowledged": bool(e.get("acknowledged")),
                "closed": bool(e.get("closed")),
            }
            m._trackers[fp] = t
            for ne in notes.get(t["incident_id"], []):
                m.observe(ne)
        return m

    # -- queries -----------------------------------------------------------------------------------
    def open_incidents(self) -> list[dict]:
        """Firing incidents (tracker dicts; read only)."""
        return [t for t in self._trackers.values() if t["status"] == "firing"]

    def pending(self) -> list[dict]:
        return [t for t in self._trackers.values() if t["status"] == "pending"]

    def open_counts(self) -> dict[str, int]:
        """Firing incidents per severity, every severity present (for the ``incidents_open`` gauge)."""
        counts = {s: 0 for s in ("P1", "P2", "P3", "P4")}
        for t in self.open_incidents():
            counts[t["severity"]] += 1
        return counts

    # -- external changes --------------------------------------------------------------------------
    def observe(self, event: Mapping[str, Any]) -> bool:
        """Merge an ack/close published by ``breeboost incidents`` into the matching firing incident.

        Later agent events then carry the notes and flags. Returns whether an incident matched.
        """
        for t in self._trackers.values():
            if t.get("incident_id") == event.get("incident_id"):
                seen = {(n.get("at"), n.get("action"), n.get("text")) for n in t["notes"]}
                for n in event.get("notes", []):
                    if (n.get("at"), n.get("action"), n.get("text")) not in seen:
                        t["notes"].append(dict(n))
                t["acknowledged"] = t["acknowledged"] or bool(event.get("acknowledged"))
                t["closed"] = t["closed"] or bool(event.get("closed"))
                return True
        return False

    # -- processing --------------------------------------------------------------------------------
    def process(self, stats: Mapping[str, Any], now: float | None = None) -> list[dict]:
        """Evaluate one window; return the events to publish (possibly none), in order."""
        now = time.time() if now is None else float(now)
        if not isinstance(stats, Mapping):
            raise ValueError(f"stats: expected a drift.stats mapping, got {type(stats).__name__}")
        win = _window_info(stats)
        stream = str(stats.get("stream") or "default")
        if win["index"] is not None:
            if not self._first_time(stream, win["index"]):
                self.ignored += 1
                return []
        elif win["window_id"] is not None:
            if win["window_id"] in self._recent_ids:
                self.ignored += 1
                return []
            self._recent_ids.append(win["window_id"])
        self.processed += 1
        mv = stats.get("model_version") if isinstance(stats.get("model_version"), str) else None
        stats = self._with_learned_references(stats)
        breaches = self.policy.evaluate(stats)
        self._learn(stats, breaches)
        sources = [Breach(t["type"], t["severity"], tuple(t["features"]), None, "", {}, t["covers_all"])
                   for t in self.open_incidents()]
        kept, muted = self.policy.inhibit(breaches, sources)
        events: list[dict] = []
        seen: set[str] = set()
        for b in kept:
            key = b.features if self.policy.group_by(b.type) == "feature" else ()
            fp = fingerprint(b.type, key, mv)
            seen.add(fp)
            t = self._trackers.get(fp)
            if t is None:
                t = self._trackers[fp] = self._new_tracker(b, fp, mv, stream, win, now)
            ev = self._on_breach(t, b, win, now, muted)
            if ev is not None:
                events.append(ev)
        for fp, t in list(self._trackers.items()):
            if fp in seen:
                continue
            if t["status"] == "pending":
                del self._trackers[fp]  # the breach did not hold: pending resets, nothing was published
                continue
            t["clean"] += 1
            t["counts"]["windows_clean"] = t["counts"].get("windows_clean", 0) + 1
            self._push_recent(t, None)
            if t["clean"] >= self.policy.resolve_windows:
                events.append(self._event(t, "resolved", now, win, ended=True))
                del self._trackers[fp]
        return events

    def _first_time(self, stream: str, index: int) -> bool:
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
    def _learned_types(self) -> list[tuple[str, dict]]:
        return [(n, c) for n, c in self.policy.types.items() if c.get("learn_reference_windows") and c.get("statistic")]

    def _with_learned_references(self, stats: Mapping[str, Any]) -> Mapping[str, Any]:
        """Inject ``reference.<statistic>`` (median of recent clean windows) where the payload has none."""
        out = stats
        for name, cfg in self._learned_types():
            if any(number(get_path(stats, p)) is not None for p in cfg.get("reference", [])):
                continue
            values = self._baselines.get(name, [])
            if len(values) < int(cfg.get("learn_min_windows", 3)):
                continue
            if out is stats:
                out = dict(stats)
                out["reference"] = dict(stats["reference"]) if isinstance(stats.get("reference"), Mapping) else {}
            out["reference"][cfg["statistic"]] = float(statistics.median(values))
        return out

    def _learn(self, stats: Mapping[str, Any], breaches: list[Breach]) -> None:
        breached = {b.type for b in breaches}
        for name, cfg in self._learned_types():
            # Windows where this rule did not breach teach its normal level (the median keeps an odd window
            # from moving it). Other types' breaches do not matter: a one-window feature drift at the start
            # of a stream must not delay the reference until the next incident has passed.
            if name in breached:
                continue
            value = number(get_path(stats, cfg["statistic"]))
            if value is None:
                continue
            values = self._baselines.setdefault(name, [])
            values.append(value)
            del values[:-int(cfg["learn_reference_windows"])]

    def _new_tracker(self, b: Breach, fp: str, mv: str | None, stream: str, win: dict, now: float) -> dict:
        return {
            "type": b.type, "fingerprint": fp, "model_version": mv, "status": "pending", "incident_id": None,
            "seq": 0, "pending": 0, "clean": 0, "recent": [], "severity": b.severity, "features": [],
            "peak_severity": b.severity, "covers_all": b.covers_all, "started_at": iso(now), "updated_at": iso(now),
            "stream": stream,
            "first_window": {"index": win["index"], "window_id": win["window_id"],
                             "first_event_time": win["first_event_time"]},
            "last_window": {}, "partitions": [], "counts": {"windows_breached": 0, "windows_clean": 0,
                                                            "events": 0, "dead_lettered": 0},
            "last": {}, "notes": [], "acknowledged": False, "closed": False,
        }

    def _push_recent(self, t: dict, entry: list | None) -> None:
        t["recent"].append(entry)
        del t["recent"][:-self.policy.resolve_windows]

    def _on_breach(self, t: dict, b: Breach, win: dict, now: float, muted: list[dict]) -> dict | None:
        self._push_recent(t, [b.severity, list(b.features)])
        t["clean"] = 0
        t["last"] = {"summary": b.summary, "value": b.value, "evidence": b.evidence,
                     "inhibited": [m for m in muted if m["type"] == b.type]}
        # windows can arrive slightly out of order (see late_windows): the span is min..max of the breaches
        first, last = t["first_window"].get("index"), t["last_window"].get("index")
        if win["index"] is not None and first is not None and win["index"] < first:
            t["first_window"] = {"index": win["index"], "window_id": win["window_id"],
                                 "first_event_time": win["first_event_time"]}
        if win["index"] is None or last is None or win["index"] > last:
            t["last_window"] = {"index": win["index"], "window_id": win["window_id"],
                                "last_event_time": win["last_event_time"]}
        t["partitions"] = sorted(set(t["partitions"]) | set(win["partitions"]))
        c = t["counts"]
        c["windows_breached"] += 1
        c["events"] += win["events"]
        c["dead_lettered"] += win["dead_lettered"]
        live = [r for r in t["recent"] if r is not None]
        severity = most_severe(r[0] for r in live)
        features = sorted({f for r in live for f in r[1]})
        t["peak_severity"] = most_severe([t["peak_severity"], severity])
        if t["status"] == "pending":
            t["pending"] += 1
            t["severity"], t["features"] = severity, features
            if t["pending"] < self.policy.pending_windows:
                return None
            t["status"] = "firing"
            t["incident_id"] = incident_id_for(t["fingerprint"], t["stream"], t["first_window"]["index"],
                                               t["first_window"]["window_id"], t["started_at"])
            return self._event(t, "fired", now, win)
        changed = severity != t["severity"] or bool(set(features) - set(t["features"]))
        t["severity"], t["features"] = severity, features
        return self._event(t, "updated", now, win) if changed else None

    def _event(self, t: dict, kind: str, now: float, win: dict, ended: bool = False) -> dict:
        t["seq"] += 1
        t["updated_at"] = iso(now)
        p = self.policy
        fw, lw = t["first_window"], t["last_window"]
        details = {
            "affected_features": list(t["features"]),
            "covers_all_features": t["covers_all"],
            "value": t["last"].get("value"),
            "evidence": t["last"].get("evidence", {}),
            "window": {"stream": t["stream"], "first_index": fw.get("index"), "last_index": lw.get("index"),
                       "evaluated_index": win["index"], "first_window_id": fw.get("window_id"),
                       "last_window_id": lw.get("window_id"), "first_event_time": fw.get("first_event_time"),
                       "last_event_time": lw.get("last_event_time"), "partitions": list(t["partitions"])},
            "counts": dict(t["counts"]),
            "peak_severity": t["peak_severity"],
        }
        if t["last"].get("inhibited"):
            details["inhibited"] = t["last"]["inhibited"]
        summary = t["last"].get("summary") or f"{t['severity']} {t['type']}"
        if ended:
            summary = f"resolved after {t['clean']} clean windows: {summary}"
        return {
            "schema_version": 1,
            "event_id": f"{t['incident_id']}:{t['seq']}",
            "event": kind,
            "seq": t["seq"],
            "incident_id": t["incident_id"],
            "fingerprint": t["fingerprint"],
            "status": "resolved" if ended else "firing",
            "severity": t["severity"],
            "pagerduty_severity": p.pagerduty_severity(t["severity"]),
            "type": t["type"],
            "summary": summary,
            "details": details,
            "model_version": t["model_version"],
            "started_at": t["started_at"],
            "updated_at": t["updated_at"],
            "ended_at": iso(now) if ended else None,
            "runbook": p.runbook(t["type"]),
            "acknowledged": t["acknowledged"],
            "closed": t["closed"],
            "notes": [dict(n) for n in t["notes"]],
            "source": "agent",
        }
