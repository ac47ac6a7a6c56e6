"""The window sketch: everything a drift window needs, as exact counts that merge across partitions.

One :class:`WindowSketch` per (window, partition) is updated batch by batch by the scoring agent, shipped
as ``to_dict()`` (orjson-able, sparse), rebuilt with ``from_dict(profile, d)`` and merged by the aggregator;
``merge`` adds counts, so merging k partial sketches gives exactly the sketch of the concatenated data, in
any order. :func:`detectors.stats.window_statistics` turns a sketch into the drift.stats payload.

It keeps: per numeric feature the PSI bin and KS cell counts and the missing/invalid counts; per
categorical feature the category counts; for the fraud score the same as a numeric feature plus a
fixed-point sum (2**-40 resolution, so the mean is merge-order independent) and the count of scores >=
the threshold; the event-time lag histogram; dead-lettered events by reason and missing field; events
with at least one missing feature; the balance check (the caller passes a boolean ``balance_mismatch``
per event, e.g. PaySim's ``errorBalanceOrig != 0`` on types where genuine rows balance; events without
one are not checked); the partitions seen; and the first/last event time.

>>> import numpy as np
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile({"amount": rng.lognormal(5, 1, 5000)}, {"type": rng.choice(["A", "B"], 5000)},
...                         rng.beta(1, 20, 5000), threshold=0.5)
>>> parts = []
>>> for p in range(3):
...     s = WindowSketch(profile)
...     s.update_batch({"amount": rng.lognormal(5, 1, 100)}, {"type": rng.choice(["A", "B", "C"], 100)},
...                    rng.beta(1, 20, 100), np.full(100, 2.0), partition=p)
...     parts.append(WindowSketch.from_dict(profile, orjson.loads(orjson.dumps(s.to_dict()))))
>>> merged = WindowSketch(profile)
>>> for s in parts:
...     _ = merged.merge(s)
>>> merged.count, merged.partitions, merged.categorical["type"].count
(300, [0, 1, 2], 300)
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping

import numpy as np
import orjson

from breeboost.rejections import SCHEMA_REASONS  # re-exported: the reasons counted in schema_error_ratio
from detectors.errors import SketchError
from detectors.freshness import LagHistogram
from detectors.profile import check_profile
from detectors.sketch import CategoricalReference, CategoricalSketch, NumericReference, NumericSketch

__all__ = ["WindowSketch", "CompiledProfile", "compile_profile", "merge", "SKETCH_FORMAT", "SCHEMA_REASONS"]

SKETCH_FORMAT = "breeboost.window-sketch/1"
_FIXED = float(2 ** 40)


class CompiledProfile:
    """Arrays built once from a profile dict and shared by every sketch of that profile."""

    def __init__(self, profile: Mapping[str, Any]) -> None:
        check_profile(profile)
        self.profile = profile
        self.fingerprint = hashlib.sha256(orjson.dumps(profile, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        self.numeric = {k: NumericReference(v) for k, v in profile["numeric"].items()}
        self.categorical = {k: CategoricalReference(v) for k, v in profile["categorical"].items()}
        self.score = NumericReference(profile["score"])
        self.threshold = profile["score"].get("threshold")


_CACHE: dict[int, CompiledProfile] = {}


def compile_profile(profile: Mapping[str, Any] | CompiledProfile) -> CompiledProfile:
    """Compile ``profile`` (cached by identity: pass the same dict object to reuse the arrays)."""
    if isinstance(profile, CompiledProfile):
        return profile
    hit = _CACHE.get(id(profile))
    if hit is not None and hit.profile is profile:
        return hit
    compiled = CompiledProfile(profile)
    if len(_CACHE) >= 16:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(profile)] = compiled
    return compiled


class WindowSketch:
    """Mergeable counts of one drift window (see the module docstring).

    Parameters
    ----------
    profile
        The reference profile (dict from :func:`detectors.profile.build_profile`) or a compiled one.
    threshold
        Decision threshold for the predicted-fraud count; default: the profile's score threshold
        (no predicted-fraud count when both are None).
    """

    def __init__(self, profile: Mapping[str, Any] | CompiledProfile, threshold: float | None = None) -> None:
        self.compiled = compile_profile(profile)
        self.threshold = self.compiled.threshold if threshold is None else float(threshold)
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.numeric = {k: NumericSketch(r) for k, r in self.compiled.numeric.items()}
        self.categorical = {k: CategoricalSketch(r) for k, r in self.compiled.categorical.items()}
        self.score = NumericSketch(self.compiled.score)
        self.score_sum_fixed = 0            # sum of round(score * 2**40), exact under merge
        self.predicted_fraud = 0
        self.lags = LagHistogram()
        self.count = 0                      # scored events
        self.missing_events = 0             # scored events with >= 1 missing feature
        self.balance_checked = 0
        self.balance_mismatch = 0
        self.dead_lettered = 0
        self.rejects: dict[str, int] = {}
        self.missing_fields: dict[str, int] = {}
        self._partitions: set[int] = set()
        self.first_event_time: float | None = None
        self.last_event_time: float | None = None

    # -- reading --------------------------------------------------------------------------------------
    @property
    def events(self) -> int:
        """Scored plus dead-lettered events."""
        return self.count + self.dead_lettered

    @property
    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    @property
    def score_mean(self) -> float:
        return self.score_sum_fixed / _FIXED / self.score.count if self.score.count else 0.0

    # -- updating -------------------------------------------------------------------------------------
    def update_batch(self, numeric: Mapping[str, np.ndarray], categorical: Mapping[str, np.ndarray],
                     scores: np.ndarray | None, event_lags_s: np.ndarray | None = None, *,
                     event_times: np.ndarray | None = None, balance_mismatch: np.ndarray | None = None,
                     partition: int | None = None) -> None:
        """Add a batch of scored events (all arrays have one entry per event).

        A profile feature absent from ``numeric``/``categorical`` counts as missing for every event of the
        batch; names the profile does not know are ignored.
        """
        arrays = [a for a in (scores, event_lags_s, event_times, balance_mismatch) if a is not None]
        arrays += list(numeric.values()) + list(categorical.values())
        if not arrays:
            return
        sizes = {int(np.size(a)) for a in arrays}
        if len(sizes) != 1:
            raise ValueError(f"update_batch: arrays differ in length: {sorted(sizes)}")
        n = sizes.pop()
        if partition is not None:
            self._partitions.add(int(partition))
        if n == 0:
            return
        self.count += n
        any_missing = np.zeros(n, dtype=bool)
        for name, sk in self.numeric.items():
            if name in numeric:
                any_missing |= sk.add(numeric[name])
            else:
                sk.missing += n
                any_missing[:] = True
        for name, sk in self.categorical.items():
            if name in categorical:
                any_missing |= sk.add(categorical[name])
            else:
                sk.missing += n
                any_missing[:] = True
        self.missing_events += int(any_missing.sum())
        if scores is not None:
            s = np.asarray(scores, dtype=np.float64).ravel()
            self.score.update(s)
            sf = s[np.isfinite(s)]
            self.score_sum_fixed += int(np.rint(sf * _FIXED).astype(np.int64).sum())
            if self.threshold is not None:
                self.predicted_fraud += int((sf >= self.threshold).sum())
        if event_lags_s is not None:
            self.lags.update(event_lags_s)
        if balance_mismatch is not None:
            b = np.asarray(balance_mismatch, dtype=bool).ravel()
            self.balance_checked += n
            self.balance_mismatch += int(b.sum())
        if event_times is not None:
            t = np.asarray(event_times, dtype=np.float64).ravel()
            t = t[np.isfinite(t)]
            if t.size:
                lo, hi = float(t.min()), float(t.max())
                self.first_event_time = lo if self.first_event_time is None else min(self.first_event_time, lo)
                self.last_event_time = hi if self.last_event_time is None else max(self.last_event_time, hi)

    def add_rejects(self, reasons: Mapping[str, int], missing_fields: Mapping[str, int] | None = None,
                    n_events: int | None = None, *, partition: int | None = None) -> None:
        """Count dead-lettered events: ``reasons`` (reason -> events), ``missing_fields`` (field -> events
        missing it), ``n_events`` (default: the sum of ``reasons``)."""
        total = sum(int(v) for v in reasons.values())
        n = total if n_events is None else int(n_events)
        if n < 0 or any(int(v) < 0 for v in reasons.values()):
            raise ValueError("add_rejects: counts must be >= 0")
        for k, v in reasons.items():
            self.rejects[k] = self.rejects.get(k, 0) + int(v)
        for k, v in (missing_fields or {}).items():
            self.missing_fields[k] = self.missing_fields.get(k, 0) + int(v)
        self.dead_lettered += n
        if partition is not None:
            self._partitions.add(int(partition))

    def merge(self, other: "WindowSketch") -> "WindowSketch":
        """Add ``other``'s counts into this sketch (exact; both must come from the same profile); returns self."""
        if other.compiled.fingerprint != self.compiled.fingerprint:
            raise SketchError("cannot merge window sketches built from different profiles "
                              f"({self.compiled.fingerprint} vs {other.compiled.fingerprint})")
        if other.threshold != self.threshold:
            raise SketchError(f"cannot merge window sketches with different thresholds "
                              f"({self.threshold} vs {other.threshold})")
        for k, sk in self.numeric.items():
            sk.merge(other.numeric[k])
        for k, sk in self.categorical.items():
            sk.merge(other.categorical[k])
        self.score.merge(other.score)
        self.score_sum_fixed += other.score_sum_fixed
        self.predicted_fraud += other.predicted_fraud
        self.lags.merge(other.lags)
        for name in ("count", "missing_events", "balance_checked", "balance_mismatch", "dead_lettered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.rejects, other.rejects), (self.missing_fields, other.missing_fields)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v
        self._partitions |= other._partitions
        for attr, pick in (("first_event_time", min), ("last_event_time", max)):
            a, b = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, b if a is None else a if b is None else pick(a, b))
        return self

    # -- serialising ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (ints, floats, lists; sparse KS cells)."""
        return {
            "format": SKETCH_FORMAT,
            "profile": self.compiled.fingerprint,
            "threshold": self.threshold,
            "numeric": {k: sk.to_dict() for k, sk in self.numeric.items()},
            "categorical": {k: sk.to_dict() for k, sk in self.categorical.items()},
            "score": self.score.to_dict(),
            "score_sum_fixed": self.score_sum_fixed,
            "predicted_fraud": self.predicted_fraud,
            "lags": self.lags.to_dict(),
            "count": self.count,
            "missing_events": self.missing_events,
            "balance_checked": self.balance_checked,
            "balance_mismatch": self.balance_mismatch,
            "dead_lettered": self.dead_lettered,
            "rejects": dict(self.rejects),
            "missing_fields": dict(self.missing_fields),
            "partitions": self.partitions,
            "first_event_time": self.first_event_time,
            "last_event_time": self.last_event_time,
        }

    @classmethod
    def from_dict(cls, profile: Mapping[str, Any] | CompiledProfile, d: Mapping[str, Any]) -> "WindowSketch":
        """Rebuild a sketch from :meth:`to_dict` output; raises :class:`SketchError` if it does not fit ``profile``."""
        if not isinstance(d, Mapping) or d.get("format") != SKETCH_FORMAT:
            raise SketchError(f"not a window sketch payload (format {d.get('format') if isinstance(d, Mapping) else None!r})")
        s = cls(profile, threshold=d.get("threshold"))
        if d.get("profile") != s.compiled.fingerprint:
            raise SketchError(f"window sketch was built from another profile ({d.get('profile')} vs "
                              f"{s.compiled.fingerprint}); are all workers running the same model?")
        try:
            s.numeric = {k: NumericSketch.from_dict(r, d["numeric"][k]) for k, r in s.compiled.numeric.items()}
            s.categorical = {k: CategoricalSketch.from_dict(r, d["categorical"][k])
                             for k, r in s.compiled.categorical.items()}
            s.score = NumericSketch.from_dict(s.compiled.score, d["score"])
            s.lags = LagHistogram.from_dict(d["lags"])
            for name in ("score_sum_fixed", "predicted_fraud", "count", "missing_events", "balance_checked",
                         "balance_mismatch", "dead_lettered"):
                setattr(s, name, int(d[name]))
            s.rejects = {str(k): int(v) for k, v in d["rejects"].items()}
            s.missing_fields = {str(k): int(v) for k, v in d["missing_fields"].items()}
            s._partitions = {int(p) for p in d["partitions"]}
            for name in ("first_event_time", "last_event_time"):
                v = d[name]
                setattr(s, name, None if v is None or not math.isfinite(float(v)) else float(v))
        except (KeyError, TypeError, ValueError) as e:
            raise SketchError(f"malformed window sketch payload: {e!r}") from e
        return s


def merge(a: WindowSketch, b: WindowSketch) -> WindowSketch:
    """A new sketch holding ``a + b`` (neither input changes)."""
    out = WindowSketch(a.compiled, threshold=a.threshold)
    return out.merge(a).merge(b)
