"""The audit behind ``breeboost audit``: prove from the topics that every transaction that entered was scored
or dead-lettered.

Each event is identified by where it entered: ``(partition, offset, item)`` of the ``transactions`` topic
(``item`` is its position inside a batch envelope, or null). Scores and dead letters carry the same triple,
so the audit holds for events that have no readable transaction id at all (binary or truncated bytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from breeboost.kafka_io import read_topic
from breeboost.settings import Settings

__all__ = ["AuditReport", "audit_topics"]


@dataclass
class AuditReport:
    produced: int = 0
    produced_messages: int = 0
    scored: int = 0
    dead_lettered: int = 0
    score_records: int = 0
    dlq_records: int = 0
    missing: list = field(default_factory=list)
    unexpected: int = 0
    scored_and_dead_lettered: int = 0
    dlq_by_reason: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing and self.scored_and_dead_lettered == 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "produced": self.produced, "produced_messages": self.produced_messages,
                "scored": self.scored, "dead_lettered": self.dead_lettered,
                "duplicate_score_records": self.score_records - self.scored,
                "duplicate_dlq_records": self.dlq_records - self.dead_lettered,
                "missing": len(self.missing), "missing_examples": self.missing[:10],
                "unexpected": self.unexpected, "scored_and_dead_lettered": self.scored_and_dead_lettered,
                "dlq_by_reason": self.dlq_by_reason}


def _events_of(value: bytes | None, max_bytes: int) -> list[int | None]:
    """Items of a transactions message, as the scoring agent splits it (see streams.decode)."""
    if value is None or len(value) > max_bytes:
        return [None]
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [None]
    if type(doc) is list and doc:
        return list(range(len(doc)))
    return [None]


def audit_topics(settings: Settings, expect: int | None = None, idle_timeout_s: float = 3.0,
                 timeout_s: float = 300.0) -> AuditReport:
    """Read the transactions, scores and dead-letter topics from the start (see the module docstring)."""
    rep = AuditReport()
    produced: set = set()
    for r in read_topic(settings, settings.topic_transactions, idle_timeout_s, timeout_s=timeout_s, expect=expect):
        rep.produced_messages += 1
        for item in _events_of(r.value, settings.max_message_bytes):
            produced.add((r.partition, r.offset, item))
    rep.produced = len(produced)
    scored: set = set()
    for r in read_topic(settings, settings.topic_scores, idle_timeout_s, timeout_s=timeout_s):
        doc = orjson.loads(r.value)
        for d in (doc if type(doc) is list else [doc]):  # a batch envelope gets an envelope of scores
            rep.score_records += 1
            scored.add((d["partition"], d["offset"], d.get("item")))
    dlq: set = set()
    for r in read_topic(settings, settings.topic_dlq, idle_timeout_s, timeout_s=timeout_s):
        d = orjson.loads(r.value)
        rep.dlq_records += 1
        key = (d["partition"], d["offset"], d.get("item"))
        if key not in dlq:
            rep.dlq_by_reason[d["reason"]] = rep.dlq_by_reason.get(d["reason"], 0) + 1
        dlq.add(key)
    # a dead letter of a whole envelope (envelope_too_large, malformed_envelope: item null) stands for
    # every item of its message (streams.envelopes)
    whole = {(p, o) for p, o, item in dlq if item is None}
    covered = {k for k in produced if k in dlq or (k[2] is not None and k[:2] in whole)}
    rep.scored, rep.dead_lettered = len(scored), len(covered)
    rep.scored_and_dead_lettered = len(scored & covered)
    rep.missing = sorted(produced - scored - covered, key=lambda t: (t[0], t[1], -1 if t[2] is None else t[2]))
    rep.unexpected = len(scored - produced) + len(dlq - produced - _whole_of(produced, whole))
    return rep


def _whole_of(produced: set, whole: set) -> set:
    """The whole-message dead-letter keys ``(partition, offset, None)`` of envelopes that were produced."""
    return {(p, o, None) for p, o, item in produced if item is not None and (p, o) in whole}
