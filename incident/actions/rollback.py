"""The rollback watch: after an automatic promotion, does the new champion do worse than the old one did?

``[actions.rollback]`` of the policy. When the actions engine promotes a challenger, the watch takes as
**baseline** the old champion's labelled figures pooled over its last ``baseline_windows`` drift windows
(the windows' ``concept`` sections: tp, fp, fn, labelled) and then pools the new champion's windows. The
first ``settle`` windows of the new champion are skipped: a window's labels are those joined while it was
open, and right after a switch they are mostly of transactions the old champion scored (docs/labels.md).
Within the next ``windows`` windows (M), as soon as the pooled labels are enough (``min_labelled`` rows,
``min_positives`` frauds), the new champion is judged: **worse** when its recall is below the baseline's
by more than ``tolerance`` or its precision is; worse -> roll back (``breeboost model rollback --by
auto``), else keep watching until M windows are counted, then it is kept. Without a baseline (the old
champion had too few labels in the windows the agent saw) nothing is watched, and the note says so.

The watch is saved (write-then-rename) beside the action ledger, so an agent restart resumes it; a window
counted once is never counted again (its index is kept), so replayed drift.stats records change nothing.

>>> import tempfile, os
>>> w = RollbackWatch.from_policy({}, os.path.join(tempfile.mkdtemp(), "watch.json"))
>>> base = Pooled(labelled=4000, tp=90, fp=10, fn=10)        # recall 0.9, precision 0.9
>>> w.start("inc-1", "new", "old", base)
>>> w.window(1, "new", Pooled(labelled=2000, tp=5, fp=1, fn=45)) is None   # the settle window: skipped
True
>>> w.window(2, "new", Pooled(labelled=2000, tp=5, fp=1, fn=45)).verdict   # recall 0.1 < 0.9 - 0.05
'worse'
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import msgspec

from incident.errors import PolicyError

__all__ = ["Pooled", "RollbackWatch", "Verdict"]


class Pooled(msgspec.Struct):
    """Labelled counts pooled over windows (a window's ``concept`` section's)."""

    labelled: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @classmethod
    def of_window(cls, stats: Mapping[str, Any]) -> "Pooled":
        c = stats.get("concept") or {}
        return cls(*(int(c.get(k) or 0) for k in ("labelled", "tp", "fp", "fn")))

    def __add__(self, other: "Pooled") -> "Pooled":
        return Pooled(self.labelled + other.labelled, self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def recall(self) -> float | None:
        return self.tp / self.positives if self.positives else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None


class _Watching(msgspec.Struct):
    incident_id: str
    version: str
    old: str
    baseline: Pooled
    seen: list[int] = []
    counted: int = 0
    pooled: Pooled = msgspec.field(default_factory=Pooled)


@dataclass(frozen=True)
class Verdict:
    """``verdict``: ``worse`` (roll back) or ``kept``; ``reason`` in words."""

    incident_id: str
    version: str
    old: str
    verdict: str
    reason: str


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


class RollbackWatch:
    KEYS = ("auto", "windows", "settle", "baseline_windows", "min_labelled", "min_positives", "tolerance")

    def __init__(self, path: str | os.PathLike, auto: bool = True, windows: int = 3, settle: int = 1,
                 baseline_windows: int = 5, min_labelled: int = 1000, min_positives: int = 20,
                 tolerance: float = 0.05) -> None:
        if not isinstance(auto, bool):
            raise PolicyError(f"actions.rollback.auto: expected true or false, got {auto!r}")
        for name, value, low in (("windows", windows, 1), ("settle", settle, 0), ("baseline_windows", baseline_windows, 1),
                                 ("min_labelled", min_labelled, 1), ("min_positives", min_positives, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise PolicyError(f"actions.rollback.{name}: expected an integer >= {low}, got {value!r}")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance <= 1:
            raise PolicyError(f"actions.rollback.tolerance: expected a number in [0, 1], got {tolerance!r}")
        self.path = Path(path)
        self.auto, self.windows, self.settle, self.baseline_windows = auto, windows, settle, baseline_windows
        self.min_labelled, self.min_positives, self.tolerance = min_labelled, min_positives, float(tolerance)
        self.watching: _Watching | None = self._load()

    @classmethod
    def from_policy(cls, config: Mapping[str, Any], path: str | os.PathLike) -> "RollbackWatch":
        table = dict((config.get("actions") or {}).get("rollback") or {})
        unknown = set(table) - set(cls.KEYS)
        if unknown:
            raise PolicyError(f"actions.rollback: unknown key(s) {sorted(unknown)}")
        return cls(path, **table)

    def _load(self) -> _Watching | None:
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=_Watching | None)
        except FileNotFoundError:
            return None

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgspec.json.encode(self.watching))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def enough(self, pooled: Pooled) -> bool:
        return pooled.labelled >= self.min_labelled and pooled.positives >= self.min_positives

    def start(self, incident_id: str, version: str, old: str, baseline: Pooled) -> None:
        """Watch ``version`` (just promoted over ``old``, whose pooled figures are ``baseline``)."""
        self.watching = _Watching(incident_id, version, old, baseline)
        self._save()

    def window(self, index: int, version: str | None, counts: Pooled) -> Verdict | None:
        """One drift window (its index, model version and labelled counts); a verdict when the watch ends."""
        w = self.watching
        if w is None or version != w.version or index in w.seen:
            return None
        w.seen.append(int(index))
        if len(w.seen) <= self.settle:
            self._save()
            return None
        w.counted += 1
        w.pooled = w.pooled + counts
        verdict = None
        p, b = w.pooled, w.baseline
        if self.enough(p):
            worse = [f"{name} {_fmt(new)} < {_fmt(old)} - {self.tolerance:g}"
                     for name, new, old in (("recall", p.recall, b.recall), ("precision", p.precision, b.precision))
                     if old is not None and (new or 0.0) < old - self.tolerance]
            figures = (f"{w.version} over {w.counted} window(s), {p.labelled} labels ({p.positives} frauds): recall "
                       f"{_fmt(p.recall)}, precision {_fmt(p.precision)}; {w.old} before: recall {_fmt(b.recall)}, "
                       f"precision {_fmt(b.precision)} ({b.labelled} labels)")
            if worse:
                verdict = Verdict(w.incident_id, w.version, w.old, "worse", f"{'; '.join(worse)}: {figures}")
            elif w.counted >= self.windows:
                verdict = Verdict(w.incident_id, w.version, w.old, "kept", f"not worse: {figures}")
        elif w.counted >= self.windows:
            verdict = Verdict(w.incident_id, w.version, w.old, "kept",
                              f"{p.labelled} labels ({p.positives} frauds) in {w.counted} window(s) of {w.version}: "
                              f"fewer than {self.min_labelled} ({self.min_positives}) to judge it; kept")
        if verdict is not None:
            self.watching = None
        self._save()
        return verdict
