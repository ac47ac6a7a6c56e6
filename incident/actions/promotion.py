"""The promotion guard: may a challenger replace the champion? (``[actions.promote]`` of the policy)

A challenger is promoted only when, on the same labelled transactions (at least ``min_labelled`` of them,
with at least ``min_positives`` frauds), its AUPRC beats the champion's by ``margin`` or more and its recall
at its own threshold is not lower than the champion's at its own (less ``recall_tolerance``). ``auto``
(default ``false``) says whether a passing challenger is promoted without a person: with ``auto = false``
the guard still says what it would do, and a person runs ``breeboost model promote``.

``evidence`` says on which rows: ``offline`` (default) decides on the retrain's comparison (the newest
labelled rows of its range, held out of training, scored by both); ``shadow`` judges that first and then,
once the workers score the new challenger in shadow, the live evidence: the drift windows' ``shadow``
sections (both models on the same labelled transactions, :class:`ShadowEvidence`), pooled until they hold
``min_labelled`` rows and ``min_positives`` frauds, for at most ``shadow_windows`` windows (then it decides
on what it has: too few is "not promoted"). Why offline by default: a blind champion costs every minute
it serves, and the shadow evidence waits for live windows (in the closed-loop check, 43 s on a loaded
2-core host, after the stream had ended); the rollback watch judges the promoted model live either way.

>>> guard = PromotionGuard.from_policy({"actions": {"promote": {"auto": True, "min_labelled": 100}}})
>>> cmp_ = {"rows": 500, "positives": 40, "champion": {"auprc": 0.70, "recall": 0.80},
...         "challenger": {"auprc": 0.78, "recall": 0.82}}
>>> d = guard.decide(cmp_)
>>> d.promote, d.automatic, d.reason
(True, True, 'challenger AUPRC 0.78 >= champion 0.7 + 0.01, recall 0.82 >= 0.8 on 500 rows (40 frauds)')
>>> guard.decide({**cmp_, "challenger": {"auprc": 0.90, "recall": 0.5}}).reason
'recall 0.5 < champion 0.8 - 0'
>>> guard.decide({**cmp_, "rows": 50}).promote
False
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import msgspec

from incident.errors import PolicyError

__all__ = ["PromotionGuard", "PromotionDecision", "ShadowEvidence", "EVIDENCE"]

#: What the guard judges a challenger on: the live shadow windows after the offline comparison, or that alone.
EVIDENCE = ("shadow", "offline")


@dataclass(frozen=True)
class PromotionDecision:
    """``promote``: the challenger passed the guard; ``automatic``: and the policy lets it be promoted
    without a person; ``reason``: why, in words (recorded with the switch)."""

    promote: bool
    automatic: bool
    reason: str


def _number(value: Any, where: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or \
            (high is not None and value > high):
        raise PolicyError(f"{where}: expected a number in [{low}, {high if high is not None else 'inf'}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PromotionGuard:
    auto: bool = False
    min_labelled: int = 1000
    min_positives: int = 20
    margin: float = 0.01
    recall_tolerance: float = 0.0
    evidence: str = "offline"
    shadow_windows: int = 30

    def __post_init__(self) -> None:
        if self.evidence not in EVIDENCE:
            raise PolicyError(f"actions.promote.evidence: expected one of {', '.join(EVIDENCE)}, got {self.evidence!r}")
        _number(self.shadow_windows, "actions.promote.shadow_windows", 1)
        if not isinstance(self.auto, bool):
            raise PolicyError(f"actions.promote.auto: expected true or false, got {self.auto!r}")
        _number(self.min_labelled, "actions.promote.min_labelled", 1)
        _number(self.min_positives, "actions.promote.min_positives", 0)
        _number(self.margin, "actions.promote.margin", 0.0, 1.0)
        _number(self.recall_tolerance, "actions.promote.recall_tolerance", 0.0, 1.0)

    @classmethod
    def from_policy(cls, config: Mapping[str, Any]) -> "PromotionGuard":
        """From a policy's whole config (``Policy.config``): its ``[actions.promote]`` table, if any."""
        table = dict((config.get("actions") or {}).get("promote") or {})
        unknown = set(table) - {"auto", "min_labelled", "min_positives", "margin", "recall_tolerance", "evidence",
                                "shadow_windows"}
        if unknown:
            raise PolicyError(f"actions.promote: unknown key(s) {sorted(unknown)}")
        return cls(**table)

    def decide(self, comparison: Mapping[str, Any]) -> PromotionDecision:
        """The decision on a comparison of both models on the same rows (``breeboost model retrain``'s)."""
        rows, pos = int(comparison.get("rows") or 0), int(comparison.get("positives") or 0)
        a, b = comparison.get("champion") or {}, comparison.get("challenger") or {}
        if rows < self.min_labelled or pos < self.min_positives:
            return self._no(f"{rows} labelled rows ({pos} frauds): fewer than {self.min_labelled} "
                            f"({self.min_positives}) to decide on")
        ca, cb = a.get("auprc"), b.get("auprc")
        if cb is None:
            return self._no("the challenger has no AUPRC on these rows")
        if ca is not None and cb < ca + self.margin:
            return self._no(f"challenger AUPRC {cb:.4g} < champion {ca:.4g} + {self.margin:g}")
        ra, rb = a.get("recall") or 0.0, b.get("recall") or 0.0
        if rb < ra - self.recall_tolerance:
            return self._no(f"recall {rb:.4g} < champion {ra:.4g} - {self.recall_tolerance:g}")
        return PromotionDecision(True, self.auto, f"challenger AUPRC {cb:.4g} >= champion {ca if ca is None else f'{ca:.4g}'} "
                                 f"+ {self.margin:g}, recall {rb:.4g} >= {ra:.4g} on {rows} rows ({pos} frauds)")

    def _no(self, reason: str) -> PromotionDecision:
        return PromotionDecision(False, False, reason)

    def enough(self, evidence: "ShadowEvidence") -> bool:
        return evidence.labelled >= self.min_labelled and evidence.positives >= self.min_positives


class ShadowEvidence(msgspec.Struct):
    """The drift windows' ``shadow`` sections that judged ``challenger`` against the champion, pooled
    exactly (their label counts add), each window once; ``windows_seen``: windows published since the
    evidence began, with a shadow section or not.

    >>> ev = ShadowEvidence("v2")
    >>> counts = lambda tp, fn, fp, tn: {"n": tp + fn + fp + tn, "tp": tp, "fn": fn, "fp": fp, "tn": tn}
    >>> w = {"window": {"index": 7}, "shadow": {"challenger_version": "v2", "champion_version": "v1",
    ...      "champion_counts": counts(2, 8, 1, 989), "challenger_counts": counts(9, 1, 2, 988)}}
    >>> ev.add(w), ev.add(w), ev.labelled, ev.positives, ev.windows_seen   # the same window twice: once
    (True, False, 1000, 10, 1)
    >>> c = ev.comparison(); c["champion"]["recall"], c["challenger"]["recall"], c["source"]
    (0.2, 0.9, 'shadow')
    """

    challenger: str
    windows: list[int] = []          # the windows whose shadow section judged this challenger
    seen: list[int] = []             # every window counted (a re-read one counts once)
    champion_counts: dict = {}
    challenger_counts: dict = {}

    @property
    def windows_seen(self) -> int:
        return len(self.seen)

    @property
    def labelled(self) -> int:
        return int(self.champion_counts.get("n") or 0)

    @property
    def positives(self) -> int:
        return int((self.champion_counts.get("tp") or 0) + (self.champion_counts.get("fn") or 0))

    def add(self, stats: Mapping[str, Any]) -> bool:
        """Count one drift.stats record (decoded); ``True`` if its shadow section judged this challenger."""
        index = int(stats["window"]["index"])
        if index in self.seen:
            return False
        self.seen.append(index)
        shadow = stats.get("shadow") or {}
        if shadow.get("challenger_version") != self.challenger:
            return False
        self.windows.append(index)
        self.champion_counts = _merged(self.champion_counts, shadow.get("champion_counts") or {})
        self.challenger_counts = _merged(self.challenger_counts, shadow.get("challenger_counts") or {})
        return True

    def comparison(self) -> dict[str, Any]:
        """The pooled figures in the shape :meth:`PromotionGuard.decide` reads (``source``: ``shadow``)."""
        from detectors.health import figures
        from detectors.records import LabelCounts

        a, b = (figures(msgspec.convert(c, LabelCounts, str_keys=True))
                for c in (self.champion_counts, self.challenger_counts))
        return {"rows": self.labelled, "positives": self.positives, "windows": len(self.windows), "source": "shadow",
                "champion": {"auprc": a["auprc"], "recall": a["recall"], "precision": a["precision"]},
                "challenger": {"auprc": b["auprc"], "recall": b["recall"], "precision": b["precision"]}}


def _merged(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict:
    """Two LabelCounts dicts added (their bins too)."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict):
            bins = {str(i): c for i, c in (out.get(k) or {}).items()}
            for i, c in v.items():
                bins[str(i)] = bins.get(str(i), 0) + c
            out[k] = bins
        else:
            out[k] = (out.get(k) or 0) + v
    return out
