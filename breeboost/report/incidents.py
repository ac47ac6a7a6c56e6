"""Incidents in the drift report: one span per incident on the window axis, and how each is drawn
(severity colours, the window statistic that shows each incident type)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["incident_spans", "SEVERITY_COLORS", "INCIDENT_SIGNALS"]

SEVERITY_COLORS = {"P1": "#c0392b", "P2": "#e67e22", "P3": "#d4ac0d", "P4": "#7f8c8d"}
_SEVERITY_ORDER = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}

# The window statistic that shows each incident type (dotted path in the drift.stats payload, label).
INCIDENT_SIGNALS: dict[str, list[tuple[str, str]]] = {
    "missing_data": [("missing_ratio", "share of events with a missing field")],
    "schema_mismatch": [("dlq_ratio", "share of events dead-lettered"), ("missing_ratio", "share missing")],
    "corrupted_balances": [("balance_error_ratio", "share of balances that do not add up")],
    "stale_data": [("freshness.lag_p95_s", "event-time lag p95 (s)")],
    "dead_letter_spike": [("dlq_ratio", "share of events dead-lettered")],
    "score_drift": [("score.psi", "score PSI"), ("score.predicted_fraud_rate", "predicted fraud rate")],
    "concept_drift": [("concept.error_rate", "error rate (labelled)"), ("concept.recall", "recall"),
                      ("concept.precision", "precision")],
}


def incident_spans(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One span per incident from its events on the ``incidents`` topic: the breached windows
    (``first_index``..``last_index``), the window it resolved at (``end_index``, ``None`` while firing),
    peak severity, type, features, summary. Acknowledge/close events only add their flags.

    >>> ev = lambda kind, seq, first, last, at, sev="P2": {"incident_id": "inc-1", "event": kind, "seq": seq,
    ...     "type": "missing_data", "severity": sev, "status": "resolved" if kind == "resolved" else "firing",
    ...     "summary": kind, "details": {"affected_features": ["amount"], "peak_severity": sev,
    ...     "window": {"first_index": first, "last_index": last, "evaluated_index": at}}}
    >>> [(s["first_index"], s["last_index"], s["end_index"], s["severity"], s["status"])
    ...  for s in incident_spans([ev("fired", 1, 5, 6, 6), ev("updated", 2, 5, 7, 7, "P1"), ev("resolved", 3, 5, 9, 12)])]
    [(5, 9, 12, 'P1', 'resolved')]
    """
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        if isinstance(e, Mapping) and isinstance(e.get("incident_id"), str):
            by_id.setdefault(e["incident_id"], []).append(e)
    spans = [span for iid, evs in by_id.items() if (span := _span(iid, evs)) is not None]
    return sorted(spans, key=lambda s: (s["first_index"], s["incident_id"]))


def _span(iid: str, evs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The span of one incident's events, or ``None`` if no agent event names a breached window."""
    agent = sorted((e for e in evs if e.get("source") != "cli"), key=lambda e: e.get("seq") or 0)
    windows = [(e.get("details") or {}).get("window") or {} for e in agent]
    firsts = [w["first_index"] for w in windows if isinstance(w.get("first_index"), int)]
    lasts = [w[k] for w in windows for k in ("last_index", "first_index") if isinstance(w.get(k), int)]
    if not agent or not firsts:
        return None
    last = agent[-1]
    resolved = [e for e in agent if e.get("status") == "resolved"]
    sevs = [s for e in agent for s in (e.get("severity"), (e.get("details") or {}).get("peak_severity"))
            if s in _SEVERITY_ORDER]
    peak = min(sevs, key=_SEVERITY_ORDER.get, default=None)
    end = ((resolved[-1].get("details") or {}).get("window") or {}).get("evaluated_index") if resolved else None
    return {
        "incident_id": iid, "type": last.get("type"), "severity": peak,
        "status": "resolved" if resolved else "firing", "first_index": min(firsts), "last_index": max(lasts),
        "end_index": end if isinstance(end, int) else None,
        "features": list((last.get("details") or {}).get("affected_features") or []),
        "summary": next((e.get("summary") for e in agent if e.get("severity") == peak
                         and e.get("status") != "resolved"), agent[0].get("summary")),
        "started_at": last.get("started_at"),
        "ended_at": last.get("ended_at"), "acknowledged": any(e.get("acknowledged") for e in evs),
        "closed": any(e.get("closed") for e in evs)}
